// The examples' device queries (device.hpp), as device code: each compilation defines
// them for its own device tag.
#include <addrop/backend/device_code.hpp>

#include "device.hpp"

#if defined(__CUDACC__)
std::string addrop_examples::unavailable_reason(addrop::OnCuda device) {
  return addrop::backend::Cuda::unavailable_reason(device.device);
}

std::string addrop_examples::matmul_description(addrop::OnCuda device) {
  return device.precision == addrop::Precision::Bf16Mixed ? "cuBLAS, bf16 inputs on tensor cores, float32 accumulation"
                                                          : "cuBLAS, float32";
}
#else
std::string addrop_examples::matmul_description(addrop::OnCpu device) {
  return device.precision == addrop::Precision::Bf16Mixed ? addrop::backend::bf16_matmul_engine() : "Eigen, float32";
}
#endif
