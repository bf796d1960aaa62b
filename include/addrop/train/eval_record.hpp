#pragma once
// What one evaluation of train::Trainer reports (EvalResult, from the caller's evaluate
// function) and records (EvalRecord, a line of metrics.jsonl), with its JSON form.
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

namespace addrop::train {

/// What an evaluation reports: the dev loss, named metrics and the one to select on.
struct EvalResult {
  double loss = std::numeric_limits<double>::quiet_NaN();
  std::map<std::string, double> metrics;
  double main = 0;  ///< the value early stopping and checkpoint selection look at
};

/// One evaluation's record (a line of metrics.jsonl).
struct EvalRecord {
  int epoch = 0;               ///< 0-based epoch the evaluation ran in
  int64_t step = 0;            ///< optimizer steps so far
  double train_loss = 0;       ///< mean training loss since the previous evaluation
  bool addrop = false;         ///< whether AD-DROP ran in that stretch (any step)
  EvalResult dev;
  double seconds = 0;          ///< wall time since the start of training
};

inline nlohmann::json to_json(const EvalRecord& r, const std::string& run) {
  nlohmann::json j{{"run", run},           {"epoch", r.epoch},        {"step", r.step},
                   {"train_loss", r.train_loss}, {"addrop", r.addrop}, {"seconds", r.seconds},
                   {"main", r.dev.main}};
  j["dev_loss"] = std::isfinite(r.dev.loss) ? nlohmann::json(r.dev.loss) : nlohmann::json(nullptr);
  // Metrics of the held-out test set (an evaluator's "test_*" extras) keep their own
  // name; every other metric is the dev set's.
  for (const auto& [k, v] : r.dev.metrics) j[k.rfind("test_", 0) == 0 ? k : "dev_" + k] = v;
  return j;
}

inline EvalRecord record_from_json(const nlohmann::json& j) {
  EvalRecord r;
  r.epoch = j.at("epoch").get<int>();
  r.step = j.at("step").get<int64_t>();
  r.train_loss = j.at("train_loss").get<double>();
  r.addrop = j.at("addrop").get<bool>();
  r.seconds = j.at("seconds").get<double>();
  r.dev.main = j.at("main").get<double>();
  r.dev.loss = j.at("dev_loss").is_null() ? std::numeric_limits<double>::quiet_NaN() : j.at("dev_loss").get<double>();
  for (const auto& [k, v] : j.items()) {
    if (k.rfind("dev_", 0) == 0 && k != "dev_loss") r.dev.metrics[k.substr(4)] = v.get<double>();
    else if (k.rfind("test_", 0) == 0) r.dev.metrics[k] = v.get<double>();  // see to_json
  }
  return r;
}

}  // namespace addrop::train
