#pragma once
// Options of one forward or backward pass through a model.
#include <cstdint>

namespace addrop::models {

/// How a forward pass runs.
struct PassOptions {
  bool train = false;     ///< ordinary dropout on
  uint64_t seed = 0;      ///< dropout seed
  uint64_t step = 0;      ///< dropout stream: the same (seed, step) gives the same masks
};

/// How a backward pass runs.
struct BackwardOptions {
  int stop_at_layer = -1;     ///< >= 0: end once d/dA of this layer is known (nothing below it)
  bool weight_grads = true;   ///< false: input gradients only (attribution passes)
};

}  // namespace addrop::models
