// addrop-glue on NVIDIA GPUs: the same training code instantiated for backend::Cuda.
#include <addrop/backend/cuda/cuda.hpp>

#include "glue_cli.hpp"

glue::RunOutcome glue::train_run_cuda(const Job& job, const RunSpec& spec, const fs::path& dir, int) {
  return train_run<addrop::backend::Cuda>(job, spec, dir, addrop::backend::Cuda::Context::create(0));
}
addrop::train::Predictions glue::predict_folder_cuda(const fs::path& dir, const addrop::models::ModelConfig& config,
                                                     const std::vector<addrop::data::Feature>& features,
                                                     int32_t pad_id, int64_t batch_size, int) {
  return predict_folder<addrop::backend::Cuda>(dir, config, features, pad_id, batch_size,
                                               addrop::backend::Cuda::Context::create(0));
}
