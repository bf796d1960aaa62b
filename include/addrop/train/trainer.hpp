#pragma once
// The fine-tuning loop every example trainer shares: epochs of batches from any batch
// source (train/batch_source.hpp; data::SequenceBatches and data::TokenBatches give the
// seeded, optionally length-bucketed shuffles), one regulariser step per batch
// (AdDrop<...>, which is also the plain step when its schedule says so), gradient
// clipping, AdamW with an LR schedule, evaluation at the end of every epoch (or every N
// steps), early stopping on the task's main metric, the best checkpoint in Hugging Face
// layout, the last state for resuming, metrics.jsonl. A NaN or Inf loss stops the run
// (StopReason::NonFiniteLoss); the best checkpoint written so far stays as it was.
// Callbacks (train/callbacks.hpp) see every step, evaluation, epoch end and checkpoint.
//
// Data parallel (docs/distributed.md): given a communicator (dist/communicator.hpp), every
// rank reads the same global batches, trains on its rows of each (shard_rows), and the
// gradients are summed over the ranks before clipping and the optimizer step, so every rank
// holds the same weights; evaluation is the evaluate function's (it shards and reduces:
// train/evaluate.hpp). Rank 0 alone writes checkpoints, metrics.jsonl and the progress bar,
// and alone calls the callbacks.
//
//   train::Trainer trainer(model, regulariser, options);
//   data::SequenceBatches source(train_features, sampler, pad_id, regression);
//   auto result = trainer.fit(source, [&](auto& m) { return evaluate_dev(m); }, callbacks...);
//   if (result.stop_reason == train::StopReason::NonFiniteLoss) ...
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../data/batching.hpp"  // data::SequenceBatches, the source most callers want
#include "../dist/communicator.hpp"
#include "../io/checkpoint.hpp"
#include "adamw.hpp"
#include "batch_source.hpp"
#include "callbacks.hpp"
#include "distributed.hpp"
#include "early_stopping.hpp"
#include "eval_record.hpp"
#include "grad_clip.hpp"
#include "lr_schedule.hpp"
#include "optimizer_state.hpp"
#include "progress.hpp"
#include "run_files.hpp"

namespace addrop::train {

struct TrainerOptions {
  int epochs = 3;
  int64_t eval_every = 0;        ///< evaluate every N optimizer steps; 0 = at the end of each epoch
  int patience = 0;              ///< evaluations without improvement before stopping; 0 = never stop early
  bool greater_is_better = true; ///< of EvalResult::main
  double max_grad_norm = 1.0;    ///< 0 = no clipping
  AdamWOptions optimizer;
  ScheduleKind lr_schedule = ScheduleKind::Constant;
  double warmup = 0;             ///< warmup: a fraction of all steps if < 1, else a step count
  std::filesystem::path output;  ///< empty: write nothing
  bool save_best = true;         ///< best checkpoint in output/best
  bool save_last = true;         ///< model + optimizer + trainer state in output/last (for resume)
  bool resume = false;           ///< continue from output/last (which must hold a saved state)
  std::string run_name = "run";  ///< label in metrics.jsonl and plots
  bool progress = true;          ///< a progress bar per epoch on stderr
  /// Writes extra files into a checkpoint folder (the tokenizer's), after the weights.
  std::function<void(const std::filesystem::path&)> save_extra;
};

/// Why fit() returned.
enum class StopReason {
  Completed,      ///< every epoch ran (or a resumed run had none left)
  NoImprovement,  ///< early stopping: TrainerOptions::patience evaluations without a better main metric
  NonFiniteLoss,  ///< a training loss was NaN or infinite; the best checkpoint so far is kept
};

inline const char* to_string(StopReason r) {
  switch (r) {
    case StopReason::Completed: return "completed";
    case StopReason::NoImprovement: return "no_improvement";
    case StopReason::NonFiniteLoss: return "non_finite_loss";
  }
  return "unknown";
}

/// The inverse of to_string(StopReason); throws std::invalid_argument for other text.
inline StopReason stop_reason_from_string(std::string_view s) {
  for (StopReason r : {StopReason::Completed, StopReason::NoImprovement, StopReason::NonFiniteLoss})
    if (s == to_string(r)) return r;
  throw std::invalid_argument("stop_reason_from_string: unknown stop reason '" + std::string(s) + "'");
}

struct TrainResult {
  std::vector<EvalRecord> history;
  int best_index = -1;         ///< into history
  StopReason stop_reason = StopReason::Completed;
  std::string stop_message;    ///< stop_reason in words, with the epoch and step; empty when Completed
  double seconds = 0;
  int64_t steps = 0;
  double allreduce_seconds = 0;  ///< of `seconds`, spent summing gradients and losses over the ranks (0 alone)
  bool stopped_early() const { return stop_reason != StopReason::Completed; }
  const EvalRecord* best() const { return best_index >= 0 ? &history[best_index] : nullptr; }
};

namespace trainer_detail {
/// Whether Regulariser trains Model on the batches of S (true when S is no source: that
/// has its own message).
template <class S, class Regulariser, class Model>
constexpr bool regulariser_fits() {
  if constexpr (BatchSource<S>) return RegulariserFor<Regulariser, Model, batch_t<S>>;
  else return true;
}
/// Whether io::save_pretrained / io::load_weights can write and read the model (the
/// library's encoders can; a model of a test's own may not, and then trains without
/// checkpoints).
template <class Model>
concept Checkpointable = requires(Model& m, const std::string& name) {
  m.config();
  m.find_parameter(name);
};
}  // namespace trainer_detail

template <class Model, class Regulariser, dist::Communicator Comm = dist::Local>
class Trainer {
 public:
  using T = typename Model::value_type;
  using Backend = typename Model::backend_type;
  using Evaluate = std::function<EvalResult(Model&)>;

  /// One process.
  Trainer(Model& model, Regulariser& regulariser, TrainerOptions options)
    requires std::same_as<Comm, dist::Local>
      : Trainer(model, regulariser, std::move(options), local_comm()) {}

  /// One rank of a data-parallel job (`comm` outlives the trainer).
  Trainer(Model& model, Regulariser& regulariser, TrainerOptions options, Comm& comm)
      : model_(model), reg_(regulariser), options_(std::move(options)), comm_(comm),
        optimizer_(model.parameters(), options_.optimizer, model.context()),
        reducer_(model.parameters(), model.context()) {
    if (options_.epochs <= 0)
      throw std::invalid_argument("TrainerOptions::epochs must be positive, got " + std::to_string(options_.epochs));
  }

  Comm& communicator() { return comm_; }

  AdamW<T, Backend>& optimizer() { return optimizer_; }

  /// Trains on the batches of `source` (a BatchSource whose batches the regulariser takes)
  /// for TrainerOptions::epochs, evaluating with `evaluate(model)` (an EvalResult) and
  /// calling the hooks of `callbacks` (train/callbacks.hpp) on the way.
  template <class Source, class EvaluateFn, class... Callbacks>
  TrainResult fit(Source&& source, EvaluateFn&& evaluate, Callbacks&&... callbacks) {
    using S = std::remove_reference_t<Source>;
    static_assert(BatchSource<S>, "Trainer::fit: the source needs num_batches(epoch) and batches(epoch), an input "
                                  "range of batches (train::BatchSource, train/batch_source.hpp)");
    static_assert(trainer_detail::regulariser_fits<S, Regulariser, Model>(),
                  "Trainer::fit: the regulariser cannot train the model on the source's batches: it needs "
                  "step(model, batch, epoch) returning .loss and .used_addrop, step_count() and set_step_count(n)");
    static_assert(std::is_invocable_r_v<EvalResult, EvaluateFn&, Model&>,
                  "Trainer::fit: evaluate(model) must return a train::EvalResult");
    static_assert((TrainerCallback<std::remove_reference_t<Callbacks>> && ...),
                  "Trainer::fit: a callback needs at least one of on_step(const StepInfo&), "
                  "on_evaluate(const EvaluateInfo&), on_epoch_end(const EpochEndInfo&), "
                  "on_checkpoint(const CheckpointInfo&) (train/callbacks.hpp)");
    check_checkpoints();
    if constexpr (!ShardableBatch<batch_t<S>>)
      if (comm_.size() > 1)
        throw std::invalid_argument("Trainer::fit: " + std::to_string(comm_.size()) +
                                    " ranks, but the batch type has no shard_rows(batch, begin, end) "
                                    "(train/distributed.hpp)");
    const Evaluate eval = std::ref(evaluate);
    Run run(make_scheduler(total_steps(source)), make_stopper());
    if (writes()) (run.callbacks.add(callbacks), ...);
    if (options_.resume) restore(run);
    // Every rank starts from rank 0's weights (and, resumed, its optimizer state).
    broadcast_parameters(model_.parameters(), comm_);
    if (options_.resume) broadcast_optimizer(optimizer_, comm_);
    if (run.next_epoch >= options_.epochs) return finish(run);  // a resumed run with nothing left to do
    start(run);
    for (int epoch = run.next_epoch; epoch < options_.epochs && !run.stopped(); ++epoch) {
      if (!train_epoch(source, epoch, eval, run)) break;  // stopped before its last batch
      if (options_.eval_every <= 0) evaluate_and_select(epoch, eval, run);
      if (!run.stopped()) save_last(epoch, run);  // an early stop leaves output/last as it was
      run.callbacks.on_epoch_end({epoch, run.step, run.epoch_loss.mean(), run.epoch_loss.addrop, run.elapsed()});
    }
    return finish(run);
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
  /// Mean loss and AD-DROP use over a stretch of steps.
  struct LossMean {
    double sum = 0;
    int64_t count = 0;
    bool addrop = false;
    void add(double loss, bool used_addrop) {
      sum += loss;
      ++count;
      addrop = addrop || used_addrop;
    }
    double mean() const { return count ? sum / static_cast<double>(count) : 0.0; }
  };

  /// The state of one fit(): what resuming restores and every step updates.
  struct Run {
    Run(LrScheduler s, EarlyStopping e) : scheduler(s), stopper(e) {}
    LrScheduler scheduler;
    EarlyStopping stopper;
    CallbackList callbacks;
    TrainResult result;
    int next_epoch = 0;
    int64_t step = 0;
    double time_offset = 0;  ///< seconds of the runs this one resumes
    std::optional<std::chrono::steady_clock::time_point> start;
    std::optional<MetricsLog> log;
    LossMean since_eval, epoch_loss;

    bool stopped() const { return result.stopped_early(); }
    double elapsed() const {
      if (!start) return time_offset;
      return time_offset + std::chrono::duration<double>(std::chrono::steady_clock::now() - *start).count();
    }
  };

  /// A model io/checkpoint.hpp cannot write trains without checkpoints.
  void check_checkpoints() const {
    if constexpr (!trainer_detail::Checkpointable<Model>)
      if (options_.resume || (!options_.output.empty() && (options_.save_best || options_.save_last)))
        throw std::invalid_argument(
            "TrainerOptions: this model has no Hugging Face checkpoint form (config(), find_parameter(name)): set "
            "save_best and save_last to false, or output empty, and resume to false");
  }

  template <class Source>
  int64_t total_steps(Source& source) const {
    int64_t total = 0;
    for (int epoch = 0; epoch < options_.epochs; ++epoch) {
      const auto n = static_cast<int64_t>(source.num_batches(epoch));
      if (n <= 0)
        throw std::invalid_argument("Trainer::fit: the batch source gives no batches in epoch " +
                                    std::to_string(epoch) + " (no training examples?)");
      total += n;
    }
    return total;
  }

  LrScheduler make_scheduler(int64_t total) const {
    const int64_t warmup = options_.warmup < 1 ? static_cast<int64_t>(std::ceil(options_.warmup * total))
                                               : static_cast<int64_t>(options_.warmup);
    return LrScheduler(LrSchedule(options_.lr_schedule, options_.optimizer.lr, warmup, total));
  }

  /// patience 0 means "never stop early": the stopper then only tracks the best value.
  EarlyStopping make_stopper() const {
    return EarlyStopping({.patience = options_.patience > 0 ? options_.patience : std::numeric_limits<int>::max(),
                          .goal = options_.greater_is_better ? Goal::Maximize : Goal::Minimize});
  }

  /// Loads output/last: weights, optimizer and LR schedule, regulariser steps, history.
  void restore(Run& run) {
    if constexpr (trainer_detail::Checkpointable<Model>) restore_checkpoint(run);
  }
  // Rank 0 reads output/last and sends the trainer state to the others (the weights and
  // moments follow in fit(): a node without the files still resumes).
  void restore_checkpoint(Run& run) {
    namespace fs = std::filesystem;
    if (options_.output.empty())
      throw std::runtime_error("TrainerOptions::resume is set but TrainerOptions::output is empty");
    const fs::path dir = options_.output / "last";
    std::string text;
    if (writes()) {
      if (!fs::exists(dir / "trainer_state.json"))
        throw std::runtime_error("TrainerOptions::resume is set but " + dir.string() +
                                 " holds no saved state (no trainer_state.json)");
      text = read_file(dir / "trainer_state.json");
    }
    comm_.host_broadcast(text, 0);
    const nlohmann::json state = nlohmann::json::parse(text);
    const int saved_world = state.value("world_size", 1);
    if (saved_world != comm_.size())
      throw std::runtime_error("TrainerOptions::resume: " + (dir / "trainer_state.json").string() +
                               " was saved by a run of " + std::to_string(saved_world) + " process(es), this run has " +
                               std::to_string(comm_.size()) + "; resume with " + std::to_string(saved_world));
    if (writes()) {
      io::load_weights(model_, io::SafeTensors::load(dir / "model.safetensors"), true);
      load_optimizer_state(optimizer_, dir / "optimizer.safetensors", &run.scheduler);
    } else {
      optimizer_.set_steps(state.at("step").get<int64_t>());
      run.scheduler.set_step_count(state.at("step").get<int64_t>());
    }
    run.next_epoch = state.at("next_epoch").get<int>();
    run.step = state.at("step").get<int64_t>();
    run.time_offset = state.at("seconds").get<double>();
    reg_.set_step_count(state.at("regulariser_steps").get<int64_t>());
    for (const auto& j : state.at("history")) {
      run.result.history.push_back(record_from_json(j));
      run.stopper.update(run.result.history.back().epoch, run.result.history.back().dev.main);
    }
    run.result.best_index = state.at("best_index").get<int>();
  }

  /// Starts the clock and metrics.jsonl, which holds exactly the evaluations of the
  /// history (a resumed run drops any line written after its last saved state).
  void start(Run& run) {
    if (!options_.output.empty() && writes()) {
      run.log.emplace(options_.output / "metrics.jsonl", MetricsLog::Mode::Truncate);
      for (const auto& r : run.result.history) run.log->append(to_json(r, options_.run_name));
    }
    run.start = std::chrono::steady_clock::now();
  }

  /// The batches of `epoch`, evaluating every eval_every steps. False when the run stopped
  /// before the epoch's last batch.
  template <class Source>
  bool train_epoch(Source& source, int epoch, const Evaluate& evaluate, Run& run) {
    const auto expected = static_cast<int64_t>(source.num_batches(epoch));
    auto&& batches = source.batches(epoch);
    if constexpr (std::ranges::sized_range<decltype(batches)>)
      check_batch_count(static_cast<int64_t>(std::ranges::size(batches)), expected, epoch);
    std::optional<Progress> bar;
    if (options_.progress && writes())
      bar.emplace(expected, options_.run_name + " epoch " + std::to_string(epoch + 1) + "/" +
                                std::to_string(options_.epochs));
    run.epoch_loss = {};
    int64_t done = 0;
    for (auto&& batch : batches) {
      if (!train_step(batch, epoch, done, expected, run)) return false;
      ++done;
      if (bar) bar->update(1, {{"loss", run.since_eval.sum / static_cast<double>(run.since_eval.count)}});
      if (options_.eval_every > 0 && run.step % options_.eval_every == 0) {
        evaluate_and_select(epoch, evaluate, run);
        if (run.stopped()) return done == expected;
      }
    }
    check_batch_count(done, expected, epoch);
    return true;
  }

  static void check_batch_count(int64_t got, int64_t expected, int epoch) {
    if (got != expected)
      throw std::logic_error("Trainer::fit: the batch source gave " + std::to_string(got) + " batches in epoch " +
                             std::to_string(epoch) + ", but num_batches said " + std::to_string(expected));
  }

  /// One optimizer step on `batch`. False (the run stopped) when the loss is not finite.
  template <class Batch>
  bool train_step(const Batch& batch, int epoch, int64_t index, int64_t batches, Run& run) {
    model_.zero_grad();
    double loss = 0, used_addrop = 0;
    if (comm_.size() == 1) {
      const auto out = reg_.step(model_, batch, epoch);
      loss = out.loss;
      used_addrop = out.used_addrop;
    } else if constexpr (ShardableBatch<Batch>) {
      // This rank's rows; a rank with none adds nothing but keeps the step count (the
      // draws of later steps are keyed by it).
      const dist::RowRange rows = dist::row_range(static_cast<int64_t>(batch.size), comm_.rank(), comm_.size());
      if (rows.size() > 0) {
        const auto out = reg_.step(model_, shard_rows(batch, rows.begin, rows.end), epoch);
        loss = out.loss;
        used_addrop = out.used_addrop;
      } else {
        reg_.set_step_count(reg_.step_count() + 1);
      }
      const auto t0 = std::chrono::steady_clock::now();
      reducer_.reduce(comm_);
      double sums[2] = {loss, used_addrop};
      comm_.host_all_reduce_sum(sums);
      run.result.allreduce_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      loss = sums[0];
      used_addrop = sums[1];
    }
    const struct { double loss; bool used_addrop; } out{loss, used_addrop > 0};
    if (!std::isfinite(out.loss)) {
      stop(run, StopReason::NonFiniteLoss,
           "the training loss became " + std::string(std::isnan(out.loss) ? "NaN" : "infinite") + " at epoch " +
               std::to_string(epoch) + ", step " + std::to_string(run.step + 1) +
               " (try a lower learning rate or gradient clipping); the best checkpoint so far is kept");
      return false;
    }
    if (options_.max_grad_norm > 0) clip_grad_norm(model_.parameters(), model_.context(), options_.max_grad_norm);
    run.scheduler.apply(optimizer_);
    const double lr = run.scheduler.current_lr();
    optimizer_.step();
    run.scheduler.step();
    ++run.step;
    run.since_eval.add(out.loss, out.used_addrop);
    run.epoch_loss.add(out.loss, out.used_addrop);
    run.callbacks.on_step({epoch, run.step, index, batches, static_cast<double>(out.loss), out.used_addrop, lr});
    return true;
  }

  /// One evaluation: its record, early stopping, the best checkpoint, metrics.jsonl.
  void evaluate_and_select(int epoch, const Evaluate& evaluate, Run& run) {
    EvalRecord rec;
    rec.epoch = epoch;
    rec.step = run.step;
    rec.train_loss = run.since_eval.mean();
    rec.addrop = run.since_eval.addrop;
    rec.dev = evaluate(model_);
    rec.seconds = run.elapsed();
    run.since_eval = {};
    run.result.history.push_back(rec);
    const int index = static_cast<int>(run.result.history.size()) - 1;
    const bool improved = run.stopper.update(epoch, rec.dev.main).improved;
    if (improved) {
      run.result.best_index = index;
      if (!options_.output.empty() && options_.save_best && writes()) save_best(epoch, run);
    }
    if (run.log) run.log->append(to_json(rec, options_.run_name));
    if (run.stopper.should_stop())
      stop(run, StopReason::NoImprovement,
           "no improvement of the dev metric in " + std::to_string(options_.patience) + " evaluations");
    run.callbacks.on_evaluate({run.result.history.back(), index, improved, run.stopped()});
  }

  /// output/best, the model of the evaluation in `epoch`.
  void save_best(int epoch, Run& run) {
    if constexpr (trainer_detail::Checkpointable<Model>) {
      save_checkpoint(options_.output / "best");
      run.callbacks.on_checkpoint({options_.output / "best", CheckpointKind::Best, epoch, run.step});
    }
  }

  /// output/last after `epoch`, for resuming (when TrainerOptions::save_last).
  void save_last(int epoch, Run& run) {
    if (options_.output.empty() || !options_.save_last || !writes()) return;
    if constexpr (trainer_detail::Checkpointable<Model>) {
      save_state(epoch + 1, run.elapsed(), run.result, run.scheduler);
      run.callbacks.on_checkpoint({options_.output / "last", CheckpointKind::Last, epoch, run.step});
    }
  }

  static void stop(Run& run, StopReason reason, std::string message) {
    run.result.stop_reason = reason;
    run.result.stop_message = std::move(message);
  }

  static TrainResult finish(Run& run) {
    run.result.steps = run.step;
    run.result.seconds = run.elapsed();
    return std::move(run.result);
  }

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
    // The model's own precision: a resumed float64 run continues exactly.
    io::save_pretrained(model_, tmp, std::is_same_v<T, double> ? io::DType::F64 : io::DType::F32);
    if (options_.save_extra) options_.save_extra(tmp);
    save_optimizer_state(optimizer_, tmp / "optimizer.safetensors", &scheduler);
    nlohmann::json state{{"next_epoch", next_epoch},
                         {"step", optimizer_.steps()},
                         {"seconds", seconds},
                         {"regulariser_steps", reg_.step_count()},
                         {"best_index", result.best_index},
                         {"world_size", comm_.size()},
                         {"finished", next_epoch >= options_.epochs}};
    state["history"] = nlohmann::json::array();
    for (const auto& r : result.history) state["history"].push_back(to_json(r, options_.run_name));
    write_json_atomic(tmp / "trainer_state.json", state);
    replace_directory(tmp, dir);
  }

  /// Whether this rank writes files and calls the callbacks.
  bool writes() const { return comm_.rank() == 0; }
  static dist::Local& local_comm() {
    static dist::Local local;
    return local;
  }

  Model& model_;
  Regulariser& reg_;
  TrainerOptions options_;
  Comm& comm_;
  AdamW<T, Backend> optimizer_;
  GradientReducer<T, Backend> reducer_;
};

}  // namespace addrop::train
