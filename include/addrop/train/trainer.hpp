#pragma once
// The fine-tuning loop every example trainer shares: epochs of shuffled (optionally
// length-bucketed) batches, one regulariser step per batch (AdDrop<...>, which is also
// the plain step when its schedule says so), gradient clipping, AdamW with an LR
// schedule, evaluation at the end of every epoch (or every N steps), early stopping on
// the task's main metric, the best checkpoint in Hugging Face layout, the last state for
// resuming, metrics.jsonl and summary.json. A NaN or Inf loss stops the run with a
// clear message; the best checkpoint written so far stays as it was.
//
//   train::Trainer trainer(model, regulariser, options);
//   auto result = trainer.fit(train_features, [&](auto& m) { return evaluate_dev(m); });
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../data/batching.hpp"
#include "../io/checkpoint.hpp"
#include "adamw.hpp"
#include "early_stopping.hpp"
#include "grad_clip.hpp"
#include "lr_schedule.hpp"
#include "optimizer_state.hpp"
#include "progress.hpp"
#include "run_files.hpp"

namespace addrop::train {

/// What an evaluation reports: the dev loss, named metrics and the one to select on.
struct EvalResult {
  double loss = std::numeric_limits<double>::quiet_NaN();
  std::map<std::string, double> metrics;
  double main = 0;  ///< the value early stopping and checkpoint selection look at
};

struct TrainerOptions {
  int epochs = 3;
  int64_t eval_every = 0;        ///< evaluate every N optimizer steps; 0 = at the end of each epoch
  int patience = 0;              ///< evaluations without improvement before stopping; 0 = never stop early
  bool greater_is_better = true; ///< of EvalResult::main
  double max_grad_norm = 1.0;    ///< 0 = no clipping
  AdamWOptions optimizer;
  ScheduleKind lr_schedule = ScheduleKind::Constant;
  double warmup = 0;             ///< warmup: a fraction of all steps if < 1, else a step count
  data::SamplerOptions sampler;
  std::filesystem::path output;  ///< empty: write nothing
  bool save_best = true;         ///< best checkpoint in output/best
  bool save_last = true;         ///< model + optimizer + trainer state in output/last (for resume)
  bool resume = false;           ///< continue from output/last
  std::string run_name = "run";  ///< label in metrics.jsonl and plots
  bool progress = true;
  /// Writes extra files into a checkpoint folder (the tokenizer's), after the weights.
  std::function<void(const std::filesystem::path&)> save_extra;
};

/// One evaluation's record (a line of metrics.jsonl).
struct EvalRecord {
  int epoch = 0;               ///< 0-based epoch the evaluation ran in
  int64_t step = 0;            ///< optimizer steps so far
  double train_loss = 0;       ///< mean training loss since the previous evaluation
  bool addrop = false;         ///< whether AD-DROP ran in that stretch (any step)
  EvalResult dev;
  double seconds = 0;          ///< wall time since the start of training
};

struct TrainResult {
  std::vector<EvalRecord> history;
  int best_index = -1;         ///< into history
  bool stopped_early = false;
  std::string stop_reason;     ///< empty when all epochs ran
  double seconds = 0;
  int64_t steps = 0;
  const EvalRecord* best() const { return best_index >= 0 ? &history[best_index] : nullptr; }
};

inline nlohmann::json to_json(const EvalRecord& r, const std::string& run) {
  nlohmann::json j{{"run", run},           {"epoch", r.epoch},        {"step", r.step},
                   {"train_loss", r.train_loss}, {"addrop", r.addrop}, {"seconds", r.seconds},
                   {"main", r.dev.main}};
  j["dev_loss"] = std::isfinite(r.dev.loss) ? nlohmann::json(r.dev.loss) : nlohmann::json(nullptr);
  // Metrics of the held-out test set (an evaluator's "test_*" extras) keep their own
  // name; every other metric is the dev set's.
  for (const auto& [k, v] : r.dev.metrics) j[k.rfind("test_", 0) == 0 ? k : "dev_" + k] = v;
  return j;
}

inline EvalRecord record_from_json(const nlohmann::json& j) {
  EvalRecord r;
  r.epoch = j.at("epoch").get<int>();
  r.step = j.at("step").get<int64_t>();
  r.train_loss = j.at("train_loss").get<double>();
  r.addrop = j.at("addrop").get<bool>();
  r.seconds = j.at("seconds").get<double>();
  r.dev.main = j.at("main").get<double>();
  r.dev.loss = j.at("dev_loss").is_null() ? std::numeric_limits<double>::quiet_NaN() : j.at("dev_loss").get<double>();
  for (const auto& [k, v] : j.items()) {
    if (k.rfind("dev_", 0) == 0 && k != "dev_loss") r.dev.metrics[k.substr(4)] = v.get<double>();
    else if (k.rfind("test_", 0) == 0) r.dev.metrics[k] = v.get<double>();  // see to_json
  }
  return r;
}

template <class Model, class Regulariser>
class Trainer {
 public:
  using T = typename Model::value_type;
  using Backend = typename Model::backend_type;
  using Evaluate = std::function<EvalResult(Model&)>;

  Trainer(Model& model, Regulariser& regulariser, TrainerOptions options)
      : model_(model), reg_(regulariser), options_(std::move(options)),
        optimizer_(model.parameters(), options_.optimizer, model.context()) {
    if (options_.epochs <= 0) throw std::invalid_argument("trainer: epochs must be positive");
  }

  AdamW<T, Backend>& optimizer() { return optimizer_; }

  TrainResult fit(const std::vector<data::Feature>& train, const Evaluate& evaluate, int32_t pad_id) {
    namespace fs = std::filesystem;
    if (train.empty()) throw std::invalid_argument("trainer: no training examples");
    const bool regression = model_.config().task == models::Task::Regression;
    const auto batches_per_epoch = static_cast<int64_t>(data::epoch_batches(train, options_.sampler, 0).size());
    const int64_t total_steps = batches_per_epoch * options_.epochs;
    const int64_t warmup_steps = options_.warmup < 1 ? static_cast<int64_t>(std::ceil(options_.warmup * total_steps))
                                                     : static_cast<int64_t>(options_.warmup);
    LrScheduler scheduler(LrSchedule(options_.lr_schedule, options_.optimizer.lr, warmup_steps, total_steps));
    // patience 0 means "never stop early": the stopper then only tracks the best value.
    EarlyStopping stopper({.patience = options_.patience > 0 ? options_.patience : std::numeric_limits<int>::max(),
                           .goal = options_.greater_is_better ? Goal::Maximize : Goal::Minimize});

    TrainResult result;
    int first_epoch = 0;
    int64_t step = 0;
    double time_offset = 0;
    const fs::path last_dir = options_.output.empty() ? fs::path() : options_.output / "last";
    if (options_.resume) {
      if (options_.output.empty() || !fs::exists(last_dir / "trainer_state.json"))
        throw std::runtime_error("--resume: no saved state in " + last_dir.string());
      const nlohmann::json state = nlohmann::json::parse(read_file(last_dir / "trainer_state.json"));
      io::load_weights(model_, io::SafeTensors::load(last_dir / "model.safetensors"), true);
      load_optimizer_state(optimizer_, last_dir / "optimizer.safetensors", &scheduler);
      first_epoch = state.at("next_epoch").get<int>();
      step = state.at("step").get<int64_t>();
      time_offset = state.at("seconds").get<double>();
      reg_.set_step_count(state.at("regulariser_steps").get<int64_t>());
      for (const auto& j : state.at("history")) {
        result.history.push_back(record_from_json(j));
        stopper.update(result.history.back().epoch, result.history.back().dev.main);
      }
      result.best_index = state.at("best_index").get<int>();
      if (first_epoch >= options_.epochs) {  // nothing left to do
        result.steps = step;
        result.seconds = time_offset;
        return result;
      }
    }

    // metrics.jsonl holds exactly the evaluations of the history (a resumed run drops
    // any line written after its last saved state).
    std::optional<MetricsLog> log;
    if (!options_.output.empty()) {
      log.emplace(options_.output / "metrics.jsonl", MetricsLog::Mode::Truncate);
      for (const auto& r : result.history) log->append(to_json(r, options_.run_name));
    }
    const auto start = std::chrono::steady_clock::now();
    auto elapsed = [&] {
      return time_offset + std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    };
    double loss_sum = 0;
    int64_t loss_count = 0;
    bool addrop_used = false;

    auto run_evaluation = [&](int epoch) -> bool {  // returns true when training should stop
      EvalRecord rec;
      rec.epoch = epoch;
      rec.step = step;
      rec.train_loss = loss_count ? loss_sum / static_cast<double>(loss_count) : 0.0;
      rec.addrop = addrop_used;
      rec.dev = evaluate(model_);
      rec.seconds = elapsed();
      loss_sum = 0;
      loss_count = 0;
      addrop_used = false;
      result.history.push_back(rec);
      const bool improved = stopper.update(epoch, rec.dev.main).improved;
      if (improved) {
        result.best_index = static_cast<int>(result.history.size()) - 1;
        if (!options_.output.empty() && options_.save_best) save_checkpoint(options_.output / "best");
      }
      if (log) log->append(to_json(rec, options_.run_name));
      if (stopper.should_stop()) {
        result.stopped_early = true;
        result.stop_reason = "no improvement of the dev metric in " + std::to_string(options_.patience) + " evaluations";
        return true;
      }
      return false;
    };

    for (int epoch = first_epoch; epoch < options_.epochs && !result.stopped_early; ++epoch) {
      const auto batches = data::epoch_batches(train, options_.sampler, epoch);
      std::optional<Progress> bar;
      if (options_.progress)
        bar.emplace(static_cast<int64_t>(batches.size()),
                    options_.run_name + " epoch " + std::to_string(epoch + 1) + "/" + std::to_string(options_.epochs));
      for (std::size_t i = 0; i < batches.size(); ++i) {
        const models::Batch batch = data::make_batch(train, batches[i], pad_id, regression);
        model_.zero_grad();
        const auto out = reg_.step(model_, batch, epoch);
        if (!std::isfinite(out.loss)) {
          result.stopped_early = true;
          result.stop_reason = "the training loss became " + std::string(std::isnan(out.loss) ? "NaN" : "infinite") +
                               " at epoch " + std::to_string(epoch) + ", step " + std::to_string(step + 1) +
                               " (try a lower --lr or gradient clipping); the best checkpoint so far is kept";
          break;
        }
        if (options_.max_grad_norm > 0) clip_grad_norm(model_.parameters(), model_.context(), options_.max_grad_norm);
        scheduler.apply(optimizer_);
        optimizer_.step();
        scheduler.step();
        ++step;
        loss_sum += out.loss;
        ++loss_count;
        addrop_used = addrop_used || out.used_addrop;
        if (bar) bar->update(1, {{"loss", loss_sum / static_cast<double>(loss_count)}});
        if (options_.eval_every > 0 && step % options_.eval_every == 0 && run_evaluation(epoch)) break;
      }
      if (bar) bar->finish();
      if (result.stopped_early) break;
      if (options_.eval_every <= 0 && run_evaluation(epoch)) break;
      if (!options_.output.empty() && options_.save_last) save_state(epoch + 1, elapsed(), result, scheduler);
    }
    result.steps = step;
    result.seconds = elapsed();
    return result;
  }

  /// Writes the model (and the extra files) as a Hugging Face folder, replacing `dir`
  /// only once the new folder is complete.
  void save_checkpoint(const std::filesystem::path& dir) {
    namespace fs = std::filesystem;
    const fs::path tmp = dir.string() + ".tmp", old = dir.string() + ".old";
    fs::remove_all(tmp);
    io::save_pretrained(model_, tmp);
    if (options_.save_extra) options_.save_extra(tmp);
    replace_directory(tmp, dir);
  }

 private:
  static void replace_directory(const std::filesystem::path& fresh, const std::filesystem::path& dir) {
    namespace fs = std::filesystem;
    const fs::path old = dir.string() + ".old";
    fs::remove_all(old);
    if (fs::exists(dir)) fs::rename(dir, old);
    fs::rename(fresh, dir);
    fs::remove_all(old);
  }

  void save_state(int next_epoch, double seconds, const TrainResult& result, const LrScheduler& scheduler) {
    namespace fs = std::filesystem;
    const fs::path dir = options_.output / "last", tmp = options_.output / "last.tmp";
    fs::remove_all(tmp);
    io::save_pretrained(model_, tmp);
    if (options_.save_extra) options_.save_extra(tmp);
    save_optimizer_state(optimizer_, tmp / "optimizer.safetensors", &scheduler);
    nlohmann::json state{{"next_epoch", next_epoch},
                         {"step", optimizer_.steps()},
                         {"seconds", seconds},
                         {"regulariser_steps", reg_.step_count()},
                         {"best_index", result.best_index},
                         {"finished", next_epoch >= options_.epochs}};
    state["history"] = nlohmann::json::array();
    for (const auto& r : result.history) state["history"].push_back(to_json(r, options_.run_name));
    write_json_atomic(tmp / "trainer_state.json", state);
    replace_directory(tmp, dir);
  }

  Model& model_;
  Regulariser& reg_;
  TrainerOptions options_;
  AdamW<T, Backend> optimizer_;
};

}  // namespace addrop::train
