// addrop-ner without CUDA: --device cuda fails with a message saying why.
#include <stdexcept>

#include "glue_cli.hpp"
#include "ner_train.hpp"

ner::Outcome ner::train_run_cuda(const Job&, const glue::RunSpec&, const fs::path&, int) {
  throw std::runtime_error("--device cuda: " + glue::cuda_unavailable_reason());
}
