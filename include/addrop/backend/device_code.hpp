#pragma once
// Included by a device-code file (see backend/device.hpp): names the backend of this
// compilation. Compiled by nvcc it is backend::Cuda (device tag OnCuda), otherwise
// backend::Cpu (OnCpu), so one source defines an entry point per backend:
//
//   Result run_on(addrop::ThisDevice device, const Job& job) {
//     return run<addrop::ThisBackend>(job, addrop::make_context(device));
//   }
#include "device.hpp"

#if defined(__CUDACC__)
#include "cuda/cuda.hpp"

namespace addrop {
using ThisBackend = backend::Cuda;
using ThisDevice = OnCuda;
/// The GPU's context; throws std::runtime_error saying why when the GPU cannot be used.
inline backend::Cuda::Context make_context(OnCuda device) {
  if (const std::string why = backend::Cuda::unavailable_reason(device.device); !why.empty())
    throw std::runtime_error("CUDA device " + std::to_string(device.device) + ": " + why);
  backend::Cuda::Context ctx = backend::Cuda::Context::create(device.device);
  ctx.precision = device.precision;
  return ctx;
}
}  // namespace addrop

#else
#include "cpu.hpp"

namespace addrop {
using ThisBackend = backend::Cpu;
using ThisDevice = OnCpu;
inline backend::Cpu::Context make_context(OnCpu device) {
  return {.threads = device.threads, .precision = device.precision};
}
}  // namespace addrop
#endif
