#pragma once
// Dropout sites. A site draws from the counter-based stream (seed, stream); the mask is
// never stored, the backward regenerates it. Stream ids are a pure function of
// (step, layer, site), so a step is reproducible on any backend.
#include <cstdint>

namespace addrop::nn {

/// What one dropout site does in the current pass.
struct DropoutSite {
  float p = 0.0f;
  bool active = false;  ///< train mode and p > 0
  uint64_t seed = 0;
  uint64_t stream = 0;
  int64_t first_example = 0;  ///< the batch's offset in a whole batch split across processes (models/batch_shard.hpp)
  int64_t examples = 1;       ///< rows of this batch; a site's tensor is batch-major, n / examples elements each
  /// The draw index of element 0 of an n-element site: the whole batch's, so a shard
  /// draws what one process running the whole batch would.
  int64_t first_draw(int64_t n) const { return first_example == 0 ? 0 : first_example * (n / examples); }
};

/// Site numbers inside a layer; the embedding and the head use layer slots of their own.
/// A decoder layer also has cross-attention (its probabilities and output) and, in Marian, dropout after the activation.
enum class DropoutKind : uint64_t {
  Attention = 0, AttentionOutput = 1, FeedForwardOutput = 2, Embedding = 3, Head = 4, Head2 = 5,
  CrossAttention = 6, CrossAttentionOutput = 7, Activation = 8
};

/// Per-pass dropout settings, handed down by the model.
struct DropoutPlan {
  bool train = false;
  uint64_t seed = 0;
  uint64_t step = 0;   ///< the caller's step counter; each pass of a step may use its own
  float hidden_p = 0.0f, attention_p = 0.0f, head_p = 0.0f;
  int64_t first_example = 0;  ///< see DropoutSite
  int64_t examples = 1;

  /// `slot` numbers the module: encoder layers 0..L-1, then the embeddings and the head above them.
  DropoutSite site(float p, uint64_t slot, DropoutKind kind) const {
    DropoutSite s;
    s.p = p;
    s.active = train && p > 0.0f;
    s.seed = seed;
    s.stream = (step << 24) | (slot << 8) | static_cast<uint64_t>(kind);
    s.first_example = first_example;
    s.examples = examples > 0 ? examples : 1;
    return s;
  }
};

template <class Backend, class T>
void dropout_forward(const typename Backend::Context& ctx, const DropoutSite& s, int64_t n, const T* x, T* y) {
  if (s.active) Backend::dropout_forward(ctx, n, s.p, s.seed, s.stream, x, y, s.first_draw(n));
  else if (x != y) Backend::copy(ctx, n, x, y);
}

template <class Backend, class T>
void dropout_backward(const typename Backend::Context& ctx, const DropoutSite& s, int64_t n, const T* dy, T* dx,
                      bool accumulate = false) {
  if (s.active) Backend::dropout_backward(ctx, n, s.p, s.seed, s.stream, dy, dx, accumulate, s.first_draw(n));
  else if (accumulate) Backend::axpby(ctx, n, T(1), dy, T(1), dx);
  else if (dy != dx) Backend::copy(ctx, n, dy, dx);
}

}  // namespace addrop::nn
