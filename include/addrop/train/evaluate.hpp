#pragma once
// Inference over a feature set: logits, predicted labels (or regression scores) and the
// mean gold loss, in the features' order. Batches are formed from length-sorted
// features so that dynamic padding wastes little; ordinary dropout is off.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <vector>

#include "../data/batching.hpp"
#include "../models/config.hpp"
#include "sharded_eval.hpp"

namespace addrop::train {

struct Predictions {
  double loss = std::numeric_limits<double>::quiet_NaN();  ///< mean gold loss; NaN when unlabelled
  int64_t num_labels = 0;         ///< C (1 for regression)
  std::vector<float> logits;      ///< [N, C]
  std::vector<int32_t> labels;    ///< argmax per example (classification)
  std::vector<double> scores;     ///< the output per example (regression)
};

/// True when every feature carries a gold label (or a finite regression target).
inline bool has_labels(const std::vector<data::Feature>& features, bool regression) {
  return std::all_of(features.begin(), features.end(), [&](const data::Feature& f) {
    return regression ? std::isfinite(f.target) : f.label >= 0;
  });
}

/// Runs `model` over `features` in batches of `batch_size`; `progress(done)` is called
/// after each batch with the number of examples done. With a communicator of several
/// ranks each runs its share of the batches and every rank returns all predictions
/// (train/sharded_eval.hpp).
template <class Model, class Comm = dist::Local>
Predictions predict(Model& model, const std::vector<data::Feature>& features, int64_t batch_size, int32_t pad_id,
                    const std::function<void(int64_t)>& progress = {}, Comm&& comm = Comm{}) {
  using T = typename Model::value_type;
  using Backend = typename Model::backend_type;
  const auto& config = model.config();
  const bool regression = config.task == models::Task::Regression;
  const bool labelled = has_labels(features, regression);
  const int64_t C = config.num_labels, N = static_cast<int64_t>(features.size());

  std::vector<int64_t> order(static_cast<std::size_t>(N));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return features[a].ids.size() < features[b].ids.size(); });

  Predictions out;
  out.num_labels = C;
  out.logits.assign(static_cast<std::size_t>(N * C), 0.0f);
  std::vector<T> host;
  double loss_sum = 0;
  std::vector<int64_t> indices;
  for (int64_t start = 0; start < N; start += batch_size) {
    if (!runs_batch(comm, start / batch_size)) continue;
    indices.assign(order.begin() + start, order.begin() + std::min(N, start + batch_size));
    const models::Batch batch = data::make_batch(features, indices, pad_id, regression);
    const auto& logits = model.forward(batch);
    host.resize(static_cast<std::size_t>(batch.size * C));
    Backend::to_host(model.context(), batch.size * C, logits.data(), host.data());
    if (labelled) loss_sum += model.loss(batch) * static_cast<double>(batch.size);
    for (int64_t r = 0; r < batch.size; ++r)
      for (int64_t c = 0; c < C; ++c) out.logits[indices[r] * C + c] = static_cast<float>(host[r * C + c]);
    if (progress) progress(std::min(N, start + batch_size));
  }
  if (comm.size() > 1) {  // every rank's logits (zero elsewhere) and loss, summed
    std::vector<double> all(out.logits.begin(), out.logits.end());
    all.push_back(loss_sum);
    sum_over_ranks(comm, all);
    loss_sum = all.back();
    for (std::size_t i = 0; i < out.logits.size(); ++i) out.logits[i] = static_cast<float>(all[i]);
  }
  if (labelled && N > 0) out.loss = loss_sum / static_cast<double>(N);
  if (regression) {
    out.scores.assign(out.logits.begin(), out.logits.end());
  } else {
    out.labels.resize(static_cast<std::size_t>(N));
    for (int64_t i = 0; i < N; ++i) {
      const float* row = out.logits.data() + i * C;
      out.labels[i] = static_cast<int32_t>(std::max_element(row, row + C) - row);
    }
  }
  return out;
}

}  // namespace addrop::train
