#pragma once
// The GLUE metrics of each task, named as data::TaskInfo::metrics names them:
//   sst2, mnli, qnli, rte: accuracy
//   mrpc, qqp: f1 (main), accuracy, combined = (f1 + accuracy) / 2
//   cola: mcc (main), accuracy
//   stsb: pearson (main), spearman, combined = (pearson + spearman) / 2
// ("combined" is Hugging Face's combined_score.) See classification.hpp and
// correlation.hpp for how degenerate inputs are scored.
#include <cstdint>
#include <cstdio>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../data/glue.hpp"
#include "classification.hpp"
#include "correlation.hpp"

namespace addrop::metrics {

/// Named metric values, the main one first.
struct MetricValues {
  std::string main;
  std::vector<std::pair<std::string, double>> values;

  bool contains(std::string_view name) const {
    for (const auto& [n, v] : values)
      if (n == name) return true;
    return false;
  }
  /// The value called `name`; throws std::out_of_range listing the names present.
  double at(std::string_view name) const {
    for (const auto& [n, v] : values)
      if (n == name) return v;
    std::string names;
    for (const auto& [n, v] : values) names += (names.empty() ? "" : ", ") + n;
    throw std::out_of_range("no metric \"" + std::string(name) + "\" (have: " + names + ")");
  }
  double main_value() const { return at(main); }
  /// "f1=0.8123 accuracy=0.7500 combined=0.7812"
  std::string to_string(int digits = 4) const {
    std::string s;
    char buf[64];
    for (const auto& [n, v] : values) {
      std::snprintf(buf, sizeof buf, "%.*f", digits, v);
      s += (s.empty() ? "" : " ") + n + "=" + buf;
    }
    return s;
  }
};

/// Metrics of a classification task from label indices. Throws std::invalid_argument for
/// STS-B, for sizes that differ, and for a label outside [0, num_labels) (a gold -1
/// means an unlabelled test split).
inline MetricValues glue_metrics(data::GlueTask task, std::span<const int32_t> predictions,
                                 std::span<const int32_t> golds) {
  const auto& info = data::task_info(task);
  if (info.regression)
    throw std::invalid_argument("glue_metrics: " + info.name + " is a regression task; pass scores (double)");
  detail::check_sizes("glue_metrics", predictions.size(), golds.size());
  for (std::size_t i = 0; i < golds.size(); ++i) {
    if (golds[i] < 0 || golds[i] >= info.num_labels)
      throw std::invalid_argument("glue_metrics: gold label " + std::to_string(golds[i]) + " at position " +
                                  std::to_string(i) + " is not a " + info.name + " label" +
                                  (golds[i] == -1 ? " (unlabelled test split?)" : ""));
    if (predictions[i] < 0 || predictions[i] >= info.num_labels)
      throw std::invalid_argument("glue_metrics: prediction " + std::to_string(predictions[i]) + " at position " +
                                  std::to_string(i) + " is not a " + info.name + " label");
  }
  MetricValues m;
  m.main = info.main_metric;
  const double acc = accuracy(predictions, golds);
  switch (task) {
    case data::GlueTask::MRPC:
    case data::GlueTask::QQP: {
      const double f1 = f1_binary(predictions, golds, 1);
      m.values = {{"f1", f1}, {"accuracy", acc}, {"combined", 0.5 * (f1 + acc)}};
      break;
    }
    case data::GlueTask::CoLA: m.values = {{"mcc", matthews_corrcoef(predictions, golds)}, {"accuracy", acc}}; break;
    default: m.values = {{"accuracy", acc}}; break;
  }
  return m;
}

/// Metrics of STS-B from scores. Throws std::invalid_argument for a classification task.
inline MetricValues glue_metrics(data::GlueTask task, std::span<const double> predictions,
                                 std::span<const double> golds) {
  const auto& info = data::task_info(task);
  if (!info.regression)
    throw std::invalid_argument("glue_metrics: " + info.name + " is a classification task; pass label indices");
  MetricValues m;
  m.main = info.main_metric;
  const double p = pearson(predictions, golds), s = spearman(predictions, golds);
  m.values = {{"pearson", p}, {"spearman", s}, {"combined", 0.5 * (p + s)}};
  return m;
}

}  // namespace addrop::metrics
