#pragma once
// Where a batch sits in a larger one that several processes share (data parallelism,
// train/distributed.hpp). A process trains on rows [first_example, first_example + size)
// of the whole batch; to compute exactly what one process would, it needs two facts about
// the whole batch that its rows alone do not give:
//  - the index of its first row, which keys every random draw of the pass (ordinary
//    dropout and AD-DROP's q-sampling draw by element index in the whole batch), and
//  - the whole batch's counts that losses and the attribution objective divide by, so
//    that each process's loss is its share of the whole batch's mean and the sum of the
//    processes' gradients is the gradient of that mean.
// A batch that is not a shard keeps the defaults: offset 0, and every count 0 ("this
// batch's own").
#include <cstdint>

namespace addrop::models {

struct BatchShard {
  int64_t first_example = 0;    ///< the whole batch's index of this batch's row 0
  int64_t loss_count = 0;       ///< the whole batch's loss terms (labels != -100, or examples); 0: own
  int64_t objective_count = 0;  ///< the whole batch's rows of a mean attribution objective (tokens, or examples); 0: own
  bool is_shard() const { return first_example != 0 || loss_count != 0 || objective_count != 0; }
};

}  // namespace addrop::models
