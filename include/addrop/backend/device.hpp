#pragma once
// Choosing the backend at run time. A program names a device ("cpu" or "cuda"); its
// backend-dependent code lives in a device-code file that includes
// backend/device_code.hpp and is compiled once per backend (addrop_add_device_code() in
// cmake/AddropCuda.cmake: with the host compiler for the CPU and, in a CUDA build, with
// nvcc for the GPU). Each compilation defines the program's entry points for its own
// device tag, so the host code calls them by overloading on OnCpu / OnCuda.
#include <stdexcept>
#include <string>
#include <string_view>

#include "precision.hpp"

namespace addrop {

enum class Device { Cpu, Cuda };

/// "cpu" or "cuda"; anything else throws std::invalid_argument naming the value.
inline Device parse_device(std::string_view name) {
  if (name == "cpu") return Device::Cpu;
  if (name == "cuda") return Device::Cuda;
  throw std::invalid_argument("device \"" + std::string(name) + "\" is not one of cpu, cuda");
}

/// Device tags: what a device-code entry point receives to make its backend's context.
struct OnCpu {
  int threads = 0;  ///< 0: OpenMP's default
  Precision precision = Precision::F32;  ///< of the matrix products (precision.hpp)
};
struct OnCuda {
  int device = 0;   ///< CUDA device ordinal
  Precision precision = Precision::F32;  ///< of the matrix products (precision.hpp)
};

}  // namespace addrop
