#pragma once
// Attribution methods (docs/algorithm.md step 3) and the contract they satisfy.
#include <concepts>

#include "attention.hpp"
#include "context.hpp"
#include "gradient.hpp"
#include "integrated_gradients.hpp"
#include "none.hpp"
#include "objective.hpp"

namespace addrop::attribution {

/// An attribution method: `attribute(model, batch, ctx)` fills ctx.scores[i] (B_l, of the
/// site's shape ctx.sites[i]) for each target site ctx.layers[i]. It says whether AdDrop
/// must run the train-mode first forward before it (`static constexpr bool
/// needs_first_forward`: GA, IGA and AA read that forward's logits or A_l; a method that
/// runs its own passes says false). A method that gives no scores at all (attribution::None,
/// for RD) says `static constexpr bool gives_scores = false`; AdDrop then never calls it.
template <class A, class Model, class Batch>
concept AttributionMethod = requires(const A a, Model& model, const Batch& batch,
                                     AttributionContext<Model, Batch>& ctx) {
  { A::needs_first_forward } -> std::convertible_to<bool>;
  a.attribute(model, batch, ctx);
};

/// Whether an attribution method gives scores (true unless it says otherwise).
template <class A>
inline constexpr bool gives_scores = [] {
  if constexpr (requires { A::gives_scores; }) return static_cast<bool>(A::gives_scores);
  else return true;
}();

}  // namespace addrop::attribution
