#pragma once
// The model side of addrop-glue: build or load a model on a backend, train one run with
// the shared Trainer, evaluate, predict. Kept apart from the text and file handling
// (glue.cpp) so that a CUDA translation unit can instantiate it for backend::Cuda.
#include <addrop/addrop.hpp>
#include <addrop/models/presets.hpp>
#include <addrop/train/evaluate.hpp>
#include <addrop/train/trainer.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <addrop/backend/device.hpp>

#include "distributed.hpp"
#include "run_plan.hpp"

namespace glue {

namespace fs = std::filesystem;
using addrop_examples::RunOutcome;
using addrop_examples::RunSpec;

/// Everything a run needs that does not depend on the backend.
struct Job {
  addrop::models::ModelConfig config;  ///< task head and num_labels already set
  std::string model_dir;               ///< load weights from here; empty: random init (preset)
  std::vector<addrop::data::Feature> train, dev, dev_mismatched, test;
  int32_t pad_id = 0;
  int threads = 0;
  int64_t eval_batch_size = 64;
  std::vector<int> layers{0};
  std::optional<addrop::Precision> attribution_precision;  ///< unset: the run's
  std::string side = "high", schedule = "cross";
  int ig_steps = 20;
  addrop::train::TrainerOptions trainer;
  addrop::data::SamplerOptions sampler;  ///< batch size and length bucketing; the seed is the run's
  /// Dev metrics from predictions; `mismatched` selects MNLI's second dev set naming.
  std::function<addrop::train::EvalResult(const addrop::train::Predictions&, const std::vector<addrop::data::Feature>&)>
      metrics;
  bool predict_test = false;
  std::function<void(const addrop::train::Predictions&, const fs::path&)> write_predictions;
};

template <class Model, class Reg>
RunOutcome train_with(Model& model, Reg& reg, const Job& job, const RunSpec& spec, const fs::path& out_dir) {
  using namespace addrop;
  train::TrainerOptions topt = job.trainer;
  topt.output = out_dir;
  topt.run_name = spec.name;
  data::SamplerOptions sampler = job.sampler;
  sampler.seed = spec.seed;
  const data::SequenceBatches source(job.train, sampler, job.pad_id,
                                     model.config().task == models::Task::Regression);
  auto comm = addrop_examples::communicator_for<typename Model::backend_type>(model.context());
  train::Trainer trainer(model, reg, topt, comm);
  auto evaluate = [&](Model& m) {
    const auto pred = train::predict(m, job.dev, job.eval_batch_size, job.pad_id, {}, comm);
    train::EvalResult r = job.metrics(pred, job.dev);
    if (!job.dev_mismatched.empty()) {
      const auto mm = train::predict(m, job.dev_mismatched, job.eval_batch_size, job.pad_id, {}, comm);
      const train::EvalResult rm = job.metrics(mm, job.dev_mismatched);
      for (const auto& [k, v] : rm.metrics) r.metrics["mm_" + k] = v;
      r.metrics["mm_loss"] = rm.loss;
    }
    return r;
  };
  RunOutcome outcome;
  outcome.result = trainer.fit(source, evaluate);
  if (const auto* best = outcome.result.best()) outcome.best_dev = best->dev;
  if (job.predict_test && !job.test.empty() && topt.save_best && addrop_examples::writes_files() &&
      fs::exists(out_dir / "best" / "model.safetensors")) {
    io::load_weights(model, io::SafeTensors::load(out_dir / "best" / "model.safetensors"), true);
    const auto pred = train::predict(model, job.test, job.eval_batch_size, job.pad_id);
    job.write_predictions(pred, out_dir);
  }
  return outcome;
}

/// Builds the model on `Backend`, then dispatches on the attribution method.
template <class Backend>
RunOutcome train_run(const Job& job, const RunSpec& spec, const fs::path& out_dir,
                     typename Backend::Context ctx) {
  using namespace addrop;
  models::EncoderModel<float, Backend> model(job.config, ctx);
  if (job.model_dir.empty()) {
    models::init_weights(model, spec.seed);
  } else {
    const auto report = io::load_pretrained(model, job.model_dir, spec.seed);
    if (!report.missing.empty())
      std::fprintf(stderr, "%s: %zu parameters not in the checkpoint, initialised fresh (the task head)\n",
                   spec.name.c_str(), report.missing.size());
  }
  AdDropOptions ad{.p = spec.p, .q = spec.q, .layers = job.layers, .seed = spec.seed, .record_masks = false,
                   .attribution_precision = job.attribution_precision};
  const PolicyNames names{.attribution = spec.attribution, .side = job.side, .schedule = job.schedule,
                          .integrated_gradients = {.steps = job.ig_steps}};
  return with_regulariser(names, ad, [&](auto& reg) { return train_with(model, reg, job, spec, out_dir); });
}

/// Predictions of a trained model folder on a feature set (addrop-ood, --predict).
template <class Backend>
addrop::train::Predictions predict_folder(const fs::path& dir, const addrop::models::ModelConfig& config,
                                          const std::vector<addrop::data::Feature>& features, int32_t pad_id,
                                          int64_t batch_size, typename Backend::Context ctx) {
  using namespace addrop;
  models::EncoderModel<float, Backend> model(config, ctx);
  io::load_weights(model, io::SafeTensors::load(dir / "model.safetensors"), true);
  return train::predict(model, features, batch_size, pad_id);
}

// The model code per device (glue_device.cpp, compiled once per backend: device.hpp).
RunOutcome train_run(addrop::OnCpu device, const Job& job, const RunSpec& spec, const fs::path& dir);
RunOutcome train_run(addrop::OnCuda device, const Job& job, const RunSpec& spec, const fs::path& dir);
addrop::train::Predictions predict_folder(addrop::OnCpu device, const fs::path& dir, const addrop::models::ModelConfig& config,
                                          const std::vector<addrop::data::Feature>& features, int32_t pad_id,
                                          int64_t batch_size);
addrop::train::Predictions predict_folder(addrop::OnCuda device, const fs::path& dir, const addrop::models::ModelConfig& config,
                                          const std::vector<addrop::data::Feature>& features, int32_t pad_id,
                                          int64_t batch_size);

}  // namespace glue
