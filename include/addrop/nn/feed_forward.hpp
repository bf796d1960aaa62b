#pragma once
// BERT's feed-forward block (BertIntermediate + BertOutput):
//   out = LayerNorm(dropout(act(x W1^T + b1) W2^T + b2) + x)
#include "activations.hpp"
#include "dropout.hpp"
#include "layer_norm.hpp"
#include "linear.hpp"

namespace addrop::nn {

template <class T, class Backend>
struct FeedForwardActivations {
  Tensor<T, Backend> pre, act;          // [B*L, I]
  Tensor<T, Backend> sum;               // LayerNorm input [B*L, D]
  Tensor<T, Backend> ln_mean, ln_rstd;  // [B*L]
  Tensor<T, Backend> out;               // [B*L, D]
  DropoutSite output_dropout;
  void resize(int64_t N, int64_t D, int64_t I) {
    pre.resize({N, I});
    act.resize({N, I});
    sum.resize({N, D});
    out.resize({N, D});
    ln_mean.resize({N});
    ln_rstd.resize({N});
  }
};

template <class T, class Backend>
struct FeedForward {
  using Context = typename Backend::Context;
  Linear<T, Backend> intermediate, output;
  LayerNorm<T, Backend> layer_norm;
  Activation activation = Activation::Gelu;

  /// prefix: "bert.encoder.layer.3"
  void init(const std::string& prefix, int64_t hidden, int64_t inner, Activation act, double ln_eps) {
    activation = act;
    intermediate.init(prefix + ".intermediate.dense", hidden, inner);
    output.init(prefix + ".output.dense", inner, hidden);
    layer_norm.init(prefix + ".output.LayerNorm", hidden, ln_eps);
  }
  void collect(ParameterList<T, Backend>& list) {
    intermediate.collect(list);
    output.collect(list);
    layer_norm.collect(list);
  }

  void forward(const Context& ctx, int64_t N, const T* x, FeedForwardActivations<T, Backend>& a) const {
    const int64_t D = output.out_features, I = intermediate.out_features;
    intermediate.forward(ctx, N, x, a.pre.data());
    activation_forward<Backend>(ctx, activation, N * I, a.pre.data(), a.act.data());
    output.forward(ctx, N, a.act.data(), a.sum.data());
    dropout_forward<Backend>(ctx, a.output_dropout, N * D, a.sum.data(), a.sum.data());
    Backend::add(ctx, N * D, a.sum.data(), x, a.sum.data());
    layer_norm.forward(ctx, N, a.sum.data(), a.out.data(), a.ln_mean.data(), a.ln_rstd.data());
  }

  /// In place: dy [N, D] holds d(out) on entry and d(x) on return. dinner [N, I] and dtmp [N, D] are scratch.
  void backward(const Context& ctx, int64_t N, const T* x, T* dy, T* dinner, T* dtmp,
                FeedForwardActivations<T, Backend>& a, bool weight_grads) {
    const int64_t D = output.out_features, I = intermediate.out_features;
    layer_norm.backward(ctx, N, dy, a.sum.data(), a.ln_mean.data(), a.ln_rstd.data(), dy, false, weight_grads);
    dropout_backward<Backend>(ctx, a.output_dropout, N * D, dy, dtmp);
    output.backward(ctx, N, a.act.data(), dtmp, dinner, false, weight_grads);
    activation_backward<Backend>(ctx, activation, N * I, a.pre.data(), a.act.data(), dinner, dinner);
    intermediate.backward(ctx, N, x, dinner, dy, true, weight_grads);
  }
};

}  // namespace addrop::nn
