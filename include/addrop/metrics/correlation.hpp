#pragma once
// Correlation metrics for regression (STS-B) as SciPy computes them: pearsonr (mean-
// centred, clipped to [-1, 1]) and spearmanr (Pearson of ranks, ties get the average
// of their ranks as rankdata(method="average")).
//
// Degenerate inputs give 0, never NaN: fewer than 2 points, or a constant vector
// (SciPy returns NaN there with a ConstantInputWarning). Different sizes and
// non-finite values throw std::invalid_argument.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace addrop::metrics {

namespace detail {
inline void check_series(const char* what, std::span<const double> x, std::span<const double> y) {
  if (x.size() != y.size())
    throw std::invalid_argument(std::string(what) + ": " + std::to_string(x.size()) + " predictions but " +
                                std::to_string(y.size()) + " gold values");
  for (std::size_t i = 0; i < x.size(); ++i)
    if (!std::isfinite(x[i]) || !std::isfinite(y[i]))
      throw std::invalid_argument(std::string(what) + ": value " + std::to_string(i) + " is not finite");
}
}  // namespace detail

/// Pearson's r.
inline double pearson(std::span<const double> x, std::span<const double> y) {
  detail::check_series("pearson", x, y);
  const std::size_t n = x.size();
  if (n < 2) return 0.0;
  long double mx = 0, my = 0;
  for (std::size_t i = 0; i < n; ++i) {
    mx += x[i];
    my += y[i];
  }
  mx /= static_cast<long double>(n);
  my /= static_cast<long double>(n);
  long double sxy = 0, sxx = 0, syy = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const long double dx = x[i] - mx, dy = y[i] - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  if (sxx == 0 || syy == 0) return 0.0;
  const double r = static_cast<double>(sxy / std::sqrt(sxx * syy));
  return std::clamp(r, -1.0, 1.0);
}

/// 1-based ranks, tied values sharing the mean of their ranks.
inline std::vector<double> average_ranks(std::span<const double> x) {
  std::vector<std::size_t> order(x.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return x[a] < x[b]; });
  std::vector<double> ranks(x.size());
  for (std::size_t i = 0; i < order.size();) {
    std::size_t j = i + 1;
    while (j < order.size() && x[order[j]] == x[order[i]]) ++j;
    const double rank = 0.5 * static_cast<double>(i + 1 + j);  // mean of i+1 .. j
    for (std::size_t k = i; k < j; ++k) ranks[order[k]] = rank;
    i = j;
  }
  return ranks;
}

/// Spearman's rho.
inline double spearman(std::span<const double> x, std::span<const double> y) {
  detail::check_series("spearman", x, y);
  const auto rx = average_ranks(x), ry = average_ranks(y);
  return pearson(rx, ry);
}

}  // namespace addrop::metrics
