// addrop-inspect without CUDA: --device cuda is refused before it gets here (device.hpp);
// this keeps the program linkable.
#include "device.hpp"
#include "inspect_run.hpp"

void addrop_inspect::run_on_cuda(const Options&, const models::ModelConfig&, const BatchFile&) {
  throw std::runtime_error("--device cuda: " + addrop_examples::cuda_unavailable_reason());
}
