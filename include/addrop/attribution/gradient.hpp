#pragma once
// GA: B_l = d F / d A_l, for every target site from one input-gradient-only backward that
// stops at the lowest target site (docs/algorithm.md step 3; cost about one forward).
#include "../models/concepts.hpp"
#include "context.hpp"

namespace addrop::attribution {

struct Gradient {
  static constexpr bool needs_first_forward = true;  ///< reads the logits of AdDrop's first forward

  /// After the first forward: writes ctx.scores[i] for ctx.layers[i].
  template <class Model, class Batch>
  void attribute(Model& model, const Batch& batch, AttributionContext<Model, Batch>& ctx) const {
    static_assert(models::check_gradient_model<Model, Batch>());
    using Backend = typename Model::backend_type;
    ctx.take_pseudo_labels(model, batch);
    ctx.set_objective(model, batch, 1, true);
    model.backward({.stop_at_layer = ctx.lowest_layer(), .weight_grads = false});
    for (std::size_t i = 0; i < ctx.layers.size(); ++i) {
      const auto& g = model.attention_probs_grad(ctx.layers[i]);
      Backend::copy(model.context(), g.numel(), g.data(), ctx.scores[i].data());
    }
  }
};

}  // namespace addrop::attribution
