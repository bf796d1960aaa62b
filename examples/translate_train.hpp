#pragma once
// The model side of addrop-translate: build or load a Marian on a backend, train one run
// with the shared Trainer on data::TranslationBatches (BLEU on the dev pairs after every
// epoch picks the best checkpoint), score the test pairs with it; translate and evaluate
// with a saved folder. Kept apart from the text and file handling (translate.cpp) so that a
// CUDA translation unit can instantiate it for backend::Cuda.
#include <addrop/addrop.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "distributed.hpp"
#include "run_plan.hpp"

namespace translate {

namespace fs = std::filesystem;
using Detokenize = std::function<std::string(const std::vector<int32_t>&)>;

/// Everything a training run needs that does not depend on the backend.
struct Job {
  addrop::models::MarianConfig config;
  std::string model_dir;  ///< load weights from here; empty: random init
  std::vector<addrop::data::TranslationPair> train, dev, test;
  std::vector<std::string> dev_references, test_references;
  Detokenize detokenize;
  addrop::train::TranslationEvalOptions dev_eval, test_eval;
  double label_smoothing = 0.1;
  std::vector<int> layers;  ///< AD-DROP sites (encoder layers by default)
  std::optional<addrop::Precision> attribution_precision;  ///< unset: the run's
  std::string side = "high", schedule = "cross";
  int ig_steps = 20;
  addrop::train::TrainerOptions trainer;
  addrop::data::SamplerOptions sampler;
};

struct Outcome {
  addrop_examples::RunOutcome run;
  std::optional<addrop::train::TranslationEvaluation> test;
  bool test_from_best = false;
};

template <class Model, class Reg>
Outcome train_with(Model& model, Reg& reg, const Job& job, const addrop_examples::RunSpec& spec, const fs::path& out_dir) {
  using namespace addrop;
  train::TrainerOptions topt = job.trainer;
  topt.output = out_dir;
  topt.run_name = spec.name;
  topt.greater_is_better = true;  // BLEU
  data::SamplerOptions sampler = job.sampler;
  sampler.seed = spec.seed;
  const auto pad = static_cast<int32_t>(job.config.pad_token_id), start = static_cast<int32_t>(job.config.decoder_start_token_id);
  const data::TranslationBatches source(job.train, sampler, pad, start);
  auto comm = addrop_examples::communicator_for<typename Model::backend_type>(model.context());
  train::Trainer trainer(model, reg, topt, comm);
  auto evaluate = [&](Model& m) {
    return train::evaluate_translation(m, job.dev, job.dev_references, job.dev_eval, job.detokenize, comm).result();
  };
  Outcome outcome;
  outcome.run.result = trainer.fit(source, evaluate);
  if (const auto* best = outcome.run.result.best()) outcome.run.best_dev = best->dev;
  if (!job.test.empty()) {
    if (topt.save_best) outcome.test_from_best = addrop_examples::load_checkpoint_everywhere(model, out_dir / "best", comm);
    outcome.test =
        train::evaluate_translation(model, job.test, job.test_references, job.test_eval, job.detokenize, comm);
  }
  return outcome;
}

/// Builds the Marian on `Backend` (random weights, or the checkpoint's), then trains with
/// the attribution the spec names on the encoder's self-attention sites.
template <class Backend>
Outcome train_run(const Job& job, const addrop_examples::RunSpec& spec, const fs::path& out_dir,
                  typename Backend::Context ctx) {
  using namespace addrop;
  models::MarianModel<float, Backend> model(job.config, ctx);
  if (job.model_dir.empty()) {
    model.init_weights(spec.seed);
  } else {
    const auto report = io::load_pretrained(model, job.model_dir, spec.seed);
    if (!report.missing.empty())
      std::fprintf(stderr, "%s: %zu parameters not in the checkpoint, initialised fresh\n", spec.name.c_str(),
                   report.missing.size());
  }
  model.set_label_smoothing(job.label_smoothing);
  AdDropOptions ad{.p = spec.p, .q = spec.q, .layers = job.layers, .seed = spec.seed, .record_masks = false,
                   .attribution_precision = job.attribution_precision};
  const PolicyNames names{.attribution = spec.attribution, .side = job.side, .schedule = job.schedule,
                          .integrated_gradients = {.steps = job.ig_steps}};
  return with_regulariser(names, ad, [&](auto& reg) { return train_with(model, reg, job, spec, out_dir); });
}

/// A saved Marian folder on `Backend`, its weights loaded (all of them).
template <class Backend>
addrop::models::MarianModel<float, Backend> load_model(const fs::path& dir, typename Backend::Context ctx) {
  using namespace addrop;
  models::MarianModel<float, Backend> model(models::load_marian_config(dir / "config.json"), ctx);
  io::load_weights(model, io::SafeTensors::load(dir / "model.safetensors"), /*strict=*/true);
  return model;
}

/// Translations of the pairs' sources (evaluate and translate commands).
template <class Backend>
std::vector<std::string> translate_run(const fs::path& dir, const std::vector<addrop::data::TranslationPair>& pairs,
                                       const addrop::train::TranslationEvalOptions& options, const Detokenize& detokenize,
                                       typename Backend::Context ctx) {
  auto model = load_model<Backend>(dir, ctx);
  return addrop::train::translate_pairs(model, pairs, options, detokenize);
}

// The model code per device (translate_device.cpp, compiled once per backend: device.hpp).
Outcome train_run(addrop::OnCpu device, const Job& job, const addrop_examples::RunSpec& spec, const fs::path& dir);
Outcome train_run(addrop::OnCuda device, const Job& job, const addrop_examples::RunSpec& spec, const fs::path& dir);
std::vector<std::string> translate_run(addrop::OnCpu device, const fs::path& dir,
                                       const std::vector<addrop::data::TranslationPair>& pairs,
                                       const addrop::train::TranslationEvalOptions& options, const Detokenize& detokenize);
std::vector<std::string> translate_run(addrop::OnCuda device, const fs::path& dir,
                                       const std::vector<addrop::data::TranslationPair>& pairs,
                                       const addrop::train::TranslationEvalOptions& options, const Detokenize& detokenize);

}  // namespace translate
