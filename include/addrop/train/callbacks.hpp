#pragma once
// Callbacks of train::Trainer::fit, in the style of ensmallen: any object implementing
// any subset of the hooks below, detected at compile time. fit() takes any number:
//
//   struct LossLog {
//     std::vector<double> losses;
//     void on_step(const train::StepInfo& s) { losses.push_back(s.loss); }
//   };
//   LossLog log;
//   trainer.fit(source, evaluate, log, other_callback);
//
// Hooks (each takes its info struct by const reference; the return value is ignored):
//   on_step(const StepInfo&)             after every optimizer step
//   on_evaluate(const EvaluateInfo&)     after every evaluation, once logged (and once
//                                        the best checkpoint is written, when it improved)
//   on_epoch_end(const EpochEndInfo&)    after every epoch whose batches all ran, after
//                                        its evaluation and its saved state
//   on_checkpoint(const CheckpointInfo&) after output/best or output/last is written
// An object with none of them is refused by a static_assert in fit(). In a data-parallel
// run (docs/distributed.md) only rank 0 calls them: they see the summed losses and the
// metrics every rank shares, and may write files without the other ranks racing them.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <vector>

#include "eval_record.hpp"

namespace addrop::train {

/// After an optimizer step.
struct StepInfo {
  int epoch = 0;             ///< 0-based
  int64_t step = 0;          ///< optimizer steps so far, this one included
  int64_t batch = 0;         ///< 0-based position of the batch in its epoch
  int64_t batches = 0;       ///< batches in the epoch
  double loss = 0;           ///< the regulariser's loss on the batch
  bool used_addrop = false;  ///< whether AD-DROP ran on the batch
  double lr = 0;             ///< the learning rate of the step
};

/// After an evaluation.
struct EvaluateInfo {
  const EvalRecord& record;  ///< also TrainResult::history[index]
  int index = 0;
  bool improved = false;     ///< the new best (its checkpoint is written when TrainerOptions::save_best)
  bool stopping = false;     ///< early stopping ends the run after it
};

/// After a complete epoch.
struct EpochEndInfo {
  int epoch = 0;             ///< 0-based
  int64_t step = 0;          ///< optimizer steps so far
  double train_loss = 0;     ///< mean training loss over the epoch's steps
  bool addrop = false;       ///< whether AD-DROP ran in any of them
  double seconds = 0;        ///< wall time since the start of training
};

enum class CheckpointKind {
  Best,  ///< output/best: the model of the best evaluation (Hugging Face layout)
  Last,  ///< output/last: model, optimizer and trainer state, for TrainerOptions::resume
};

/// After a checkpoint folder is complete.
struct CheckpointInfo {
  std::filesystem::path path;
  CheckpointKind kind = CheckpointKind::Best;
  int epoch = 0;             ///< Best: the evaluation's epoch; Last: the epoch just finished
  int64_t step = 0;          ///< optimizer steps so far
};

template <class C>
concept HasOnStep = requires(C& c, const StepInfo& info) { c.on_step(info); };
template <class C>
concept HasOnEvaluate = requires(C& c, const EvaluateInfo& info) { c.on_evaluate(info); };
template <class C>
concept HasOnEpochEnd = requires(C& c, const EpochEndInfo& info) { c.on_epoch_end(info); };
template <class C>
concept HasOnCheckpoint = requires(C& c, const CheckpointInfo& info) { c.on_checkpoint(info); };

/// An object with at least one hook. `C` may be const (then the hooks must be too).
template <class C>
concept TrainerCallback = HasOnStep<C> || HasOnEvaluate<C> || HasOnEpochEnd<C> || HasOnCheckpoint<C>;

/// The hooks of a set of callbacks, by kind, in the order the callbacks were added.
/// Keeps references: the callbacks must outlive it.
class CallbackList {
 public:
  template <TrainerCallback C>
  void add(C& c) {
    if constexpr (HasOnStep<C>) step_.emplace_back([&c](const StepInfo& i) { c.on_step(i); });
    if constexpr (HasOnEvaluate<C>) evaluate_.emplace_back([&c](const EvaluateInfo& i) { c.on_evaluate(i); });
    if constexpr (HasOnEpochEnd<C>) epoch_end_.emplace_back([&c](const EpochEndInfo& i) { c.on_epoch_end(i); });
    if constexpr (HasOnCheckpoint<C>) checkpoint_.emplace_back([&c](const CheckpointInfo& i) { c.on_checkpoint(i); });
  }
  void on_step(const StepInfo& info) const { call(step_, info); }
  void on_evaluate(const EvaluateInfo& info) const { call(evaluate_, info); }
  void on_epoch_end(const EpochEndInfo& info) const { call(epoch_end_, info); }
  void on_checkpoint(const CheckpointInfo& info) const { call(checkpoint_, info); }

 private:
  template <class Info>
  static void call(const std::vector<std::function<void(const Info&)>>& hooks, const Info& info) {
    for (const auto& h : hooks) h(info);
  }
  std::vector<std::function<void(const StepInfo&)>> step_;
  std::vector<std::function<void(const EvaluateInfo&)>> evaluate_;
  std::vector<std::function<void(const EpochEndInfo&)>> epoch_end_;
  std::vector<std::function<void(const CheckpointInfo&)>> checkpoint_;
};

}  // namespace addrop::train
