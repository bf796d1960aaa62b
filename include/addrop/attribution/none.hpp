#pragma once
// No attribution: the partner of selection::Random (RD, the paper's random-dropping
// baseline), whose rule reads no scores. AdDrop then runs no first forward and allocates
// no score buffers (unlike the reference, which runs a forward for RD anyway).
#include "context.hpp"

namespace addrop::attribution {

struct None {
  static constexpr bool needs_first_forward = false;
  static constexpr bool gives_scores = false;  ///< AdDrop never calls attribute()

  template <class Model, class Batch>
  void attribute(Model&, const Batch&, AttributionContext<Model, Batch>&) const {}
};

}  // namespace addrop::attribution
