#pragma once
// HANS evaluation (McCoy et al., 2019): accuracy per heuristic (lexical_overlap,
// subsequence, constituent) x gold label (entailment, non-entailment), per label, and
// overall. Predictions of an MNLI model (label order of data::task_info(MNLI):
// contradiction, entailment, neutral) are mapped as in the paper: entailment ->
// entailment, contradiction and neutral -> non-entailment. A cell with no examples
// has accuracy 0.
#include <array>
#include <cstdint>
#include <cstdio>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "../data/example.hpp"
#include "../data/hans.hpp"

namespace addrop::metrics {

/// What the predictions passed to hans_metrics are.
enum class HansPredictions {
  Mnli,  ///< MNLI class indices: 0 contradiction, 1 entailment, 2 neutral
  Hans,  ///< HANS class indices: 0 entailment, 1 non-entailment
};

/// MNLI class index (contradiction, entailment, neutral) -> HANS class index.
inline int32_t mnli_to_hans(int32_t mnli_label) {
  if (mnli_label < 0 || mnli_label > 2)
    throw std::invalid_argument("mnli_to_hans: " + std::to_string(mnli_label) + " is not an MNLI label index");
  return mnli_label == 1 ? 0 : 1;
}

struct Tally {
  int64_t correct = 0, total = 0;
  double accuracy() const { return total == 0 ? 0.0 : static_cast<double>(correct) / static_cast<double>(total); }
  void add(bool ok) {
    correct += ok;
    ++total;
  }
};

struct HansMetrics {
  struct Heuristic {
    std::string name;
    Tally all;
    std::array<Tally, 2> by_label;  ///< [entailment, non-entailment]
  };
  Tally overall;
  std::array<Tally, 2> by_label;
  std::vector<Heuristic> by_heuristic;  ///< the three HANS heuristics first, in paper order

  /// Accuracy of one heuristic, for gold label 0 / 1, or for both with label -1.
  /// Throws std::out_of_range for an unknown heuristic.
  double accuracy(std::string_view heuristic, int32_t label = -1) const {
    for (const auto& h : by_heuristic)
      if (h.name == heuristic) return label < 0 ? h.all.accuracy() : h.by_label.at(static_cast<std::size_t>(label)).accuracy();
    throw std::out_of_range("no HANS heuristic \"" + std::string(heuristic) + "\"");
  }

  /// A table: one line per heuristic with entailment / non-entailment / all accuracies.
  std::string to_string() const {
    std::string s = "heuristic        entailment  non-entailment  all\n";
    char buf[160];
    auto line = [&](const std::string& name, const Tally& e, const Tally& n, const Tally& a) {
      std::snprintf(buf, sizeof buf, "%-16s %10.4f  %14.4f  %.4f\n", name.c_str(), e.accuracy(), n.accuracy(),
                    a.accuracy());
      s += buf;
    };
    for (const auto& h : by_heuristic) line(h.name, h.by_label[0], h.by_label[1], h.all);
    line("overall", by_label[0], by_label[1], overall);
    return s;
  }
};

/// HANS accuracies from predictions, gold HANS labels (0/1) and each example's heuristic.
inline HansMetrics hans_metrics(std::span<const int32_t> predictions, std::span<const int32_t> golds,
                                std::span<const std::string> heuristics,
                                HansPredictions kind = HansPredictions::Mnli) {
  if (predictions.size() != golds.size() || golds.size() != heuristics.size())
    throw std::invalid_argument("hans_metrics: " + std::to_string(predictions.size()) + " predictions, " +
                                std::to_string(golds.size()) + " gold labels, " + std::to_string(heuristics.size()) +
                                " heuristics");
  HansMetrics m;
  for (const auto& name : data::hans_heuristics()) m.by_heuristic.push_back({name, {}, {}});
  for (std::size_t i = 0; i < golds.size(); ++i) {
    if (golds[i] != 0 && golds[i] != 1)
      throw std::invalid_argument("hans_metrics: gold label " + std::to_string(golds[i]) + " at position " +
                                  std::to_string(i) + " is not 0 (entailment) or 1 (non-entailment)");
    int32_t p = predictions[i];
    if (kind == HansPredictions::Mnli) {
      if (p < 0 || p > 2)
        throw std::invalid_argument("hans_metrics: prediction " + std::to_string(p) + " at position " +
                                    std::to_string(i) + " is not an MNLI label index");
      p = mnli_to_hans(p);
    } else if (p != 0 && p != 1) {
      throw std::invalid_argument("hans_metrics: prediction " + std::to_string(p) + " at position " +
                                  std::to_string(i) + " is not a HANS label index");
    }
    const bool ok = p == golds[i];
    const auto g = static_cast<std::size_t>(golds[i]);
    m.overall.add(ok);
    m.by_label[g].add(ok);
    HansMetrics::Heuristic* h = nullptr;
    for (auto& row : m.by_heuristic)
      if (row.name == heuristics[i]) h = &row;
    if (!h) {
      m.by_heuristic.push_back({heuristics[i], {}, {}});
      h = &m.by_heuristic.back();
    }
    h->all.add(ok);
    h->by_label[g].add(ok);
  }
  return m;
}

/// HANS accuracies for examples read with data::read_hans.
inline HansMetrics hans_metrics(const std::vector<data::Example>& examples, std::span<const int32_t> predictions,
                                HansPredictions kind = HansPredictions::Mnli) {
  std::vector<int32_t> golds;
  std::vector<std::string> heuristics;
  golds.reserve(examples.size());
  heuristics.reserve(examples.size());
  for (const auto& e : examples) {
    golds.push_back(e.label);
    heuristics.push_back(e.heuristic);
  }
  return hans_metrics(predictions, golds, heuristics, kind);
}

}  // namespace addrop::metrics
