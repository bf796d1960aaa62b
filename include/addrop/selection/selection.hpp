#pragma once
// Selection strategies: attributions -> candidate discard region -> q-sampled keep mask ->
// the additive mask of the second forward (docs/algorithm.md steps 4-6), in one fused backend
// pass. They work on raw backend buffers, so a trainer with its own transformer can call
// them without the library's models.
#include <concepts>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace addrop {

/// Which end of the attributions the candidate region is taken from: High drops among the
/// highest attributions (AD-DROP), Low among the lowest (the paper's counter-experiment).
enum class Side { High, Low };

namespace selection {

/// The threshold index k of docs/algorithm.md step 4, computed as the reference computes it:
/// a float32 product truncated, k = (int64)((float)(1-p) * (float)n) for High and with p
/// for Low. (p = 0.3, n = 90 gives 63, where a double floor gives 62.)
inline int64_t threshold_index(Side side, double p, int64_t n) {
  const float fraction = side == Side::High ? static_cast<float>(1.0 - p) : static_cast<float>(p);
  return static_cast<int64_t>(fraction * static_cast<float>(n));
}

/// Everything one selection call reads and writes for one target site. Pointers are
/// backend buffers except key_lengths (host). Tensors are [batch, heads, queries, keys]
/// (the site's geometry, models::AttentionSite); key_mask is [batch, keys].
///
/// Draws: `uniforms` (and RD's `uniforms2`) when given, else the counter-based generator's
/// draws (seed, stream) (and (seed, stream2)), element e taking draw e: the draws
/// `Backend::uniform(size(), seed, stream, u)` would write, without the buffer.
/// Outputs: each of additive, candidates and keep is written when not null; a training
/// step asks for the additive mask alone, inspection and tests for the 0/1 masks.
template <class T>
struct SelectionArgs {
  int64_t batch = 0, heads = 0, queries = 0, keys = 0;
  const T* attribution = nullptr;     ///< the scores B_l; null for a selection that reads none
  const int32_t* key_mask = nullptr;  ///< [batch, keys], 1 = token, 0 = pad key
  std::span<const int64_t> key_lengths;  ///< host [batch]: n_b, the non-pad keys of each example
  int64_t* threshold_indices = nullptr;  ///< [batch] backend scratch for k_b
  double p = 0.3, q = 0.3;
  const float* uniforms = nullptr;    ///< draws in [0, 1): a candidate is kept iff u < 1 - q; null: generated
  const float* uniforms2 = nullptr;   ///< RD's second draw; null: generated
  uint64_t seed = 0;                  ///< generator seed, when the draws are generated
  uint64_t stream = 0, stream2 = 0;   ///< generator streams of the first and RD's second draw
  int64_t first_draw = 0;             ///< generated draws start here: a shard's offset in the whole batch
  T* additive = nullptr;              ///< out: 0 where kept, dropped_value where dropped
  T dropped_value = T(-10000);        ///< the reference's additive value for a dropped (or pad) key
  T* candidates = nullptr;            ///< out 0/1
  T* keep = nullptr;                  ///< out 0/1
  int64_t rows() const { return batch * heads * queries; }
  int64_t size() const { return rows() * keys; }
};

/// A selection policy turns one site's attributions into the candidate region and the keep
/// mask, over a backend: `select<Backend>(ctx, args)` writes every output of SelectionArgs
/// that is not null (AdDrop's training step passes the additive mask alone). A policy whose
/// rule reads no attributions says `static constexpr bool reads_attributions = false`
/// (AdDrop then accepts an attribution that gives none, attribution::None).
template <class S, class Backend, class T>
concept Selection = requires(const S s, const typename Backend::Context& ctx, const SelectionArgs<T>& args) {
  s.template select<Backend>(ctx, args);
};

/// Whether a selection policy reads the attributions (true unless it says otherwise).
template <class S>
inline constexpr bool reads_attributions = [] {
  if constexpr (requires { S::reads_attributions; }) return static_cast<bool>(S::reads_attributions);
  else return true;
}();

namespace detail {
template <class T>
void check_common(const SelectionArgs<T>& a, const char* who) {
  auto fail = [&](const std::string& what) { throw std::invalid_argument(std::string(who) + ": " + what); };
  if (!(a.p >= 0 && a.p <= 1) || !(a.q >= 0 && a.q <= 1))
    fail("p and q must be in [0, 1] (p = " + std::to_string(a.p) + ", q = " + std::to_string(a.q) + ")");
  if (!a.key_mask) fail("the key mask is missing");
  if (!a.additive && !a.candidates && !a.keep) fail("no output buffer (additive, candidates or keep)");
}
}  // namespace detail

/// AD-DROP's rule: the top-p candidate region of each row (the highest attributions, or
/// the lowest with Side::Low), each candidate dropped with probability q.
class TopP {
 public:
  TopP() = default;
  explicit TopP(Side side) : side_(side) {}
  Side side() const { return side_; }

  /// Candidates, q-sampling and the additive mask in one fused backend pass
  /// (Backend::select_top_p).
  template <class Backend, class T>
  void select(const typename Backend::Context& ctx, const SelectionArgs<T>& a) const {
    detail::check_common(a, "AD-DROP selection (top-p)");
    if (static_cast<int64_t>(a.key_lengths.size()) != a.batch)
      throw std::invalid_argument("AD-DROP selection (top-p): key_lengths has " + std::to_string(a.key_lengths.size()) +
                                  " entries for a batch of " + std::to_string(a.batch));
    if (!a.attribution || !a.threshold_indices)
      throw std::invalid_argument("AD-DROP selection (top-p): the attributions or the threshold scratch is missing");
    std::vector<int64_t>& k = host_k_;
    k.resize(static_cast<std::size_t>(a.batch));
    for (int64_t b = 0; b < a.batch; ++b) k[b] = threshold_index(side_, a.p, a.key_lengths[b]);
    Backend::to_device(ctx, a.batch, k.data(), a.threshold_indices);
    Backend::select_top_p(ctx, a.batch, a.heads, a.queries, a.keys, a.attribution, a.key_mask, a.threshold_indices,
                          side_ == Side::High, a.uniforms, a.seed, a.stream, static_cast<float>(1.0 - a.q),
                          a.dropped_value, a.additive, a.candidates, a.keep, a.first_draw);
  }

 private:
  Side side_ = Side::High;
  mutable std::vector<int64_t> host_k_;  // reused: no allocation per step
};

/// RD, the paper's random-dropping baseline: every non-pad key is a candidate, kept iff
/// u1 < 1 - p or u2 < 1 - q. Paired with attribution::None.
struct Random {
  static constexpr bool reads_attributions = false;

  template <class Backend, class T>
  void select(const typename Backend::Context& ctx, const SelectionArgs<T>& a) const {
    detail::check_common(a, "AD-DROP selection (random)");
    Backend::select_random(ctx, a.batch, a.heads, a.queries, a.keys, a.key_mask, a.uniforms, a.seed, a.stream,
                           static_cast<float>(1.0 - a.p), a.uniforms2, a.stream2, static_cast<float>(1.0 - a.q),
                           a.dropped_value, a.additive, a.candidates, a.keep, a.first_draw);
  }
};

}  // namespace selection
}  // namespace addrop
