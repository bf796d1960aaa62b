#pragma once
// What an attribution method gets from AdDrop: the target sites, where to write B_l, and
// reusable scratch (so a step allocates nothing once shapes are known).
#include <algorithm>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "../models/concepts.hpp"
#include "../nn/losses.hpp"
#include "../tensor.hpp"
#include "objective.hpp"

namespace addrop::attribution {

template <class Model, class Batch>
struct AttributionContext {
  using T = typename Model::value_type;
  using Backend = typename Model::backend_type;
  using TensorT = Tensor<T, Backend>;

  std::vector<int> layers;                  ///< target sites, ascending
  std::vector<models::AttentionSite> sites;  ///< their geometry for this batch
  std::vector<TensorT> scores;              ///< B_l per target site (the site's shape), written by the method
  bool negate = false;                      ///< regression: attributions of the gold loss are negated

  // Scratch, reused across steps.
  std::vector<T> host_logits, host_dlogits;
  std::vector<int32_t> pseudo, scratch_labels;
  Tensor<int32_t, Backend> device_labels;  ///< token objectives: each copy's labels, ignored rows -100
  Batch replicated;               ///< IG: a batch stacked `replicas` times
  TensorT replicated_input, accum, probs;
  std::vector<T> alphas;

  int lowest_layer() const { return layers.front(); }
  int highest_layer() const { return layers.back(); }

  /// Pseudo labels c = argmax of the model's current logits (one per row of one copy).
  void take_pseudo_labels(Model& model, const Batch& batch) {
    const auto& logits = model.logits();
    const models::AttributionTarget target = model.attribution_target(batch);
    host_logits.resize(static_cast<std::size_t>(logits.numel()));
    Backend::to_host(model.context(), logits.numel(), logits.data(), host_logits.data());
    pseudo.resize(static_cast<std::size_t>(target.rows));
    argmax_rows<T>(std::span<const T>(host_logits).first(static_cast<std::size_t>(target.rows * target.classes)),
                   target.rows, target.classes, pseudo);
  }

  /// Sets the model's logits_grad() to d F / d logits for its last forward, which ran on
  /// `replicas` stacked copies of `batch`. fixed: use take_pseudo_labels' labels; else each
  /// copy's own argmax. Regression uses the gold loss (F = -loss) either way.
  void set_objective(Model& model, const Batch& batch, int64_t replicas, bool fixed) {
    const auto& logits = model.logits();
    const auto n = static_cast<std::size_t>(logits.numel());
    const models::AttributionTarget target = model.attribution_target(batch);
    if (target.kind == models::AttributionTarget::Kind::TokenClasses) {
      set_token_objective(model, target, replicas, fixed);
      return;
    }
    host_logits.resize(n);
    host_dlogits.resize(n);
    scratch_labels.resize(static_cast<std::size_t>(target.rows));
    Backend::to_host(model.context(), logits.numel(), logits.data(), host_logits.data());
    objective_grad<T>(target, host_logits, replicas,
                      fixed ? std::span<const int32_t>(pseudo) : std::span<const int32_t>(), scratch_labels,
                      host_dlogits);
    Backend::to_device(model.context(), logits.numel(), host_dlogits.data(), model.logits_grad().data());
  }

 private:
  /// The token objective (objective_grad's definition: F = -CE_mean over the rows of each
  /// copy whose row_mask is set) computed where the logits live, by the backend's
  /// cross-entropy (which gives (p - onehot) / count) negated: a translation batch's logits
  /// are [target tokens, ~60k], too large to copy to the host and back and to run through
  /// one scalar loop there. Only the labels cross (and, without fixed labels, the logits
  /// for the argmax).
  void set_token_objective(Model& model, const models::AttributionTarget& target, int64_t replicas, bool fixed) {
    const auto& logits = model.logits();
    const int64_t rows = target.rows, classes = target.classes;
    if (logits.numel() != replicas * rows * classes)
      throw std::invalid_argument("attribution objective: " + std::to_string(logits.numel()) + " logits for " +
                                  std::to_string(replicas) + " copies of " + std::to_string(rows) + " rows x " +
                                  std::to_string(classes) + " classes");
    std::vector<int32_t>& labels = scratch_labels;
    labels.resize(static_cast<std::size_t>(replicas * rows));
    if (fixed) {
      for (int64_t k = 0; k < replicas; ++k) std::copy(pseudo.begin(), pseudo.begin() + rows, labels.begin() + k * rows);
    } else {
      host_logits.resize(static_cast<std::size_t>(logits.numel()));
      Backend::to_host(model.context(), logits.numel(), logits.data(), host_logits.data());
      argmax_rows<T>(host_logits, replicas * rows, classes, labels);
    }
    int64_t count = 0;
    for (int64_t r = 0; r < rows; ++r) count += target.row_mask[r] != 0;
    for (int64_t k = 0; k < replicas; ++k)
      for (int64_t r = 0; r < rows; ++r)
        if (!target.row_mask[r]) labels[k * rows + r] = nn::kIgnoreIndex;
    const int64_t denominator = target.denominator > 0 && count > 0 ? target.denominator : count;
    device_labels.resize({replicas * rows});
    Backend::to_device(model.context(), replicas * rows, labels.data(), device_labels.data());
    for (int64_t k = 0; k < replicas; ++k)
      nn::cross_entropy<Backend>(model.context(), rows, classes, logits.data() + k * rows * classes,
                                 device_labels.data() + k * rows, model.logits_grad().data() + k * rows * classes,
                                 T(0), denominator);
    Backend::scale(model.context(), logits.numel(), T(-1), model.logits_grad().data());
  }
};

}  // namespace addrop::attribution
