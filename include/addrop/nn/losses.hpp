#pragma once
// Losses of the heads: cross-entropy (mean over non-ignored rows) and mean squared error.
#include <cstdint>

namespace addrop::nn {

inline constexpr int32_t kIgnoreIndex = -100;

/// Mean CE of logits [rows, classes] against labels [rows] (kIgnoreIndex skipped), with
/// optional label smoothing (0.1 is the usual value for translation);
/// dlogits (optional) receives d(loss)/d(logits). denominator > 0 divides by it instead
/// of the non-ignored rows (a shard's share of a whole batch's mean: models/batch_shard.hpp).
template <class Backend, class T>
double cross_entropy(const typename Backend::Context& ctx, int64_t rows, int64_t classes, const T* logits,
                     const int32_t* labels, T* dlogits, T label_smoothing = T(0), int64_t denominator = 0) {
  return Backend::cross_entropy(ctx, rows, classes, logits, labels, kIgnoreIndex, label_smoothing, dlogits,
                                denominator);
}

/// Mean squared error of pred [n] against target [n] (denominator as for cross_entropy).
template <class Backend, class T>
double mean_squared_error(const typename Backend::Context& ctx, int64_t n, const T* pred, const T* target, T* dpred,
                          int64_t denominator = 0) {
  return Backend::mse(ctx, n, pred, target, dpred, denominator);
}

}  // namespace addrop::nn
