#pragma once
// The target F of the attribution (docs/algorithm.md step 2), as d F / d logits on the host.
// No gold label is used except for regression, where the reference attributes the gold
// loss and negates (F = -loss).
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <stdexcept>

#include <string>

#include "../models/concepts.hpp"

namespace addrop::attribution {

/// argmax over each row of logits [rows, classes] (first maximum on ties, as torch.argmax).
/// A vectorised maximum, then the first element equal to it: two fast passes instead of
/// one compare-and-branch pass (a seq2seq batch has thousands of rows of ~60k classes).
template <class T>
void argmax_rows(std::span<const T> logits, int64_t rows, int64_t classes, std::span<int32_t> out) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* z = logits.data() + r * classes;
    const T top = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(z, classes).maxCoeff();
    const T* first = std::find(z, z + classes, top);
    if (first == z + classes) first = std::max_element(z, z + classes);  // a NaN row: no element equals the max
    out[r] = static_cast<int32_t>(first - z);
  }
}

/// d F / d logits for F = -CE_mean(logits, pseudo) over the rows whose row_mask is set:
/// the token-level objective, and the sequence-to-sequence one over non-pad target
/// positions (row_mask = the target mask). dlogits = -(softmax(z) - onehot(pseudo)) / count.
template <class T>
void pseudo_label_cross_entropy_grad(std::span<const T> logits, int64_t rows, int64_t classes,
                                     std::span<const int32_t> pseudo, std::span<const int32_t> row_mask,
                                     std::span<T> dlogits, int64_t denominator = 0) {
  int64_t count = 0;
  for (int64_t r = 0; r < rows; ++r) count += row_mask[r] != 0;
  if (denominator > 0 && count > 0) count = denominator;  // a shard: the whole batch's count
  for (int64_t r = 0; r < rows; ++r) {
    const T* z = logits.data() + r * classes;
    T* d = dlogits.data() + r * classes;
    if (!row_mask[r] || count == 0) {
      std::fill(d, d + classes, T(0));
      continue;
    }
    const T mx = *std::max_element(z, z + classes);
    T sum = 0;
    for (int64_t c = 0; c < classes; ++c) sum += std::exp(z[c] - mx);
    for (int64_t c = 0; c < classes; ++c)
      d[c] = -(std::exp(z[c] - mx) / sum - T(c == pseudo[r])) / static_cast<T>(count);
  }
}

/// d F / d logits of the pseudo-label objective for `replicas` stacked copies of a batch
/// (1 for GA; the IG steps stack copies). logits [replicas * rows, C] on the host, with
/// rows and C from the model's AttributionTarget for one copy.
/// pseudo: the fixed labels per row of one copy, or empty to take each copy's own argmax.
/// Sequence classes: F = sum_b z[b, c_b] (one-hot). Token classes: F = -CE_mean(z, c) over
/// the rows whose row_mask is set. Regression: F = -MSE(z, gold).
template <class T>
void objective_grad(const models::AttributionTarget& target, std::span<const T> logits, int64_t replicas,
                    std::span<const int32_t> pseudo, std::span<int32_t> scratch_labels, std::span<T> dlogits) {
  using Kind = models::AttributionTarget::Kind;
  const int64_t C = target.classes, rows = target.rows;
  if (static_cast<int64_t>(logits.size()) != replicas * rows * C)
    throw std::invalid_argument("attribution objective: " + std::to_string(logits.size()) + " logits for " +
                                std::to_string(replicas) + " copies of " + std::to_string(rows) + " rows x " +
                                std::to_string(C) + " classes");
  for (int64_t k = 0; k < replicas; ++k) {
    const std::span<const T> z = logits.subspan(k * rows * C, rows * C);
    const std::span<T> d = dlogits.subspan(k * rows * C, rows * C);
    if (target.kind == Kind::Regression) {
      if (target.gold.size() != static_cast<std::size_t>(rows))
        throw std::invalid_argument("regression attribution needs the gold scores (one per row)");
      const int64_t count = target.denominator > 0 ? target.denominator : rows;
      for (int64_t r = 0; r < rows; ++r) d[r] = -T(2) * (z[r] - static_cast<T>(target.gold[r])) / static_cast<T>(count);
      continue;
    }
    std::span<const int32_t> labels = pseudo;
    if (labels.empty()) {
      argmax_rows<T>(z, rows, C, scratch_labels.subspan(0, rows));
      labels = std::span<const int32_t>(scratch_labels.data(), static_cast<std::size_t>(rows));
    }
    if (target.kind == Kind::TokenClasses) {
      pseudo_label_cross_entropy_grad<T>(z, rows, C, labels, target.row_mask, d, target.denominator);
    } else {
      std::fill(d.begin(), d.end(), T(0));
      for (int64_t r = 0; r < rows; ++r) d[r * C + labels[r]] = T(1);
    }
  }
}

}  // namespace addrop::attribution
