// addrop-ner on NVIDIA GPUs: the same training code instantiated for backend::Cuda.
#include <addrop/backend/cuda/cuda.hpp>

#include "ner_train.hpp"

ner::Outcome ner::train_run_cuda(const Job& job, const glue::RunSpec& spec, const fs::path& dir, int) {
  return ner::train_run<addrop::backend::Cuda>(job, spec, dir, addrop::backend::Cuda::Context::create(0));
}
