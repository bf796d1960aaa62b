#pragma once
// The post-LN feed-forward block: BERT's BertIntermediate + BertOutput, Marian's fc1 / fc2 /
// final_layer_norm:
//   out = LayerNorm(dropout(activation_dropout(act(x W1^T + b1)) W2^T + b2) + x)
// (activation dropout is Marian's, 0 in OPUS-MT; BERT has none).
#include <string>

#include "activations.hpp"
#include "dropout.hpp"
#include "layer_norm.hpp"
#include "linear.hpp"

namespace addrop::nn {

template <class T, class Backend>
struct FeedForwardActivations {
  Tensor<T, Backend> pre, act;          // [B*L, I]
  Tensor<T, Backend> act_dropped;       // act after activation dropout, when it is active [B*L, I]
  Tensor<T, Backend> sum;               // LayerNorm input [B*L, D]
  Tensor<T, Backend> ln_mean, ln_rstd;  // [B*L]
  Tensor<T, Backend> out;               // [B*L, D]
  DropoutSite output_dropout, activation_dropout;
  void resize(int64_t N, int64_t D, int64_t I) {
    pre.resize({N, I});
    act.resize({N, I});
    sum.resize({N, D});
    out.resize({N, D});
    ln_mean.resize({N});
    ln_rstd.resize({N});
  }
};

/// The parameter names of one feed-forward block, as its Hugging Face module spells them.
struct FeedForwardNames {
  std::string intermediate, output, layer_norm;
  /// BERT: "<layer>.intermediate.dense", "<layer>.output.dense", "<layer>.output.LayerNorm".
  static FeedForwardNames bert(const std::string& layer) {
    return {layer + ".intermediate.dense", layer + ".output.dense", layer + ".output.LayerNorm"};
  }
  /// Marian / BART: "<layer>.fc1", "<layer>.fc2", "<layer>.final_layer_norm".
  static FeedForwardNames marian(const std::string& layer) {
    return {layer + ".fc1", layer + ".fc2", layer + ".final_layer_norm"};
  }
};

template <class T, class Backend>
struct FeedForward {
  using Context = typename Backend::Context;
  Linear<T, Backend> intermediate, output;
  LayerNorm<T, Backend> layer_norm;
  Activation activation = Activation::Gelu;

  void init(const FeedForwardNames& names, int64_t hidden, int64_t inner, Activation act, double ln_eps) {
    activation = act;
    intermediate.init(names.intermediate, hidden, inner);
    output.init(names.output, inner, hidden);
    layer_norm.init(names.layer_norm, hidden, ln_eps);
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
    output.forward(ctx, N, hidden_input(ctx, N * I, a), a.sum.data());
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
    output.backward(ctx, N, a.activation_dropout.active ? a.act_dropped.data() : a.act.data(), dtmp, dinner, false,
                    weight_grads);
    dropout_backward<Backend>(ctx, a.activation_dropout, N * I, dinner, dinner);
    activation_backward<Backend>(ctx, activation, N * I, a.pre.data(), a.act.data(), dinner, dinner);
    intermediate.backward(ctx, N, x, dinner, dy, true, weight_grads);
  }

 private:
  // The second projection's input: act, or its dropped copy (act itself stays for tanh's backward).
  const T* hidden_input(const Context& ctx, int64_t n, FeedForwardActivations<T, Backend>& a) const {
    if (!a.activation_dropout.active) return a.act.data();
    a.act_dropped.resize(a.act.shape());
    dropout_forward<Backend>(ctx, a.activation_dropout, n, a.act.data(), a.act_dropped.data());
    return a.act_dropped.data();
  }
};

}  // namespace addrop::nn
