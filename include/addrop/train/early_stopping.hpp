#pragma once
// Early stopping on the task's main dev metric, with patience (the reference: up to 20
// epochs, patience 5, on the dev metric).
//
// Rule: an evaluation improves when it beats the best so far by more than min_delta
// (value > best + min_delta when maximizing, value < best - min_delta when minimizing);
// the first finite value always improves. NaN never improves. After `patience`
// consecutive evaluations without improvement, stop() becomes true. patience 0 stops
// at the first evaluation that does not improve.
// @code
//   train::EarlyStopping stopper({.patience = 5, .goal = train::Goal::Maximize});
//   for (int epoch = 0; epoch < 20; ++epoch) {
//     ...
//     auto v = stopper.update(epoch, dev_accuracy);
//     if (v.improved) save_best_checkpoint();
//     if (v.stop) break;
//   }
// @endcode
#include <cmath>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

namespace addrop::train {

/// Whether larger values are better (accuracy, F1, correlation) or smaller (losses).
enum class Goal { Maximize, Minimize };

struct EarlyStoppingOptions {
  int patience = 5;        ///< evaluations without improvement before stopping (>= 0)
  Goal goal = Goal::Maximize;
  double min_delta = 0.0;  ///< improvement must exceed this (>= 0)
};

class EarlyStopping {
 public:
  struct Verdict {
    bool improved = false;  ///< this value is the new best (save the checkpoint)
    bool stop = false;      ///< patience is spent
  };

  explicit EarlyStopping(EarlyStoppingOptions options = {}) : options_(options) {
    if (options_.patience < 0)
      throw std::invalid_argument("addrop::train::EarlyStopping: negative patience (" +
                                  std::to_string(options_.patience) + ")");
    if (!(options_.min_delta >= 0.0))
      throw std::invalid_argument("addrop::train::EarlyStopping: min_delta must be >= 0");
  }

  /// Records the evaluation of `epoch` (any label the caller likes, usually 0-based).
  Verdict update(int64_t epoch, double value) {
    Verdict v;
    if (is_better(value)) {
      best_ = value;
      best_epoch_ = epoch;
      bad_ = 0;
      v.improved = true;
    } else {
      ++bad_;
    }
    ++evaluations_;
    stop_ = bad_ > 0 && bad_ >= options_.patience;
    v.stop = stop_;
    return v;
  }

  /// Records the next evaluation, labelled with its index (evaluations() before the call).
  Verdict update(double value) { return update(static_cast<int64_t>(evaluations_), value); }

  /// Whether `value` would be an improvement over the best so far.
  bool is_better(double value) const {
    if (std::isnan(value)) return false;
    if (!best_) return true;
    return options_.goal == Goal::Maximize ? value > *best_ + options_.min_delta : value < *best_ - options_.min_delta;
  }

  bool should_stop() const { return stop_; }
  /// The best value so far (std::nullopt before any finite evaluation).
  std::optional<double> best() const { return best_; }
  /// The epoch label of the best value (-1 before any).
  int64_t best_epoch() const { return best_epoch_; }
  /// Consecutive evaluations without improvement.
  int epochs_without_improvement() const { return bad_; }
  int evaluations() const { return evaluations_; }
  const EarlyStoppingOptions& options() const { return options_; }

  /// Restores the run state (resuming): best value and epoch, evaluations since it.
  void restore(std::optional<double> best, int64_t best_epoch, int without_improvement) {
    best_ = best;
    best_epoch_ = best ? best_epoch : -1;
    bad_ = without_improvement;
    stop_ = bad_ > 0 && bad_ >= options_.patience;
  }
  void reset() { restore(std::nullopt, -1, 0); evaluations_ = 0; }

 private:
  EarlyStoppingOptions options_;
  std::optional<double> best_;
  int64_t best_epoch_ = -1;
  int bad_ = 0;
  int evaluations_ = 0;
  bool stop_ = false;
};

}  // namespace addrop::train
