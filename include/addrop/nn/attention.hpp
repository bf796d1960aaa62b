#pragma once
// BERT-style self-attention block with its output projection, residual and LayerNorm
// (Hugging Face's BertAttention = BertSelfAttention + BertSelfOutput).
//
// This is the "attention site" AD-DROP works on. For layer l:
//   scores[b,h]  = Q_bh K_bh^T                                  [B,H,L,L]
//   probs        = softmax(scale*scores + key_bias[b] + extra_l) (extra_l: AD-DROP's additive mask)
//   A_l          = attention_dropout(probs)                      the tensor AD-DROP attributes
//   context_bh   = (alpha_l * alpha_b * A_l) V_bh                [B,L,D], heads interleaved
//                  (alpha_b: optional per-example scale, IG's batched alpha steps)
//   out          = LayerNorm(dropout(context Wo^T + bo) + x)
// After a backward, probs_grad holds d(loss)/d(A_l).
#include <cmath>

#include "dropout.hpp"
#include "layer_norm.hpp"
#include "linear.hpp"

namespace addrop::nn {

/// What attention caches in the forward for its backward and for AD-DROP.
template <class T, class Backend>
struct AttentionActivations {
  Tensor<T, Backend> q, k, v, context;  // [B*L, D]
  Tensor<T, Backend> probs;             // softmax output [B,H,L,L]
  Tensor<T, Backend> dropped;           // A_l when attention dropout is active [B,H,L,L]
  Tensor<T, Backend> sum;               // dropout(dense(context)) + x, the LayerNorm input [B*L, D]
  Tensor<T, Backend> ln_mean, ln_rstd;  // [B*L]
  Tensor<T, Backend> out;               // [B*L, D]
  Tensor<T, Backend> probs_grad;        // d(loss)/d(A_l) [B,H,L,L], valid after a backward
  DropoutSite attention_dropout, output_dropout;
  T alpha = T(1);
  const T* example_alpha = nullptr;  ///< host [B] per-example scales, or null
  bool has_probs_grad = false;

  void resize(int64_t B, int64_t L, int64_t D, int64_t H) {
    for (auto* t : {&q, &k, &v, &context, &sum, &out}) t->resize({B * L, D});
    for (auto* t : {&probs, &probs_grad}) t->resize({B, H, L, L});
    ln_mean.resize({B * L});
    ln_rstd.resize({B * L});
  }
  /// A_l: the probabilities as multiplied with V (after attention dropout).
  const Tensor<T, Backend>& attention() const { return attention_dropout.active ? dropped : probs; }
};

/// Scratch shared by every layer's backward (one per model workspace).
template <class T, class Backend>
struct AttentionScratch {
  Tensor<T, Backend> dq, dk, dv, dcontext, dtmp;  // [B*L, D]
  Tensor<T, Backend> dscores;                      // [B,H,L,L]
  void resize(int64_t B, int64_t L, int64_t D, int64_t H) {
    for (auto* t : {&dq, &dk, &dv, &dcontext, &dtmp}) t->resize({B * L, D});
    dscores.resize({B, H, L, L});
  }
};

template <class T, class Backend>
struct SelfAttention {
  using Context = typename Backend::Context;
  using Strides = typename Backend::BatchStrides;
  Linear<T, Backend> query, key, value, output;
  LayerNorm<T, Backend> layer_norm;
  int64_t hidden = 0, heads = 0, head_dim = 0;

  /// prefix: "bert.encoder.layer.3.attention"
  void init(const std::string& prefix, int64_t hidden_size, int64_t num_heads, double ln_eps) {
    if (num_heads <= 0 || hidden_size % num_heads != 0)
      throw std::invalid_argument("hidden_size " + std::to_string(hidden_size) +
                                  " is not a multiple of num_attention_heads " + std::to_string(num_heads));
    hidden = hidden_size;
    heads = num_heads;
    head_dim = hidden_size / num_heads;
    query.init(prefix + ".self.query", hidden, hidden);
    key.init(prefix + ".self.key", hidden, hidden);
    value.init(prefix + ".self.value", hidden, hidden);
    output.init(prefix + ".output.dense", hidden, hidden);
    layer_norm.init(prefix + ".output.LayerNorm", hidden, ln_eps);
  }
  void collect(ParameterList<T, Backend>& list) {
    for (auto* m : {&query, &key, &value}) m->collect(list);
    output.collect(list);
    layer_norm.collect(list);
  }

  /// x [B*L, D]; key_bias [B, L] additive (0 or -10000); extra [B,H,L,L] additive or null.
  void forward(const Context& ctx, int64_t B, int64_t L, const T* x, const T* key_bias, const T* extra,
               AttentionActivations<T, Backend>& a) const {
    const int64_t N = B * L, D = hidden, H = heads, dh = head_dim;
    query.forward(ctx, N, x, a.q.data());
    key.forward(ctx, N, x, a.k.data());
    value.forward(ctx, N, x, a.v.data());
    // scores[b,h] = Q_bh K_bh^T   (Q_bh: rows of q, columns h*dh .. h*dh+dh, row stride D)
    Backend::gemm_batched(ctx, false, true, L, L, dh, T(1), a.q.data(), D, Strides{L * D, dh}, a.k.data(), D,
                          Strides{L * D, dh}, T(0), a.probs.data(), L, Strides{H * L * L, L * L}, B, H);
    const T scale = T(1) / std::sqrt(static_cast<T>(dh));
    Backend::attention_softmax_forward(ctx, B, H, L, scale, a.probs.data(), key_bias, extra, a.probs.data());
    const T* A = a.probs.data();
    if (a.attention_dropout.active) {
      a.dropped.resize({B, H, L, L});
      dropout_forward<Backend>(ctx, a.attention_dropout, a.probs.numel(), a.probs.data(), a.dropped.data());
      A = a.dropped.data();
    }
    // context_bh = alpha * A_bh V_bh
    Backend::gemm_batched(ctx, false, false, L, dh, L, a.alpha, A, L, Strides{H * L * L, L * L}, a.v.data(), D,
                          Strides{L * D, dh}, T(0), a.context.data(), D, Strides{L * D, dh}, B, H);
    if (a.example_alpha)
      for (int64_t b = 0; b < B; ++b) Backend::scale(ctx, L * D, a.example_alpha[b], a.context.data() + b * L * D);
    output.forward(ctx, N, a.context.data(), a.sum.data());
    dropout_forward<Backend>(ctx, a.output_dropout, N * D, a.sum.data(), a.sum.data());
    Backend::add(ctx, N * D, a.sum.data(), x, a.sum.data());
    layer_norm.forward(ctx, N, a.sum.data(), a.out.data(), a.ln_mean.data(), a.ln_rstd.data());
  }

  /// dy [B*L, D] is the gradient of `out` (overwritten as scratch); writes dx [B*L, D].
  /// With stop_at_probs the pass ends once probs_grad (d/dA_l) is known: no input gradient.
  void backward(const Context& ctx, int64_t B, int64_t L, const T* x, T* dy, T* dx,
                AttentionActivations<T, Backend>& a, AttentionScratch<T, Backend>& s, bool stop_at_probs,
                bool weight_grads) {
    const int64_t N = B * L, D = hidden, H = heads, dh = head_dim;
    // dsum = LN backward; it reaches both the residual (x) and the output projection.
    layer_norm.backward(ctx, N, dy, a.sum.data(), a.ln_mean.data(), a.ln_rstd.data(), dx, false, weight_grads);
    dropout_backward<Backend>(ctx, a.output_dropout, N * D, dx, s.dtmp.data());
    output.backward(ctx, N, a.context.data(), s.dtmp.data(), s.dcontext.data(), false, weight_grads);
    if (a.example_alpha)
      for (int64_t b = 0; b < B; ++b) Backend::scale(ctx, L * D, a.example_alpha[b], s.dcontext.data() + b * L * D);
    // dA_bh = alpha * dcontext_bh V_bh^T
    Backend::gemm_batched(ctx, false, true, L, L, dh, a.alpha, s.dcontext.data(), D, Strides{L * D, dh},
                          a.v.data(), D, Strides{L * D, dh}, T(0), a.probs_grad.data(), L,
                          Strides{H * L * L, L * L}, B, H);
    a.has_probs_grad = true;
    if (stop_at_probs) return;
    // dV_bh = alpha * A_bh^T dcontext_bh
    Backend::gemm_batched(ctx, true, false, L, dh, L, a.alpha, a.attention().data(), L, Strides{H * L * L, L * L},
                          s.dcontext.data(), D, Strides{L * D, dh}, T(0), s.dv.data(), D, Strides{L * D, dh}, B, H);
    dropout_backward<Backend>(ctx, a.attention_dropout, a.probs.numel(), a.probs_grad.data(), s.dscores.data());
    const T scale = T(1) / std::sqrt(static_cast<T>(dh));
    Backend::softmax_backward(ctx, B * H * L, L, scale, a.probs.data(), s.dscores.data(), s.dscores.data());
    // dQ_bh = dS_bh K_bh ; dK_bh = dS_bh^T Q_bh
    Backend::gemm_batched(ctx, false, false, L, dh, L, T(1), s.dscores.data(), L, Strides{H * L * L, L * L},
                          a.k.data(), D, Strides{L * D, dh}, T(0), s.dq.data(), D, Strides{L * D, dh}, B, H);
    Backend::gemm_batched(ctx, true, false, L, dh, L, T(1), s.dscores.data(), L, Strides{H * L * L, L * L},
                          a.q.data(), D, Strides{L * D, dh}, T(0), s.dk.data(), D, Strides{L * D, dh}, B, H);
    query.backward(ctx, N, x, s.dq.data(), dx, true, weight_grads);
    key.backward(ctx, N, x, s.dk.data(), dx, true, weight_grads);
    value.backward(ctx, N, x, s.dv.data(), dx, true, weight_grads);
  }
};

}  // namespace addrop::nn
