#pragma once
// EncoderModel: BERT, RoBERTa or ELECTRA (discriminator) body with a sequence
// classification, regression or token classification head — Hugging Face's
// *ForSequenceClassification / *ForTokenClassification, parameter names included.
//
// It satisfies every model contract of AD-DROP (models/concepts.hpp): one attention site
// per encoder layer, per-layer additive masks and scales on the attention probabilities,
// A_l readable after a forward, d/dA_l after a backward, a backward that can stop at a
// layer and skip weight gradients, and the entry points integrated gradients needs. Activations live in a workspace that only grows, so a
// step allocates nothing once the largest batch shape has been seen.
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "../backend/cpu.hpp"
#include "../nn/attention.hpp"
#include "../nn/feed_forward.hpp"
#include "../nn/losses.hpp"
#include "batch.hpp"
#include "concepts.hpp"
#include "config.hpp"
#include "embeddings.hpp"
#include "heads.hpp"
#include "passes.hpp"
#include "site_settings.hpp"

namespace addrop::models {

template <class T, class Backend = backend::Cpu>
class EncoderModel {
 public:
  using value_type = T;
  using backend_type = Backend;
  using Context = typename Backend::Context;
  using TensorT = Tensor<T, Backend>;

  explicit EncoderModel(const ModelConfig& config, Context ctx = {}) : config_(config), ctx_(ctx) {
    check_precision_for<T>(ctx_, "EncoderModel");
    config_.validate();
    embeddings_.init(config_);
    const nn::Activation act = nn::activation_from_name(config_.hidden_act);
    layers_.resize(static_cast<std::size_t>(config_.num_hidden_layers));
    for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
      const std::string p = config_.prefix() + ".encoder.layer." + std::to_string(l);
      layers_[l].attention.init(nn::AttentionNames::bert(p + ".attention"), config_.hidden_size, config_.num_attention_heads,
                                config_.layer_norm_eps);
      layers_[l].ffn.init(nn::FeedForwardNames::bert(p), config_.hidden_size, config_.intermediate_size, act, config_.layer_norm_eps);
    }
    head_.init(config_);
    embeddings_.collect(params_);
    for (auto& layer : layers_) {
      layer.attention.collect(params_);
      layer.ffn.collect(params_);
    }
    head_.collect_body(params_);
    head_.collect_head(params_);
    workspaces_.resize(2);
    for (auto& w : workspaces_) w.layers.resize(layers_.size());
    sites_.assign(layers_.size(), Site{});
    for (auto* p : params_) {
      Backend::fill(ctx_, p->value.numel(), T(0), p->value.data());
      Backend::fill(ctx_, p->grad.numel(), T(0), p->grad.data());
    }
  }

  const ModelConfig& config() const { return config_; }
  const Context& context() const { return ctx_; }
  /// Replaces the backend context, e.g. to run AD-DROP's attribution passes in another
  /// precision (AdDropOptions::attribution_precision); it must be on the same device.
  void set_context(const Context& ctx) {
    check_precision_for<T>(ctx, "EncoderModel");
    ctx_ = ctx;
  }
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
  /// One site per encoder layer: its self-attention, [B, H, L, L] over the batch's tokens.
  int num_attention_sites() const { return num_layers(); }
  AttentionSite attention_site(int layer, const Batch& batch) const {
    if (layer < 0 || layer >= num_layers())
      throw std::invalid_argument("attention site " + std::to_string(layer) + ": the model has " +
                                  std::to_string(num_layers()) + " layers");
    return {.batch = batch.size, .heads = config_.num_attention_heads, .queries = batch.length,
            .keys = batch.length, .key_mask = batch.attention_mask, .first_example = batch.shard.first_example};
  }
  /// The attribution target F of this model's head on `batch`.
  AttributionTarget attribution_target(const Batch& batch) const { return models::attribution_target(config_, batch); }
  /// Integrated gradients' stacked copies of a batch.
  void stack_batch(const Batch& batch, int64_t copies, Batch& out) const { models::stack_batch(batch, copies, out); }
  /// Activation bytes of one forward + backward of layers first_layer..top for `batch`
  /// (integrated gradients sizes its stacked passes with it).
  double pass_bytes(const Batch& batch, int first_layer) const {
    const double D = static_cast<double>(config_.hidden_size), I = static_cast<double>(config_.intermediate_size),
                 H = static_cast<double>(config_.num_attention_heads), L = static_cast<double>(batch.length);
    // per example per layer: q k v context sum out (6 LD) + probs, grad (2 H L^2) + ffn (2 LI + 2 LD)
    const double per_layer = 8 * L * D + 2 * H * L * L + 2 * L * I;
    const double layers = static_cast<double>(num_layers() - first_layer);
    const double per_example = per_layer * layers + 3 * L * D;  // + backward scratch
    return per_example * sizeof(T) * static_cast<double>(batch.size);
  }
  /// Additive mask added to layer l's attention logits ([B,H,L,L], e.g. -10000 at dropped
  /// positions) in later forwards; nullptr removes it. The tensor must outlive those passes.
  void set_attention_mask(int layer, const TensorT* additive) { sites_.at(layer).mask = additive; }
  /// Scales layer l's attention probabilities before the product with V (IG's alpha).
  void set_attention_scale(int layer, T alpha) { sites_.at(layer).alpha = alpha; }
  /// Per-example scales of layer l ([B] host values, multiplied with the layer's scalar
  /// scale): lets the m scaled passes of integrated gradients run as one batch. The
  /// span must outlive the passes; an empty span removes them.
  void set_attention_example_scales(int layer, std::span<const T> alphas) { sites_.at(layer).example_alpha = alphas; }
  void reset_attention_sites() { sites_.assign(layers_.size(), Site{}); }

  /// Activations live in workspaces; the model has two. Passes run on the active one, so
  /// an attribution method can run extra passes (e.g. batched IG steps) on workspace 1
  /// while workspace 0 keeps the first forward. Each grows to the largest shape it saw.
  void use_workspace(int index) { active_ = static_cast<std::size_t>(index); }
  int active_workspace() const { return static_cast<int>(active_); }
  /// A_l of the last forward: [B,H,L,L], after attention dropout, before the scale.
  const TensorT& attention_probs(int layer) const { return acts().layers.at(layer).attention.attention(); }
  /// d(objective)/d(A_l) of the last backward that reached layer l.
  const TensorT& attention_probs_grad(int layer) const {
    const auto& a = acts().layers.at(layer).attention;
    if (!a.has_probs_grad) throw std::logic_error("attention_probs_grad(" + std::to_string(layer) + "): no backward reached this layer");
    return a.probs_grad;
  }
  /// Output of encoder layer l [B*L, D] and of the embeddings [B*L, D].
  const TensorT& hidden_states(int layer) const { return acts().layers.at(layer).ffn.out; }
  /// The input of encoder layer l [B*L, D] of the last forward (the embedding output for l = 0).
  const TensorT& layer_input(int layer) const { return layer == 0 ? embedding_output() : hidden_states(layer - 1); }
  const TensorT& embedding_output() const { return embeddings_.has_project ? acts().embeddings.projected : acts().embeddings.normed; }

  // ------------------------------------------------------------ passes
  /// Runs the model on a batch; returns the logits ([B, C], or [B*L, C] for tokens).
  const TensorT& forward(const Batch& batch, const PassOptions& pass = {}) {
    batch.validate(config_, false);
    prepare(batch);
    const nn::DropoutPlan plan = dropout_plan(pass, batch);
    acts().embeddings.dropout = plan.site(plan.hidden_p, layers_.size(), nn::DropoutKind::Embedding);
    const T* x = embeddings_.forward(ctx_, batch.tokens(), acts().ids.data(), acts().positions.data(),
                                     acts().types.data(), acts().embeddings);
    acts().first_layer = 0;
    return run_layers(0, x, plan);
  }

  /// Runs the embeddings and the layers below `layers` only (no head): afterwards
  /// layer_input(l) is valid for l <= layers. Integrated gradients uses it to compute the
  /// part below the target layer once.
  void forward_prefix(const Batch& batch, int layers, const PassOptions& pass = {}) {
    if (layers < 0 || layers >= num_layers()) throw std::invalid_argument("forward_prefix: " + std::to_string(layers) + " layers");
    batch.validate(config_, false);
    prepare(batch);
    const nn::DropoutPlan plan = dropout_plan(pass, batch);
    acts().embeddings.dropout = plan.site(plan.hidden_p, layers_.size(), nn::DropoutKind::Embedding);
    const T* x = embeddings_.forward(ctx_, batch.tokens(), acts().ids.data(), acts().positions.data(),
                                     acts().types.data(), acts().embeddings);
    acts().first_layer = 0;
    run_layers(0, x, plan, layers);
  }

  /// Runs layers first_layer..top and the head on `input` [B*L, D], the input of layer
  /// first_layer (e.g. another workspace's layer_input, repeated per IG step). The
  /// embeddings and lower layers do not run; a later backward must stop at or above first_layer.
  const TensorT& forward_from(int first_layer, const T* input, const Batch& batch, const PassOptions& pass = {}) {
    if (first_layer < 0 || first_layer >= num_layers()) throw std::invalid_argument("forward_from: no layer " + std::to_string(first_layer));
    batch.validate(config_, false);
    prepare(batch);
    acts().first_layer = first_layer;
    acts().first_input = input;
    return run_layers(first_layer, input, dropout_plan(pass, batch));
  }

  /// The gold loss of the last forward (CE, MSE for regression, token CE ignoring -100);
  /// also sets logits_grad() to d(loss)/d(logits).
  double loss(const Batch& batch) {
    batch.validate(config_, true);
    const int64_t C = config_.num_labels;
    if (config_.task == Task::Regression) {
      acts().targets.resize({batch.size});
      std::vector<T>& host = acts().host_targets;
      host.assign(batch.targets.begin(), batch.targets.end());
      Backend::to_device(ctx_, batch.size, host.data(), acts().targets.data());
      return nn::mean_squared_error<Backend>(ctx_, batch.size, acts().head.logits.data(), acts().targets.data(),
                                            acts().head.dlogits.data(), batch.shard.loss_count);
    }
    const int64_t rows = static_cast<int64_t>(batch.labels.size());
    acts().labels.resize({rows});
    Backend::to_device(ctx_, rows, batch.labels.data(), acts().labels.data());
    return nn::cross_entropy<Backend>(ctx_, rows, C, acts().head.logits.data(), acts().labels.data(),
                                      acts().head.dlogits.data(), T(0), batch.shard.loss_count);
  }

  /// d(objective)/d(logits): set by loss(), or written by the caller (AD-DROP's pseudo-label objective).
  TensorT& logits_grad() { return acts().head.dlogits; }
  const TensorT& logits() const { return acts().head.logits; }

  /// Backpropagates logits_grad() through the last forward. Parameter gradients accumulate.
  void backward(const BackwardOptions& opt = {}) {
    const int64_t B = acts().B, L = acts().L, N = B * L;
    if (opt.stop_at_layer >= num_layers()) throw std::invalid_argument("stop_at_layer beyond the last layer");
    if (acts().first_layer > 0 && opt.stop_at_layer < acts().first_layer)
      throw std::invalid_argument("backward after forward_from(" + std::to_string(acts().first_layer) +
                                  ") must stop at or above that layer");
    T* dy = acts().grad_a.data();
    T* dx = acts().grad_b.data();
    head_.backward(ctx_, B, L, acts().layers.back().ffn.out.data(), dy, acts().head, opt.weight_grads);
    for (int l = num_layers() - 1; l >= 0; --l) {
      auto& a = acts().layers[l];
      const T* layer_in = l == acts().first_layer && l > 0 ? acts().first_input
                          : l == 0 ? embedding_output().data() : acts().layers[l - 1].ffn.out.data();
      layers_[l].ffn.backward(ctx_, N, a.attention.out.data(), dy, acts().dinner.data(), acts().scratch.dtmp.data(),
                              a.ffn, opt.weight_grads);
      const bool stop = l == opt.stop_at_layer;
      layers_[l].attention.backward(ctx_, B, L, L, layer_in, nullptr, dy, dx, nullptr, a.attention, acts().scratch, stop,
                                    opt.weight_grads);
      if (stop) return;
      std::swap(dy, dx);
    }
    if (!opt.weight_grads) return;  // nothing below the encoder but embedding weights
    embeddings_.backward(ctx_, N, acts().ids.data(), acts().positions.data(), acts().types.data(), dy,
                         acts().demb.data(), acts().embeddings);
    last_input_grad_ = dy;
  }

  /// d/d(encoder input) [B*L, D] of the last full backward (gradient checks read it).
  const T* input_grad() const { return last_input_grad_; }

 private:
  struct Layer {
    nn::Attention<T, Backend> attention;
    nn::FeedForward<T, Backend> ffn;
  };
  struct LayerActivations {
    nn::AttentionActivations<T, Backend> attention;
    nn::FeedForwardActivations<T, Backend> ffn;
  };
  using Site = SiteSettings<T, Backend>;
  struct Workspace {
    int64_t B = 0, L = 0;
    int first_layer = 0;           // forward_from's first layer (0 after forward)
    const T* first_input = nullptr;
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

  nn::DropoutPlan dropout_plan(const PassOptions& pass, const Batch& batch) const {
    return nn::DropoutPlan{pass.train, pass.seed, pass.step, config_.hidden_dropout_prob,
                           config_.attention_probs_dropout_prob, config_.head_dropout(), batch.shard.first_example,
                           batch.size};
  }

  // Layers first..end-1 (end < 0: all, then the head).
  const TensorT& run_layers(int first, const T* x, const nn::DropoutPlan& plan, int end = -1) {
    const int64_t B = acts().B, L = acts().L, N = B * L;
    const uint64_t top = layers_.size();
    const std::size_t stop = end < 0 ? layers_.size() : static_cast<std::size_t>(end);
    for (std::size_t l = static_cast<std::size_t>(first); l < stop; ++l) {
      auto& a = acts().layers[l];
      a.attention.attention_dropout = plan.site(plan.attention_p, l, nn::DropoutKind::Attention);
      a.attention.output_dropout = plan.site(plan.hidden_p, l, nn::DropoutKind::AttentionOutput);
      a.ffn.output_dropout = plan.site(plan.hidden_p, l, nn::DropoutKind::FeedForwardOutput);
      const T* mask = sites_[l].apply("layer " + std::to_string(l), B, config_.num_attention_heads, L, L, a.attention);
      layers_[l].attention.forward(ctx_, B, L, L, x, nullptr, acts().key_bias.data(), mask, a.attention);
      layers_[l].ffn.forward(ctx_, N, a.attention.out.data(), a.ffn);
      x = a.ffn.out.data();
    }
    if (end >= 0) return acts().head.logits;
    acts().head.dropout0 = plan.site(plan.head_p, top + 1, nn::DropoutKind::Head);
    acts().head.dropout1 = plan.site(plan.head_p, top + 1, nn::DropoutKind::Head2);
    head_.forward(ctx_, B, L, x, acts().head);
    return acts().head.logits;
  }

  // Sizes the workspace for this batch shape (grow-only) and moves the ids to the backend.
  void prepare(const Batch& batch) {
    const int64_t B = batch.size, L = batch.length, N = B * L;
    const int64_t D = config_.hidden_size, E = config_.embedding_dim(), H = config_.num_attention_heads;
    auto& w = acts();
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
  std::vector<Workspace> workspaces_;
  std::size_t active_ = 0;
  Workspace& acts() { return workspaces_[active_]; }
  const Workspace& acts() const { return workspaces_[active_]; }
  const T* last_input_grad_ = nullptr;
};

}  // namespace addrop::models
