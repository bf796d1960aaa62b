#pragma once
// RD: no attribution. The selection's random rule drops non-pad keys at random (keep iff
// u1 < 1-p or u2 < 1-q); unlike the reference, no first forward is run for it.
#include "context.hpp"

namespace addrop::attribution {

struct Random {
  static constexpr bool needs_first_forward = false;
  static constexpr bool is_random = true;

  template <class Model>
  void attribute(Model&, const models::Batch&, AttributionContext<Model>&) const {}
};

}  // namespace addrop::attribution
