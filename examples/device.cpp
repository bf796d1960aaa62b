// The examples' GPU check (device.hpp), as device code: the GPU compilation defines it.
#include <addrop/backend/device_code.hpp>

#include "device.hpp"

#if defined(__CUDACC__)
std::string addrop_examples::unavailable_reason(addrop::OnCuda device) {
  return addrop::backend::Cuda::unavailable_reason(device.device);
}
#endif
