#pragma once
// What an attribution method gets from AdDrop: the target sites, where to write B_l, and
// reusable scratch (so a step allocates nothing once shapes are known).
#include <algorithm>
#include <span>
#include <vector>

#include "../models/concepts.hpp"
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
    host_logits.resize(n);
    host_dlogits.resize(n);
    scratch_labels.resize(static_cast<std::size_t>(target.rows));
    Backend::to_host(model.context(), logits.numel(), logits.data(), host_logits.data());
    objective_grad<T>(target, host_logits, replicas,
                      fixed ? std::span<const int32_t>(pseudo) : std::span<const int32_t>(), scratch_labels,
                      host_dlogits);
    Backend::to_device(model.context(), logits.numel(), host_dlogits.data(), model.logits_grad().data());
  }
};

}  // namespace addrop::attribution
