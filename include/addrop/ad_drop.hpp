#pragma once
// AdDrop<Attribution, Selection, Schedule>: one AD-DROP training step (docs/algorithm.md
// steps 1-6), or the plain step when the schedule says so, over any model that
// implements the attention-site contract.
//
//   addrop::AdDrop<> reg({.p = 0.3, .q = 0.3, .layers = {0}, .seed = 42});
//   model.zero_grad();
//   auto out = reg.step(model, batch, epoch);   // gradients are left in the model
//   optimizer.step();
#include <algorithm>
#include <memory>
#include <optional>
#include <typeinfo>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "attribution/attribution.hpp"
#include "models/attention_site.hpp"
#include "models/batch.hpp"
#include "schedule/schedule.hpp"
#include "selection/selection.hpp"

namespace addrop {

struct AdDropOptions {
  double p = 0.3;               ///< size of the candidate region (fraction of a row's keys)
  double q = 0.3;               ///< probability of dropping a candidate
  std::vector<int> layers{0};   ///< target ("mask") layers, any subset (kept sorted, unique)
  std::optional<Side> side{};   ///< overrides the selection policy's side (TopP<High> / TopP<Low>)
  int steps = 0;                ///< IG's m; 0 keeps the attribution policy's own (20)
  bool iga_per_step = false;    ///< IG: the reference's argmax at every α instead of the fixed pseudo label
  uint64_t seed = 42;           ///< q-sampling draws and ordinary dropout
  bool record_masks = false;    ///< step() also returns the 0/1 candidates and keep masks (step_addrop always does)
};

/// Uniform draws supplied by the caller instead of the generator, per target layer in
/// ascending layer order (AdDrop sorts and de-duplicates its layers), each [B,H,L,L] on the host: a candidate is kept
/// iff its draw < 1 - q. RD also reads second_draws (kept iff u1 < 1-p or u2 < 1-q).
struct ExternalUniforms {
  std::vector<std::span<const float>> draws;
  std::vector<std::span<const float>> second_draws;
};

/// What one step did. It views tensors that live in the AdDrop object until its next step.
template <class T, class Backend>
struct StepResult {
  double loss = 0;              ///< the gold loss that was back-propagated
  bool used_addrop = false;     ///< false on a plain (schedule-off) step
  const Tensor<T, Backend>* logits = nullptr;                     ///< of the trained (second) forward
  std::span<const int> layers;                                    ///< target layers (when used_addrop)
  std::span<const Tensor<T, Backend>* const> attributions;        ///< B_l per target layer (empty for RD)
  /// 0/1 [B,H,L,L] per target layer; from step_addrop(), or step() with
  /// AdDropOptions::record_masks (else empty: the training step writes only the additive mask)
  std::span<const Tensor<T, Backend>* const> candidates, keep;
};

template <class Attribution = attribution::Gradient, class Selection = selection::TopP<High>,
          class Schedule = schedule::CrossTuning>
class AdDrop {
  static_assert(schedule::Schedule<Schedule>,
                "AdDrop: the Schedule policy needs `bool active(int epoch, int64_t step) const`");

 public:
  using AttributionPolicy = Attribution;
  using SelectionPolicy = Selection;
  using SchedulePolicy = Schedule;

  explicit AdDrop(AdDropOptions options = {}, Attribution attribution = {}, Selection selection = {},
                  Schedule schedule = {})
      : options_(std::move(options)), attribution_(attribution), selection_(selection), schedule_(schedule) {
    set_options(options_);
  }

  /// p, q, layers and the rest can change between steps (a policy is a value).
  void set_options(const AdDropOptions& options) {
    if (!(options.p >= 0 && options.p <= 1) || !(options.q >= 0 && options.q <= 1))
      throw std::invalid_argument("AdDrop: p and q must be in [0, 1]");
    if (options.layers.empty()) throw std::invalid_argument("AdDrop: no target layer");
    options_ = options;
    std::sort(options_.layers.begin(), options_.layers.end());
    options_.layers.erase(std::unique(options_.layers.begin(), options_.layers.end()), options_.layers.end());
    if constexpr (requires { attribution_.steps; }) {
      if (options_.steps > 0) attribution_.steps = options_.steps;
    }
    if constexpr (requires { attribution_.per_step_argmax; }) attribution_.per_step_argmax = options_.iga_per_step;
    if constexpr (requires { selection_.side; }) {
      if (options_.side) selection_.side = *options_.side;
    }
  }
  const AdDropOptions& options() const { return options_; }
  Attribution& attribution_policy() { return attribution_; }
  Selection& selection_policy() { return selection_; }
  Schedule& schedule_policy() { return schedule_; }
  /// Steps taken so far; the q-sampling and dropout streams are keyed by it.
  int64_t step_count() const { return step_; }
  /// Continues the streams from a saved run (resuming): the next step is number `steps`.
  void set_step_count(int64_t steps) { step_ = steps; }

  /// One training step on `batch` in 0-based `epoch`: AD-DROP when the schedule says so,
  /// else the plain forward/backward. Parameter gradients accumulate in the model.
  template <models::AttentionSiteModel Model>
  StepResult<typename Model::value_type, typename Model::backend_type> step(Model& model, const models::Batch& batch,
                                                                            int epoch,
                                                                            const ExternalUniforms* uniforms = nullptr) {
    return run(model, batch, schedule_.active(epoch, step_), uniforms, true, options_.record_masks);
  }

  /// The AD-DROP passes whatever the schedule says; `train` false runs every pass without
  /// ordinary dropout (deterministic output, for inspection and checks). The result always
  /// holds the candidates and keep masks.
  template <models::AttentionSiteModel Model>
  StepResult<typename Model::value_type, typename Model::backend_type> step_addrop(Model& model,
                                                                                   const models::Batch& batch,
                                                                                   const ExternalUniforms* uniforms = nullptr,
                                                                                   bool train = true) {
    return run(model, batch, true, uniforms, train, true);
  }

 private:
  template <class Model>
  struct Workspace {
    using T = typename Model::value_type;
    using Backend = typename Model::backend_type;
    attribution::AttributionContext<Model> attribution;
    std::vector<Tensor<T, Backend>> candidates, keep, additive;
    std::vector<Tensor<float, Backend>> draws, second_draws;  // only for ExternalUniforms
    Tensor<int32_t, Backend> key_mask;
    Tensor<int64_t, Backend> threshold_indices;
    std::vector<int64_t> key_lengths;
    std::vector<const Tensor<T, Backend>*> attribution_views, candidate_views, keep_views;
  };

  // One workspace per model type, made on first use (tensors are move-only, so no std::any).
  template <class Model>
  Workspace<Model>& workspace() {
    if (workspace_type_ != &typeid(Workspace<Model>)) {
      workspace_ = std::make_shared<Workspace<Model>>();
      workspace_type_ = &typeid(Workspace<Model>);
    }
    return *static_cast<Workspace<Model>*>(workspace_.get());
  }

  // Stream ids of the counter-based generator: bit 63 set keeps AD-DROP's draws apart
  // from dropout's; then the step, the layer and which draw.
  static uint64_t uniform_stream(int64_t step, int layer, int draw) {
    return (uint64_t{1} << 63) | (static_cast<uint64_t>(step) << 20) | (static_cast<uint64_t>(layer) << 2) |
           static_cast<uint64_t>(draw);
  }

  template <class Model>
  StepResult<typename Model::value_type, typename Model::backend_type> run(Model& model, const models::Batch& batch,
                                                                          bool addrop, const ExternalUniforms* ext,
                                                                          bool train, bool record) {
    static_assert(attribution::AttributionMethod<Attribution, Model>,
                  "AdDrop: the Attribution policy needs `needs_first_forward`, `is_random` and "
                  "`attribute(model, batch, AttributionContext<Model>&)`");
    static_assert(selection::Selection<Selection, typename Model::backend_type, typename Model::value_type>,
                  "AdDrop: the Selection policy needs `select<Backend>(ctx, SelectionArgs<T>)` and "
                  "`select_random<Backend>(ctx, SelectionArgs<T>)`");
    using T = typename Model::value_type;
    using Backend = typename Model::backend_type;
    const auto& cx = model.context();
    const uint64_t s = static_cast<uint64_t>(step_++);
    StepResult<T, Backend> out;
    model.use_workspace(0);
    model.reset_attention_sites();
    if (!addrop) {
      model.forward(batch, {.train = train, .seed = options_.seed, .step = 4 * s + 2});
      out.loss = model.loss(batch);
      model.backward();
      out.logits = &model.logits();
      return out;
    }
    for (int l : options_.layers)
      if (l < 0 || l >= model.num_layers())
        throw std::invalid_argument("AdDrop: target layer " + std::to_string(l) + " but the model has " +
                                    std::to_string(model.num_layers()) + " layers");
    auto& w = workspace<Model>();
    const int64_t B = batch.size, L = batch.length, H = model.config().num_attention_heads;
    const std::size_t n_layers = options_.layers.size();
    const Shape probs{B, H, L, L};
    w.attribution.layers = options_.layers;
    w.attribution.negate = model.config().task == models::Task::Regression;
    w.attribution.scores.resize(n_layers);
    for (auto* v : {&w.candidates, &w.keep, &w.additive}) v->resize(n_layers);
    w.draws.resize(n_layers);
    w.second_draws.resize(n_layers);
    for (std::size_t i = 0; i < n_layers; ++i) {
      w.additive[i].resize(probs);
      if (!Attribution::is_random) w.attribution.scores[i].resize(probs);
      if (record) {
        w.candidates[i].resize(probs);
        w.keep[i].resize(probs);
      }
      if (ext) {
        w.draws[i].resize(probs);
        if (Attribution::is_random) w.second_draws[i].resize(probs);
      }
    }
    w.key_mask.resize({B * L});
    Backend::to_device(cx, B * L, batch.attention_mask.data(), w.key_mask.data());
    w.threshold_indices.resize({B});
    w.key_lengths.resize(static_cast<std::size_t>(B));
    for (int64_t b = 0; b < B; ++b) w.key_lengths[b] = batch.key_length(b);

    // Steps 1-3: first forward and attribution.
    if constexpr (Attribution::needs_first_forward) {
      model.forward(batch, {.train = train, .seed = options_.seed, .step = 4 * s});
      attribution_.attribute(model, batch, w.attribution);
      model.use_workspace(0);
    }

    // Steps 4-5: candidate region, q-sampling and the additive mask, per target layer, in
    // one fused pass; the draws come from the generator (stream = step, layer, draw) unless
    // the caller supplies them.
    for (std::size_t i = 0; i < n_layers; ++i) {
      const int l = options_.layers[i];
      const int64_t n = probs.numel();
      auto given_draws = [&](Tensor<float, Backend>& dst, const std::vector<std::span<const float>>& given) {
        if (given.size() != n_layers || static_cast<int64_t>(given[i].size()) != n)
          throw std::invalid_argument("AdDrop: supplied uniforms for layer " + std::to_string(l) +
                                      " must hold B*H*L*L = " + std::to_string(n) + " draws");
        Backend::to_device(cx, n, given[i].data(), dst.data());
        return static_cast<const float*>(dst.data());
      };
      selection::SelectionArgs<T> args;
      args.batch = B;
      args.heads = H;
      args.length = L;
      args.attribution = Attribution::is_random ? nullptr : w.attribution.scores[i].data();
      args.key_mask = w.key_mask.data();
      args.key_lengths = w.key_lengths;
      args.threshold_indices = w.threshold_indices.data();
      args.p = options_.p;
      args.q = options_.q;
      args.seed = options_.seed;
      args.stream = uniform_stream(static_cast<int64_t>(s), l, 0);
      args.stream2 = uniform_stream(static_cast<int64_t>(s), l, 1);
      if (ext) args.uniforms = given_draws(w.draws[i], ext->draws);
      args.additive = w.additive[i].data();
      args.dropped_value = T(-10000);
      if (record) {
        args.candidates = w.candidates[i].data();
        args.keep = w.keep[i].data();
      }
      if constexpr (Attribution::is_random) {
        if (ext) args.uniforms2 = given_draws(w.second_draws[i], ext->second_draws);
        selection_.template select_random<Backend>(cx, args);
      } else {
        selection_.template select<Backend>(cx, args);
      }
      model.set_attention_mask(l, &w.additive[i]);
    }

    // Step 6: second forward with the masks, gold loss, full backward.
    model.forward(batch, {.train = train, .seed = options_.seed, .step = 4 * s + 1});
    out.loss = model.loss(batch);
    model.backward();
    model.reset_attention_sites();
    out.used_addrop = true;
    out.logits = &model.logits();
    out.layers = options_.layers;
    w.attribution_views.resize(n_layers);
    w.candidate_views.resize(n_layers);
    w.keep_views.resize(n_layers);
    for (std::size_t i = 0; i < n_layers; ++i) {
      w.attribution_views[i] = &w.attribution.scores[i];
      w.candidate_views[i] = &w.candidates[i];
      w.keep_views[i] = &w.keep[i];
    }
    if constexpr (!Attribution::is_random) out.attributions = w.attribution_views;
    if (record) {
      out.candidates = w.candidate_views;
      out.keep = w.keep_views;
    }
    return out;
  }

  AdDropOptions options_;
  Attribution attribution_;
  Selection selection_;
  Schedule schedule_;
  int64_t step_ = 0;
  std::shared_ptr<void> workspace_;
  const std::type_info* workspace_type_ = nullptr;
};

}  // namespace addrop
