#pragma once
// AD-DROP selection as plain host loops (docs/algorithm.md steps 4-6, and cpu.hpp's
// comments on select_top_p / select_random): the reference that the backends' fused ops
// (Backend::select_top_p, Backend::select_random) must equal bit for bit.
//
// The fused ops replaced a composition of separate passes that used to be backend ops:
//   uniform -> top_p_candidates -> q_sample -> keep_to_additive       (top-p rule)
//   uniform x2 -> random_keep -> keep_to_additive                     (RD's rule)
// Nothing in the library calls those passes any more, so they live here, written as the
// obvious loops (a sort per row for the threshold, the scalar generator for the draws),
// independent of either backend's implementation.
//
// Sites are [B, H, Lq, Lk] row-major (Lq == Lk for self-attention): row r < B*H*Lq holds
// the Lk keys of example r / (H*Lq); element e = r*Lk + j; key_mask is [B, Lk]; k is [B].
#include <algorithm>
#include <cstdint>
#include <vector>

#include <addrop/backend/philox.hpp>

namespace addrop::testing::reference {

/// Draws 0..n-1 of the stream (seed, stream): what Backend::uniform writes, and what the
/// fused ops generate for element e.
inline std::vector<float> uniforms(int64_t n, uint64_t seed, uint64_t stream) {
  std::vector<float> u(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) u[static_cast<std::size_t>(i)] = random::uniform(seed, stream, static_cast<uint64_t>(i));
  return u;
}

/// Candidate region of every row over its non-pad keys (n_b of them): t = the k[b]-th
/// smallest non-pad score (0-based); high: candidates are the non-pad keys with
/// score >= t, low: score < t. k[b] >= n_b (or n_b = 0) gives no candidates (high) or every
/// non-pad key (low). Pad keys are never candidates. Writes 0/1.
template <class T>
void top_p_candidates(int64_t B, int64_t H, int64_t Lq, int64_t Lk, const T* scores, const int32_t* key_mask,
                      const int64_t* k, bool high, T* candidates) {
  std::vector<T> keys;
  for (int64_t r = 0; r < B * H * Lq; ++r) {
    const int64_t b = r / (H * Lq);
    const int32_t* mask = key_mask + b * Lk;
    const T* s = scores + r * Lk;
    T* c = candidates + r * Lk;
    keys.clear();
    for (int64_t j = 0; j < Lk; ++j)
      if (mask[j] != 0) keys.push_back(s[j]);
    const int64_t n = static_cast<int64_t>(keys.size());
    if (n == 0 || k[b] >= n) {
      for (int64_t j = 0; j < Lk; ++j) c[j] = mask[j] != 0 && !high ? T(1) : T(0);
      continue;
    }
    std::sort(keys.begin(), keys.end());
    const T t = keys[static_cast<std::size_t>(k[b])];
    for (int64_t j = 0; j < Lk; ++j) {
      const bool candidate = mask[j] != 0 && (high ? s[j] >= t : s[j] < t);
      c[j] = candidate ? T(1) : T(0);
    }
  }
}

/// q-sampling: keep = candidate ? (u < keep_below) : 1, elementwise over n.
template <class T>
void q_sample(int64_t n, const T* candidates, const float* u, float keep_below, T* keep) {
  for (int64_t i = 0; i < n; ++i) keep[i] = candidates[i] != T(0) && !(u[i] < keep_below) ? T(0) : T(1);
}

/// RD's rule: every non-pad key is a candidate, kept iff u1 < keep_p or u2 < keep_q; pad
/// keys are kept.
template <class T>
void random_keep(int64_t B, int64_t H, int64_t Lq, int64_t Lk, const int32_t* key_mask, const float* u1,
                 float keep_p, const float* u2, float keep_q, T* candidates, T* keep) {
  for (int64_t r = 0; r < B * H * Lq; ++r) {
    const int32_t* mask = key_mask + (r / (H * Lq)) * Lk;
    for (int64_t j = 0; j < Lk; ++j) {
      const int64_t e = r * Lk + j;
      candidates[e] = mask[j] != 0 ? T(1) : T(0);
      keep[e] = mask[j] == 0 || u1[e] < keep_p || u2[e] < keep_q ? T(1) : T(0);
    }
  }
}

/// additive = keep ? 0 : dropped_value (AD-DROP's -10000).
template <class T>
void keep_to_additive(int64_t n, const T* keep, T dropped_value, T* additive) {
  for (int64_t i = 0; i < n; ++i) additive[i] = keep[i] != T(0) ? T(0) : dropped_value;
}

/// The three outputs of one selection.
template <class T>
struct Selection {
  std::vector<T> candidates, keep, additive;
};

/// What select_top_p writes: top_p_candidates, q_sample with the draws u (or, when u is
/// null, the generator's draws of (seed, stream)), keep_to_additive.
template <class T>
Selection<T> select_top_p(int64_t B, int64_t H, int64_t Lq, int64_t Lk, const T* scores, const int32_t* key_mask,
                          const int64_t* k, bool high, const float* u, uint64_t seed, uint64_t stream,
                          float keep_below, T dropped_value) {
  const int64_t n = B * H * Lq * Lk;
  Selection<T> s{std::vector<T>(static_cast<std::size_t>(n)), std::vector<T>(static_cast<std::size_t>(n)),
                 std::vector<T>(static_cast<std::size_t>(n))};
  const std::vector<float> drawn = u ? std::vector<float>{} : uniforms(n, seed, stream);
  const float* d = u ? u : drawn.data();
  top_p_candidates(B, H, Lq, Lk, scores, key_mask, k, high, s.candidates.data());
  q_sample(n, s.candidates.data(), d, keep_below, s.keep.data());
  keep_to_additive(n, s.keep.data(), dropped_value, s.additive.data());
  return s;
}

/// What select_random writes: random_keep with the draws u1 / u2 (or the generator's
/// draws of (seed, stream1) / (seed, stream2) where null), keep_to_additive.
template <class T>
Selection<T> select_random(int64_t B, int64_t H, int64_t Lq, int64_t Lk, const int32_t* key_mask, const float* u1,
                           uint64_t seed, uint64_t stream1, float keep_p, const float* u2, uint64_t stream2,
                           float keep_q, T dropped_value) {
  const int64_t n = B * H * Lq * Lk;
  Selection<T> s{std::vector<T>(static_cast<std::size_t>(n)), std::vector<T>(static_cast<std::size_t>(n)),
                 std::vector<T>(static_cast<std::size_t>(n))};
  const std::vector<float> drawn1 = u1 ? std::vector<float>{} : uniforms(n, seed, stream1);
  const std::vector<float> drawn2 = u2 ? std::vector<float>{} : uniforms(n, seed, stream2);
  random_keep(B, H, Lq, Lk, key_mask, u1 ? u1 : drawn1.data(), keep_p, u2 ? u2 : drawn2.data(), keep_q,
              s.candidates.data(), s.keep.data());
  keep_to_additive(n, s.keep.data(), dropped_value, s.additive.data());
  return s;
}

/// Key masks [B, Lk] that cover the awkward cases: decreasing lengths, example 2 without
/// any key, example 3 with a gap pattern; `lengths` gets each example's non-pad keys.
inline std::vector<int32_t> key_mask_cases(int64_t B, int64_t Lk, std::vector<int64_t>& lengths) {
  std::vector<int32_t> mask(static_cast<std::size_t>(B * Lk), 0);
  lengths.assign(static_cast<std::size_t>(B), 0);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t len = b == 2 ? 0 : std::max<int64_t>(1, Lk - b * (Lk / 3 + 1));
    for (int64_t j = 0; j < len; ++j) mask[b * Lk + j] = 1;
    if (b == 3)
      for (int64_t j = 0; j < Lk; j += 4) mask[b * Lk + j] = 1 - mask[b * Lk + j];
    for (int64_t j = 0; j < Lk; ++j) lengths[b] += mask[b * Lk + j];
  }
  return mask;
}

}  // namespace addrop::testing::reference
