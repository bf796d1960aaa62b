// addrop-train-tiny --device cuda: the same training instantiated for backend::Cuda.
#include <addrop/backend/cuda/cuda.hpp>

#include "train_tiny.hpp"

void addrop_train_tiny::train_on_cuda(const Options& opt) {
  train_and_report<addrop::backend::Cuda>(opt, addrop::backend::Cuda::Context::create(0));
}
