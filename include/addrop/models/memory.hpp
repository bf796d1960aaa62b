#pragma once
// How much memory a run needs, estimated from the config and the batch shape before
// anything is allocated, and a check that refuses what cannot fit in this machine.
//
// The estimate counts what the library allocates (a documented approximation, to within
// small buffers such as LayerNorm statistics and host-side copies):
//   model      weights and gradients (EncoderModel holds both), 2 x parameters
//   optimizer  AdamW's first and second moments, 2 x parameters (training only)
//   activations, for the largest batch the model sees (training or evaluation; the
//              workspace only grows), per encoder layer: Q, K, V, context, the residual
//              sum and output [B*L, D], the feed-forward pre-activation and activation
//              [B*L, I] and its sum and output [B*L, D]; the attention probabilities and
//              their gradient [B, H, L, L], plus attention dropout's copy when it is on
//              (sized by the training batch: evaluation runs without dropout);
//              once per model: the embeddings and the backward scratch (five [B*L, D],
//              one [B*L, I], the scores' gradient [B, H, L, L])
//   AD-DROP    per target layer, the attribution scores and the additive mask
//              [B, H, L, L] of the training batch; integrated gradients also runs its m
//              scaled passes on a second workspace, stacked up to a 2 GiB cap (at least
//              one copy of the batch)
// The [B, H, L, L] tensors grow with the square of the sequence length: they are what
// makes a long max length impossible, and the estimate reports them apart.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "config.hpp"

namespace addrop::models {

/// The shape of a run, as the estimate needs it.
struct RunShape {
  int64_t batch_size = 32;
  int64_t eval_batch_size = 0;     ///< 0: evaluation batches are no larger than batch_size
  int64_t sequence_length = 128;   ///< the longest batch the run may see (its max length)
  int64_t target_layers = 0;       ///< AD-DROP target layers; 0: plain fine-tuning
  int64_t ig_steps = 0;            ///< integrated gradients' m; 0: another attribution
  bool optimizer = true;           ///< false: no AdamW state (evaluation, inspection)
  std::size_t value_bytes = sizeof(float);
};

/// Bytes a run needs, by part.
struct MemoryEstimate {
  double parameters = 0;  ///< count
  double model = 0, optimizer = 0;
  double activations = 0;  ///< everything per batch, the attention tensors included
  double attention = 0;    ///< the [B, H, L, L] tensors among the activations (AD-DROP's too)
  double total() const { return model + optimizer + activations; }
};

namespace memory_detail {

struct Workspace {
  double attention = 0, other = 0;  // element counts
};

// One model workspace sized for batch B at length L (element counts); attention dropout's
// copy of the probabilities is sized by the training batch `train_B` (only training passes make it).
inline Workspace workspace(const ModelConfig& c, double B, double L, double train_B) {
  const double N = B * L, D = static_cast<double>(c.hidden_size), E = static_cast<double>(c.embedding_dim()),
               I = static_cast<double>(c.intermediate_size), H = static_cast<double>(c.num_attention_heads),
               layers = static_cast<double>(c.num_hidden_layers), C = static_cast<double>(c.num_labels);
  const double A = B * H * L * L;
  const double per_layer_attention = 2 * A + (c.attention_probs_dropout_prob > 0 ? train_B * H * L * L : 0);
  const double per_layer_other = 8 * N * D + 2 * N * I + 4 * N;
  const double rows = c.task == Task::TokenClassification ? N : B;
  Workspace w;
  w.attention = layers * per_layer_attention + A;  // + the scores' gradient in the backward scratch
  w.other = layers * per_layer_other + 2 * N * E + 2 * N + (E != D ? N * D : 0)  // embeddings
            + 5 * N * D + N * I + 2 * N * D + N * E                             // backward scratch
            + 4 * B * D + 2 * rows * D + 2 * rows * C + 4 * N;                  // head; ids, positions, key bias
  return w;
}

}  // namespace memory_detail

/// What running `config` with `shape` needs; see the top of this file.
inline MemoryEstimate estimate_memory(const ModelConfig& config, const RunShape& shape) {
  const double s = static_cast<double>(shape.value_bytes);
  MemoryEstimate e;
  e.parameters = config.parameter_counts().total();
  e.model = 2 * e.parameters * s;
  e.optimizer = shape.optimizer ? 2 * e.parameters * s : 0;
  const double B = static_cast<double>(std::max<int64_t>(shape.batch_size, 0)),
               L = static_cast<double>(std::max<int64_t>(shape.sequence_length, 0));
  const double largest = std::max(B, static_cast<double>(shape.eval_batch_size));
  const auto w = memory_detail::workspace(config, largest, L, B);
  double attention = w.attention, other = w.other;
  if (shape.target_layers > 0) {
    const double A = B * static_cast<double>(config.num_attention_heads) * L * L;
    attention += 2 * static_cast<double>(shape.target_layers) * A;  // attribution scores, additive mask
    if (shape.ig_steps > 0) {
      const auto copy = memory_detail::workspace(config, B, L, 0);  // IG runs in eval mode
      const double one = (copy.attention + copy.other) * s, cap = 2.0 * (1 << 30);
      const double stacked = std::min(static_cast<double>(shape.ig_steps) * one, std::max(cap, one));
      const double share = copy.attention / std::max(copy.attention + copy.other, 1.0);
      attention += stacked / s * share + 2 * static_cast<double>(shape.target_layers) * A;  // + IG's accumulators
      other += stacked / s * (1 - share);
    }
  }
  e.attention = attention * s;
  e.activations = (attention + other) * s;
  return e;
}

/// Throws MemoryError when `estimate_memory(config, shape)` exceeds `available` bytes
/// (by default this machine's physical memory; nothing is checked where it is unknown).
/// The error names what drives the need: the model alone (its largest field), a
/// sequence length at which even one example does not fit, or the batch size (with the
/// largest that fits), or the evaluation batch size when that is the larger one.
inline void check_memory(const ModelConfig& config, const RunShape& shape, double available = physical_memory_bytes()) {
  if (!(available > 0)) return;
  const MemoryEstimate e = estimate_memory(config, shape);
  if (e.total() <= available) return;
  const std::string machine = "; this machine has " + bytes_text(available);
  const double fixed = e.model + e.optimizer;
  if (fixed > available) {
    const auto [field, value] = config.largest_field(available / (2.0 * static_cast<double>(shape.value_bytes)));
    throw MemoryError(MemoryDriver::Model, field + " " + std::to_string(value),
                      "the model alone needs " + bytes_text(fixed) + " for weights, gradients" +
                          (shape.optimizer ? " and optimizer state" : "") + " (" + parameters_text(e.parameters) +
                          " parameters)" + machine,
                      value);
  }
  auto fits = [&](int64_t batch, int64_t eval_batch) {
    RunShape s = shape;
    s.batch_size = batch;
    s.eval_batch_size = eval_batch;
    return estimate_memory(config, s).total() <= available;
  };
  const std::string length = std::to_string(shape.sequence_length);
  if (!fits(1, 1)) {
    RunShape one = shape;
    one.batch_size = 1;
    one.eval_batch_size = 0;
    throw MemoryError(MemoryDriver::SequenceLength, "sequence length " + length,
                      "attention scores need " + bytes_text(e.attention) + " at batch size " +
                          std::to_string(std::max(shape.batch_size, shape.eval_batch_size)) + " (" +
                          bytes_text(e.total()) + " in all; " + bytes_text(estimate_memory(config, one).total()) +
                          " even for one example)" + machine,
                      shape.sequence_length);
  }
  // The evaluation batch drives it when it is the larger one and the training batch alone fits.
  const bool eval_drives = shape.eval_batch_size > shape.batch_size && fits(shape.batch_size, 0);
  const int64_t given = eval_drives ? shape.eval_batch_size : shape.batch_size;
  int64_t lo = 1, hi = given;  // the largest batch that fits: fits(lo), !fits(hi)
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    (eval_drives ? fits(shape.batch_size, mid) : fits(mid, std::min(shape.eval_batch_size, mid))) ? lo = mid : hi = mid;
  }
  throw MemoryError(eval_drives ? MemoryDriver::EvalBatchSize : MemoryDriver::BatchSize,
                    std::string(eval_drives ? "evaluation batch size " : "batch size ") + std::to_string(given),
                    "activations need " + bytes_text(e.activations) + " at sequence length " + length +
                        " (attention scores " + bytes_text(e.attention) + ", " + bytes_text(e.total()) +
                        " in all); at most " + std::to_string(lo) + " examples per batch fit" + machine,
                    given);
}

}  // namespace addrop::models
