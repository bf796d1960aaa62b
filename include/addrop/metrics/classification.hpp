#pragma once
// Classification metrics as scikit-learn computes them: accuracy_score, f1_score
// (binary, pos_label), matthews_corrcoef (general multi-class formula).
//
// Degenerate inputs give 0, never NaN: empty input -> 0 for all three (sklearn's
// accuracy_score gives NaN there); F1 with no positive predicted or true -> 0 (sklearn's
// zero_division default); MCC when either labelling is constant -> 0 (as sklearn).
// Inputs of different sizes throw std::invalid_argument.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace addrop::metrics {

namespace detail {
inline void check_sizes(const char* what, std::size_t a, std::size_t b) {
  if (a != b)
    throw std::invalid_argument(std::string(what) + ": " + std::to_string(a) + " predictions but " +
                                std::to_string(b) + " gold labels");
}
}  // namespace detail

/// Fraction of positions where prediction == gold.
inline double accuracy(std::span<const int32_t> predictions, std::span<const int32_t> golds) {
  detail::check_sizes("accuracy", predictions.size(), golds.size());
  if (golds.empty()) return 0.0;
  std::size_t correct = 0;
  for (std::size_t i = 0; i < golds.size(); ++i) correct += predictions[i] == golds[i];
  return static_cast<double>(correct) / static_cast<double>(golds.size());
}

/// Binary F1 of class `positive`: 2 TP / (2 TP + FP + FN).
inline double f1_binary(std::span<const int32_t> predictions, std::span<const int32_t> golds,
                        int32_t positive = 1) {
  detail::check_sizes("f1_binary", predictions.size(), golds.size());
  int64_t tp = 0, fp = 0, fn = 0;
  for (std::size_t i = 0; i < golds.size(); ++i) {
    const bool p = predictions[i] == positive, g = golds[i] == positive;
    tp += p && g;
    fp += p && !g;
    fn += !p && g;
  }
  const int64_t denom = 2 * tp + fp + fn;
  return denom == 0 ? 0.0 : static_cast<double>(2 * tp) / static_cast<double>(denom);
}

/// Matthews correlation coefficient over any set of integer labels (sklearn's formula:
/// (c s - t.p) / sqrt((s^2 - p.p)(s^2 - t.t)) with t, p the true and predicted class
/// counts, c the correct count, s the sample count).
inline double matthews_corrcoef(std::span<const int32_t> predictions, std::span<const int32_t> golds) {
  detail::check_sizes("matthews_corrcoef", predictions.size(), golds.size());
  if (golds.empty()) return 0.0;
  std::vector<int32_t> classes(golds.begin(), golds.end());
  classes.insert(classes.end(), predictions.begin(), predictions.end());
  std::sort(classes.begin(), classes.end());
  classes.erase(std::unique(classes.begin(), classes.end()), classes.end());
  auto index = [&](int32_t v) {
    return static_cast<std::size_t>(std::lower_bound(classes.begin(), classes.end(), v) - classes.begin());
  };
  std::vector<int64_t> t(classes.size(), 0), p(classes.size(), 0);
  int64_t correct = 0;
  for (std::size_t i = 0; i < golds.size(); ++i) {
    ++t[index(golds[i])];
    ++p[index(predictions[i])];
    correct += predictions[i] == golds[i];
  }
  const auto s = static_cast<int64_t>(golds.size());
  int64_t tp = 0, pp = 0, tt = 0;
  for (std::size_t k = 0; k < classes.size(); ++k) {
    tp += t[k] * p[k];
    pp += p[k] * p[k];
    tt += t[k] * t[k];
  }
  const double cov_tp = static_cast<double>(correct * s - tp);
  const double cov_pp = static_cast<double>(s * s - pp), cov_tt = static_cast<double>(s * s - tt);
  if (cov_pp == 0.0 || cov_tt == 0.0) return 0.0;
  return cov_tp / std::sqrt(cov_tt * cov_pp);
}

}  // namespace addrop::metrics
