// Matrix-product throughput of the CPU backend, float32 against bf16 mixed precision, at
// the linear-layer shapes of the benchmark step, beside this CPU's peak for each.
//
// Gemm/<M>x<N>x<K>/<precision>: one Cpu::gemm per iteration, C[M,N] = A[M,K] B[N,K]^T as
// nn::Linear's forward calls it (M tokens, K in features, N out features), through a
// backend context of ADDROP_BENCH_THREADS threads (default 2) and the precision: f32, or
// bf16 (Precision::Bf16Mixed: both inputs rounded to bf16 while they are packed, float32
// accumulation and output; the packing is part of every call, as in the training step,
// which re-rounds its float32 weights at each product). The context stanza's
// bf16_matmul_engine says what computes the bf16 products. Shapes: the small step's
// (2048 tokens = 16 x 128; 256x256, 256x1024, 1024x256), the base step's (1024 tokens =
// 8 x 128; 768x768, 768x3072, 3072x768) and the base shapes at 4096 tokens (32 x 128).
// Counters: GFLOPs (2 M N K per product, per second) and GFLOP_per_call.
//
// Gemm/peak/<precision>: the arithmetic peak of this CPU for the same number of threads,
// measured rather than taken from a data sheet: each thread runs a register-only loop of
// independent AVX-512 multiply-adds (16 accumulators, no loads or stores in the loop):
//   f32:  _mm512_fmadd_ps     16 lanes x 2 flops = 32 flops per instruction,
//   bf16: _mm512_dpbf16_ps    (vdpbf16ps) 16 lanes x 2 bf16 products x 2 = 64 flops.
// A case whose instructions the CPU lacks (no AVX-512F, no AVX512-BF16) is skipped with a
// message. GFLOPs of a Gemm case over the peak of its precision = the fraction of peak.
//
//   bench_gemm [--benchmark_filter=/bf16] [--benchmark_min_time=SECONDS]
#include <benchmark/benchmark.h>
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <addrop/addrop.hpp>
#include <addrop/backend/cpu_peak.hpp>

#include "bench_env.hpp"

namespace {

using namespace addrop::bench;  // bench_threads, run_benchmarks

using addrop::Precision;
using Cpu = addrop::backend::Cpu;


void BM_Gemm(benchmark::State& state, int64_t M, int64_t N, int64_t K, Precision precision) {
  const Cpu::Context ctx{.threads = bench_threads(), .precision = precision};
  std::vector<float> A(static_cast<std::size_t>(M * K)), B(static_cast<std::size_t>(N * K)),
      C(static_cast<std::size_t>(M * N));
  // Deterministic values in [-1, 1) (no zeros or denormals to take shortcuts on).
  auto fill = [](std::vector<float>& v, uint32_t seed) {
    for (float& x : v) {
      seed = seed * 1664525u + 1013904223u;
      x = static_cast<float>(seed >> 8) / static_cast<float>(1u << 23) - 1.0f;
    }
  };
  fill(A, 1);
  fill(B, 2);
  auto call = [&] { Cpu::gemm(ctx, false, true, M, N, K, 1.0f, A.data(), K, B.data(), K, 0.0f, C.data(), N); };
  call();  // warm-up: oneDNN's primitive for the shape, the packing scratch, the pages of C
  for (auto _ : state) {
    call();
    benchmark::DoNotOptimize(C.data());
    benchmark::ClobberMemory();
  }
  const double flops = 2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
  state.counters["GFLOPs"] = benchmark::Counter(flops * static_cast<double>(state.iterations()) / 1e9,
                                                benchmark::Counter::kIsRate);
  state.counters["GFLOP_per_call"] = flops / 1e9;
}

// ---------------------------------------------------------------- peak
// The loops are the library's (include/addrop/backend/cpu_peak.hpp, which the CPU backend
// also runs to choose its bf16 engine); here each thread runs 2^22 trips (~10-50 ms).
constexpr int64_t kPeakLoops = 1 << 22;
namespace peak = addrop::backend::cpu_peak;

void BM_Peak(benchmark::State& state, Precision precision) {
  __builtin_cpu_init();
  const bool bf16 = precision == Precision::Bf16Mixed;
  if (!__builtin_cpu_supports("avx512f")) {
    state.SkipWithError("skipped: this CPU has no AVX-512F (the peak loops are AVX-512)");
    return;
  }
  if (bf16 && !__builtin_cpu_supports("avx512bf16")) {
    state.SkipWithError("skipped: this CPU has no AVX512-BF16 (vdpbf16ps), so no bf16 peak to measure");
    return;
  }
  const int threads = bench_threads();
  float (*loop)(int64_t) = bf16 ? peak::bf16_dot_loop : peak::f32_fma_loop;
  std::vector<float> sums(static_cast<std::size_t>(threads));
  auto run = [&] {
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) pool.emplace_back([&, t] { sums[t] = loop(kPeakLoops); });
    for (auto& th : pool) th.join();
    benchmark::DoNotOptimize(sums.data());
  };
  run();  // warm-up: clocks up, AVX-512 units powered
  for (auto _ : state) run();
  const double flops_per_instruction = bf16 ? peak::kBf16FlopsPerInstruction : peak::kF32FlopsPerInstruction;
  const double flops = flops_per_instruction * peak::kAccumulators * static_cast<double>(kPeakLoops) * threads;
  state.counters["GFLOPs"] =
      benchmark::Counter(flops * static_cast<double>(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
  state.counters["threads"] = threads;
  state.counters["flops_per_instruction"] = flops_per_instruction;
}

void register_all() {
  struct Shape {
    int64_t M, N, K;
  };
  const std::vector<Shape> shapes = {
      {2048, 256, 256},  {2048, 1024, 256},  {2048, 256, 1024},   // small: 16 x 128 tokens
      {1024, 768, 768},  {1024, 3072, 768},  {1024, 768, 3072},   // base: 8 x 128 tokens
      {4096, 768, 768},  {4096, 3072, 768},  {4096, 768, 3072},   // base dims, 32 x 128 tokens
  };
  for (const Precision p : {Precision::F32, Precision::Bf16Mixed})
    benchmark::RegisterBenchmark(("Gemm/peak/" + std::string(addrop::precision_name(p))).c_str(),
                                 [p](benchmark::State& st) { BM_Peak(st, p); })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  for (const Shape& s : shapes)
    for (const Precision p : {Precision::F32, Precision::Bf16Mixed}) {
      const std::string name = "Gemm/" + std::to_string(s.M) + "x" + std::to_string(s.N) + "x" + std::to_string(s.K) +
                               "/" + std::string(addrop::precision_name(p));
      benchmark::RegisterBenchmark(name.c_str(), [s, p](benchmark::State& st) { BM_Gemm(st, s.M, s.N, s.K, p); })
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
    }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  return run_benchmarks(argc, argv);
}
