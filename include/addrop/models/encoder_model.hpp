#pragma once
// EncoderModel: BERT, RoBERTa or ELECTRA (discriminator) body with a sequence
// classification, regression or token classification head — Hugging Face's
// *ForSequenceClassification / *ForTokenClassification, parameter names included.
//
// It implements the attention-site contract AD-DROP needs (models/attention_site.hpp):
// per-layer additive masks and scales on the attention probabilities, A_l readable
// after a forward, d/dA_l after a backward, and a backward that can stop at a layer
// and skip weight gradients. Activations live in a workspace that only grows, so a
// step allocates nothing once the largest batch shape has been seen.
#include <optional>
#include <string>
#include <vector>

#include "../backend/cpu.hpp"
#include "../nn/attention.hpp"
#include "../nn/feed_forward.hpp"
#include "../nn/losses.hpp"
#include "batch.hpp"
#include "config.hpp"
#include "embeddings.hpp"
#include "heads.hpp"
#include "passes.hpp"

namespace addrop::models {

template <class T, class Backend = backend::Cpu>
class EncoderModel {
 public:
  using value_type = T;
  using backend_type = Backend;
  using Context = typename Backend::Context;
  using TensorT = Tensor<T, Backend>;

  explicit EncoderModel(const ModelConfig& config, Context ctx = {}) : config_(config), ctx_(ctx) {
    config_.validate();
    embeddings_.init(config_);
    const nn::Activation act = nn::activation_from_name(config_.hidden_act);
    layers_.resize(static_cast<std::size_t>(config_.num_hidden_layers));
    for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
      const std::string p = config_.prefix() + ".encoder.layer." + std::to_string(l);
      layers_[l].attention.init(p + ".attention", config_.hidden_size, config_.num_attention_heads,
                                config_.layer_norm_eps);
      layers_[l].ffn.init(p, config_.hidden_size, config_.intermediate_size, act, config_.layer_norm_eps);
    }
    head_.init(config_);
    embeddings_.collect(params_);
    for (auto& layer : layers_) {
      layer.attention.collect(params_);
      layer.ffn.collect(params_);
    }
    head_.collect_body(params_);
    head_.collect_head(params_);
    acts_.layers.resize(layers_.size());
    sites_.assign(layers_.size(), Site{});
    for (auto* p : params_) {
      Backend::fill(ctx_, p->value.numel(), T(0), p->value.data());
      Backend::fill(ctx_, p->grad.numel(), T(0), p->grad.data());
    }
  }

  const ModelConfig& config() const { return config_; }
  const Context& context() const { return ctx_; }
  int num_layers() const { return static_cast<int>(layers_.size()); }

  /// Every parameter, in Hugging Face's state-dict order, with Hugging Face names.
  const nn::ParameterList<T, Backend>& parameters() const { return params_; }
  nn::Parameter<T, Backend>* find_parameter(const std::string& name) const {
    for (auto* p : params_)
      if (p->name == name) return p;
    return nullptr;
  }
  void zero_grad() {
    for (auto* p : params_) Backend::fill(ctx_, p->grad.numel(), T(0), p->grad.data());
  }

  // ------------------------------------------------------------ attention sites
  /// Additive mask added to layer l's attention logits ([B,H,L,L], e.g. -10000 at dropped
  /// positions) in later forwards; nullptr removes it. The tensor must outlive those passes.
  void set_attention_mask(int layer, const TensorT* additive) { sites_.at(layer).mask = additive; }
  /// Scales layer l's attention probabilities before the product with V (IG's alpha).
  void set_attention_scale(int layer, T alpha) { sites_.at(layer).alpha = alpha; }
  void reset_attention_sites() { sites_.assign(layers_.size(), Site{}); }
  /// A_l of the last forward: [B,H,L,L], after attention dropout, before the scale.
  const TensorT& attention_probs(int layer) const { return acts_.layers.at(layer).attention.attention(); }
  /// d(objective)/d(A_l) of the last backward that reached layer l.
  const TensorT& attention_probs_grad(int layer) const {
    const auto& a = acts_.layers.at(layer).attention;
    if (!a.has_probs_grad) throw std::logic_error("attention_probs_grad(" + std::to_string(layer) + "): no backward reached this layer");
    return a.probs_grad;
  }
  /// Output of encoder layer l [B*L, D] and of the embeddings [B*L, D].
  const TensorT& hidden_states(int layer) const { return acts_.layers.at(layer).ffn.out; }
  const TensorT& embedding_output() const { return embeddings_.has_project ? acts_.embeddings.projected : acts_.embeddings.normed; }

  // ------------------------------------------------------------ passes
  /// Runs the model on a batch; returns the logits ([B, C], or [B*L, C] for tokens).
  const TensorT& forward(const Batch& batch, const PassOptions& pass = {}) {
    batch.validate(config_, false);
    prepare(batch);
    const int64_t B = batch.size, L = batch.length, N = B * L;
    nn::DropoutPlan plan{pass.train, pass.seed, pass.step, config_.hidden_dropout_prob,
                         config_.attention_probs_dropout_prob, config_.head_dropout()};
    const uint64_t top = layers_.size();
    acts_.embeddings.dropout = plan.site(plan.hidden_p, top, nn::DropoutKind::Embedding);
    const T* x = embeddings_.forward(ctx_, N, acts_.ids.data(), acts_.positions.data(), acts_.types.data(),
                                     acts_.embeddings);
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      auto& a = acts_.layers[l];
      a.attention.attention_dropout = plan.site(plan.attention_p, l, nn::DropoutKind::Attention);
      a.attention.output_dropout = plan.site(plan.hidden_p, l, nn::DropoutKind::AttentionOutput);
      a.ffn.output_dropout = plan.site(plan.hidden_p, l, nn::DropoutKind::FeedForwardOutput);
      a.attention.alpha = sites_[l].alpha;
      a.attention.has_probs_grad = false;
      const TensorT* mask = sites_[l].mask;
      if (mask && !(mask->shape() == Shape{B, config_.num_attention_heads, L, L}))
        throw std::invalid_argument("attention mask of layer " + std::to_string(l) + " has shape " +
                                    mask->shape().str() + ", expected " +
                                    Shape{B, config_.num_attention_heads, L, L}.str());
      layers_[l].attention.forward(ctx_, B, L, x, acts_.key_bias.data(), mask ? mask->data() : nullptr, a.attention);
      layers_[l].ffn.forward(ctx_, N, a.attention.out.data(), a.ffn);
      x = a.ffn.out.data();
    }
    acts_.head.dropout0 = plan.site(plan.head_p, top + 1, nn::DropoutKind::Head);
    acts_.head.dropout1 = plan.site(plan.head_p, top + 1, nn::DropoutKind::Head2);
    head_.forward(ctx_, B, L, x, acts_.head);
    return acts_.head.logits;
  }

  /// The gold loss of the last forward (CE, MSE for regression, token CE ignoring -100);
  /// also sets logits_grad() to d(loss)/d(logits).
  double loss(const Batch& batch) {
    batch.validate(config_, true);
    const int64_t C = config_.num_labels;
    if (config_.task == Task::Regression) {
      acts_.targets.resize({batch.size});
      std::vector<T>& host = acts_.host_targets;
      host.assign(batch.targets.begin(), batch.targets.end());
      Backend::to_device(ctx_, batch.size, host.data(), acts_.targets.data());
      return nn::mean_squared_error<Backend>(ctx_, batch.size, acts_.head.logits.data(), acts_.targets.data(),
                                            acts_.head.dlogits.data());
    }
    const int64_t rows = static_cast<int64_t>(batch.labels.size());
    acts_.labels.resize({rows});
    Backend::to_device(ctx_, rows, batch.labels.data(), acts_.labels.data());
    return nn::cross_entropy<Backend>(ctx_, rows, C, acts_.head.logits.data(), acts_.labels.data(),
                                      acts_.head.dlogits.data());
  }

  /// d(objective)/d(logits): set by loss(), or written by the caller (AD-DROP's pseudo-label objective).
  TensorT& logits_grad() { return acts_.head.dlogits; }
  const TensorT& logits() const { return acts_.head.logits; }

  /// Backpropagates logits_grad() through the last forward. Parameter gradients accumulate.
  void backward(const BackwardOptions& opt = {}) {
    const int64_t B = acts_.B, L = acts_.L, N = B * L;
    if (opt.stop_at_layer >= num_layers()) throw std::invalid_argument("stop_at_layer beyond the last layer");
    T* dy = acts_.grad_a.data();
    T* dx = acts_.grad_b.data();
    head_.backward(ctx_, B, L, acts_.layers.back().ffn.out.data(), dy, acts_.head, opt.weight_grads);
    for (int l = num_layers() - 1; l >= 0; --l) {
      auto& a = acts_.layers[l];
      const T* layer_in = l == 0 ? embedding_output().data() : acts_.layers[l - 1].ffn.out.data();
      layers_[l].ffn.backward(ctx_, N, a.attention.out.data(), dy, acts_.dinner.data(), acts_.scratch.dtmp.data(),
                              a.ffn, opt.weight_grads);
      const bool stop = l == opt.stop_at_layer;
      layers_[l].attention.backward(ctx_, B, L, layer_in, dy, dx, a.attention, acts_.scratch, stop, opt.weight_grads);
      if (stop) return;
      std::swap(dy, dx);
    }
    if (!opt.weight_grads) return;  // nothing below the encoder but embedding weights
    embeddings_.backward(ctx_, N, acts_.ids.data(), acts_.positions.data(), acts_.types.data(), dy,
                         acts_.demb.data(), acts_.embeddings);
    last_input_grad_ = dy;
  }

  /// d/d(encoder input) [B*L, D] of the last full backward (gradient checks read it).
  const T* input_grad() const { return last_input_grad_; }

 private:
  struct Layer {
    nn::SelfAttention<T, Backend> attention;
    nn::FeedForward<T, Backend> ffn;
  };
  struct LayerActivations {
    nn::AttentionActivations<T, Backend> attention;
    nn::FeedForwardActivations<T, Backend> ffn;
  };
  struct Site {
    const TensorT* mask = nullptr;
    T alpha = T(1);
  };
  struct Workspace {
    int64_t B = 0, L = 0;
    Tensor<int32_t, Backend> ids, positions, types, labels;
    std::vector<int32_t> host_positions, host_types;
    std::vector<T> host_key_bias, host_targets;
    TensorT key_bias, targets;
    EmbeddingsActivations<T, Backend> embeddings;
    std::vector<LayerActivations> layers;
    HeadActivations<T, Backend> head;
    nn::AttentionScratch<T, Backend> scratch;
    TensorT dinner, grad_a, grad_b, demb;
  };

  // Sizes the workspace for this batch shape (grow-only) and moves the ids to the backend.
  void prepare(const Batch& batch) {
    const int64_t B = batch.size, L = batch.length, N = B * L;
    const int64_t D = config_.hidden_size, E = config_.embedding_dim(), H = config_.num_attention_heads;
    auto& w = acts_;
    w.B = B;
    w.L = L;
    for (auto* t : {&w.ids, &w.positions, &w.types}) t->resize({N});
    w.key_bias.resize({B, L});
    w.embeddings.resize(N, E, D, embeddings_.has_project);
    for (auto& a : w.layers) {
      a.attention.resize(B, L, D, H);
      a.ffn.resize(N, D, config_.intermediate_size);
    }
    w.head.resize(head_.kind, B, L, D, config_.num_labels);
    w.scratch.resize(B, L, D, H);
    w.dinner.resize({N, config_.intermediate_size});
    w.grad_a.resize({N, D});
    w.grad_b.resize({N, D});
    w.demb.resize({N, E});

    w.host_positions.resize(static_cast<std::size_t>(N));
    w.host_types.assign(static_cast<std::size_t>(N), 0);
    w.host_key_bias.resize(static_cast<std::size_t>(N));
    const int32_t pad = static_cast<int32_t>(config_.pad_token_id);
    for (int64_t b = 0; b < B; ++b) {
      int32_t running = 0;  // RoBERTa: positions count non-pad tokens, starting at padding_idx + 1
      for (int64_t j = 0; j < L; ++j) {
        const int64_t i = b * L + j;
        if (config_.family == Family::Roberta) {
          const bool real = batch.input_ids[i] != pad;
          running += real;
          w.host_positions[i] = real ? running + pad : pad;
        } else {
          w.host_positions[i] = static_cast<int32_t>(j);
        }
        if (!batch.token_type_ids.empty()) w.host_types[i] = batch.token_type_ids[i];
        w.host_key_bias[i] = batch.attention_mask[i] ? T(0) : T(-10000);
      }
    }
    Backend::to_device(ctx_, N, batch.input_ids.data(), w.ids.data());
    Backend::to_device(ctx_, N, w.host_positions.data(), w.positions.data());
    Backend::to_device(ctx_, N, w.host_types.data(), w.types.data());
    Backend::to_device(ctx_, N, w.host_key_bias.data(), w.key_bias.data());
  }

  ModelConfig config_;
  Context ctx_;
  Embeddings<T, Backend> embeddings_;
  std::vector<Layer> layers_;
  Head<T, Backend> head_;
  nn::ParameterList<T, Backend> params_;
  std::vector<Site> sites_;
  Workspace acts_;
  const T* last_input_grad_ = nullptr;
};

}  // namespace addrop::models
