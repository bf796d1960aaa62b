#pragma once
// What train::Trainer::fit trains on: a batch source. Per 0-based epoch it gives how many
// batches there are (before training: the LR schedule needs the total step count) and
// the batches themselves, as any input range. The batch type is whatever the model and
// the regulariser accept; the trainer only passes it on (reg.step(model, batch, epoch)).
//
//   struct MySource {
//     int64_t num_batches(int epoch) const;           // exactly as many as batches(epoch) gives
//     std::vector<MyBatch> batches(int epoch) const;  // or a lazy range
//   };
//
// The library's sources: data::SequenceBatches (sequence classification and regression,
// data/batching.hpp) and data::TokenBatches (token classification, data/token_alignment.hpp),
// both with the seeded sampler data::epoch_batches.
#include <concepts>
#include <cstdint>
#include <ranges>
#include <utility>

namespace addrop::train {

/// A source of training batches for train::Trainer (see above). `S` may be const.
template <class S>
concept BatchSource = requires(S& source, int epoch) {
  { source.num_batches(epoch) } -> std::convertible_to<int64_t>;
  { source.batches(epoch) } -> std::ranges::input_range;
};

/// The range a source gives for one epoch.
template <BatchSource S>
using epoch_range_t = decltype(std::declval<S&>().batches(0));

/// The batch type of a source.
template <BatchSource S>
using batch_t = std::ranges::range_value_t<epoch_range_t<S>>;

/// A regulariser that trains `Model` on `Batch`: step(model, batch, epoch) returns
/// the batch's loss and whether AD-DROP ran; it keeps a step count for resuming.
template <class Regulariser, class Model, class Batch>
concept RegulariserFor = requires(Regulariser& reg, const Regulariser& creg, Model& model, const Batch& batch,
                                  int epoch, int64_t n) {
  { reg.step(model, batch, epoch).loss } -> std::convertible_to<double>;
  { reg.step(model, batch, epoch).used_addrop } -> std::convertible_to<bool>;
  { creg.step_count() } -> std::convertible_to<int64_t>;
  reg.set_step_count(n);
};

}  // namespace addrop::train
