#pragma once
// The model side of addrop-ner: build or load a token classifier on a backend, train one
// run with the shared Trainer (on data::TokenBatches, batches with token labels),
// evaluate on valid every epoch, and score the test set with the best checkpoint. Kept apart from the file and text handling (ner.cpp) so that a CUDA
// translation unit can instantiate it for backend::Cuda.
#include <addrop/addrop.hpp>
#include <addrop/data/token_alignment.hpp>
#include <addrop/train/evaluate_tokens.hpp>
#include <addrop/train/trainer.hpp>

#include "distributed.hpp"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "run_plan.hpp"

namespace ner {

namespace fs = std::filesystem;

/// Everything a run needs that does not depend on the backend.
struct Job {
  addrop::models::ModelConfig config;  ///< TokenClassification, num_labels = labels.size()
  std::string model_dir;               ///< load weights from here; empty: random init (preset)
  addrop::data::TokenFeatures train, dev, test;
  std::vector<std::vector<std::string>> dev_gold, test_gold;  ///< word tags (IOB2) per sentence
  std::vector<std::string> labels;     ///< label names by id
  int32_t pad_id = 0;
  int64_t eval_batch_size = 64;
  std::vector<int> layers;             ///< AD-DROP target layers (all by default)
  std::optional<addrop::Precision> attribution_precision;  ///< unset: the run's
  std::string side = "high", schedule = "cross";
  int ig_steps = 20;
  bool test_each_epoch = false;        ///< also score the test set at every evaluation (test_* metrics)
  addrop::train::TrainerOptions trainer;
  addrop::data::SamplerOptions sampler;  ///< batch size and length bucketing; the seed is the run's
};

struct Outcome {
  addrop_examples::RunOutcome run;
  std::optional<addrop::train::TokenEvaluation> test;  ///< with the best checkpoint (else the last model)
  bool test_from_best = false;
};

inline addrop::train::EvalResult to_eval_result(const addrop::train::TokenEvaluation& e) {
  addrop::train::EvalResult r;
  r.loss = e.loss;
  r.metrics = e.metrics();
  r.main = e.counts.f1();
  return r;
}

template <class Model, class Reg>
Outcome train_with(Model& model, Reg& reg, const Job& job, const addrop_examples::RunSpec& spec, const fs::path& out_dir) {
  using namespace addrop;
  train::TrainerOptions topt = job.trainer;
  topt.output = out_dir;
  topt.run_name = spec.name;
  data::SamplerOptions sampler = job.sampler;
  sampler.seed = spec.seed;
  const data::TokenBatches source(job.train, sampler, job.pad_id);
  auto comm = addrop_examples::communicator_for<typename Model::backend_type>(model.context());
  train::Trainer trainer(model, reg, topt, comm);
  auto evaluate = [&](Model& m) {
    train::EvalResult r = to_eval_result(
        train::evaluate_tokens(m, job.dev, job.dev_gold, job.labels, job.eval_batch_size, job.pad_id, comm));
    if (job.test_each_epoch && !job.test.empty()) {
      const auto t =
          train::evaluate_tokens(m, job.test, job.test_gold, job.labels, job.eval_batch_size, job.pad_id, comm);
      for (const auto& [k, v] : t.metrics()) r.metrics["test_" + k] = v;
      if (std::isfinite(t.loss)) r.metrics["test_loss"] = t.loss;
    }
    return r;
  };
  Outcome outcome;
  outcome.run.result = trainer.fit(source, evaluate);
  if (const auto* best = outcome.run.result.best()) outcome.run.best_dev = best->dev;
  if (!job.test.empty()) {
    if (topt.save_best) outcome.test_from_best = addrop_examples::load_checkpoint_everywhere(model, out_dir / "best", comm);
    outcome.test =
        train::evaluate_tokens(model, job.test, job.test_gold, job.labels, job.eval_batch_size, job.pad_id, comm);
  }
  return outcome;
}

/// Builds the model on `Backend`, then dispatches on the attribution method. Every
/// attribution uses the token-level objective (F = -CE(pseudo labels) over attended
/// positions) because the model's task is TokenClassification.
template <class Backend>
Outcome train_run(const Job& job, const addrop_examples::RunSpec& spec, const fs::path& out_dir, typename Backend::Context ctx) {
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

// The model code per device (ner_device.cpp, compiled once per backend: device.hpp).
Outcome train_run(addrop::OnCpu device, const Job& job, const addrop_examples::RunSpec& spec, const fs::path& dir);
Outcome train_run(addrop::OnCuda device, const Job& job, const addrop_examples::RunSpec& spec, const fs::path& dir);

}  // namespace ner
