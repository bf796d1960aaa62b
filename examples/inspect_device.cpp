// addrop-inspect's step for one backend (device code: compiled for the CPU and, in a CUDA
// build, for the GPU; see device.hpp).
#include <addrop/backend/device_code.hpp>

#include "inspect_run.hpp"

void addrop_inspect::run_step(addrop::ThisDevice device, const Options& o, const models::ModelConfig& config,
                              const BatchFile& input) {
  const auto context = addrop::make_context(device);
  if (o.dtype == "f64") dispatch<double, addrop::ThisBackend>(o, config, input, context);
  else dispatch<float, addrop::ThisBackend>(o, config, input, context);
}
