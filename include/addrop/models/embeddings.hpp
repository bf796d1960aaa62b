#pragma once
// BERT-family embeddings: word + position + token type, LayerNorm, dropout, and
// ELECTRA's embeddings_project when embedding_size != hidden_size.
#include "../nn/dropout.hpp"
#include "../nn/embedding.hpp"
#include "../nn/layer_norm.hpp"
#include "../nn/linear.hpp"
#include "config.hpp"

namespace addrop::models {

template <class T, class Backend>
struct EmbeddingsActivations {
  Tensor<T, Backend> sum, ln_mean, ln_rstd, normed, projected;  // [N,E], [N], [N], [N,E], [N,D]
  nn::DropoutSite dropout;
  void resize(int64_t N, int64_t E, int64_t D, bool project) {
    sum.resize({N, E});
    normed.resize({N, E});
    ln_mean.resize({N});
    ln_rstd.resize({N});
    if (project) projected.resize({N, D});
  }
};

template <class T, class Backend>
struct Embeddings {
  using Context = typename Backend::Context;
  nn::Embedding<T, Backend> word, position, token_type;
  nn::LayerNorm<T, Backend> layer_norm;
  nn::Linear<T, Backend> project;  // ELECTRA only
  bool has_project = false;

  void init(const ModelConfig& c) {
    const std::string p = c.prefix() + ".embeddings";
    const int64_t E = c.embedding_dim();
    word.init(p + ".word_embeddings", c.vocab_size, E, c.pad_token_id);
    // RoBERTa's position table has a padding row too (padding_idx = pad_token_id).
    position.init(p + ".position_embeddings", c.max_position_embeddings, E,
                  c.family == Family::Roberta ? c.pad_token_id : -1);
    token_type.init(p + ".token_type_embeddings", c.type_vocab_size, E);
    layer_norm.init(p + ".LayerNorm", E, c.layer_norm_eps);
    has_project = E != c.hidden_size;
    if (has_project) project.init(c.prefix() + ".embeddings_project", E, c.hidden_size);
  }
  void collect(nn::ParameterList<T, Backend>& list) {
    word.collect(list);
    position.collect(list);
    token_type.collect(list);
    layer_norm.collect(list);
    if (has_project) project.collect(list);
  }

  /// ids, positions, types [N]; returns the encoder input [N, D].
  const T* forward(const Context& ctx, int64_t N, const int32_t* ids, const int32_t* positions, const int32_t* types,
                   EmbeddingsActivations<T, Backend>& a) const {
    const int64_t E = word.dim;
    word.forward(ctx, N, ids, a.sum.data(), false);
    position.forward(ctx, N, positions, a.sum.data(), true);
    token_type.forward(ctx, N, types, a.sum.data(), true);
    layer_norm.forward(ctx, N, a.sum.data(), a.normed.data(), a.ln_mean.data(), a.ln_rstd.data());
    nn::dropout_forward<Backend>(ctx, a.dropout, N * E, a.normed.data(), a.normed.data());
    if (!has_project) return a.normed.data();
    project.forward(ctx, N, a.normed.data(), a.projected.data());
    return a.projected.data();
  }

  /// dout [N, D]: gradient of the encoder input (left intact). demb [N, E] is scratch.
  void backward(const Context& ctx, int64_t N, const int32_t* ids, const int32_t* positions, const int32_t* types,
                const T* dout, T* demb, EmbeddingsActivations<T, Backend>& a) {
    const int64_t E = word.dim;
    T* d = demb;
    if (has_project) project.backward(ctx, N, a.normed.data(), dout, demb, false, true);
    else Backend::copy(ctx, N * E, dout, demb);
    nn::dropout_backward<Backend>(ctx, a.dropout, N * E, d, d);
    layer_norm.backward(ctx, N, d, a.sum.data(), a.ln_mean.data(), a.ln_rstd.data(), d, false, true);
    word.backward(ctx, N, ids, d);
    position.backward(ctx, N, positions, d);
    token_type.backward(ctx, N, types, d);
  }
};

}  // namespace addrop::models
