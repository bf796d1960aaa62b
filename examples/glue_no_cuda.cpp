// addrop-glue without CUDA: --device cuda fails with a message saying why.
#include "glue_cli.hpp"

glue::RunOutcome glue::train_run_cuda(const Job&, const RunSpec&, const fs::path&, int) {
  throw std::runtime_error("--device cuda: " + cuda_unavailable_reason());
}
addrop::train::Predictions glue::predict_folder_cuda(const fs::path&, const addrop::models::ModelConfig&,
                                                     const std::vector<addrop::data::Feature>&, int32_t, int64_t, int) {
  throw std::runtime_error("--device cuda: " + cuda_unavailable_reason());
}
