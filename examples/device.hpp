// Whether the example programs can run on the GPU. One answer for every program: the
// library addrop_example_device is built from device_cuda.cu where CUDA is configured and
// from device_no_cuda.cpp where it is not, so `--device cuda` fails with one clear message.
#pragma once

#include <string>

namespace addrop_examples {

/// Empty when device 0 exists and this build holds kernels for it; otherwise why not
/// (no CUDA in this build, no GPU, a missing architecture).
std::string cuda_unavailable_reason();

inline bool cuda_available() { return cuda_unavailable_reason().empty(); }

}  // namespace addrop_examples
