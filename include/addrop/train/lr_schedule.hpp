#pragma once
// Learning-rate schedules, with Hugging Face's semantics.
//
// A schedule is a value (the configuration): base rate, kind, warmup, total steps. It maps
// a step count to the rate, exactly as transformers' lr lambdas do:
//   constant:              1
//   constant_with_warmup:  t < W ? t / max(1, W) : 1
//   linear:                t < W ? t / max(1, W) : max(0, (N - t) / max(1, N - W))
// where t is the number of optimizer steps already taken (torch's LambdaLR counter: it
// starts at 0, so the first update uses factor(0) -- which is 0 when W > 0 -- and
// scheduler.step() after every optimizer.step() advances it).
//
// LrScheduler is the per-run state (that counter), kept apart from the schedule:
// @code
//   train::LrScheduler sched(train::LrSchedule::linear(2e-5, total, train::Warmup::ratio(0.1)));
//   for (...) { backward(); train::clip_grad_norm(params, 1.0, ctx); sched.apply(opt); opt.step(); sched.step(); }
// @endcode
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace addrop::train {

/// How long the warmup lasts: a number of steps, or a fraction of the total steps
/// (resolved like transformers' TrainingArguments: ceil(total * ratio)).
class Warmup {
 public:
  Warmup() = default;
  /// `n` warmup steps (n >= 0).
  static Warmup steps(int64_t n) {
    if (n < 0) throw std::invalid_argument("addrop::train::Warmup::steps: negative warmup (" + std::to_string(n) + ")");
    Warmup w;
    w.steps_ = n;
    return w;
  }
  /// A fraction in [0, 1] of the total steps.
  static Warmup ratio(double r) {
    if (!(r >= 0.0 && r <= 1.0))
      throw std::invalid_argument("addrop::train::Warmup::ratio: ratio " + std::to_string(r) + " is not in [0, 1]");
    Warmup w;
    w.ratio_ = r;
    return w;
  }
  /// Warmup steps for a run of `total_steps`.
  int64_t resolve(int64_t total_steps) const {
    if (ratio_) return static_cast<int64_t>(std::ceil(static_cast<double>(total_steps) * *ratio_));
    return steps_;
  }
  bool is_ratio() const { return ratio_.has_value(); }

 private:
  int64_t steps_ = 0;
  std::optional<double> ratio_;
};

enum class ScheduleKind { Constant, ConstantWithWarmup, Linear };

/// "constant", "constant_with_warmup", "linear" (transformers' SchedulerType names).
inline std::string_view schedule_kind_name(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::Constant: return "constant";
    case ScheduleKind::ConstantWithWarmup: return "constant_with_warmup";
    case ScheduleKind::Linear: return "linear";
  }
  return "?";
}
/// The inverse of schedule_kind_name; std::nullopt for any other spelling.
inline std::optional<ScheduleKind> schedule_kind_from_name(std::string_view name) {
  for (auto k : {ScheduleKind::Constant, ScheduleKind::ConstantWithWarmup, ScheduleKind::Linear})
    if (schedule_kind_name(k) == name) return k;
  return std::nullopt;
}

/// A learning-rate schedule (configuration only; see LrScheduler for the step counter).
class LrSchedule {
 public:
  /// lr at every step (the reference's GLUE setting).
  static LrSchedule constant(double base_lr) { return LrSchedule(Checked{}, ScheduleKind::Constant, base_lr, 0, 0); }
  /// Linear warmup from 0 to base_lr, then constant (get_constant_schedule_with_warmup).
  /// `total_steps` is needed only when the warmup is a ratio.
  static LrSchedule constant_with_warmup(double base_lr, Warmup warmup, int64_t total_steps = 0) {
    return LrSchedule(Checked{}, ScheduleKind::ConstantWithWarmup, base_lr, warmup.resolve(total_steps), total_steps);
  }
  /// Linear warmup, then linear decay to 0 at `total_steps` (get_linear_schedule_with_warmup).
  static LrSchedule linear(double base_lr, int64_t total_steps, Warmup warmup = {}) {
    if (total_steps < 0)
      throw std::invalid_argument("addrop::train::LrSchedule::linear: negative total_steps (" +
                                  std::to_string(total_steps) + ")");
    return LrSchedule(Checked{}, ScheduleKind::Linear, base_lr, warmup.resolve(total_steps), total_steps);
  }
  /// Any kind with the warmup already in steps (for trainers that parse --lr-schedule).
  LrSchedule(ScheduleKind kind, double base_lr, int64_t warmup_steps, int64_t total_steps)
      : LrSchedule(make(kind, base_lr, total_steps, Warmup::steps(warmup_steps))) {}
  /// Any kind by value (for trainers that parse --lr-schedule).
  static LrSchedule make(ScheduleKind kind, double base_lr, int64_t total_steps, Warmup warmup = {}) {
    switch (kind) {
      case ScheduleKind::Constant: return constant(base_lr);
      case ScheduleKind::ConstantWithWarmup: return constant_with_warmup(base_lr, warmup, total_steps);
      case ScheduleKind::Linear: return linear(base_lr, total_steps, warmup);
    }
    return constant(base_lr);
  }

  /// The multiplier of base_lr after `step` optimizer steps (transformers' lr_lambda(step)).
  double factor(int64_t step) const {
    const double t = static_cast<double>(step);
    switch (kind_) {
      case ScheduleKind::Constant: return 1.0;
      case ScheduleKind::ConstantWithWarmup:
        if (step < warmup_) return t / std::max(1.0, static_cast<double>(warmup_));
        return 1.0;
      case ScheduleKind::Linear:
        if (step < warmup_) return t / static_cast<double>(std::max<int64_t>(1, warmup_));
        return std::max(0.0, static_cast<double>(total_ - step) / static_cast<double>(std::max<int64_t>(1, total_ - warmup_)));
    }
    return 1.0;
  }
  /// base_lr * factor(step): the rate of the update that follows `step` earlier updates.
  double lr(int64_t step) const { return base_lr_ * factor(step); }
  /// Same as lr(step).
  double operator()(int64_t step) const { return lr(step); }

  ScheduleKind kind() const { return kind_; }
  double base_lr() const { return base_lr_; }
  int64_t warmup_steps() const { return warmup_; }
  int64_t total_steps() const { return total_; }
  /// e.g. "linear(lr=2e-05, warmup=10, total=100)".
  std::string describe() const {
    char buf[160];
    std::snprintf(buf, sizeof buf, "%s(lr=%g, warmup=%lld, total=%lld)", std::string(schedule_kind_name(kind_)).c_str(),
                  base_lr_, static_cast<long long>(warmup_), static_cast<long long>(total_));
    return buf;
  }

 private:
  struct Checked {};
  LrSchedule(Checked, ScheduleKind kind, double base_lr, int64_t warmup, int64_t total)
      : kind_(kind), base_lr_(base_lr), warmup_(warmup), total_(total) {
    if (!(base_lr >= 0.0) || !std::isfinite(base_lr))
      throw std::invalid_argument("addrop::train::LrSchedule: learning rate " + std::to_string(base_lr) +
                                  " is not a finite non-negative number");
  }
  ScheduleKind kind_;
  double base_lr_;
  int64_t warmup_, total_;
};

/// The run state of a schedule: how many optimizer steps it has seen (torch's LambdaLR
/// last_epoch). Saved with the optimizer state so a resumed run continues the schedule.
class LrScheduler {
 public:
  explicit LrScheduler(LrSchedule schedule, int64_t step = 0) : schedule_(schedule), step_(step) {}

  /// The rate of the next optimizer update.
  double current_lr() const { return schedule_.lr(step_); }
  /// Sets the optimizer's rate to current_lr() (any optimizer with set_lr(double)).
  template <class Optimizer>
  void apply(Optimizer& optimizer) const {
    optimizer.set_lr(current_lr());
  }
  /// Call once after every optimizer step.
  void step() { ++step_; }
  int64_t step_count() const { return step_; }
  void set_step_count(int64_t step) {
    if (step < 0) throw std::invalid_argument("addrop::train::LrScheduler: negative step count");
    step_ = step;
  }
  const LrSchedule& schedule() const { return schedule_; }

 private:
  LrSchedule schedule_;
  int64_t step_;
};

}  // namespace addrop::train
