#pragma once
// The task heads of Hugging Face's *ForSequenceClassification / *ForTokenClassification:
//   BERT sequence:      logits = classifier(dropout(tanh(pooler.dense(h[:,0]))))
//   RoBERTa / ELECTRA:  logits = out_proj(dropout(act(dense(dropout(h[:,0]))))), act = tanh / GELU
//   token (all three):  logits = classifier(dropout(h))
#include "../nn/activations.hpp"
#include "../nn/dropout.hpp"
#include "../nn/linear.hpp"
#include "config.hpp"

namespace addrop::models {

enum class HeadKind { Pooler, ClassificationHead, Token };

template <class T, class Backend>
struct HeadActivations {
  Tensor<T, Backend> x0, pre, act, x1;  // [B, D] (x1 is [B*L, D] for the token head)
  Tensor<T, Backend> logits, dlogits;   // [B, C] or [B*L, C]
  Tensor<T, Backend> d0, d1;            // backward scratch, shapes of x0 / x1
  nn::DropoutSite dropout0, dropout1;
  void resize(HeadKind kind, int64_t B, int64_t L, int64_t D, int64_t C) {
    const int64_t rows = kind == HeadKind::Token ? B * L : B;
    for (auto* t : {&x0, &pre, &act, &d0}) t->resize({B, D});
    x1.resize({rows, D});
    d1.resize({rows, D});
    logits.resize({rows, C});
    dlogits.resize({rows, C});
  }
};

template <class T, class Backend>
struct Head {
  using Context = typename Backend::Context;
  HeadKind kind = HeadKind::Pooler;
  nn::Linear<T, Backend> dense;  // bert.pooler.dense or classifier.dense
  nn::Linear<T, Backend> out;    // classifier or classifier.out_proj
  nn::Activation activation = nn::Activation::Tanh;

  void init(const ModelConfig& c) {
    const int64_t D = c.hidden_size, C = c.num_labels;
    if (c.task == Task::TokenClassification) {
      kind = HeadKind::Token;
      out.init("classifier", D, C);
    } else if (c.family == Family::Bert) {
      kind = HeadKind::Pooler;
      dense.init("bert.pooler.dense", D, D);
      out.init("classifier", D, C);
    } else {
      kind = HeadKind::ClassificationHead;
      activation = c.family == Family::Electra ? nn::activation_from_name(c.hidden_act) : nn::Activation::Tanh;
      dense.init("classifier.dense", D, D);
      out.init("classifier.out_proj", D, C);
    }
  }
  /// Hugging Face order: the pooler belongs to the body, the classifier comes last.
  void collect_body(nn::ParameterList<T, Backend>& list) {
    if (kind == HeadKind::Pooler) dense.collect(list);
  }
  void collect_head(nn::ParameterList<T, Backend>& list) {
    if (kind == HeadKind::ClassificationHead) dense.collect(list);
    out.collect(list);
  }

  /// h [B*L, D] -> a.logits
  void forward(const Context& ctx, int64_t B, int64_t L, const T* h, HeadActivations<T, Backend>& a) const {
    const int64_t D = dense.in_features ? dense.in_features : out.in_features;
    switch (kind) {
      case HeadKind::Token:
        nn::dropout_forward<Backend>(ctx, a.dropout1, B * L * D, h, a.x1.data());
        out.forward(ctx, B * L, a.x1.data(), a.logits.data());
        return;
      case HeadKind::Pooler:
        dense.forward(ctx, B, h, L * D, a.pre.data(), D);  // reads h[:, 0] with row stride L*D
        Backend::tanh_forward(ctx, B * D, a.pre.data(), a.act.data());
        break;
      case HeadKind::ClassificationHead:
        for (int64_t b = 0; b < B; ++b) Backend::copy(ctx, D, h + b * L * D, a.x0.data() + b * D);
        nn::dropout_forward<Backend>(ctx, a.dropout0, B * D, a.x0.data(), a.x0.data());
        dense.forward(ctx, B, a.x0.data(), a.pre.data());
        nn::activation_forward<Backend>(ctx, activation, B * D, a.pre.data(), a.act.data());
        break;
    }
    nn::dropout_forward<Backend>(ctx, a.dropout1, B * D, a.act.data(), a.x1.data());
    out.forward(ctx, B, a.x1.data(), a.logits.data());
  }

  /// a.dlogits -> dh [B*L, D] (written; rows other than [:, 0] are zero for sequence heads).
  void backward(const Context& ctx, int64_t B, int64_t L, const T* h, T* dh, HeadActivations<T, Backend>& a,
                bool weight_grads) {
    const int64_t D = dense.in_features ? dense.in_features : out.in_features;
    if (kind == HeadKind::Token) {
      out.backward(ctx, B * L, a.x1.data(), a.dlogits.data(), dh, false, weight_grads);
      nn::dropout_backward<Backend>(ctx, a.dropout1, B * L * D, dh, dh);
      return;
    }
    out.backward(ctx, B, a.x1.data(), a.dlogits.data(), a.d1.data(), false, weight_grads);
    nn::dropout_backward<Backend>(ctx, a.dropout1, B * D, a.d1.data(), a.d1.data());
    nn::activation_backward<Backend>(ctx, activation, B * D, a.pre.data(), a.act.data(), a.d1.data(), a.d1.data());
    Backend::fill(ctx, B * L * D, T(0), dh);
    if (kind == HeadKind::Pooler) {
      dense.backward(ctx, B, h, L * D, a.d1.data(), D, dh, L * D, false, weight_grads);
      return;
    }
    dense.backward(ctx, B, a.x0.data(), a.d1.data(), a.d0.data(), false, weight_grads);
    nn::dropout_backward<Backend>(ctx, a.dropout0, B * D, a.d0.data(), a.d0.data());
    for (int64_t b = 0; b < B; ++b) Backend::copy(ctx, D, a.d0.data() + b * D, dh + b * L * D);
  }
};

}  // namespace addrop::models
