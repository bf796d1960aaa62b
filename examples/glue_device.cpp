// addrop-glue's and addrop-ood's model code for one backend (device code: compiled for the
// CPU and, in a CUDA build, for the GPU; see device.hpp).
#include <addrop/backend/device_code.hpp>

#include "glue_train.hpp"

addrop_examples::RunOutcome glue::train_run(addrop::ThisDevice device, const Job& job, const RunSpec& spec, const fs::path& dir) {
  return train_run<addrop::ThisBackend>(job, spec, dir, addrop::make_context(device));
}

addrop::train::Predictions glue::predict_folder(addrop::ThisDevice device, const fs::path& dir,
                                                const addrop::models::ModelConfig& config,
                                                const std::vector<addrop::data::Feature>& features, int32_t pad_id,
                                                int64_t batch_size) {
  return predict_folder<addrop::ThisBackend>(dir, config, features, pad_id, batch_size, addrop::make_context(device));
}
