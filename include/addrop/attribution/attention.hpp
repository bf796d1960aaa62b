#pragma once
// AA: the attention probabilities of the first forward are the attribution, B_l = A_l
// (regression: -A_l, as the reference).
#include "../models/concepts.hpp"
#include "context.hpp"

namespace addrop::attribution {

struct Attention {
  static constexpr bool needs_first_forward = true;  ///< A_l of AdDrop's first forward

  template <class Model, class Batch>
  void attribute(Model& model, const Batch&, AttributionContext<Model, Batch>& ctx) const {
    static_assert(models::check_attention_probs_model<Model, Batch>());
    using T = typename Model::value_type;
    using Backend = typename Model::backend_type;
    for (std::size_t i = 0; i < ctx.layers.size(); ++i) {
      const auto& a = model.attention_probs(ctx.layers[i]);
      Backend::copy(model.context(), a.numel(), a.data(), ctx.scores[i].data());
      if (ctx.negate) Backend::scale(model.context(), a.numel(), T(-1), ctx.scores[i].data());
    }
  }
};

}  // namespace addrop::attribution
