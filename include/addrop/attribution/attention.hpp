#pragma once
// AA: the attention probabilities of the first forward are the attribution, B_l = A_l
// (regression: -A_l, as the reference).
#include "context.hpp"

namespace addrop::attribution {

struct Attention {
  static constexpr bool needs_first_forward = true;
  static constexpr bool is_random = false;

  template <class Model>
  void attribute(Model& model, const models::Batch&, AttributionContext<Model>& ctx) const {
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
