#pragma once
// The checks every AD-DROP golden test makes against a fixture of
// tests/golden/addrop/ (tests/golden/addrop/README.md): tolerances, the target layers of
// the metadata, the threshold gaps that excuse a float near-tie, exact candidate and keep
// masks row by row, and every parameter gradient.
#include <boost/test/unit_test.hpp>

#include <addrop/io/safetensors.hpp>
#include <addrop/models/concepts.hpp>
#include <addrop/tensor.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "compare.hpp"

namespace addrop::testing {

template <class T> constexpr double golden_tolerance();
template <> constexpr double golden_tolerance<double>() { return 1e-9; }
template <> constexpr double golden_tolerance<float>() { return 1e-4; }

/// "0,1" -> {0, 1}
inline std::vector<int> parse_layers(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  for (std::string part; std::getline(ss, part, ',');) out.push_back(std::stoi(part));
  return out;
}

template <class T, class B>
std::vector<T> values(const Tensor<T, B>& t) { return std::vector<T>(t.data(), t.data() + t.numel()); }

/// Per row (b, h, i) of a [B, H, L, L] site: the relative threshold gap of the stored double
/// attribution (tests/golden/addrop/README.md), +inf where the decision cannot flip.
inline std::vector<double> row_gaps(const std::vector<double>& attr, const models::AttentionSite& site, double p, bool high) {
  const int64_t B = site.batch, H = site.heads, L = site.keys;
  std::vector<double> gaps(static_cast<std::size_t>(B * H * L), std::numeric_limits<double>::infinity());
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = site.key_length(b);
    const float r = static_cast<float>(high ? 1.0 - p : p);
    const auto k = static_cast<int64_t>(static_cast<float>(r * static_cast<float>(n)));
    if (k >= n) continue;
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < L; ++i) {
        std::vector<double> v;
        double rowmax = 0;
        for (int64_t j = 0; j < L; ++j)
          if (site.key_mask[b * L + j]) {
            v.push_back(attr[((b * H + h) * L + i) * L + j]);
            rowmax = std::max(rowmax, std::abs(v.back()));
          }
        std::vector<double> sorted = v;
        std::sort(sorted.begin(), sorted.end());
        const double t = sorted[static_cast<std::size_t>(k)];
        double below = -std::numeric_limits<double>::infinity();
        for (double x : v)
          if (x < t) below = std::max(below, x);
        if (std::isfinite(below) && rowmax > 0) gaps[(b * H + h) * L + i] = (t - below) / rowmax;
      }
  }
  return gaps;
}

/// Candidates and keep masks of one target site against the fixture's, exactly, row by row;
/// in float a row whose threshold gap is below 1e-5 may differ (counted in the log).
template <class T, class B>
void check_masks(const io::SafeTensors& expected, const std::string& suffix, const models::AttentionSite& site,
                 const Tensor<T, B>& candidates, const Tensor<T, B>& keep, double p, bool high) {
  const std::vector<double> gaps = row_gaps(expected.values<double>("attribution" + suffix), site, p, high);
  const auto cand = values(candidates), kept = values(keep);
  const auto want_cand = expected.values<double>("candidates" + suffix), want_keep = expected.values<double>("keep_mask" + suffix);
  int64_t differ = 0, skipped = 0;
  for (std::size_t row = 0; row < gaps.size(); ++row) {
    bool same = true;
    for (int64_t j = 0; j < site.keys; ++j) {
      const std::size_t e = row * static_cast<std::size_t>(site.keys) + static_cast<std::size_t>(j);
      same = same && static_cast<double>(cand[e]) == want_cand[e] && static_cast<double>(kept[e]) == want_keep[e];
    }
    if (same) continue;
    if (sizeof(T) == 4 && gaps[row] < 1e-5) ++skipped;
    else ++differ;
  }
  BOOST_TEST(differ == 0, "candidates/keep" << suffix << ": " << differ << " rows differ");
  if (skipped) BOOST_TEST_MESSAGE("candidates/keep" << suffix << ": " << skipped << " near-tie rows differ in float (allowed)");
}

/// Every parameter's gradient against `grad.<name>`; the key projection's bias, zero in
/// exact arithmetic (softmax ignores a per-row constant), against its weight's scale.
template <class Model>
void check_parameter_gradients(const Model& model, const io::SafeTensors& expected, double tol,
                               const std::string& key_bias_suffix) {
  for (const auto* p : model.parameters()) {
    const std::string name = "grad." + p->name;
    const auto want = expected.values<double>(name);
    if (p->name.ends_with(key_bias_suffix)) {
      double scale = 0;
      for (double w : expected.values<double>(name.substr(0, name.size() - 4) + "weight")) scale = std::max(scale, std::abs(w));
      const auto cmp = compare(name, p->grad.data(), want.data(), p->grad.numel(), tol);
      BOOST_CHECK_MESSAGE(cmp.max_abs_error <= tol * scale, cmp.report << " (scale " << scale << ")");
    } else {
      ADDROP_CHECK_CLOSE_TENSOR(name, p->grad.data(), want.data(), p->grad.numel(), tol);
    }
  }
}

}  // namespace addrop::testing
