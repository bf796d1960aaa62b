#pragma once
// Token classification on top of the shared training loop: inference over token features
// (argmax per token, mapped back to words through the first sub-token) and entity-level
// scoring (conlleval-exact, metrics::EntityCounts). Training goes through train::Trainer
// with data::TokenBatches as the batch source.
//
//   data::TokenBatches source(train_features, sampler, pad_id);
//   train::Trainer trainer(model, addrop_regulariser, options);
//   trainer.fit(source, evaluate);
//   auto result = train::evaluate_tokens(model, dev_features, gold_tags, label_names, 64, pad_id);
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "../data/token_alignment.hpp"
#include "../metrics/entity.hpp"
#include "../models/config.hpp"
#include "sharded_eval.hpp"

namespace addrop::train {

/// Token-level predictions in the features' order.
struct TokenPredictions {
  double loss = std::numeric_limits<double>::quiet_NaN();  ///< mean CE over labelled tokens; NaN when none
  int64_t labelled_tokens = 0;                              ///< tokens whose label is not -100
  std::vector<std::vector<int32_t>> tokens;                 ///< argmax per token, per feature
};

/// Runs a token-classification `model` over `data` in batches of `batch_size` (features
/// sorted by length, so padding wastes little), eval mode. `progress(done)` is called after
/// each batch with the number of sentences done.
template <class Model, class Comm = dist::Local>
TokenPredictions predict_tokens(Model& model, const data::TokenFeatures& data, int64_t batch_size, int32_t pad_id,
                                const std::function<void(int64_t)>& progress = {}, Comm&& comm = Comm{}) {
  using T = typename Model::value_type;
  using Backend = typename Model::backend_type;
  const auto& config = model.config();
  if (config.task != models::Task::TokenClassification)
    throw std::invalid_argument("predict_tokens: the model is not a token classifier");
  if (batch_size <= 0) throw std::invalid_argument("predict_tokens: batch_size must be positive");
  const int64_t C = config.num_labels, N = static_cast<int64_t>(data.size());
  std::vector<int64_t> order(static_cast<std::size_t>(N));
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return data.features[static_cast<std::size_t>(a)].ids.size() < data.features[static_cast<std::size_t>(b)].ids.size();
  });
  TokenPredictions out;
  out.tokens.resize(static_cast<std::size_t>(N));
  std::vector<T> host;
  std::vector<int64_t> indices;
  double loss_sum = 0;
  std::vector<int64_t> mine;  // the sentences this rank predicted
  for (int64_t start = 0; start < N; start += batch_size) {
    if (!runs_batch(comm, start / batch_size)) continue;
    indices.assign(order.begin() + start, order.begin() + std::min(N, start + batch_size));
    mine.insert(mine.end(), indices.begin(), indices.end());
    const models::Batch batch = data::make_token_batch(data, indices, pad_id);
    const auto& logits = model.forward(batch);  // [B*L, C]
    host.resize(static_cast<std::size_t>(batch.tokens() * C));
    Backend::to_host(model.context(), batch.tokens() * C, logits.data(), host.data());
    const auto labelled = static_cast<int64_t>(
        std::count_if(batch.labels.begin(), batch.labels.end(), [](int32_t l) { return l != data::kIgnoreLabel; }));
    if (labelled > 0) {
      loss_sum += model.loss(batch) * static_cast<double>(labelled);
      out.labelled_tokens += labelled;
    }
    for (int64_t r = 0; r < batch.size; ++r) {
      const auto n = data.features[static_cast<std::size_t>(indices[static_cast<std::size_t>(r)])].ids.size();
      auto& pred = out.tokens[static_cast<std::size_t>(indices[static_cast<std::size_t>(r)])];
      pred.resize(n);
      for (std::size_t t = 0; t < n; ++t) {
        const T* row = host.data() + (r * batch.length + static_cast<int64_t>(t)) * C;
        pred[t] = static_cast<int32_t>(std::max_element(row, row + C) - row);
      }
    }
    if (progress) progress(std::min(N, start + batch_size));
  }
  if (comm.size() > 1) {
    share_items(comm, out.tokens, mine);
    double sums[2] = {loss_sum, static_cast<double>(out.labelled_tokens)};
    sum_over_ranks(comm, sums);
    loss_sum = sums[0];
    out.labelled_tokens = static_cast<int64_t>(sums[1]);
  }
  if (out.labelled_tokens > 0) out.loss = loss_sum / static_cast<double>(out.labelled_tokens);
  return out;
}

/// Word-level predictions (label names) of every sentence: the first sub-token's
/// argmax; words without a token get `fill` ("O").
inline std::vector<std::vector<std::string>> word_tags(const data::TokenFeatures& data, const TokenPredictions& pred,
                                                       const std::vector<std::string>& label_names,
                                                       const std::string& fill = "O") {
  std::vector<std::vector<std::string>> out(data.size());
  for (std::size_t s = 0; s < data.size(); ++s) {
    const auto ids = data::word_predictions(data.word_ids[s], pred.tokens[s], data.num_words[s], -1);
    out[s].reserve(ids.size());
    for (int32_t id : ids) out[s].push_back(id < 0 ? fill : label_names.at(static_cast<std::size_t>(id)));
  }
  return out;
}

/// One evaluation of a token classifier against word-level gold tags.
struct TokenEvaluation {
  double loss = std::numeric_limits<double>::quiet_NaN();  ///< mean token CE (labelled sub-tokens)
  metrics::EntityCounts counts;                             ///< entity P/R/F1 per type and in total, token accuracy
  std::vector<std::vector<std::string>> predicted;          ///< word tags per sentence

  /// Named values: f1, precision, recall, accuracy (word level), f1_<TYPE> per entity type.
  std::map<std::string, double> metrics() const {
    std::map<std::string, double> m{{"f1", counts.f1()},
                                    {"precision", counts.precision()},
                                    {"recall", counts.recall()},
                                    {"accuracy", counts.accuracy()}};
    for (const auto& [type, c] : counts.per_type()) m["f1_" + type] = c.f1();
    return m;
  }
};

/// Predicts `data`, maps the predictions back to words and scores them against `gold`
/// (word tags per sentence, in the label scheme of `label_names`).
template <class Model, class Comm = dist::Local>
TokenEvaluation evaluate_tokens(Model& model, const data::TokenFeatures& data,
                                const std::vector<std::vector<std::string>>& gold,
                                const std::vector<std::string>& label_names, int64_t batch_size, int32_t pad_id,
                                Comm&& comm = Comm{}) {
  if (gold.size() != data.size())
    throw std::invalid_argument("evaluate_tokens: " + std::to_string(gold.size()) + " gold sentences for " +
                                std::to_string(data.size()) + " features");
  const TokenPredictions pred = predict_tokens(model, data, batch_size, pad_id, {}, comm);
  TokenEvaluation r;
  r.loss = pred.loss;
  r.predicted = word_tags(data, pred, label_names);
  r.counts = metrics::evaluate_entities(gold, r.predicted);
  return r;
}

}  // namespace addrop::train
