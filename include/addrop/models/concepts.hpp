#pragma once
// The model contracts of AD-DROP (docs/architecture.md, "Model contracts"): exactly what
// AdDrop and each shipped attribution method call on a model, and nothing else. The
// library's EncoderModel satisfies all of them; a trainer with its own transformer and its
// own batch type implements the members of the contracts it uses:
//
//   AttentionSiteModel<M, Batch>         AdDrop's own calls (plain step, masks, second pass)
//   AttentionProbsModel<M, Batch>        + attention_probs          (attribution::Attention)
//   GradientModel<M, Batch>              + the objective and d/dA_l (attribution::Gradient)
//   IntegratedGradientsModel<M, Batch>   + the layer-l entry points (attribution::IntegratedGradients)
//
// Each contract has a check_*() whose static_asserts name the first missing member, so a
// model that lacks one fails to compile with that name rather than deep inside a template.
#include <concepts>
#include <cstdint>
#include <cstddef>
#include <span>
#include <vector>

#include "../tensor.hpp"
#include "passes.hpp"

namespace addrop::models {

/// One attention site (a layer's attention probabilities A_l) as it will be for a batch:
/// A_l is [batch, heads, queries, keys]; key_mask [batch, keys] on the host, 1 = a key that
/// may be attended (a token), 0 = padding. An encoder's self-attention has queries = keys =
/// the batch's length; a decoder's cross-attention has the target length as queries and
/// the source length as keys.
struct AttentionSite {
  int64_t batch = 0, heads = 0, queries = 0, keys = 0;
  std::span<const int32_t> key_mask;
  /// The whole batch's index of row 0 when the batch is a shard (models/batch_shard.hpp):
  /// AD-DROP's draws for this site start at element first_example * heads * queries * keys.
  int64_t first_example = 0;
  Shape shape() const { return {batch, heads, queries, keys}; }
  /// Non-pad keys of example b (n_b of docs/algorithm.md step 4).
  int64_t key_length(int64_t b) const {
    int64_t n = 0;
    for (int64_t j = 0; j < keys; ++j) n += key_mask[static_cast<std::size_t>(b * keys + j)] != 0;
    return n;
  }
};

/// How the attribution target F reads the model's logits for a batch (docs/algorithm.md
/// step 2). Logits are [rows, classes] per copy of the batch.
struct AttributionTarget {
  enum class Kind {
    SequenceClasses,  ///< F = sum_b z[b, c_b]: one row per example
    TokenClasses,     ///< F = -CE_mean(z, c) over the rows whose row_mask is set (tokens, target positions)
    Regression,       ///< F = -MSE(z, gold): the reference attributes the gold loss, negated
  };
  Kind kind = Kind::SequenceClasses;
  int64_t rows = 0, classes = 0;
  std::span<const int32_t> row_mask;  ///< TokenClasses: [rows]
  std::span<const double> gold;       ///< Regression: [rows]
  /// What the mean of TokenClasses and Regression divides by: 0 = these rows' own count;
  /// a shard sets the whole batch's (models/batch_shard.hpp).
  int64_t denominator = 0;
};

namespace contract {
// One concept per member, so that check_*() can name what is missing.
template <class M>
concept has_types = requires {
  typename M::value_type;
  typename M::backend_type;
  typename M::TensorT;
  requires std::same_as<typename M::TensorT, Tensor<typename M::value_type, typename M::backend_type>>;
};
template <class M>
concept has_context = requires(const M& m) {
  { m.context() } -> std::convertible_to<const typename M::backend_type::Context&>;
};
template <class M>
concept has_num_attention_sites = requires(const M& m) {
  { m.num_attention_sites() } -> std::convertible_to<int>;
};
template <class M, class Batch>
concept has_attention_site = requires(const M& m, const Batch& batch, int site) {
  { m.attention_site(site, batch) } -> std::same_as<AttentionSite>;
};
template <class M>
concept has_set_attention_mask = requires(M& m, int site, const typename M::TensorT* mask) {
  m.set_attention_mask(site, mask);
  m.reset_attention_sites();
};
template <class M, class Batch>
concept has_forward = requires(M& m, const Batch& batch, PassOptions pass) { m.forward(batch, pass); };
template <class M, class Batch>
concept has_loss = requires(M& m, const Batch& batch) {
  { m.loss(batch) } -> std::convertible_to<double>;
};
template <class M>
concept has_backward = requires(M& m, BackwardOptions options) { m.backward(options); };
template <class M>
concept has_logits = requires(const M& m) {
  { m.logits() } -> std::convertible_to<const typename M::TensorT&>;
};
template <class M>
concept has_attention_probs = requires(const M& m, int site) {
  { m.attention_probs(site) } -> std::convertible_to<const typename M::TensorT&>;
};
template <class M>
concept has_attention_probs_grad = requires(const M& m, int site) {
  { m.attention_probs_grad(site) } -> std::convertible_to<const typename M::TensorT&>;
};
template <class M>
concept has_logits_grad = requires(M& m) {
  { m.logits_grad() } -> std::convertible_to<typename M::TensorT&>;
};
template <class M, class Batch>
concept has_attribution_target = requires(const M& m, const Batch& batch) {
  { m.attribution_target(batch) } -> std::same_as<AttributionTarget>;
};
template <class M, class Batch>
concept has_forward_prefix = requires(M& m, const Batch& batch, int layers, PassOptions pass) {
  m.forward_prefix(batch, layers, pass);
};
template <class M, class Batch>
concept has_forward_from = requires(M& m, const Batch& batch, int layer, const typename M::value_type* input,
                                    PassOptions pass) {
  m.forward_from(layer, input, batch, pass);
};
template <class M>
concept has_layer_input = requires(const M& m, int layer) {
  { m.layer_input(layer) } -> std::convertible_to<const typename M::TensorT&>;
};
template <class M>
concept has_use_workspace = requires(M& m) { m.use_workspace(0); };
template <class M>
concept has_example_scales = requires(M& m, int site, std::span<const typename M::value_type> alphas) {
  m.set_attention_example_scales(site, alphas);
};
template <class M, class Batch>
concept has_stack_batch = requires(const M& m, const Batch& batch, int64_t copies, Batch& out) {
  m.stack_batch(batch, copies, out);
};
template <class M, class Batch>
concept has_pass_bytes = requires(const M& m, const Batch& batch, int layer) {
  { m.pass_bytes(batch, layer) } -> std::convertible_to<double>;
};
}  // namespace contract

/// What AdDrop itself calls: member types value_type, backend_type, TensorT (=
/// Tensor<value_type, backend_type>); context(); num_attention_sites();
/// attention_site(site, batch) -> AttentionSite; set_attention_mask(site, const TensorT*)
/// (an additive mask of the site's shape, nullptr removes it) and reset_attention_sites();
/// forward(batch, PassOptions); loss(batch) -> double (the gold loss of the last forward,
/// which also sets the gradient backward() starts from); backward(BackwardOptions);
/// logits() of the last forward.
template <class M, class Batch>
concept AttentionSiteModel = contract::has_types<M> && contract::has_context<M> &&
                             contract::has_num_attention_sites<M> && contract::has_attention_site<M, Batch> &&
                             contract::has_set_attention_mask<M> && contract::has_forward<M, Batch> &&
                             contract::has_loss<M, Batch> && contract::has_backward<M> && contract::has_logits<M>;

/// Attention attribution (AA) also reads attention_probs(site): A_l of the last forward.
template <class M, class Batch>
concept AttentionProbsModel = AttentionSiteModel<M, Batch> && contract::has_attention_probs<M>;

/// Gradient attribution (GA) also sets the objective's gradient and reads d/dA_l:
/// attribution_target(batch) -> AttributionTarget; logits_grad() (writable: backward()
/// starts from it); attention_probs_grad(site) after a backward (BackwardOptions may stop
/// it at a site and skip weight gradients).
template <class M, class Batch>
concept GradientModel = AttentionProbsModel<M, Batch> && contract::has_attention_probs_grad<M> &&
                        contract::has_logits_grad<M> && contract::has_attribution_target<M, Batch>;

/// Integrated gradients (IGA) also runs the layers from a target site up on stacked copies
/// of the batch, each copy with its own scale α on A_l: forward_prefix(batch, l, pass)
/// (only what lies below site l), layer_input(l) (its input, rows × hidden),
/// use_workspace(0 or 1) (a second set of activations, so the first forward survives),
/// set_attention_example_scales(l, alphas) (one α per stacked example; empty removes),
/// forward_from(l, input, stacked_batch, pass), stack_batch(batch, copies, out), and
/// pass_bytes(batch, l): the activation bytes of one forward+backward from site l up for
/// one copy of the batch (to size the stacks under a memory cap).
template <class M, class Batch>
concept IntegratedGradientsModel =
    GradientModel<M, Batch> && contract::has_forward_prefix<M, Batch> && contract::has_forward_from<M, Batch> &&
    contract::has_layer_input<M> && contract::has_use_workspace<M> && contract::has_example_scales<M> &&
    contract::has_stack_batch<M, Batch> && contract::has_pass_bytes<M, Batch>;

// The checks: each static_assert names one member. They return true so that a caller can
// write static_assert(check_gradient_model<M, Batch>()).
template <class M, class Batch>
consteval bool check_attention_site_model() {
  static_assert(contract::has_types<M>,
                "AD-DROP model contract: needs member types value_type, backend_type and TensorT = "
                "Tensor<value_type, backend_type>");
  if constexpr (contract::has_types<M>) {
    static_assert(contract::has_context<M>, "AD-DROP model contract: missing `context()` (the backend context)");
    static_assert(contract::has_num_attention_sites<M>, "AD-DROP model contract: missing `num_attention_sites()`");
    static_assert(contract::has_attention_site<M, Batch>,
                  "AD-DROP model contract: missing `attention_site(int site, const Batch&) -> models::AttentionSite`");
    static_assert(contract::has_set_attention_mask<M>,
                  "AD-DROP model contract: missing `set_attention_mask(int site, const TensorT*)` or "
                  "`reset_attention_sites()`");
    static_assert(contract::has_forward<M, Batch>,
                  "AD-DROP model contract: missing `forward(const Batch&, models::PassOptions)`");
    static_assert(contract::has_loss<M, Batch>, "AD-DROP model contract: missing `loss(const Batch&) -> double`");
    static_assert(contract::has_backward<M>, "AD-DROP model contract: missing `backward(models::BackwardOptions)`");
    static_assert(contract::has_logits<M>, "AD-DROP model contract: missing `logits() const -> const TensorT&`");
  }
  return true;
}

template <class M, class Batch>
consteval bool check_attention_probs_model() {
  check_attention_site_model<M, Batch>();
  if constexpr (contract::has_types<M>)
    static_assert(contract::has_attention_probs<M>,
                  "AD-DROP model contract: missing `attention_probs(int site) const -> const TensorT&`");
  return true;
}

template <class M, class Batch>
consteval bool check_gradient_model() {
  check_attention_probs_model<M, Batch>();
  if constexpr (contract::has_types<M>) {
    static_assert(contract::has_attention_probs_grad<M>,
                  "AD-DROP model contract: missing `attention_probs_grad(int site) const -> const TensorT&`");
    static_assert(contract::has_logits_grad<M>, "AD-DROP model contract: missing `logits_grad() -> TensorT&`");
    static_assert(contract::has_attribution_target<M, Batch>,
                  "AD-DROP model contract: missing `attribution_target(const Batch&) const -> models::AttributionTarget`");
  }
  return true;
}

template <class M, class Batch>
consteval bool check_integrated_gradients_model() {
  check_gradient_model<M, Batch>();
  if constexpr (contract::has_types<M>) {
    static_assert(contract::has_forward_prefix<M, Batch>,
                  "AD-DROP model contract: missing `forward_prefix(const Batch&, int layers, models::PassOptions)`");
    static_assert(contract::has_forward_from<M, Batch>,
                  "AD-DROP model contract: missing `forward_from(int site, const value_type* input, const Batch&, "
                  "models::PassOptions)`");
    static_assert(contract::has_layer_input<M>,
                  "AD-DROP model contract: missing `layer_input(int site) const -> const TensorT&`");
    static_assert(contract::has_use_workspace<M>, "AD-DROP model contract: missing `use_workspace(int)`");
    static_assert(contract::has_example_scales<M>,
                  "AD-DROP model contract: missing `set_attention_example_scales(int site, std::span<const value_type>)`");
    static_assert(contract::has_stack_batch<M, Batch>,
                  "AD-DROP model contract: missing `stack_batch(const Batch&, int64_t copies, Batch& out) const`");
    static_assert(contract::has_pass_bytes<M, Batch>,
                  "AD-DROP model contract: missing `pass_bytes(const Batch&, int site) const -> double`");
  }
  return true;
}

}  // namespace addrop::models
