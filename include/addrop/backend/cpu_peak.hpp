#pragma once
// This CPU's multiply-add rates, measured rather than read off a data sheet: register-only
// loops of independent AVX-512 multiply-adds (16 accumulators, no loads or stores inside the
// loop), float32 FMA (_mm512_fmadd_ps: 16 lanes x 2 = 32 flops per instruction) and bf16
// dot products (_mm512_dpbf16_ps, vdpbf16ps: 16 lanes x 2 products x 2 = 64 flops).
// The CPU backend compares the two to pick its bf16 product engine (cpu_bf16.hpp): some
// CPUs that have AVX512-BF16 run vdpbf16ps at half their float32 rate (Intel Xeons without
// AMX), others at twice it (AMD Zen 4). bench/bench_gemm.cpp reports the same loops as the
// peak. x86-64 host code only (compiled with function target attributes, so a portable
// build has them too; callers check __builtin_cpu_supports first).
#if defined(__x86_64__) && !defined(__CUDACC__)
#define ADDROP_CPU_PEAK_LOOPS 1
#include <immintrin.h>

#include <chrono>
#include <cstdint>

namespace addrop::backend::cpu_peak {

inline constexpr int kAccumulators = 16;  // independent chains: more than latency x issue width
inline constexpr double kF32FlopsPerInstruction = 32, kBf16FlopsPerInstruction = 64;

/// `loops` trips of 16 float32 FMAs; returns a sum that keeps the accumulators live.
__attribute__((target("avx512f"), noinline)) inline float f32_fma_loop(int64_t loops) {
  __m512 acc[kAccumulators];
  for (__m512& a : acc) a = _mm512_setzero_ps();
  __m512 x = _mm512_set1_ps(1.0f), y = _mm512_set1_ps(1e-7f);
  asm("" : "+v"(x), "+v"(y));  // opaque to the compiler: no folding of x * y into an add
  for (int64_t n = 0; n < loops; ++n) {
#pragma GCC unroll 16
    for (int i = 0; i < kAccumulators; ++i) acc[i] = _mm512_fmadd_ps(x, y, acc[i]);
  }
  __m512 s = acc[0];
  for (int i = 1; i < kAccumulators; ++i) s = _mm512_add_ps(s, acc[i]);
  return _mm512_reduce_add_ps(s);
}

/// `loops` trips of 16 bf16 dot products (vdpbf16ps); needs AVX512-BF16.
__attribute__((target("avx512bf16,avx512f"), noinline)) inline float bf16_dot_loop(int64_t loops) {
  __m512 acc[kAccumulators];
  for (__m512& a : acc) a = _mm512_setzero_ps();
  // bf16 pairs: 1.0 (0x3f80) and ~1e-7 (0x33d7), so the sums stay finite and normal
  __m512bh x = (__m512bh)_mm512_set1_epi32(0x3f803f80), y = (__m512bh)_mm512_set1_epi32(0x33d733d7);
  asm("" : "+v"(x), "+v"(y));
  for (int64_t n = 0; n < loops; ++n) {
#pragma GCC unroll 16
    for (int i = 0; i < kAccumulators; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], x, y);
  }
  __m512 s = acc[0];
  for (int i = 1; i < kAccumulators; ++i) s = _mm512_add_ps(s, acc[i]);
  return _mm512_reduce_add_ps(s);
}

/// One thread's float32 and bf16 multiply-add rates, GFLOP/s: the best of `rounds`
/// alternating runs of `loops` trips each (the first runs also bring the AVX-512 units up).
/// 2^15 trips are about half a millisecond per run.
struct MultiplyAddRates {
  double f32_gflops = 0, bf16_gflops = 0;
};
inline MultiplyAddRates measure_multiply_add_rates(int64_t loops = int64_t{1} << 15, int rounds = 4) {
  auto rate = [loops](float (*loop)(int64_t), double flops_per_instruction) {
    const auto start = std::chrono::steady_clock::now();
    volatile float sink = loop(loops);
    (void)sink;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return flops_per_instruction * kAccumulators * static_cast<double>(loops) / seconds / 1e9;
  };
  MultiplyAddRates best;
  for (int r = 0; r < rounds; ++r) {
    const double f32 = rate(f32_fma_loop, kF32FlopsPerInstruction);
    const double bf16 = rate(bf16_dot_loop, kBf16FlopsPerInstruction);
    if (f32 > best.f32_gflops) best.f32_gflops = f32;
    if (bf16 > best.bf16_gflops) best.bf16_gflops = bf16;
  }
  return best;
}

}  // namespace addrop::backend::cpu_peak
#endif
