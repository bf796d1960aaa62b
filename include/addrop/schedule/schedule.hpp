#pragma once
// Tuning schedules: which steps use AD-DROP (docs/algorithm.md step 7).
#include <concepts>
#include <cstdint>

namespace addrop::schedule {

/// A schedule answers, for a 0-based epoch and the global step, whether AD-DROP runs.
template <class S>
concept Schedule = requires(const S s, int epoch, int64_t step) {
  { s.active(epoch, step) } -> std::convertible_to<bool>;
};

/// Cross-tuning (Algorithm 1 of the paper): AD-DROP epochs alternate with plain ones;
/// with 0-based epochs AD-DROP runs on the odd ones, so the first epoch is plain (the reference).
struct CrossTuning {
  bool active(int epoch, int64_t /*step*/) const { return epoch % 2 == 1; }
};

/// AD-DROP on every step.
struct Always {
  bool active(int, int64_t) const { return true; }
};

/// Never: plain fine-tuning, the baseline.
struct Never {
  bool active(int, int64_t) const { return false; }
};

}  // namespace addrop::schedule
