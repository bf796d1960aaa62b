#pragma once
// MarianModel: Hugging Face's MarianMTModel (OPUS-MT), parameter names included.
//
//   encoder:  h = dropout(embed(src) * sqrt(d) + sinusoid(0..Ls-1)); per layer
//             h = LN(h + dropout(SelfAttn(h, source pads)));  h = LN(h + dropout(fc2(act(fc1 h))))
//   decoder:  g = dropout(embed(tgt) * sqrt(d) + sinusoid(0..Lt-1)); per layer
//             g = LN(g + CausalSelfAttn(g));  g = LN(g + CrossAttn(g, h, source pads));  g = LN(g + FFN(g))
//   logits = g E^T + final_logits_bias          (E: the decoder's table when tied, else lm_head)
// Post-LN everywhere, no embedding LayerNorm, sinusoids with the sines in the first half
// of the features and the cosines in the second, no padding offset. Padding keys get the
// lowest finite value of T as their additive bias (Hugging Face adds finfo.min), so they
// get probability exactly 0 even when AD-DROP masks every real key of a row.
//
// Attention sites (models/concepts.hpp): 0..Le-1 are the encoder's self-attention (what
// AD-DROP masks for translation), then decoder layer j has its self-attention at
// Le + 2j and its cross-attention at Le + 2j + 1. A backward meets the sites in
// decreasing order, so stopping at the lowest requested site yields all of them.
// Integrated gradients starts its partial passes at an encoder site.
//
// Generation uses encode() and a DecoderCache (cached self-attention keys/values, cross-
// attention keys/values computed once per source); models/generation.hpp drives it.
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "../backend/cpu.hpp"
#include "../nn/attention.hpp"
#include "../nn/embedding.hpp"
#include "../nn/feed_forward.hpp"
#include "../nn/losses.hpp"
#include "concepts.hpp"
#include "init.hpp"
#include "marian_config.hpp"
#include "passes.hpp"
#include "seq2seq_batch.hpp"
#include "site_settings.hpp"

namespace addrop::models {

/// Static sinusoidal positions as Marian defines them: row p, feature i < d/2 is
/// sin(p / 10000^(2i/d)), feature d/2 + i is cos of the same angle, computed in double and
/// rounded to float32 (Hugging Face builds the table as a FloatTensor, also for a float64 model).
template <class T>
std::vector<T> marian_sinusoids(int64_t positions, int64_t dim) {
  std::vector<T> table(static_cast<std::size_t>(positions * dim));
  const int64_t half = dim / 2;
  for (int64_t p = 0; p < positions; ++p)
    for (int64_t i = 0; i < half; ++i) {
      const double angle = static_cast<double>(p) / std::pow(10000.0, 2.0 * static_cast<double>(i) / static_cast<double>(dim));
      table[static_cast<std::size_t>(p * dim + i)] = static_cast<T>(static_cast<float>(std::sin(angle)));
      table[static_cast<std::size_t>(p * dim + half + i)] = static_cast<T>(static_cast<float>(std::cos(angle)));
    }
  return table;
}

template <class T, class Backend = backend::Cpu>
class MarianModel {
 public:
  using value_type = T;
  using backend_type = Backend;
  using Context = typename Backend::Context;
  using TensorT = Tensor<T, Backend>;
  using ParameterT = nn::Parameter<T, Backend>;

  explicit MarianModel(const MarianConfig& config, Context ctx = {}) : config_(config), ctx_(ctx) {
    check_precision_for<T>(ctx_, "MarianModel");
    config_.validate();
    const int64_t D = config_.d_model, V = config_.vocab_size, Vt = config_.target_vocab_size();
    const double eps = MarianConfig::layer_norm_eps;
    const nn::Activation act = nn::activation_from_name(config_.activation_function);
    embed_scale_ = config_.scale_embedding ? static_cast<T>(std::sqrt(static_cast<double>(D))) : T(1);
    if (config_.share_encoder_decoder_embeddings) {
      shared_.init("model.shared", V, D, config_.pad_token_id);
    } else {
      encoder_embed_.init("model.encoder.embed_tokens", V, D, config_.pad_token_id);
      // Hugging Face copies the encoder's vocab_size-row table for the decoder;
      // decoder_vocab_size only sizes lm_head and final_logits_bias.
      decoder_embed_.init("model.decoder.embed_tokens", V, D, config_.pad_token_id);
    }
    if (!config_.tie_word_embeddings) lm_head_.allocate("lm_head.weight", {Vt, D});
    encoder_.resize(static_cast<std::size_t>(config_.encoder_layers));
    for (int64_t l = 0; l < config_.encoder_layers; ++l) {
      const std::string p = "model.encoder.layers." + std::to_string(l);
      encoder_[l].self_attn.init(nn::AttentionNames::marian(p, "self_attn"), D, config_.encoder_attention_heads, eps);
      encoder_[l].ffn.init(nn::FeedForwardNames::marian(p), D, config_.encoder_ffn_dim, act, eps);
    }
    decoder_.resize(static_cast<std::size_t>(config_.decoder_layers));
    for (int64_t l = 0; l < config_.decoder_layers; ++l) {
      const std::string p = "model.decoder.layers." + std::to_string(l);
      decoder_[l].self_attn.init(nn::AttentionNames::marian(p, "self_attn"), D, config_.decoder_attention_heads, eps,
                                 /*is_causal=*/true);
      decoder_[l].cross_attn.init(nn::AttentionNames::marian(p, "encoder_attn"), D, config_.decoder_attention_heads,
                                  eps);
      decoder_[l].ffn.init(nn::FeedForwardNames::marian(p), D, config_.decoder_ffn_dim, act, eps);
    }
    // Parameters in Hugging Face's state-dict order (aliases of a shared table left out).
    if (config_.share_encoder_decoder_embeddings) shared_.collect(params_);
    else encoder_embed_.collect(params_);
    for (auto& layer : encoder_) {
      layer.self_attn.collect(params_);
      layer.ffn.collect(params_);
    }
    if (!config_.share_encoder_decoder_embeddings) decoder_embed_.collect(params_);
    for (auto& layer : decoder_) {
      layer.self_attn.collect(params_);
      layer.cross_attn.collect(params_);
      layer.ffn.collect(params_);
    }
    if (!config_.tie_word_embeddings) params_.push_back(&lm_head_);
    // Never trained: final_logits_bias (a buffer Hugging Face saves) and the sinusoid tables
    // (not saved; older converted OPUS-MT files hold them, and loading them is accepted).
    encoder_positions_.allocate("model.encoder.embed_positions.weight", {config_.max_position_embeddings, D});
    decoder_positions_.allocate("model.decoder.embed_positions.weight", {config_.max_position_embeddings, D});
    final_logits_bias_.allocate("final_logits_bias", {1, Vt});
    buffers_ = {&final_logits_bias_};
    const std::vector<T> sinusoids = marian_sinusoids<T>(config_.max_position_embeddings, D);
    for (auto* pos : {&encoder_positions_, &decoder_positions_})
      Backend::to_device(ctx_, pos->value.numel(), sinusoids.data(), pos->value.data());
    Backend::fill(ctx_, Vt, T(0), final_logits_bias_.value.data());
    for (auto* p : params_) {
      Backend::fill(ctx_, p->value.numel(), T(0), p->value.data());
      Backend::fill(ctx_, p->grad.numel(), T(0), p->grad.data());
    }
    workspaces_.resize(2);
    for (auto& w : workspaces_) {
      w.encoder.resize(encoder_.size());
      w.decoder.resize(decoder_.size());
    }
    sites_.assign(static_cast<std::size_t>(num_attention_sites()), Site{});
  }

  const MarianConfig& config() const { return config_; }
  const Context& context() const { return ctx_; }
  /// Replaces the backend context, e.g. to run AD-DROP's attribution passes in another
  /// precision (AdDropOptions::attribution_precision); it must be on the same device.
  void set_context(const Context& ctx) {
    check_precision_for<T>(ctx, "MarianModel");
    ctx_ = ctx;
  }
  int num_encoder_layers() const { return static_cast<int>(encoder_.size()); }
  int num_decoder_layers() const { return static_cast<int>(decoder_.size()); }

  /// Trainable parameters, Hugging Face names; a shared table appears once ("model.shared.weight").
  const nn::ParameterList<T, Backend>& parameters() const { return params_; }
  /// Tensors saved beside the parameters that do not train: final_logits_bias.
  const nn::ParameterList<T, Backend>& buffers() const { return buffers_; }
  /// A parameter or buffer by name, the sinusoid tables included; the aliases Hugging Face
  /// also writes for shared or tied tables (model.encoder.embed_tokens.weight,
  /// model.decoder.embed_tokens.weight, lm_head.weight) resolve to them.
  ParameterT* find_parameter(const std::string& name) const {
    for (auto* p : params_)
      if (p->name == name) return p;
    auto* self = const_cast<MarianModel*>(this);
    for (auto* p : {&self->final_logits_bias_, &self->encoder_positions_, &self->decoder_positions_})
      if (p->name == name) return p;
    if (config_.share_encoder_decoder_embeddings &&
        (name == "model.encoder.embed_tokens.weight" || name == "model.decoder.embed_tokens.weight"))
      return &self->shared_.weight;
    if (config_.tie_word_embeddings && name == "lm_head.weight") return &self->decoder_table();
    return nullptr;
  }
  void zero_grad() {
    for (auto* p : params_) Backend::fill(ctx_, p->grad.numel(), T(0), p->grad.data());
  }
  /// Hugging Face's initialisation of a fresh MarianMTModel: weights N(0, init_std), biases
  /// 0, layer norms 1 / 0, the pad row of each embedding table 0; final_logits_bias 0.
  void init_weights(uint64_t seed) {
    uint64_t stream = 0;
    for (auto* p : params_) {
      const bool table = p->name.find("embed_tokens") != std::string::npos || p->name == "model.shared.weight";
      init_parameter(*p, ctx_, seed, stream++, config_.init_std, table ? config_.pad_token_id : -1);
    }
    Backend::fill(ctx_, final_logits_bias_.value.numel(), T(0), final_logits_bias_.value.data());
  }

  /// Label smoothing of loss() (0: plain cross-entropy; 0.1 is the usual value).
  void set_label_smoothing(double epsilon) {
    if (!(epsilon >= 0 && epsilon < 1)) throw std::invalid_argument("label smoothing must lie in [0, 1), got " + std::to_string(epsilon));
    label_smoothing_ = static_cast<T>(epsilon);
  }
  double label_smoothing() const { return static_cast<double>(label_smoothing_); }

  // ------------------------------------------------------------ attention sites
  enum class SiteKind { EncoderSelf, DecoderSelf, DecoderCross };
  struct SiteRef {
    SiteKind kind;
    int layer;
  };
  int num_attention_sites() const { return num_encoder_layers() + 2 * num_decoder_layers(); }
  SiteRef site_ref(int site) const {
    if (site < 0 || site >= num_attention_sites())
      throw std::invalid_argument("attention site " + std::to_string(site) + ": the model has " +
                                  std::to_string(num_attention_sites()) + " (" + std::to_string(num_encoder_layers()) +
                                  " encoder self-attention, then decoder self- and cross-attention per layer)");
    if (site < num_encoder_layers()) return {SiteKind::EncoderSelf, site};
    const int j = site - num_encoder_layers();
    return {j % 2 == 0 ? SiteKind::DecoderSelf : SiteKind::DecoderCross, j / 2};
  }
  /// The site number of an encoder layer's self-attention, a decoder layer's self- or cross-attention.
  int site_of(SiteKind kind, int layer) const {
    if (kind == SiteKind::EncoderSelf) return layer;
    return num_encoder_layers() + 2 * layer + (kind == SiteKind::DecoderCross ? 1 : 0);
  }
  AttentionSite attention_site(int site, const Seq2SeqBatch& batch) const {
    const SiteRef ref = site_ref(site);
    switch (ref.kind) {
      case SiteKind::EncoderSelf:
        return {.batch = batch.size, .heads = config_.encoder_attention_heads, .queries = batch.source_length,
                .keys = batch.source_length, .key_mask = batch.attention_mask, .first_example = batch.shard.first_example};
      case SiteKind::DecoderSelf:  // keys are target positions: the start token and the target's tokens are real
        return {.batch = batch.size, .heads = config_.decoder_attention_heads, .queries = batch.target_length,
                .keys = batch.target_length, .key_mask = batch.target_mask, .first_example = batch.shard.first_example};
      case SiteKind::DecoderCross:
        return {.batch = batch.size, .heads = config_.decoder_attention_heads, .queries = batch.target_length,
                .keys = batch.source_length, .key_mask = batch.attention_mask, .first_example = batch.shard.first_example};
    }
    return {};
  }
  /// F reads the decoder's logits under teacher forcing: one row per target position, the
  /// rows of real (non-pad) target tokens counted.
  AttributionTarget attribution_target(const Seq2SeqBatch& batch) const {
    return {.kind = AttributionTarget::Kind::TokenClasses, .rows = batch.size * batch.target_length,
            .classes = config_.target_vocab_size(), .row_mask = batch.target_mask, .gold = {},
            .denominator = batch.shard.objective_count};
  }
  void stack_batch(const Seq2SeqBatch& batch, int64_t copies, Seq2SeqBatch& out) const {
    stack_seq2seq_batch(batch, copies, out);
  }
  /// Activation bytes of a forward + backward from encoder site `first` up (the decoder included).
  double pass_bytes(const Seq2SeqBatch& batch, int first) const {
    const double D = static_cast<double>(config_.d_model), Ls = static_cast<double>(batch.source_length),
                 Lt = static_cast<double>(batch.target_length), V = static_cast<double>(config_.target_vocab_size());
    const double He = static_cast<double>(config_.encoder_attention_heads),
                 Hd = static_cast<double>(config_.decoder_attention_heads);
    const double enc_layer = 8 * Ls * D + 2 * He * Ls * Ls + 2 * Ls * static_cast<double>(config_.encoder_ffn_dim);
    const double dec_layer = 16 * Lt * D + 2 * Hd * (Lt * Lt + Lt * Ls) + 2 * Lt * static_cast<double>(config_.decoder_ffn_dim);
    const double enc_layers = static_cast<double>(num_encoder_layers() - std::min(first, num_encoder_layers()));
    const double per_example = enc_layer * enc_layers + dec_layer * num_decoder_layers() + 2 * Lt * V + 4 * (Ls + Lt) * D;
    return per_example * sizeof(T) * static_cast<double>(batch.size);
  }
  /// Additive mask on a site's attention logits in later forwards ([B,H,Lq,Lk]); nullptr removes it.
  void set_attention_mask(int site, const TensorT* additive) { sites_.at(checked(site)).mask = additive; }
  void set_attention_scale(int site, T alpha) { sites_.at(checked(site)).alpha = alpha; }
  void set_attention_example_scales(int site, std::span<const T> alphas) { sites_.at(checked(site)).example_alpha = alphas; }
  void reset_attention_sites() { sites_.assign(static_cast<std::size_t>(num_attention_sites()), Site{}); }

  void use_workspace(int index) { active_ = static_cast<std::size_t>(index); }
  int active_workspace() const { return static_cast<int>(active_); }
  /// A of a site in the last forward: [B,H,Lq,Lk], after attention dropout, before the scale.
  const TensorT& attention_probs(int site) const { return site_acts(site).attention(); }
  const TensorT& attention_probs_grad(int site) const {
    const auto& a = site_acts(site);
    if (!a.has_probs_grad)
      throw std::logic_error("attention_probs_grad(" + std::to_string(site) + "): no backward reached this site");
    return a.probs_grad;
  }
  /// The input [B*Ls, D] of encoder layer `site` in the last forward (integrated gradients).
  const TensorT& layer_input(int site) const {
    if (site < 0 || site >= num_encoder_layers())
      throw std::invalid_argument("layer_input(" + std::to_string(site) + "): integrated gradients runs from encoder sites 0.." +
                                  std::to_string(num_encoder_layers() - 1) + " only");
    return site == 0 ? acts().encoder_embedded : acts().encoder[site - 1].ffn.out;
  }
  /// The encoder's output [B*Ls, D] and the decoder's last hidden states [B*Lt, D].
  const TensorT& encoder_output() const { return acts().encoder.back().ffn.out; }
  const TensorT& decoder_output() const { return acts().decoder.back().ffn.out; }
  /// Each layer's output, and the embeddings (scaled tokens + positions, after dropout) of the last forward.
  const TensorT& encoder_hidden_states(int layer) const { return acts().encoder.at(layer).ffn.out; }
  const TensorT& decoder_hidden_states(int layer) const { return acts().decoder.at(layer).ffn.out; }
  const TensorT& encoder_embedding_output() const { return acts().encoder_embedded; }
  const TensorT& decoder_embedding_output() const { return acts().decoder_embedded; }

  // ------------------------------------------------------------ passes
  /// Teacher-forced forward; returns the logits [B*Lt, Vt].
  const TensorT& forward(const Seq2SeqBatch& batch, const PassOptions& pass = {}) {
    prepare(batch, false);
    const nn::DropoutPlan plan = dropout_plan(pass, batch.shard.first_example, batch.size);
    embed(plan, true);
    acts().first_layer = 0;
    run_encoder(0, acts().encoder_embedded.data(), plan, num_encoder_layers());
    return run_decoder(plan);
  }
  /// The embeddings and encoder layers below `layers` only: afterwards layer_input(l) is valid for l <= layers.
  void forward_prefix(const Seq2SeqBatch& batch, int layers, const PassOptions& pass = {}) {
    if (layers < 0 || layers >= num_encoder_layers())
      throw std::invalid_argument("forward_prefix: " + std::to_string(layers) + " is not an encoder site");
    prepare(batch, false);
    const nn::DropoutPlan plan = dropout_plan(pass, batch.shard.first_example, batch.size);
    embed(plan, false);
    acts().first_layer = 0;
    run_encoder(0, acts().encoder_embedded.data(), plan, layers);
  }
  /// Encoder layers first..top and the whole decoder on `input` [B*Ls, D], the input of
  /// encoder layer `first` (the target side is embedded here).
  const TensorT& forward_from(int first, const T* input, const Seq2SeqBatch& batch, const PassOptions& pass = {}) {
    if (first < 0 || first >= num_encoder_layers())
      throw std::invalid_argument("forward_from: " + std::to_string(first) + " is not an encoder site");
    prepare(batch, false);
    const nn::DropoutPlan plan = dropout_plan(pass, batch.shard.first_example, batch.size);
    embed_target(plan);
    acts().first_layer = first;
    acts().first_input = input;
    run_encoder(first, input, plan, num_encoder_layers());
    return run_decoder(plan);
  }

  /// The gold loss of the last forward: cross-entropy (label-smoothed when set) over the
  /// labels that are not -100; also sets logits_grad().
  double loss(const Seq2SeqBatch& batch) {
    batch.validate(config_.vocab_size, config_.target_vocab_size(), true);
    auto& w = acts();
    const int64_t rows = w.B * w.Lt;
    if (batch.size != w.B || batch.target_length != w.Lt)
      throw std::invalid_argument("loss: the batch is not the one of the last forward");
    w.labels.resize({rows});
    Backend::to_device(ctx_, rows, batch.labels.data(), w.labels.data());
    return nn::cross_entropy<Backend>(ctx_, rows, config_.target_vocab_size(), w.logits.data(), w.labels.data(),
                                      w.dlogits.data(), label_smoothing_, batch.shard.loss_count);
  }
  TensorT& logits_grad() { return acts().dlogits; }
  const TensorT& logits() const { return acts().logits; }

  /// Backpropagates logits_grad() through the last forward; parameter gradients accumulate.
  /// stop_at_layer >= 0 ends once d/dA of that site is known.
  void backward(const BackwardOptions& opt = {}) {
    auto& w = acts();
    const int64_t B = w.B, Ls = w.Ls, Lt = w.Lt, D = config_.d_model, Vt = config_.target_vocab_size();
    const int64_t Ns = B * Ls, Nt = B * Lt;
    const int stop = opt.stop_at_layer;
    if (stop >= num_attention_sites()) throw std::invalid_argument("stop_at_layer beyond the last attention site");
    if (w.first_layer > 0 && stop >= 0 && stop < w.first_layer)
      throw std::invalid_argument("backward after forward_from(" + std::to_string(w.first_layer) +
                                  ") must stop at or above that site");
    if (stop < 0 && w.first_layer > 0 && opt.weight_grads)
      throw std::invalid_argument("backward after forward_from(" + std::to_string(w.first_layer) +
                                  ") must stop at a site: the layers below did not run");
    // logits = g E^T + bias  ->  dg = dlogits E ; dE += dlogits^T g
    ParameterT& out = output_table();
    T* dy = w.dec_grad_a.data();
    T* dx = w.dec_grad_b.data();
    const T* g = w.decoder.back().ffn.out.data();
    Backend::gemm(ctx_, false, false, Nt, D, Vt, T(1), w.dlogits.data(), Vt, out.value.data(), D, T(0), dy, D);
    if (opt.weight_grads)
      Backend::gemm(ctx_, true, false, Vt, D, Nt, T(1), w.dlogits.data(), Vt, g, D, T(1), out.grad.data(), D);
    Backend::fill(ctx_, Ns * D, T(0), w.dmemory.data());
    const T* memory = encoder_output().data();
    for (int j = num_decoder_layers() - 1; j >= 0; --j) {
      auto& layer = decoder_[j];
      auto& a = w.decoder[j];
      const T* layer_in = j == 0 ? w.decoder_embedded.data() : w.decoder[j - 1].ffn.out.data();
      layer.ffn.backward(ctx_, Nt, a.cross_attn.out.data(), dy, w.dinner.data(), w.ffn_tmp.data(), a.ffn, opt.weight_grads);
      const bool stop_cross = stop == site_of(SiteKind::DecoderCross, j);
      layer.cross_attn.backward(ctx_, B, Lt, Ls, a.self_attn.out.data(), memory, dy, dx, w.dmemory.data(), a.cross_attn,
                                w.scratch, stop_cross, opt.weight_grads);
      if (stop_cross) return;
      std::swap(dy, dx);
      const bool stop_self = stop == site_of(SiteKind::DecoderSelf, j);
      layer.self_attn.backward(ctx_, B, Lt, Lt, layer_in, nullptr, dy, dx, nullptr, a.self_attn, w.scratch, stop_self,
                               opt.weight_grads);
      if (stop_self) return;
      std::swap(dy, dx);
    }
    if (opt.weight_grads) embedding_backward(decoder_table(), w.target_ids, Nt, w.decoder_embed_dropout, dy);
    // The encoder output's gradient is what every cross-attention sent back.
    dy = w.dmemory.data();
    dx = w.enc_grad_a.data();
    for (int l = num_encoder_layers() - 1; l >= 0; --l) {
      auto& a = w.encoder[l];
      const T* layer_in = l == w.first_layer && l > 0 ? w.first_input
                          : l == 0 ? w.encoder_embedded.data() : w.encoder[l - 1].ffn.out.data();
      encoder_[l].ffn.backward(ctx_, Ns, a.self_attn.out.data(), dy, w.dinner.data(), w.ffn_tmp.data(), a.ffn,
                               opt.weight_grads);
      const bool stop_here = stop == l;
      encoder_[l].self_attn.backward(ctx_, B, Ls, Ls, layer_in, nullptr, dy, dx, nullptr, a.self_attn, w.scratch,
                                     stop_here, opt.weight_grads);
      if (stop_here) return;
      std::swap(dy, dx);  // dmemory is free once the top layer has read it: the two alternate
    }
    if (opt.weight_grads) embedding_backward(encoder_table(), w.source_ids, Ns, w.encoder_embed_dropout, dy);
  }

  // ------------------------------------------------------------ generation
  /// Keys and values of one generation run: the cross-attention's per source (computed
  /// once), the self-attention's per generated position (appended each step).
  struct DecoderCache {
    int64_t rows = 0, beams = 1, source_length = 0, capacity = 0, length = 0;  // rows = sources * beams
    TensorT key_bias;                         // [sources, Ls]
    // Per layer [sources*Ls, D], example-major: one copy per source, shared by its beams
    // (the cross-attention takes a source's beams as its queries).
    std::vector<TensorT> cross_k, cross_v;
    // Per layer [capacity*rows, D], position-major: one step's keys of every row are one
    // dense block (written by one product), and a reorder is one row gather per tensor.
    std::vector<TensorT> self_k, self_v;
    std::vector<TensorT> spare_k, spare_v;    // reorder targets
    Tensor<int32_t, Backend> tokens, positions, reorder_rows;
    std::vector<int32_t> host_positions, host_reorder_rows;
    TensorT x, logits;                        // [rows, D], [rows, Vt]
    std::vector<nn::AttentionActivations<T, Backend>> self_acts, cross_acts;
    std::vector<nn::FeedForwardActivations<T, Backend>> ffn_acts;
  };

  /// Encodes `sources` (eval mode) and prepares `cache` for `beams` hypotheses per source
  /// and up to `capacity` decoder positions: row r of the cache belongs to source r / beams.
  void start_decoding(const Seq2SeqBatch& sources, int64_t beams, int64_t capacity, DecoderCache& cache) {
    if (capacity > config_.max_position_embeddings)
      throw std::invalid_argument("generation: " + std::to_string(capacity) + " target positions exceed max_position_embeddings " +
                                  std::to_string(config_.max_position_embeddings));
    prepare(sources, true);
    const nn::DropoutPlan plan = dropout_plan({});
    embed(plan, false);
    acts().first_layer = 0;
    run_encoder(0, acts().encoder_embedded.data(), plan, num_encoder_layers());
    const int64_t B = sources.size, Ls = sources.source_length, D = config_.d_model, rows = B * beams;
    cache.rows = rows;
    cache.beams = beams;
    cache.source_length = Ls;
    cache.capacity = capacity;
    cache.length = 0;
    cache.key_bias.resize({B, Ls});
    Backend::copy(ctx_, B * Ls, acts().key_bias.data(), cache.key_bias.data());
    const T* enc = encoder_output().data();
    const std::size_t layers = decoder_.size();
    for (auto* v : {&cache.cross_k, &cache.cross_v, &cache.self_k, &cache.self_v, &cache.spare_k, &cache.spare_v})
      v->resize(layers);
    cache.self_acts.resize(layers);
    cache.cross_acts.resize(layers);
    cache.ffn_acts.resize(layers);
    for (std::size_t j = 0; j < layers; ++j) {
      cache.cross_k[j].resize({B * Ls, D});
      cache.cross_v[j].resize({B * Ls, D});
      decoder_[j].cross_attn.key.forward(ctx_, B * Ls, enc, cache.cross_k[j].data());
      decoder_[j].cross_attn.value.forward(ctx_, B * Ls, enc, cache.cross_v[j].data());
      for (auto* t : {&cache.self_k[j], &cache.self_v[j], &cache.spare_k[j], &cache.spare_v[j]}) t->resize({rows * capacity, D});
    }
    cache.x.resize({rows, D});
    cache.logits.resize({rows, config_.target_vocab_size()});
    cache.tokens.resize({rows});
    cache.positions.resize({rows});
  }

  /// One decoder step for every row: `tokens` [rows] are the inputs at position
  /// cache.length; returns the logits [rows, Vt] of the next token.
  const TensorT& decode_step(std::span<const int32_t> tokens, DecoderCache& cache) {
    const int64_t rows = cache.rows, D = config_.d_model, Ls = cache.source_length, t = cache.length,
                  sources = rows / cache.beams;
    if (static_cast<int64_t>(tokens.size()) != rows)
      throw std::invalid_argument("decode_step: " + std::to_string(tokens.size()) + " tokens for " + std::to_string(rows) + " rows");
    if (t >= cache.capacity) throw std::invalid_argument("decode_step: the cache holds " + std::to_string(cache.capacity) + " positions");
    cache.host_positions.assign(static_cast<std::size_t>(rows), static_cast<int32_t>(t));
    Backend::to_device(ctx_, rows, tokens.data(), cache.tokens.data());
    Backend::to_device(ctx_, rows, cache.host_positions.data(), cache.positions.data());
    Backend::embedding_forward(ctx_, rows, D, cache.tokens.data(), decoder_table().value.data(), cache.x.data(), false);
    if (embed_scale_ != T(1)) Backend::scale(ctx_, rows * D, embed_scale_, cache.x.data());
    Backend::embedding_forward(ctx_, rows, D, cache.positions.data(), decoder_positions_.value.data(), cache.x.data(), true);
    const T* x = cache.x.data();
    for (std::size_t j = 0; j < decoder_.size(); ++j) {
      auto& layer = decoder_[j];
      auto& sa = cache.self_acts[j];
      auto& ca = cache.cross_acts[j];
      sa.resize(rows, 1, t + 1, D, config_.decoder_attention_heads);
      ca.resize(sources, cache.beams, Ls, D, config_.decoder_attention_heads);
      cache.ffn_acts[j].resize(rows, D, config_.decoder_ffn_dim);
      // this position's keys and values: block t of the position-major cache
      layer.self_attn.key.forward(ctx_, rows, x, cache.self_k[j].data() + t * rows * D);
      layer.self_attn.value.forward(ctx_, rows, x, cache.self_v[j].data() + t * rows * D);
      layer.self_attn.forward_cached(ctx_, rows, 1, t + 1, x, cache.self_k[j].data(), cache.self_v[j].data(),
                                     {.example_stride = D, .position_stride = rows * D}, nullptr, sa);
      // a source's beams (consecutive rows) are its queries against its one copy of the keys
      layer.cross_attn.forward_cached(ctx_, sources, cache.beams, Ls, sa.out.data(), cache.cross_k[j].data(),
                                      cache.cross_v[j].data(), {.example_stride = Ls * D, .position_stride = D},
                                      cache.key_bias.data(), ca);
      layer.ffn.forward(ctx_, rows, ca.out.data(), cache.ffn_acts[j]);
      x = cache.ffn_acts[j].out.data();
    }
    project_logits(rows, x, cache.logits.data());
    ++cache.length;
    return cache.logits;
  }

  /// Beam search's reordering: row r of the self-attention cache becomes a copy of row
  /// origin[r]. Position-major, that is one row gather (an embedding lookup) per tensor:
  /// cache row t * rows + r comes from t * rows + origin[r], for the positions written so far.
  void reorder_cache(std::span<const int32_t> origin, DecoderCache& cache) {
    const int64_t D = config_.d_model, rows = cache.rows, n = cache.length * rows;
    if (static_cast<int64_t>(origin.size()) != rows)
      throw std::invalid_argument("reorder_cache: " + std::to_string(origin.size()) + " origins for " + std::to_string(rows) + " rows");
    if (n == 0) return;
    cache.host_reorder_rows.resize(static_cast<std::size_t>(n));
    for (int64_t t = 0; t < cache.length; ++t)
      for (int64_t r = 0; r < rows; ++r)
        cache.host_reorder_rows[static_cast<std::size_t>(t * rows + r)] =
            static_cast<int32_t>(t * rows + origin[static_cast<std::size_t>(r)]);
    cache.reorder_rows.resize({n});
    Backend::to_device(ctx_, n, cache.host_reorder_rows.data(), cache.reorder_rows.data());
    for (std::size_t j = 0; j < decoder_.size(); ++j) {
      Backend::embedding_forward(ctx_, n, D, cache.reorder_rows.data(), cache.self_k[j].data(), cache.spare_k[j].data(), false);
      Backend::embedding_forward(ctx_, n, D, cache.reorder_rows.data(), cache.self_v[j].data(), cache.spare_v[j].data(), false);
      std::swap(cache.self_k[j], cache.spare_k[j]);
      std::swap(cache.self_v[j], cache.spare_v[j]);
    }
  }

 private:
  struct EncoderLayer {
    nn::Attention<T, Backend> self_attn;
    nn::FeedForward<T, Backend> ffn;
  };
  struct DecoderLayer {
    nn::Attention<T, Backend> self_attn, cross_attn;
    nn::FeedForward<T, Backend> ffn;
  };
  struct EncoderActivations {
    nn::AttentionActivations<T, Backend> self_attn;
    nn::FeedForwardActivations<T, Backend> ffn;
  };
  struct DecoderActivations {
    nn::AttentionActivations<T, Backend> self_attn, cross_attn;
    nn::FeedForwardActivations<T, Backend> ffn;
  };
  using Site = SiteSettings<T, Backend>;
  struct Workspace {
    int64_t B = 0, Ls = 0, Lt = 0;
    int first_layer = 0;
    const T* first_input = nullptr;
    Tensor<int32_t, Backend> source_ids, target_ids, source_positions, target_positions, labels;
    std::vector<int32_t> host_positions;
    std::vector<T> host_key_bias;
    TensorT key_bias;                           // [B, Ls]
    TensorT encoder_embedded, decoder_embedded; // [B*Ls, D], [B*Lt, D] after dropout
    nn::DropoutSite encoder_embed_dropout, decoder_embed_dropout;
    std::vector<EncoderActivations> encoder;
    std::vector<DecoderActivations> decoder;
    TensorT logits, dlogits;                    // [B*Lt, Vt]
    nn::AttentionScratch<T, Backend> scratch;
    TensorT dinner, ffn_tmp, dmemory, enc_grad_a, dec_grad_a, dec_grad_b, demb;
  };

  std::size_t checked(int site) const {
    site_ref(site);  // throws, naming the sites there are
    return static_cast<std::size_t>(site);
  }
  const nn::AttentionActivations<T, Backend>& site_acts(int site) const {
    const SiteRef ref = site_ref(site);
    if (ref.kind == SiteKind::EncoderSelf) return acts().encoder.at(ref.layer).self_attn;
    const auto& d = acts().decoder.at(ref.layer);
    return ref.kind == SiteKind::DecoderSelf ? d.self_attn : d.cross_attn;
  }

  ParameterT& encoder_table() { return config_.share_encoder_decoder_embeddings ? shared_.weight : encoder_embed_.weight; }
  ParameterT& decoder_table() { return config_.share_encoder_decoder_embeddings ? shared_.weight : decoder_embed_.weight; }
  ParameterT& output_table() { return config_.tie_word_embeddings ? decoder_table() : lm_head_; }

  nn::DropoutPlan dropout_plan(const PassOptions& pass, int64_t first_example = 0, int64_t examples = 1) const {
    return nn::DropoutPlan{pass.train, pass.seed, pass.step, config_.dropout, config_.attention_dropout, 0.0f,
                           first_example, examples};
  }
  // Dropout slots: encoder layers 0..Le-1, decoder layers Le..Le+Ld-1, the two embeddings above.
  uint64_t decoder_slot(std::size_t j) const { return encoder_.size() + j; }
  uint64_t embedding_slot(bool decoder) const { return encoder_.size() + decoder_.size() + (decoder ? 1 : 0); }

  // out = dropout(table[ids] * scale + positions[pos])
  void embed_tokens(ParameterT& table, const ParameterT& positions, int64_t n, const Tensor<int32_t, Backend>& ids,
                    const Tensor<int32_t, Backend>& pos, const nn::DropoutSite& drop, TensorT& out) {
    const int64_t D = config_.d_model;
    Backend::embedding_forward(ctx_, n, D, ids.data(), table.value.data(), out.data(), false);
    if (embed_scale_ != T(1)) Backend::scale(ctx_, n * D, embed_scale_, out.data());
    Backend::embedding_forward(ctx_, n, D, pos.data(), positions.value.data(), out.data(), true);
    nn::dropout_forward<Backend>(ctx_, drop, n * D, out.data(), out.data());
  }
  void embed(const nn::DropoutPlan& plan, bool with_target) {
    auto& w = acts();
    w.encoder_embed_dropout = plan.site(plan.hidden_p, embedding_slot(false), nn::DropoutKind::Embedding);
    embed_tokens(encoder_table(), encoder_positions_, w.B * w.Ls, w.source_ids, w.source_positions, w.encoder_embed_dropout,
                 w.encoder_embedded);
    if (with_target) embed_target(plan);
  }
  void embed_target(const nn::DropoutPlan& plan) {
    auto& w = acts();
    w.decoder_embed_dropout = plan.site(plan.hidden_p, embedding_slot(true), nn::DropoutKind::Embedding);
    embed_tokens(decoder_table(), decoder_positions_, w.B * w.Lt, w.target_ids, w.target_positions,
                 w.decoder_embed_dropout, w.decoder_embedded);
  }
  // d(table) += scale * dropout_backward(dy) at the ids (pad row excluded, as torch's padding_idx)
  void embedding_backward(ParameterT& table, const Tensor<int32_t, Backend>& ids, int64_t n, const nn::DropoutSite& drop,
                          const T* dy) {
    const int64_t D = config_.d_model;
    T* d = acts().demb.data();
    nn::dropout_backward<Backend>(ctx_, drop, n * D, dy, d);
    if (embed_scale_ != T(1)) Backend::scale(ctx_, n * D, embed_scale_, d);
    Backend::embedding_backward(ctx_, n, D, ids.data(), d, table.grad.data(), config_.pad_token_id);
  }

  const T* configure_site(int site, int64_t B, int64_t Lq, int64_t Lk, int64_t H, nn::AttentionActivations<T, Backend>& a) {
    return sites_[static_cast<std::size_t>(site)].apply("site " + std::to_string(site), B, H, Lq, Lk, a);
  }

  void run_encoder(int first, const T* x, const nn::DropoutPlan& plan, int end) {
    auto& w = acts();
    const int64_t B = w.B, L = w.Ls, N = B * L, H = config_.encoder_attention_heads;
    for (int l = first; l < end; ++l) {
      auto& a = w.encoder[l];
      a.self_attn.attention_dropout = plan.site(plan.attention_p, l, nn::DropoutKind::Attention);
      a.self_attn.output_dropout = plan.site(plan.hidden_p, l, nn::DropoutKind::AttentionOutput);
      a.ffn.output_dropout = plan.site(plan.hidden_p, l, nn::DropoutKind::FeedForwardOutput);
      a.ffn.activation_dropout = plan.site(config_.activation_dropout, l, nn::DropoutKind::Activation);
      const T* extra = configure_site(l, B, L, L, H, a.self_attn);
      encoder_[l].self_attn.forward(ctx_, B, L, L, x, nullptr, w.key_bias.data(), extra, a.self_attn);
      encoder_[l].ffn.forward(ctx_, N, a.self_attn.out.data(), a.ffn);
      x = a.ffn.out.data();
    }
  }

  const TensorT& run_decoder(const nn::DropoutPlan& plan) {
    auto& w = acts();
    const int64_t B = w.B, Lt = w.Lt, Ls = w.Ls, N = B * Lt, H = config_.decoder_attention_heads;
    const T* memory = encoder_output().data();
    const T* x = w.decoder_embedded.data();
    for (std::size_t j = 0; j < decoder_.size(); ++j) {
      auto& a = w.decoder[j];
      const uint64_t slot = decoder_slot(j);
      a.self_attn.attention_dropout = plan.site(plan.attention_p, slot, nn::DropoutKind::Attention);
      a.self_attn.output_dropout = plan.site(plan.hidden_p, slot, nn::DropoutKind::AttentionOutput);
      a.cross_attn.attention_dropout = plan.site(plan.attention_p, slot, nn::DropoutKind::CrossAttention);
      a.cross_attn.output_dropout = plan.site(plan.hidden_p, slot, nn::DropoutKind::CrossAttentionOutput);
      a.ffn.output_dropout = plan.site(plan.hidden_p, slot, nn::DropoutKind::FeedForwardOutput);
      a.ffn.activation_dropout = plan.site(config_.activation_dropout, slot, nn::DropoutKind::Activation);
      const T* self_extra = configure_site(site_of(SiteKind::DecoderSelf, static_cast<int>(j)), B, Lt, Lt, H, a.self_attn);
      const T* cross_extra = configure_site(site_of(SiteKind::DecoderCross, static_cast<int>(j)), B, Lt, Ls, H, a.cross_attn);
      decoder_[j].self_attn.forward(ctx_, B, Lt, Lt, x, nullptr, nullptr, self_extra, a.self_attn);
      decoder_[j].cross_attn.forward(ctx_, B, Lt, Ls, a.self_attn.out.data(), memory, w.key_bias.data(), cross_extra,
                                     a.cross_attn);
      decoder_[j].ffn.forward(ctx_, N, a.cross_attn.out.data(), a.ffn);
      x = a.ffn.out.data();
    }
    project_logits(N, x, w.logits.data());
    return w.logits;
  }

  // logits [N, Vt] = x E^T + final_logits_bias
  void project_logits(int64_t N, const T* x, T* logits) {
    const int64_t D = config_.d_model, Vt = config_.target_vocab_size();
    Backend::gemm(ctx_, false, true, N, Vt, D, T(1), x, D, output_table().value.data(), D, T(0), logits, Vt);
    Backend::add_bias(ctx_, N, Vt, final_logits_bias_.value.data(), logits);
  }

  // Sizes the workspace for the batch (grow-only) and moves ids, positions and the key bias to the backend.
  void prepare(const Seq2SeqBatch& batch, bool source_only) {
    batch.validate(config_.vocab_size, config_.target_vocab_size(), false);
    const int64_t B = batch.size, Ls = batch.source_length, Lt = source_only ? 1 : batch.target_length;
    const int64_t D = config_.d_model, He = config_.encoder_attention_heads, Hd = config_.decoder_attention_heads;
    const int64_t maxpos = config_.max_position_embeddings;
    if (Ls > maxpos || Lt > maxpos)
      throw std::invalid_argument("Seq2SeqBatch: length " + std::to_string(std::max(Ls, Lt)) +
                                  " exceeds max_position_embeddings " + std::to_string(maxpos));
    auto& w = acts();
    w.B = B;
    w.Ls = Ls;
    w.Lt = Lt;
    const int64_t Ns = B * Ls, Nt = B * Lt, Nmax = std::max(Ns, Nt);
    w.source_ids.resize({Ns});
    w.source_positions.resize({Ns});
    w.target_ids.resize({Nt});
    w.target_positions.resize({Nt});
    w.key_bias.resize({B, Ls});
    w.encoder_embedded.resize({Ns, D});
    w.decoder_embedded.resize({Nt, D});
    for (auto& a : w.encoder) {
      a.self_attn.resize(B, Ls, Ls, D, He);
      a.ffn.resize(Ns, D, config_.encoder_ffn_dim);
    }
    for (auto& a : w.decoder) {
      a.self_attn.resize(B, Lt, Lt, D, Hd);
      a.cross_attn.resize(B, Lt, Ls, D, Hd);
      a.ffn.resize(Nt, D, config_.decoder_ffn_dim);
    }
    w.logits.resize({Nt, config_.target_vocab_size()});
    w.dlogits.resize({Nt, config_.target_vocab_size()});
    w.dinner.resize({std::max(Ns * config_.encoder_ffn_dim, Nt * config_.decoder_ffn_dim)});
    for (auto* t : {&w.ffn_tmp, &w.demb}) t->resize({Nmax, D});
    for (auto* t : {&w.dmemory, &w.enc_grad_a}) t->resize({Ns, D});
    for (auto* t : {&w.dec_grad_a, &w.dec_grad_b}) t->resize({Nt, D});

    w.host_key_bias.resize(static_cast<std::size_t>(Ns));
    for (int64_t i = 0; i < Ns; ++i)
      w.host_key_bias[i] = batch.attention_mask[i] ? T(0) : std::numeric_limits<T>::lowest();
    Backend::to_device(ctx_, Ns, batch.input_ids.data(), w.source_ids.data());
    Backend::to_device(ctx_, Ns, w.host_key_bias.data(), w.key_bias.data());
    auto positions = [&](int64_t L, Tensor<int32_t, Backend>& out) {
      w.host_positions.resize(static_cast<std::size_t>(B * L));
      for (int64_t i = 0; i < B * L; ++i) w.host_positions[i] = static_cast<int32_t>(i % L);
      Backend::to_device(ctx_, B * L, w.host_positions.data(), out.data());
    };
    positions(Ls, w.source_positions);
    if (!source_only) {
      Backend::to_device(ctx_, Nt, batch.decoder_input_ids.data(), w.target_ids.data());
      positions(Lt, w.target_positions);
    }
  }

  MarianConfig config_;
  Context ctx_;
  T embed_scale_ = T(1);
  T label_smoothing_ = T(0);
  nn::Embedding<T, Backend> shared_, encoder_embed_, decoder_embed_;
  ParameterT lm_head_, encoder_positions_, decoder_positions_, final_logits_bias_;
  std::vector<EncoderLayer> encoder_;
  std::vector<DecoderLayer> decoder_;
  nn::ParameterList<T, Backend> params_, buffers_;
  std::vector<Site> sites_;
  std::vector<Workspace> workspaces_;
  std::size_t active_ = 0;
  Workspace& acts() { return workspaces_[active_]; }
  const Workspace& acts() const { return workspaces_[active_]; }
};

}  // namespace addrop::models
