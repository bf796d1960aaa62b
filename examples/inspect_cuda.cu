// addrop-inspect --device cuda: the same step instantiated for backend::Cuda.
#include <addrop/backend/cuda/cuda.hpp>

#include "inspect_run.hpp"

void addrop_inspect::run_on_cuda(const Options& o, const models::ModelConfig& config, const BatchFile& input) {
  const auto context = backend::Cuda::Context::create(0);
  if (o.dtype == "f64") dispatch<double, backend::Cuda>(o, config, input, context);
  else dispatch<float, backend::Cuda>(o, config, input, context);
}
