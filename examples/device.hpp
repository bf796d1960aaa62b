#pragma once
// --device for the example programs. Each program's model code is a device-code file
// (examples/CMakeLists.txt adds it with addrop_add_device_code: compiled for the CPU and,
// in a CUDA build, again for the GPU) that defines its entry points for addrop::OnCpu
// and addrop::OnCuda; on_device() calls the one the flag names, after checking that the
// GPU can be used, so `--device cuda` fails early with one clear message everywhere.
#include <addrop/backend/device.hpp>

#include <stdexcept>
#include <string>

namespace addrop_examples {

#if defined(ADDROP_WITH_CUDA)
/// Empty when the GPU can be used (device.cpp, compiled for the GPU); else why not.
std::string unavailable_reason(addrop::OnCuda device);
#endif

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

/// Calls f(addrop::OnCpu{threads}) for "cpu" or f(addrop::OnCuda{}) for "cuda" and returns
/// what it returns; "cuda" without a usable GPU throws, naming --device and the reason.
template <class F>
decltype(auto) on_device(const std::string& device, int threads, F&& f) {
  if (addrop::parse_device(device) == addrop::Device::Cuda) {
    if (const std::string why = cuda_unavailable_reason(); !why.empty()) throw std::runtime_error("--device cuda: " + why);
#if defined(ADDROP_WITH_CUDA)
    return f(addrop::OnCuda{});
#endif
  }
  return f(addrop::OnCpu{.threads = threads});
}

}  // namespace addrop_examples
