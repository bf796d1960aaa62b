#pragma once
// IGA: B_l = A_l ⊙ (1/m) Σ_{k=1..m} d F(α_k A_l) / d A_l with α_k = k/m (docs/algorithm.md step 3),
// in eval mode. The layers below the target layer run once; the m scaled passes of
// layers l..top run one α at a time by default, or stacked as one batch (each copy with
// its own α through per-example scales) in chunks under a memory cap; their backward
// computes input gradients only and stops at layer l.
#include <algorithm>
#include <cstddef>
#include <stdexcept>
#include <string>

#include "../models/concepts.hpp"
#include "context.hpp"

namespace addrop::attribution {

/// IG's settings.
struct IntegratedGradientsOptions {
  int steps = 20;                                       ///< m, the α steps
  bool per_step_argmax = false;                         ///< the reference's re-taken argmax at every α
  /// Stacked IG activations at most this large; 0 (the default) runs one α per pass. On
  /// the CPU one α per pass was measured as fast as stacking (the products are already
  /// large at B*L rows) at a fraction of the memory (docs/benchmarks.md); a cap can pay
  /// where small batches leave a GPU idle.
  std::size_t memory_cap_bytes = 0;
};

class IntegratedGradients {
 public:
  static constexpr bool needs_first_forward = true;  ///< the pseudo labels come from AdDrop's first forward

  IntegratedGradients() = default;
  explicit IntegratedGradients(IntegratedGradientsOptions options) : options_(options) {
    if (options_.steps <= 0)
      throw std::invalid_argument("integrated gradients needs m >= 1 steps (IntegratedGradientsOptions::steps = " +
                                  std::to_string(options_.steps) + ")");
  }
  const IntegratedGradientsOptions& options() const { return options_; }

  /// α steps that fit the memory cap at once, from the model's activation size per copy.
  template <class Model, class Batch>
  int64_t chunk_steps(const Model& model, const Batch& batch, int first_layer) const {
    const double bytes = model.pass_bytes(batch, first_layer);
    const auto fit = static_cast<int64_t>(static_cast<double>(options_.memory_cap_bytes) / std::max(bytes, 1.0));
    return std::clamp<int64_t>(fit, 1, options_.steps);
  }

  template <class Model, class Batch>
  void attribute(Model& model, const Batch& batch, AttributionContext<Model, Batch>& ctx) const {
    static_assert(models::check_integrated_gradients_model<Model, Batch>());
    using T = typename Model::value_type;
    using Backend = typename Model::backend_type;
    const int steps = options_.steps;
    const auto& cx = model.context();
    ctx.take_pseudo_labels(model, batch);  // from the first (train-mode) forward: the paper's fixed target
    struct RestoreWorkspace {               // workspace 0 holds the first forward, also after a throw
      Model& m;
      ~RestoreWorkspace() { m.use_workspace(0); }
    } restore{model};

    // Everything below the highest target site, once, in eval mode, on workspace 0.
    model.use_workspace(0);
    model.forward_prefix(batch, ctx.highest_layer(), {});

    for (std::size_t i = 0; i < ctx.layers.size(); ++i) {
      const int l = ctx.layers[i];
      const int64_t B = ctx.sites[i].batch;
      // Never stack more examples than an earlier step did while that fits: a smaller batch
      // then reuses the workspace instead of growing it (the chunking does not change results).
      int64_t chunk = chunk_steps(model, batch, l);
      if (largest_stack_ > 0) chunk = std::max<int64_t>(1, std::min(chunk, largest_stack_ / B));
      largest_stack_ = std::max(largest_stack_, chunk * B);
      const int64_t probs_size = ctx.scores[i].numel();
      ctx.accum.resize(ctx.scores[i].shape());
      Backend::fill(cx, probs_size, T(0), ctx.accum.data());
      for (int64_t k0 = 0; k0 < steps; k0 += chunk) {
        const int64_t copies = std::min<int64_t>(chunk, steps - k0);
        model.stack_batch(batch, copies, ctx.replicated);
        model.use_workspace(0);
        const auto& input = model.layer_input(l);
        const int64_t input_size = input.numel();
        ctx.replicated_input.resize({copies * input.shape()[0], input_size / input.shape()[0]});
        for (int64_t k = 0; k < copies; ++k)
          Backend::copy(cx, input_size, input.data(), ctx.replicated_input.data() + k * input_size);
        ctx.alphas.resize(static_cast<std::size_t>(copies * B));
        for (int64_t k = 0; k < copies; ++k)
          for (int64_t b = 0; b < B; ++b) ctx.alphas[k * B + b] = static_cast<T>(k0 + k + 1) / static_cast<T>(steps);

        model.use_workspace(1);
        model.set_attention_example_scales(l, ctx.alphas);
        model.forward_from(l, ctx.replicated_input.data(), ctx.replicated, {});
        ctx.set_objective(model, batch, copies, !options_.per_step_argmax);
        model.backward({.stop_at_layer = l, .weight_grads = false});
        model.set_attention_example_scales(l, {});
        const auto& grad = model.attention_probs_grad(l);  // [copies * B, H, Lq, Lk]
        for (int64_t k = 0; k < copies; ++k)
          Backend::axpby(cx, probs_size, T(1), grad.data() + k * probs_size, T(1), ctx.accum.data());
        if (k0 == 0) {  // A_l in eval mode: the same in every copy (the scale acts after the softmax)
          const auto& a = model.attention_probs(l);
          ctx.probs.resize(ctx.scores[i].shape());
          Backend::copy(cx, probs_size, a.data(), ctx.probs.data());
        }
      }
      Backend::mul(cx, probs_size, ctx.probs.data(), ctx.accum.data(), ctx.scores[i].data());
      Backend::scale(cx, probs_size, T(1) / static_cast<T>(steps), ctx.scores[i].data());
    }
  }

 private:
  IntegratedGradientsOptions options_;
  mutable int64_t largest_stack_ = 0;  // most examples stacked in one IG pass so far
};

}  // namespace addrop::attribution
