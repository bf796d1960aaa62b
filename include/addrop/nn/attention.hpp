#pragma once
// Multi-head attention block with its output projection, residual and LayerNorm (post-LN):
// BERT's BertAttention (BertSelfAttention + BertSelfOutput), and Marian's self-attention,
// causal decoder self-attention and cross-attention with their *_layer_norm.
//
// This is the "attention site" AD-DROP works on. Queries come from x [B*Lq, D]; keys and
// values from `memory` [B*Lk, D] (cross-attention) or from x itself (self-attention, Lk = Lq):
//   scores[b,h]  = Q_bh K_bh^T                                  [B,H,Lq,Lk]
//   probs        = softmax(scale*scores + key_bias[b] + extra_l) (extra_l: AD-DROP's additive
//                  mask; a causal block also hides the keys after each query)
//   A_l          = attention_dropout(probs)                      the tensor AD-DROP attributes
//   context_bh   = (alpha_l * alpha_b * A_l) V_bh                [B,Lq,D], heads interleaved
//                  (alpha_b: optional per-example scale, IG's batched alpha steps)
//   out          = LayerNorm(dropout(context Wo^T + bo) + x)
// After a backward, probs_grad holds d(loss)/d(A_l).
#include <cmath>
#include <string>

#include "dropout.hpp"
#include "layer_norm.hpp"
#include "linear.hpp"

namespace addrop::nn {

/// What attention caches in the forward for its backward and for AD-DROP.
template <class T, class Backend>
struct AttentionActivations {
  Tensor<T, Backend> q, context;        // [B*Lq, D]
  Tensor<T, Backend> k, v;              // [B*Lk, D]
  Tensor<T, Backend> probs;             // softmax output [B,H,Lq,Lk]
  Tensor<T, Backend> dropped;           // A_l when attention dropout is active [B,H,Lq,Lk]
  Tensor<T, Backend> sum;               // dropout(dense(context)) + x, the LayerNorm input [B*Lq, D]
  Tensor<T, Backend> ln_mean, ln_rstd;  // [B*Lq]
  Tensor<T, Backend> out;               // [B*Lq, D]
  Tensor<T, Backend> probs_grad;        // d(loss)/d(A_l) [B,H,Lq,Lk], valid after a backward
  DropoutSite attention_dropout, output_dropout;
  T alpha = T(1);
  const T* example_alpha = nullptr;  ///< host [B] per-example scales, or null
  bool has_probs_grad = false;

  void resize(int64_t B, int64_t Lq, int64_t Lk, int64_t D, int64_t H) {
    for (auto* t : {&q, &context, &sum, &out}) t->resize({B * Lq, D});
    for (auto* t : {&k, &v}) t->resize({B * Lk, D});
    for (auto* t : {&probs, &probs_grad}) t->resize({B, H, Lq, Lk});
    ln_mean.resize({B * Lq});
    ln_rstd.resize({B * Lq});
  }
  void resize(int64_t B, int64_t L, int64_t D, int64_t H) { resize(B, L, L, D, H); }
  /// A_l: the probabilities as multiplied with V (after attention dropout).
  const Tensor<T, Backend>& attention() const { return attention_dropout.active ? dropped : probs; }
};

/// Scratch shared by every layer's backward (one per model workspace); sized per call.
template <class T, class Backend>
struct AttentionScratch {
  Tensor<T, Backend> dq, dcontext, dtmp;  // [B*Lq, D]
  Tensor<T, Backend> dk, dv;              // [B*Lk, D]
  Tensor<T, Backend> dscores;             // [B,H,Lq,Lk]
  void resize(int64_t B, int64_t Lq, int64_t Lk, int64_t D, int64_t H) {
    for (auto* t : {&dq, &dcontext, &dtmp}) t->resize({B * Lq, D});
    for (auto* t : {&dk, &dv}) t->resize({B * Lk, D});
    dscores.resize({B, H, Lq, Lk});
  }
  void resize(int64_t B, int64_t L, int64_t D, int64_t H) { resize(B, L, L, D, H); }
};

/// The parameter names of one attention block, as its Hugging Face module spells them.
struct AttentionNames {
  std::string query, key, value, output, layer_norm;
  /// BERT / RoBERTa / ELECTRA: "<prefix>.self.query", ..., "<prefix>.output.LayerNorm".
  static AttentionNames bert(const std::string& prefix) {
    return {prefix + ".self.query", prefix + ".self.key", prefix + ".self.value", prefix + ".output.dense",
            prefix + ".output.LayerNorm"};
  }
  /// Marian / BART: "<layer>.<block>.q_proj", ..., "<layer>.<block>_layer_norm" (block: self_attn, encoder_attn).
  static AttentionNames marian(const std::string& layer, const std::string& block) {
    const std::string p = layer + "." + block;
    return {p + ".q_proj", p + ".k_proj", p + ".v_proj", p + ".out_proj", p + "_layer_norm"};
  }
};

template <class T, class Backend>
struct Attention {
  using Context = typename Backend::Context;
  using Strides = typename Backend::BatchStrides;
  Linear<T, Backend> query, key, value, output;
  LayerNorm<T, Backend> layer_norm;
  int64_t hidden = 0, heads = 0, head_dim = 0;
  bool causal = false;  ///< a decoder's self-attention: query i sees keys 0..i only

  void init(const AttentionNames& names, int64_t hidden_size, int64_t num_heads, double ln_eps, bool is_causal = false) {
    if (num_heads <= 0 || hidden_size % num_heads != 0)
      throw std::invalid_argument("hidden size " + std::to_string(hidden_size) +
                                  " is not a multiple of the number of attention heads " + std::to_string(num_heads));
    hidden = hidden_size;
    heads = num_heads;
    head_dim = hidden_size / num_heads;
    causal = is_causal;
    query.init(names.query, hidden, hidden);
    key.init(names.key, hidden, hidden);
    value.init(names.value, hidden, hidden);
    output.init(names.output, hidden, hidden);
    layer_norm.init(names.layer_norm, hidden, ln_eps);
  }
  /// Hugging Face's order within the module: q, k, v, out, norm (BERT); Marian lists
  /// k, v, q, out — the order only matters for state-dict listings, not for values.
  void collect(ParameterList<T, Backend>& list) {
    for (auto* m : {&query, &key, &value}) m->collect(list);
    output.collect(list);
    layer_norm.collect(list);
  }
  T scale() const { return T(1) / std::sqrt(static_cast<T>(head_dim)); }

  /// x [B*Lq, D]; memory [B*Lk, D] for cross-attention, or null (self-attention: Lk = Lq,
  /// keys and values from x); key_bias [B, Lk] additive (0 or a large negative value) or
  /// null; extra [B,H,Lq,Lk] additive or null.
  void forward(const Context& ctx, int64_t B, int64_t Lq, int64_t Lk, const T* x, const T* memory, const T* key_bias,
               const T* extra, AttentionActivations<T, Backend>& a) const {
    const int64_t N = B * Lq, D = hidden, H = heads, dh = head_dim;
    const T* kv = memory ? memory : x;
    query.forward(ctx, N, x, a.q.data());
    key.forward(ctx, B * Lk, kv, a.k.data());
    value.forward(ctx, B * Lk, kv, a.v.data());
    // scores[b,h] = Q_bh K_bh^T   (Q_bh: rows of q, columns h*dh .. h*dh+dh, row stride D)
    Backend::gemm_batched(ctx, false, true, Lq, Lk, dh, T(1), a.q.data(), D, Strides{Lq * D, dh}, a.k.data(), D,
                          Strides{Lk * D, dh}, T(0), a.probs.data(), Lk, Strides{H * Lq * Lk, Lq * Lk}, B, H);
    Backend::attention_softmax_forward(ctx, B, H, Lq, Lk, scale(), a.probs.data(), key_bias, extra, causal,
                                       a.probs.data());
    const T* A = a.probs.data();
    if (a.attention_dropout.active) {
      a.dropped.resize({B, H, Lq, Lk});
      dropout_forward<Backend>(ctx, a.attention_dropout, a.probs.numel(), a.probs.data(), a.dropped.data());
      A = a.dropped.data();
    }
    // context_bh = alpha * A_bh V_bh
    Backend::gemm_batched(ctx, false, false, Lq, dh, Lk, a.alpha, A, Lk, Strides{H * Lq * Lk, Lq * Lk}, a.v.data(),
                          D, Strides{Lk * D, dh}, T(0), a.context.data(), D, Strides{Lq * D, dh}, B, H);
    if (a.example_alpha)
      for (int64_t b = 0; b < B; ++b) Backend::scale(ctx, Lq * D, a.example_alpha[b], a.context.data() + b * Lq * D);
    finish_forward(ctx, N, x, a);
  }

  /// Where example b's key (or value) of position j starts in a cache: at
  /// b * example_stride + j * position_stride (each a row of D values). Example-major
  /// (cross-attention: {Lk * D, D}) and position-major (the decoder's self-attention cache:
  /// {D, rows * D}, so that one step's keys of every example are one dense block).
  struct CacheLayout {
    int64_t example_stride, position_stride;
  };

  /// One incremental decoding step of a cached block: x [B*Lq, D] are the new queries,
  /// k_cache / v_cache hold the keys and values of positions 0..Lk-1 of each example, laid
  /// out as `layout` says (self-attention appends the new ones before this call,
  /// cross-attention computed them once per source). Writes a.out; no dropout, no AD-DROP
  /// mask, nothing kept for a backward.
  void forward_cached(const Context& ctx, int64_t B, int64_t Lq, int64_t Lk, const T* x, const T* k_cache,
                      const T* v_cache, CacheLayout layout, const T* key_bias, AttentionActivations<T, Backend>& a) const {
    const int64_t N = B * Lq, D = hidden, H = heads, dh = head_dim;
    query.forward(ctx, N, x, a.q.data());
    Backend::gemm_batched(ctx, false, true, Lq, Lk, dh, T(1), a.q.data(), D, Strides{Lq * D, dh}, k_cache,
                          layout.position_stride, Strides{layout.example_stride, dh}, T(0), a.probs.data(), Lk,
                          Strides{H * Lq * Lk, Lq * Lk}, B, H);
    Backend::attention_softmax_forward(ctx, B, H, Lq, Lk, scale(), a.probs.data(), key_bias,
                                       static_cast<const T*>(nullptr), causal, a.probs.data());
    Backend::gemm_batched(ctx, false, false, Lq, dh, Lk, T(1), a.probs.data(), Lk, Strides{H * Lq * Lk, Lq * Lk},
                          v_cache, layout.position_stride, Strides{layout.example_stride, dh}, T(0),
                          a.context.data(), D, Strides{Lq * D, dh}, B, H);
    finish_forward(ctx, N, x, a);
  }

  /// dy [B*Lq, D] is the gradient of `out` (overwritten as scratch); writes dx [B*Lq, D]. For
  /// cross-attention (memory not null) the keys' and values' gradient is added to
  /// dmemory [B*Lk, D]; for self-attention it goes to dx. With stop_at_probs the pass ends
  /// once probs_grad (d/dA_l) is known: no input gradient.
  void backward(const Context& ctx, int64_t B, int64_t Lq, int64_t Lk, const T* x, const T* memory, T* dy, T* dx,
                T* dmemory, AttentionActivations<T, Backend>& a, AttentionScratch<T, Backend>& s, bool stop_at_probs,
                bool weight_grads) {
    const int64_t N = B * Lq, D = hidden, H = heads, dh = head_dim;
    s.resize(B, Lq, Lk, D, H);
    // dsum = LN backward; it reaches both the residual (x) and the output projection.
    layer_norm.backward(ctx, N, dy, a.sum.data(), a.ln_mean.data(), a.ln_rstd.data(), dx, false, weight_grads);
    dropout_backward<Backend>(ctx, a.output_dropout, N * D, dx, s.dtmp.data());
    output.backward(ctx, N, a.context.data(), s.dtmp.data(), s.dcontext.data(), false, weight_grads);
    if (a.example_alpha)
      for (int64_t b = 0; b < B; ++b) Backend::scale(ctx, Lq * D, a.example_alpha[b], s.dcontext.data() + b * Lq * D);
    // dA_bh = alpha * dcontext_bh V_bh^T
    Backend::gemm_batched(ctx, false, true, Lq, Lk, dh, a.alpha, s.dcontext.data(), D, Strides{Lq * D, dh},
                          a.v.data(), D, Strides{Lk * D, dh}, T(0), a.probs_grad.data(), Lk,
                          Strides{H * Lq * Lk, Lq * Lk}, B, H);
    a.has_probs_grad = true;
    if (stop_at_probs) return;
    // dV_bh = alpha * A_bh^T dcontext_bh
    Backend::gemm_batched(ctx, true, false, Lk, dh, Lq, a.alpha, a.attention().data(), Lk,
                          Strides{H * Lq * Lk, Lq * Lk}, s.dcontext.data(), D, Strides{Lq * D, dh}, T(0), s.dv.data(),
                          D, Strides{Lk * D, dh}, B, H);
    dropout_backward<Backend>(ctx, a.attention_dropout, a.probs.numel(), a.probs_grad.data(), s.dscores.data());
    Backend::softmax_backward(ctx, B * H * Lq, Lk, scale(), a.probs.data(), s.dscores.data(), s.dscores.data());
    // dQ_bh = dS_bh K_bh ; dK_bh = dS_bh^T Q_bh
    Backend::gemm_batched(ctx, false, false, Lq, dh, Lk, T(1), s.dscores.data(), Lk, Strides{H * Lq * Lk, Lq * Lk},
                          a.k.data(), D, Strides{Lk * D, dh}, T(0), s.dq.data(), D, Strides{Lq * D, dh}, B, H);
    Backend::gemm_batched(ctx, true, false, Lk, dh, Lq, T(1), s.dscores.data(), Lk, Strides{H * Lq * Lk, Lq * Lk},
                          a.q.data(), D, Strides{Lq * D, dh}, T(0), s.dk.data(), D, Strides{Lk * D, dh}, B, H);
    query.backward(ctx, N, x, s.dq.data(), dx, true, weight_grads);
    const T* kv = memory ? memory : x;
    T* dkv = memory ? dmemory : dx;
    key.backward(ctx, B * Lk, kv, s.dk.data(), dkv, true, weight_grads);
    value.backward(ctx, B * Lk, kv, s.dv.data(), dkv, true, weight_grads);
  }

 private:
  // out = LayerNorm(dropout(context Wo^T + bo) + x)
  void finish_forward(const Context& ctx, int64_t N, const T* x, AttentionActivations<T, Backend>& a) const {
    output.forward(ctx, N, a.context.data(), a.sum.data());
    dropout_forward<Backend>(ctx, a.output_dropout, N * hidden, a.sum.data(), a.sum.data());
    Backend::add(ctx, N * hidden, a.sum.data(), x, a.sum.data());
    layer_norm.forward(ctx, N, a.sum.data(), a.out.data(), a.ln_mean.data(), a.ln_rstd.data());
  }
};

}  // namespace addrop::nn
