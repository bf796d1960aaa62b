#pragma once
// Corpus chrF exactly as sacreBLEU 2.x computes it by default (chrF2: character n-grams
// of orders 1-6 over the text with its whitespace removed, beta = 2): per segment the
// [hypothesis, reference, matched] n-gram counts of the reference with the best F score,
// summed over the corpus; then precision and recall averaged over the orders that have
// both hypothesis and reference n-grams, and their F_beta. eps_smoothing selects
// chrF++.py's variant instead (the mean of the per-order F scores, empty orders as 1e-16).
//
//   auto s = metrics::corpus_chrf(hypotheses, {references});
//   s.str();  // "chrF2 = 59.73"
#include <array>
#include <cstdint>
#include <cstdio>
#include <map>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "unicode_text.hpp"

namespace addrop::metrics {

struct ChrfOptions {
  int char_order = 6;
  double beta = 2;
  bool whitespace = false;     ///< keep whitespace inside the character n-grams
  bool eps_smoothing = false;  ///< chrF++.py's averaging of F scores
};

/// [hyp, ref, match] counts per order, flattened; they add up over segments.
using ChrfStatistics = std::vector<int64_t>;

inline double chrf_from_statistics(const ChrfStatistics& s, const ChrfOptions& o = {}) {
  const double eps = 1e-16, factor = o.beta * o.beta;
  double score = 0, avg_prec = 0, avg_rec = 0;
  int effective = 0;
  for (int i = 0; i < o.char_order; ++i) {
    const auto n_hyp = static_cast<double>(s[3 * i]), n_ref = static_cast<double>(s[3 * i + 1]),
               n_match = static_cast<double>(s[3 * i + 2]);
    const double prec = n_hyp > 0 ? n_match / n_hyp : eps, rec = n_ref > 0 ? n_match / n_ref : eps;
    const double denom = factor * prec + rec;
    score += denom > 0 ? (1 + factor) * prec * rec / denom : eps;
    if (n_hyp > 0 && n_ref > 0) {
      avg_prec += prec;
      avg_rec += rec;
      ++effective;
    }
  }
  if (o.eps_smoothing) return 100 * score / o.char_order;
  if (effective == 0) return 0;
  avg_prec /= effective;
  avg_rec /= effective;
  if (avg_prec + avg_rec == 0) return 0;
  return 100 * (1 + factor) * avg_prec * avg_rec / (factor * avg_prec + avg_rec);
}

/// One segment's statistics: those of the reference that gives the best F score.
inline ChrfStatistics chrf_statistics(std::string_view hypothesis, std::span<const std::string_view> references,
                                      const ChrfOptions& o = {}) {
  using Counts = std::map<std::u32string, int64_t>;
  auto ngrams = [&](std::string_view text) {
    std::u32string line = unicode_text::decode_utf8(text, "chrF segment");
    if (!o.whitespace) std::erase_if(line, unicode_text::is_python_space);
    std::vector<Counts> by_order(static_cast<std::size_t>(o.char_order));
    for (int n = 1; n <= o.char_order; ++n)
      for (std::size_t i = 0; i + static_cast<std::size_t>(n) <= line.size(); ++i) ++by_order[n - 1][line.substr(i, n)];
    return by_order;
  };
  const auto hyp = ngrams(hypothesis);
  ChrfStatistics best;
  double best_f = -1;
  for (std::string_view r : references) {
    const auto ref = ngrams(r);
    ChrfStatistics st(static_cast<std::size_t>(3 * o.char_order), 0);
    for (int i = 0; i < o.char_order; ++i) {
      int64_t hyp_count = 0, ref_count = 0, match = 0;
      for (const auto& [gram, count] : hyp[i]) {
        hyp_count += count;
        if (const auto it = ref[i].find(gram); it != ref[i].end()) match += std::min(count, it->second);
      }
      for (const auto& [gram, count] : ref[i]) ref_count += count;
      st[3 * i] = ref[i].empty() ? 0 : hyp_count;  // no hits counted where the reference has no n-gram
      st[3 * i + 1] = ref_count;
      st[3 * i + 2] = match;
    }
    const double f = chrf_from_statistics(st, o);
    if (f > best_f) {
      best_f = f;
      best = std::move(st);
    }
  }
  return best;
}

struct ChrfScore {
  double score = 0;  ///< 0..100
  double beta = 2;
  /// sacreBLEU's line, e.g. "chrF2 = 59.73".
  std::string str() const {
    char buf[64];
    std::snprintf(buf, sizeof buf, "chrF%g = %.2f", beta, score);
    return buf;
  }
};

/// Corpus chrF of `hypotheses` against reference streams (each as long as hypotheses).
inline ChrfScore corpus_chrf(std::span<const std::string> hypotheses,
                             std::span<const std::vector<std::string>> reference_streams, const ChrfOptions& o = {}) {
  if (reference_streams.empty()) throw std::invalid_argument("corpus chrF: no reference stream");
  for (std::size_t k = 0; k < reference_streams.size(); ++k)
    if (reference_streams[k].size() != hypotheses.size())
      throw std::invalid_argument("corpus chrF: reference stream " + std::to_string(k) + " has " +
                                  std::to_string(reference_streams[k].size()) + " segments for " +
                                  std::to_string(hypotheses.size()) + " hypotheses");
  ChrfStatistics total(static_cast<std::size_t>(3 * o.char_order), 0);
  std::vector<std::string_view> refs(reference_streams.size());
  for (std::size_t i = 0; i < hypotheses.size(); ++i) {
    for (std::size_t k = 0; k < reference_streams.size(); ++k) refs[k] = reference_streams[k][i];
    try {
      const auto st = chrf_statistics(hypotheses[i], refs, o);
      for (std::size_t j = 0; j < total.size(); ++j) total[j] += st[j];
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("corpus chrF: segment " + std::to_string(i + 1) + ": " + e.what());
    }
  }
  return {chrf_from_statistics(total, o), o.beta};
}

}  // namespace addrop::metrics
