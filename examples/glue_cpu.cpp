// The example trainers' model code instantiated for the CPU backend (compiled once,
// shared by addrop-glue and addrop-ood).
#include "glue_cli.hpp"

glue::RunOutcome glue::train_run_cpu(const Job& job, const RunSpec& spec, const fs::path& dir, int threads) {
  return train_run<addrop::backend::Cpu>(job, spec, dir, addrop::backend::Cpu::Context{.threads = threads});
}

addrop::train::Predictions glue::predict_folder_cpu(const fs::path& dir, const addrop::models::ModelConfig& config,
                                                    const std::vector<addrop::data::Feature>& features,
                                                    int32_t pad_id, int64_t batch_size, int threads) {
  return predict_folder<addrop::backend::Cpu>(dir, config, features, pad_id, batch_size,
                                              addrop::backend::Cpu::Context{.threads = threads});
}
