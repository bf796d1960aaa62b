#pragma once
// AdDrop<Attribution, Selection, Schedule>: one AD-DROP training step (docs/algorithm.md
// steps 1-6), or the plain step when the schedule says so, over any model and batch type
// that satisfy the model contracts (models/concepts.hpp).
//
//   addrop::AdDrop<> reg({.p = 0.3, .q = 0.3, .layers = {0}, .seed = 42});
//   model.zero_grad();
//   auto out = reg.step(model, batch, epoch);   // gradients are left in the model
//   optimizer.step();
//
// Policies are values with their own settings, given to the constructor:
//   AdDrop<attribution::IntegratedGradients> iga(options, attribution::IntegratedGradients({.steps = 20}));
//   AdDrop<attribution::Gradient, selection::TopP> low(options, {}, selection::TopP(Side::Low));
//   AdDrop<attribution::None, selection::Random> rd(options);      // RD
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
#include "backend/precision.hpp"
#include "models/concepts.hpp"
#include "schedule/schedule.hpp"
#include "selection/selection.hpp"

namespace addrop {

struct AdDropOptions {
  double p = 0.3;               ///< size of the candidate region (fraction of a row's keys)
  double q = 0.3;               ///< probability of dropping a candidate
  std::vector<int> layers{0};   ///< target ("mask") attention sites, any subset (kept sorted, unique)
  uint64_t seed = 42;           ///< q-sampling draws and ordinary dropout
  bool record_masks = false;    ///< step() also returns the 0/1 candidates and keep masks (step_addrop always does)
  /// Precision of the attribution passes (the first forward, GA's backward to A_l, IGA's
  /// alpha passes, AA): unset runs them in the model context's precision; set (e.g. F32
  /// under a Bf16Mixed model) runs them in this one, and the masked second pass stays in
  /// the model's. Needs a model with set_context and a context with a precision member.
  std::optional<Precision> attribution_precision = std::nullopt;
};

/// Uniform draws supplied by the caller instead of the generator, per target site in
/// ascending order (AdDrop sorts and de-duplicates its layers), each of the site's shape on
/// the host: a candidate is kept iff its draw < 1 - q. RD also reads second_draws when
/// given (kept iff u1 < 1-p or u2 < 1-q); without them its second draws are generated.
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
  std::span<const Tensor<T, Backend>* const> attributions;        ///< B_l per target site (empty for RD)
  /// 0/1 masks of each target site's shape; from step_addrop(), or step() with
  /// AdDropOptions::record_masks (else empty: the training step writes only the additive mask)
  std::span<const Tensor<T, Backend>* const> candidates, keep;
};

template <class Attribution = attribution::Gradient, class Selection = selection::TopP,
          class Schedule = schedule::CrossTuning>
class AdDrop {
  static_assert(schedule::Schedule<Schedule>,
                "AdDrop: the Schedule policy needs `bool active(int epoch, int64_t step) const`");
  static_assert(!selection::reads_attributions<Selection> || attribution::gives_scores<Attribution>,
                "AdDrop: the Selection policy reads attributions but the Attribution policy gives none "
                "(attribution::None goes with selection::Random)");

 public:
  using AttributionPolicy = Attribution;
  using SelectionPolicy = Selection;
  using SchedulePolicy = Schedule;

  explicit AdDrop(AdDropOptions options = {}, Attribution attribution = {}, Selection selection = {},
                  Schedule schedule = {})
      : options_(std::move(options)), attribution_(attribution), selection_(selection), schedule_(schedule) {
    set_options(options_);
  }

  /// p, q, layers, seed and record_masks can change between steps.
  void set_options(const AdDropOptions& options) {
    if (!(options.p >= 0 && options.p <= 1) || !(options.q >= 0 && options.q <= 1))
      throw std::invalid_argument("AdDropOptions: p and q must be in [0, 1] (p = " + std::to_string(options.p) +
                                  ", q = " + std::to_string(options.q) + ")");
    if (options.layers.empty()) throw std::invalid_argument("AdDropOptions: no target layer");
    options_ = options;
    std::sort(options_.layers.begin(), options_.layers.end());
    options_.layers.erase(std::unique(options_.layers.begin(), options_.layers.end()), options_.layers.end());
  }
  const AdDropOptions& options() const { return options_; }
  const Attribution& attribution_policy() const { return attribution_; }
  const Selection& selection_policy() const { return selection_; }
  const Schedule& schedule_policy() const { return schedule_; }
  /// Steps taken so far; the q-sampling and dropout streams are keyed by it.
  int64_t step_count() const { return step_; }
  /// Continues the streams from a saved run (resuming): the next step is number `steps`.
  void set_step_count(int64_t steps) { step_ = steps; }

  /// One training step on `batch` in 0-based `epoch`: AD-DROP when the schedule says so,
  /// else the plain forward/backward. Parameter gradients accumulate in the model.
  template <class Model, class Batch>
  StepResult<typename Model::value_type, typename Model::backend_type> step(Model& model, const Batch& batch,
                                                                            int epoch,
                                                                            const ExternalUniforms* uniforms = nullptr) {
    return run(model, batch, schedule_.active(epoch, step_), uniforms, true, options_.record_masks);
  }

  /// The AD-DROP passes whatever the schedule says; `train` false runs every pass without
  /// ordinary dropout (deterministic output, for inspection and checks). The result always
  /// holds the candidates and keep masks.
  template <class Model, class Batch>
  StepResult<typename Model::value_type, typename Model::backend_type> step_addrop(Model& model, const Batch& batch,
                                                                                   const ExternalUniforms* uniforms = nullptr,
                                                                                   bool train = true) {
    return run(model, batch, true, uniforms, train, true);
  }

 private:
  template <class Model, class Batch>
  struct Workspace {
    using T = typename Model::value_type;
    using Backend = typename Model::backend_type;
    attribution::AttributionContext<Model, Batch> attribution;
    std::vector<Tensor<T, Backend>> candidates, keep, additive;
    std::vector<Tensor<float, Backend>> draws, second_draws;  // only for ExternalUniforms
    std::vector<Tensor<int32_t, Backend>> key_masks;
    std::vector<std::vector<int64_t>> key_lengths;
    Tensor<int64_t, Backend> threshold_indices;
    std::vector<const Tensor<T, Backend>*> attribution_views, candidate_views, keep_views;
  };

  // One workspace per (model, batch) type, made on first use (tensors are move-only, so no std::any).
  template <class Model, class Batch>
  Workspace<Model, Batch>& workspace() {
    if (workspace_type_ != &typeid(Workspace<Model, Batch>)) {
      workspace_ = std::make_shared<Workspace<Model, Batch>>();
      workspace_type_ = &typeid(Workspace<Model, Batch>);
    }
    return *static_cast<Workspace<Model, Batch>*>(workspace_.get());
  }

  // Switches the model's context to the attribution precision for its lifetime (restored
  // on exit, also by an exception); a no-op when none is set or it is the model's own.
  template <class Model>
  class AttributionPrecision {
    using Context = typename Model::backend_type::Context;
    static constexpr bool switchable = requires(Model& m, Context c) {
      c.precision = Precision::F32;
      m.set_context(c);
    };

   public:
    AttributionPrecision(Model& model, std::optional<Precision> precision) : model_(model) {
      if (!precision) return;
      if constexpr (switchable) {
        if (model.context().precision == *precision) return;
        saved_ = model.context();
        Context switched = *saved_;
        switched.precision = *precision;
        model.set_context(switched);
      } else {
        throw std::invalid_argument(
            "AdDropOptions::attribution_precision: this model has no set_context(Context) or its backend's "
            "context no precision member");
      }
    }
    ~AttributionPrecision() {
      if constexpr (switchable)
        if (saved_) model_.set_context(*saved_);
    }
    AttributionPrecision(const AttributionPrecision&) = delete;
    AttributionPrecision& operator=(const AttributionPrecision&) = delete;

   private:
    Model& model_;
    std::optional<Context> saved_;
  };

  // Stream ids of the counter-based generator: bit 63 set keeps AD-DROP's draws apart
  // from dropout's; then the step, the site and which draw.
  static uint64_t uniform_stream(int64_t step, int layer, int draw) {
    return (uint64_t{1} << 63) | (static_cast<uint64_t>(step) << 20) | (static_cast<uint64_t>(layer) << 2) |
           static_cast<uint64_t>(draw);
  }

  template <class Model, class Batch>
  StepResult<typename Model::value_type, typename Model::backend_type> run(Model& model, const Batch& batch,
                                                                          bool addrop, const ExternalUniforms* ext,
                                                                          bool train, bool record) {
    static_assert(models::check_attention_site_model<Model, Batch>());
    static_assert(attribution::AttributionMethod<Attribution, Model, Batch>,
                  "AdDrop: the Attribution policy needs `static constexpr bool needs_first_forward` and "
                  "`attribute(model, batch, AttributionContext<Model, Batch>&) const`");
    static_assert(selection::Selection<Selection, typename Model::backend_type, typename Model::value_type>,
                  "AdDrop: the Selection policy needs `template <class Backend, class T> "
                  "select(const Backend::Context&, const SelectionArgs<T>&) const`");
    using T = typename Model::value_type;
    using Backend = typename Model::backend_type;
    constexpr bool scored = attribution::gives_scores<Attribution>;
    const auto& cx = model.context();
    const uint64_t s = static_cast<uint64_t>(step_++);
    StepResult<T, Backend> out;
    model.reset_attention_sites();
    if (!addrop) {
      model.forward(batch, {.train = train, .seed = options_.seed, .step = 4 * s + 2});
      out.loss = model.loss(batch);
      model.backward({});
      out.logits = &model.logits();
      return out;
    }
    for (int l : options_.layers)
      if (l < 0 || l >= model.num_attention_sites())
        throw std::invalid_argument("AdDrop: target layer " + std::to_string(l) + " but the model has " +
                                    std::to_string(model.num_attention_sites()) + " attention sites");
    auto& w = workspace<Model, Batch>();
    const std::size_t n_layers = options_.layers.size();
    auto& sites = w.attribution.sites;
    sites.clear();
    for (int l : options_.layers) sites.push_back(model.attention_site(l, batch));
    w.attribution.layers = options_.layers;
    w.attribution.negate = false;
    if constexpr (scored)
      w.attribution.negate = model.attribution_target(batch).kind == models::AttributionTarget::Kind::Regression;
    w.attribution.scores.resize(n_layers);
    for (auto* v : {&w.candidates, &w.keep, &w.additive}) v->resize(n_layers);
    w.draws.resize(n_layers);
    w.second_draws.resize(n_layers);
    w.key_masks.resize(n_layers);
    w.key_lengths.resize(n_layers);
    int64_t largest_batch = 0;
    for (std::size_t i = 0; i < n_layers; ++i) {
      const models::AttentionSite& site = sites[i];
      const Shape shape = site.shape();
      if (static_cast<int64_t>(site.key_mask.size()) != site.batch * site.keys)
        throw std::invalid_argument("AdDrop: attention site " + std::to_string(options_.layers[i]) + " has a key mask of " +
                                    std::to_string(site.key_mask.size()) + " entries for batch x keys = " +
                                    std::to_string(site.batch) + " x " + std::to_string(site.keys));
      w.additive[i].resize(shape);
      if (scored) w.attribution.scores[i].resize(shape);
      if (record) {
        w.candidates[i].resize(shape);
        w.keep[i].resize(shape);
      }
      w.key_masks[i].resize({site.batch * site.keys});
      Backend::to_device(cx, site.batch * site.keys, site.key_mask.data(), w.key_masks[i].data());
      w.key_lengths[i].resize(static_cast<std::size_t>(site.batch));
      for (int64_t b = 0; b < site.batch; ++b) w.key_lengths[i][b] = site.key_length(b);
      largest_batch = std::max(largest_batch, site.batch);
    }
    w.threshold_indices.resize({largest_batch});

    // Steps 1-3: first forward (when the method reads it) and attribution, in the
    // attribution precision when one is set.
    if constexpr (scored) {
      AttributionPrecision<Model> in_precision(model, options_.attribution_precision);
      if constexpr (Attribution::needs_first_forward)
        model.forward(batch, {.train = train, .seed = options_.seed, .step = 4 * s});
      attribution_.attribute(model, batch, w.attribution);
    }

    // Steps 4-5: candidate region, q-sampling and the additive mask, per target site, in
    // one fused pass; the draws come from the generator (stream = step, site, draw) unless
    // the caller supplies them.
    for (std::size_t i = 0; i < n_layers; ++i) {
      const int l = options_.layers[i];
      const models::AttentionSite& site = sites[i];
      const int64_t n = site.shape().numel();
      auto given_draws = [&](Tensor<float, Backend>& dst, const std::vector<std::span<const float>>& given) {
        if (given.size() != n_layers || static_cast<int64_t>(given[i].size()) != n)
          throw std::invalid_argument("AdDrop: supplied uniforms for layer " + std::to_string(l) + " must hold " +
                                      site.shape().str() + " = " + std::to_string(n) + " draws");
        dst.resize(site.shape());
        Backend::to_device(cx, n, given[i].data(), dst.data());
        return static_cast<const float*>(dst.data());
      };
      selection::SelectionArgs<T> args;
      args.batch = site.batch;
      args.heads = site.heads;
      args.queries = site.queries;
      args.keys = site.keys;
      if constexpr (scored) args.attribution = w.attribution.scores[i].data();
      args.key_mask = w.key_masks[i].data();
      args.key_lengths = w.key_lengths[i];
      args.threshold_indices = w.threshold_indices.data();
      args.p = options_.p;
      args.q = options_.q;
      args.seed = options_.seed;
      args.stream = uniform_stream(static_cast<int64_t>(s), l, 0);
      args.stream2 = uniform_stream(static_cast<int64_t>(s), l, 1);
      args.first_draw = site.first_example * site.heads * site.queries * site.keys;
      if (ext) args.uniforms = given_draws(w.draws[i], ext->draws);
      if (ext && !ext->second_draws.empty()) args.uniforms2 = given_draws(w.second_draws[i], ext->second_draws);
      args.additive = w.additive[i].data();
      args.dropped_value = T(-10000);
      if (record) {
        args.candidates = w.candidates[i].data();
        args.keep = w.keep[i].data();
      }
      selection_.template select<Backend>(cx, args);
      model.set_attention_mask(l, &w.additive[i]);
    }

    // Step 6: second forward with the masks, gold loss, full backward.
    model.forward(batch, {.train = train, .seed = options_.seed, .step = 4 * s + 1});
    out.loss = model.loss(batch);
    model.backward({});
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
    if constexpr (scored) out.attributions = w.attribution_views;
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
