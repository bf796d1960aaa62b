#pragma once
// --device for the example programs. Each program's model code is a device-code file
// (examples/CMakeLists.txt adds it with addrop_add_device_code: compiled for the CPU and,
// in a CUDA build, again for the GPU) that defines its entry points for addrop::OnCpu
// and addrop::OnCuda; on_device() calls the one the flag names, after checking that the
// GPU can be used, so `--device cuda` fails early with one clear message everywhere.
#include <addrop/backend/device.hpp>

#include "distributed.hpp"

#include <cstdio>
#include <stdexcept>
#include <string>

namespace addrop_examples {

#if defined(ADDROP_WITH_CUDA)
/// Empty when the GPU can be used (device.cpp, compiled for the GPU); else why not.
std::string unavailable_reason(addrop::OnCuda device);
std::string matmul_description(addrop::OnCuda device);
#endif
/// What computes the matrix products on this device in its precision, e.g. "oneDNN 2.6.3
/// matmul, AVX512-BF16 (vdpbf16ps)", or an emulated bf16 path said as such (device.cpp).
std::string matmul_description(addrop::OnCpu device);

/// Empty when device 0 exists and this build holds kernels for it; otherwise why not
/// (no CUDA in this build, no GPU, a missing architecture).
inline std::string cuda_unavailable_reason() {
#if defined(ADDROP_WITH_CUDA)
  return unavailable_reason(addrop::OnCuda{});
#else
  return "this build of addrop has no CUDA support (configure on a machine with the CUDA Toolkit; see README)";
#endif
}

inline bool cuda_available() { return cuda_unavailable_reason().empty(); }

/// Says once per process, on stderr, what computes a bf16 run's products (so that an
/// emulated bf16 run, at float32 speed, says so).
template <class Tag>
void announce_precision(const Tag& device) {
  static bool said = false;
  if (device.precision != addrop::Precision::Bf16Mixed || said) return;
  said = true;
  std::fprintf(stderr, "--precision bf16: matrix products on %s\n", matmul_description(device).c_str());
}

/// Calls f(addrop::OnCpu{threads, precision}) for "cpu" or f(addrop::OnCuda{...}) for
/// "cuda" and returns what it returns; "cuda" without a usable GPU throws, naming --device
/// and the reason; a precision other than f32 / bf16 throws naming --precision.
template <class F>
decltype(auto) on_device(const std::string& device, int threads, const std::string& precision, F&& f) {
  const addrop::Precision p = addrop::parse_precision(precision, "--precision");
  if (addrop::parse_device(device) == addrop::Device::Cuda) {
    if (const std::string why = cuda_unavailable_reason(); !why.empty()) throw std::runtime_error("--device cuda: " + why);
#if defined(ADDROP_WITH_CUDA)
    // One GPU per rank of a data-parallel job: its rank on the node (docs/distributed.md).
    const addrop::OnCuda gpu{.device = local_rank(), .precision = p};
    if (gpu.device > 0)
      if (const std::string why = unavailable_reason(gpu); !why.empty())
        throw std::runtime_error("--device cuda: rank " + std::to_string(gpu.device) + " of this node needs GPU " +
                                 std::to_string(gpu.device) + ": " + why + " (one rank per GPU)");
    announce_precision(gpu);
    return f(gpu);
#endif
  }
  announce_precision(addrop::OnCpu{.threads = threads, .precision = p});
  return f(addrop::OnCpu{.threads = threads, .precision = p});
}

}  // namespace addrop_examples
