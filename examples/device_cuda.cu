// The examples' device check in a CUDA build: asks the runtime.
#include <addrop/backend/cuda/cuda.hpp>

#include "device.hpp"

std::string addrop_examples::cuda_unavailable_reason() { return addrop::backend::Cuda::unavailable_reason(0); }
