// The examples' device check in a build without CUDA.
#include "device.hpp"

std::string addrop_examples::cuda_unavailable_reason() {
  return "this build of addrop has no CUDA support (configure on a machine with the CUDA Toolkit; see README)";
}
