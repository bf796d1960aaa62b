// addrop-train-tiny without CUDA: --device cuda is refused before it gets here (device.hpp);
// this keeps the program linkable.
#include <stdexcept>

#include "device.hpp"
#include "train_tiny.hpp"

void addrop_train_tiny::train_on_cuda(const Options&) {
  throw std::runtime_error("--device cuda: " + addrop_examples::cuda_unavailable_reason());
}
