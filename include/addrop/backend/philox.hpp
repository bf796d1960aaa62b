#pragma once
// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11):
// a counter-based generator. Draw i of stream (seed, offset) is a pure function of
// (seed, offset + i), so every backend produces the same dropout and AD-DROP masks
// from the same seed, in any thread order.
#include <cstdint>

#if defined(__CUDACC__)
#define ADDROP_HOST_DEVICE __host__ __device__
#else
#define ADDROP_HOST_DEVICE
#endif

namespace addrop::random {

struct Philox4x32 {
  static constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  static constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;

  /// Four 32-bit words for 128-bit counter (ctr_lo, ctr_hi as two 64-bit halves) and 64-bit key.
  ADDROP_HOST_DEVICE static void generate(uint64_t key, uint64_t counter_lo, uint64_t counter_hi,
                                          uint32_t out[4]) {
    uint32_t c0 = static_cast<uint32_t>(counter_lo), c1 = static_cast<uint32_t>(counter_lo >> 32);
    uint32_t c2 = static_cast<uint32_t>(counter_hi), c3 = static_cast<uint32_t>(counter_hi >> 32);
    uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
    for (int round = 0; round < 10; ++round) {
      const uint64_t p0 = static_cast<uint64_t>(kMul0) * c0;
      const uint64_t p1 = static_cast<uint64_t>(kMul1) * c2;
      const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
      const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
      c0 = hi1 ^ c1 ^ k0;
      c1 = lo1;
      c2 = hi0 ^ c3 ^ k1;
      c3 = lo0;
      k0 += kWeyl0;
      k1 += kWeyl1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
  }
};

/// 24 high bits of a word -> float in [0, 1); exactly representable, identical on every backend.
ADDROP_HOST_DEVICE inline float to_unit_float(uint32_t x) {
  return static_cast<float>(x >> 8) * (1.0f / 16777216.0f);
}

/// The uniform draw number `index` of the stream (seed, stream): element index uses
/// counter index / 4 and word index % 4.
ADDROP_HOST_DEVICE inline float uniform(uint64_t seed, uint64_t stream, uint64_t index) {
  uint32_t words[4];
  Philox4x32::generate(seed, index >> 2, stream, words);
  return to_unit_float(words[index & 3]);
}

}  // namespace addrop::random
