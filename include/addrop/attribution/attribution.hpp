#pragma once
// Attribution methods (docs/algorithm.md step 3) and the concept they satisfy.
#include <concepts>

#include "attention.hpp"
#include "context.hpp"
#include "gradient.hpp"
#include "integrated_gradients.hpp"
#include "objective.hpp"
#include "random.hpp"

namespace addrop::attribution {

/// An attribution method fills ctx.scores[i] (B_l, [B,H,L,L]) for each target layer
/// ctx.layers[i], after the first forward when needs_first_forward; is_random methods
/// leave the region to the selection's random rule.
template <class A, class Model>
concept AttributionMethod = requires(const A a, Model& model, const models::Batch& batch,
                                     AttributionContext<Model>& ctx) {
  { A::needs_first_forward } -> std::convertible_to<bool>;
  { A::is_random } -> std::convertible_to<bool>;
  a.attribute(model, batch, ctx);
};

}  // namespace addrop::attribution
