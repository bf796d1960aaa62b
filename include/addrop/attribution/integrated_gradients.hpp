#pragma once
// IGA: B_l = A_l ⊙ (1/m) Σ_{k=1..m} d F(α_k A_l) / d A_l with α_k = k/m (docs/algorithm.md step 3),
// in eval mode. The layers below the target layer run once; the m scaled passes of
// layers l..top run as one stacked batch (each copy with its own α through per-example
// scales), in chunks that keep the stacked activations under a memory cap; their
// backward computes input gradients only and stops at layer l.
#include <algorithm>
#include <cstddef>

#include "../models/passes.hpp"
#include "context.hpp"

namespace addrop::attribution {

template <int DefaultSteps = 20>
struct IntegratedGradients {
  static constexpr bool needs_first_forward = true;
  static constexpr bool is_random = false;

  int steps = DefaultSteps;                 ///< m
  bool per_step_argmax = false;             ///< the reference's re-taken argmax at every α
  std::size_t memory_cap_bytes = std::size_t{2} << 30;  ///< for the stacked IG activations

  /// α steps that fit the memory cap at once, from the per-example activation size.
  template <class Model>
  int64_t chunk_steps(const Model& model, int64_t B, int64_t L, int first_layer) const {
    const auto& c = model.config();
    const double D = static_cast<double>(c.hidden_size), I = static_cast<double>(c.intermediate_size),
                 H = static_cast<double>(c.num_attention_heads), Ld = static_cast<double>(L);
    // per example per layer: q k v context sum out (6 LD) + probs, grad (2 H L^2) + ffn (2 LI + 2 LD)
    const double per_layer = 8 * Ld * D + 2 * H * Ld * Ld + 2 * Ld * I;
    const double layers = static_cast<double>(model.num_layers() - first_layer);
    const double bytes = per_layer * layers * sizeof(typename Model::value_type) * static_cast<double>(B) +
                         3 * Ld * D * sizeof(typename Model::value_type) * static_cast<double>(B);  // backward scratch
    const auto fit = static_cast<int64_t>(static_cast<double>(memory_cap_bytes) / std::max(bytes, 1.0));
    return std::clamp<int64_t>(fit, 1, steps);
  }

  template <class Model>
  void attribute(Model& model, const models::Batch& batch, AttributionContext<Model>& ctx) const {
    using T = typename Model::value_type;
    using Backend = typename Model::backend_type;
    if (steps <= 0) throw std::invalid_argument("integrated gradients needs m >= 1 steps");
    const auto& cx = model.context();
    const int64_t B = batch.size, L = batch.length, D = model.config().hidden_size;
    const int64_t N = B * L;
    ctx.take_pseudo_labels(model, batch);  // from the first (train-mode) forward: the paper's fixed target

    // Everything below the highest target layer, once, in eval mode, on workspace 0.
    model.use_workspace(0);
    model.forward_prefix(batch, ctx.highest_layer(), {});

    for (std::size_t i = 0; i < ctx.layers.size(); ++i) {
      const int l = ctx.layers[i];
      // Never stack more examples than an earlier step did while that fits: a smaller batch
      // then reuses the workspace instead of growing it (the chunking does not change results).
      int64_t chunk = chunk_steps(model, B, L, l);
      if (largest_stack_ > 0) chunk = std::max<int64_t>(1, std::min(chunk, largest_stack_ / B));
      largest_stack_ = std::max(largest_stack_, chunk * B);
      const int64_t probs_size = ctx.scores[i].numel();
      ctx.accum.resize(ctx.scores[i].shape());
      Backend::fill(cx, probs_size, T(0), ctx.accum.data());
      for (int64_t k0 = 0; k0 < steps; k0 += chunk) {
        const int64_t copies = std::min<int64_t>(chunk, steps - k0);
        stack(batch, copies, ctx.replicated);
        model.use_workspace(0);
        const auto& input = model.layer_input(l);
        ctx.replicated_input.resize({copies * N, D});
        for (int64_t k = 0; k < copies; ++k)
          Backend::copy(cx, N * D, input.data(), ctx.replicated_input.data() + k * N * D);
        ctx.alphas.resize(static_cast<std::size_t>(copies * B));
        for (int64_t k = 0; k < copies; ++k)
          for (int64_t b = 0; b < B; ++b) ctx.alphas[k * B + b] = static_cast<T>(k0 + k + 1) / static_cast<T>(steps);

        model.use_workspace(1);
        model.set_attention_example_scales(l, ctx.alphas);
        model.forward_from(l, ctx.replicated_input.data(), ctx.replicated, {});
        ctx.set_objective(model, batch, copies, !per_step_argmax);
        model.backward({.stop_at_layer = l, .weight_grads = false});
        model.set_attention_example_scales(l, {});
        const auto& grad = model.attention_probs_grad(l);  // [copies * B, H, L, L]
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
    model.use_workspace(0);
  }

 private:
  mutable int64_t largest_stack_ = 0;  // most examples stacked in one IG pass so far

  // out = `copies` copies of batch's inputs (labels are not needed by the IG passes).
  static void stack(const models::Batch& batch, int64_t copies, models::Batch& out) {
    out.size = batch.size * copies;
    out.length = batch.length;
    auto repeat = [&](const std::vector<int32_t>& from, std::vector<int32_t>& to) {
      to.resize(from.size() * static_cast<std::size_t>(copies));
      for (int64_t k = 0; k < copies; ++k) std::copy(from.begin(), from.end(), to.begin() + k * static_cast<int64_t>(from.size()));
    };
    repeat(batch.input_ids, out.input_ids);
    repeat(batch.attention_mask, out.attention_mask);
    repeat(batch.token_type_ids, out.token_type_ids);
  }
};

}  // namespace addrop::attribution
