// CUDA backend tests: every op of the Backend concept against plain host loops
// (tests/support/backend_conformance.hpp, the checks the CPU backend passes in
// tests/unit/test_backend_cpu.cpp; its header gives and justifies the tolerances), the
// CUDA-only paths (TF32 GEMMs, Bf16Mixed GEMMs, embedding_backward's fixed summation order,
// the rank variant of the top-p kernel), then whole models and AD-DROP steps on the GPU against the golden
// fixtures (PyTorch) and against the same computation on the CPU; the Marian
// encoder-decoder, its generate() and its seq2seq AD-DROP steps against their fixtures.
//
// Tolerances (norm-wise relative: max |got - want| / max |want|):
//   ops vs host loops:           float 1e-5, double 1e-12 (backend_conformance.hpp);
//   model / AD-DROP vs fixtures: float 1e-4, double 1e-9 (as tests/golden/);
//   AD-DROP step GPU vs CPU:     float 1e-4, double 1e-10;
//   Bf16Mixed GEMMs vs host:     1e-5 of each element's sum of |terms| (see kBf16Tol);
//   Bf16Mixed logits GPU vs CPU: 1e-2.
// Integer-valued results must be identical: uniforms, dropout keep patterns, top-p
// candidates, keep masks, additive masks.
//
// Exit codes: 0 every check passed, 1 a check failed, ADDROP_CUDA_SKIP_CODE (77) when no CUDA
// device can be used (ctest reports "skipped"). Options: --fixtures DIR (else the environment
// variable ADDROP_FIXTURE_DIR, else the build's tests/golden/fixtures), --only SUBSTRING
// (repeatable: run only the sections whose name holds one, e.g. under compute-sanitizer),
// --verbose (print every check, not only failures).
#include <addrop/backend/cuda/cuda.hpp>
#include <addrop/addrop.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "support/backend_conformance.hpp"
#include "support/compare.hpp"
#include "support/fixture_policies.hpp"
#include "support/marian_fixture.hpp"
#include "support/selection_reference.hpp"

#ifndef ADDROP_CUDA_SKIP_CODE
#define ADDROP_CUDA_SKIP_CODE 77
#endif
#ifndef ADDROP_FIXTURE_DIR
#define ADDROP_FIXTURE_DIR "tests/golden/fixtures"
#endif

namespace fs = std::filesystem;
using namespace addrop;
using backend::Cpu;
using backend::Cuda;

namespace {

// ------------------------------------------------------------------ bookkeeping
struct Suite {
  int checks = 0, failures = 0;
  bool verbose = false;
  std::vector<std::string> only;  // --only SUBSTRING (repeatable): run the sections whose name holds one
  std::vector<std::string> failed;
  std::string section;
} g;

void record(bool ok, const std::string& line) {
  ++g.checks;
  if (!ok) {
    ++g.failures;
    g.failed.push_back(g.section + ": " + line);
  }
  if (!ok || g.verbose) std::printf("  %s %s\n", ok ? "ok  " : "FAIL", line.c_str());
}

template <class A, class B>
bool check_close(const std::string& name, const A* got, const B* want, int64_t n, double tol) {
  const auto c = testing::compare(name, got, want, n, tol);
  const bool ok = c.relative() <= tol;
  record(ok, c.report);
  return ok;
}
template <class A, class B>
bool check_close(const std::string& name, const std::vector<A>& got, const std::vector<B>& want, double tol) {
  if (got.size() != want.size()) {
    record(false, name + ": sizes differ, got " + std::to_string(got.size()) + " want " + std::to_string(want.size()));
    return false;
  }
  return check_close(name, got.data(), want.data(), static_cast<int64_t>(got.size()), tol);
}
bool check_scalar(const std::string& name, double got, double want, double tol) {
  const double err = std::abs(got - want), scale = std::max(std::abs(want), 1e-300);
  const bool ok = err <= tol * scale || err == 0;
  std::ostringstream os;
  os.precision(17);
  os << name << ": got " << got << " want " << want << ", relative " << err / scale << " vs tolerance " << tol;
  record(ok, os.str());
  return ok;
}
// Values equal element by element (0/1 masks, uniforms, dropout outputs).
template <class A, class B>
bool check_same(const std::string& name, const std::vector<A>& got, const std::vector<B>& want) {
  std::ostringstream os;
  os << name << ": ";
  if (got.size() != want.size()) {
    record(false, name + ": sizes differ, got " + std::to_string(got.size()) + " want " + std::to_string(want.size()));
    return false;
  }
  int64_t differ = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (static_cast<double>(got[i]) != static_cast<double>(want[i])) {
      if (differ < 5) os << "[" << i << "] got " << static_cast<double>(got[i]) << " want " << static_cast<double>(want[i]) << "; ";
      ++differ;
    }
  }
  os << differ << " of " << got.size() << " differ";
  record(differ == 0, os.str());
  return differ == 0;
}
void check_true(bool ok, const std::string& what) { record(ok, what); }

// Runs one section; an exception is a failure that names it.
void section(const std::string& name, const std::function<void()>& body) {
  if (!g.only.empty() && std::none_of(g.only.begin(), g.only.end(),
                                      [&](const std::string& s) { return name.find(s) != std::string::npos; }))
    return;
  g.section = name;
  const int before = g.failures;
  try {
    body();
  } catch (const std::exception& e) {
    record(false, std::string("exception: ") + e.what());
  }
  std::printf("%-58s %s\n", name.c_str(), g.failures == before ? "ok" : "FAILED");
  std::fflush(stdout);
}

template <class T> constexpr double golden_tol() { return sizeof(T) == 4 ? 1e-4 : 1e-9; }
template <class T> constexpr double step_tol() { return sizeof(T) == 4 ? 1e-4 : 1e-10; }
template <class T> const char* type_name() { return sizeof(T) == 4 ? "float" : "double"; }

// ------------------------------------------------------------------ host <-> device helpers
Cpu::Context cpu{.threads = 2};
Cuda::Context gpu;

template <class T>
using DevT = Tensor<T, Cuda>;

template <class T>
DevT<T> up(const std::vector<T>& h) {
  DevT<T> d({static_cast<int64_t>(h.size())});
  Cuda::to_device(gpu, static_cast<int64_t>(h.size()), h.data(), d.data());
  return d;
}
template <class T>
std::vector<T> down(const T* dev, int64_t n) {
  std::vector<T> h(static_cast<std::size_t>(n));
  Cuda::to_host(gpu, n, dev, h.data());
  return h;
}
template <class T>
std::vector<T> down(const DevT<T>& t) { return down(t.data(), t.numel()); }

std::mt19937_64 rng(20240611);
template <class T>
std::vector<T> random_vec(int64_t n, double lo = -1, double hi = 1) {
  std::uniform_real_distribution<double> d(lo, hi);
  std::vector<T> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = static_cast<T>(d(rng));
  return v;
}
std::vector<int32_t> random_ints(int64_t n, int32_t lo, int32_t hi) {
  std::uniform_int_distribution<int32_t> d(lo, hi);
  std::vector<int32_t> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = d(rng);
  return v;
}
std::string shape_str(std::initializer_list<int64_t> dims) {
  std::string s = "[";
  for (auto it = dims.begin(); it != dims.end(); ++it) {
    if (it != dims.begin()) s += ',';
    s += std::to_string(*it);
  }
  s += ']';
  return s;
}

// ================================================================== ops
// Every op of the Backend concept against plain host loops: tests/support/
// backend_conformance.hpp (the same checks tests/unit/test_backend_cpu.cpp runs on the CPU),
// one section per category and element type (see main). What follows here is what only the
// CUDA backend has: TF32 GEMMs, the fixed order of embedding_backward's sums, and the
// rank variant of the top-p kernel (rows too long for shared memory).

// TF32 context (float only makes a difference): products within TF32's precision.
void test_gemm_tf32() {
  Cuda::Context tf = gpu;
  tf.tf32 = true;
  const int64_t M = 96, N = 80, K = 256;
  const auto A = random_vec<float>(M * K), B = random_vec<float>(K * N);
  std::vector<float> C(static_cast<std::size_t>(M * N));
  auto dA = up(A), dB = up(B);
  DevT<float> dC({M * N});
  Cpu::gemm(cpu, false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, C.data(), N);
  Cuda::gemm(tf, false, false, M, N, K, 1.0f, dA.data(), K, dB.data(), N, 0.0f, dC.data(), N);
  check_close("gemm float with tf32 = true (tolerance 1e-2)", down(dC), C, 1e-2);
}

// ------------------------------------------------------------------ Bf16Mixed GEMMs
// Precision::Bf16Mixed rounds both float inputs of every product to bfloat16 (nearest even)
// and accumulates in float32. The reference rounds the inputs the same way
// (backend::cpu_detail::round_to_bf16, the CPU backend's rounding, bit-identical to
// __float2bfloat16_rn on finite values) and computes in double, so what is left is the
// float32 arithmetic: a product of two bf16 values is exact in float32, and summing K of
// them (in any order, tensor-core order included) then alpha * acc + beta * c errs by at
// most about (K + 2) * 2^-24 of the sum of the |terms|, S = sum_k |alpha a_ik b_kj| + |beta c_ij|
// (typically ~sqrt(K) * 2^-24). K <= 130 here bounds it by 7.9e-6, hence per element
//   |got - want| <= kBf16Tol * S,   kBf16Tol = 1e-5,
// and elements of C outside the matrices (leading-dimension padding, gaps between slices)
// must keep their bits (S = 0 there). The same data multiplied without the rounding differs
// from the reference by ~2^-9 * S / sqrt(K) (bf16 has 8 significant bits), far above 1e-5:
// the checks below also confirm that (a float32 product fails them).
constexpr double kBf16Tol = 1e-5;

Cuda::Context with_bf16(Cuda::Context c) {
  c.precision = Precision::Bf16Mixed;
  return c;
}
Cpu::Context cpu_bf16{.threads = 2, .precision = Precision::Bf16Mixed};

// One (batched) GEMM: op(A) [M,K], op(B) [K,N], C [M,N]; slice (o, i) at o * outer + i * inner.
struct Bf16Case {
  std::string layout;
  bool ta, tb;
  int64_t M, N, K, lda, ldb, ldc;
  Cuda::BatchStrides sa, sb, sc;
  int64_t outer = 1, inner = 1;
  bool single = false;  // run through gemm (2D), not gemm_batched
  float alpha = 1, beta = 0;

  int64_t a_rows() const { return ta ? K : M; }
  int64_t a_cols() const { return ta ? M : K; }
  int64_t b_rows() const { return tb ? N : K; }
  int64_t b_cols() const { return tb ? K : N; }
  int64_t extent(int64_t rows, int64_t cols, int64_t ld, Cuda::BatchStrides s) const {
    return (outer - 1) * s.outer + (inner - 1) * s.inner + (rows - 1) * ld + cols + 3;  // + 3 trailing, untouched
  }
  int64_t a_size() const { return extent(a_rows(), a_cols(), lda, sa); }
  int64_t b_size() const { return extent(b_rows(), b_cols(), ldb, sb); }
  int64_t c_size() const { return extent(M, N, ldc, sc); }
  std::string name() const {
    std::ostringstream os;
    os << (single ? "gemm" : "gemm_batched") << " " << layout << " M,N,K=" << shape_str({M, N, K})
       << " lda,ldb,ldc=" << shape_str({lda, ldb, ldc}) << " outer,inner=" << shape_str({outer, inner})
       << " ta=" << ta << " tb=" << tb << " alpha=" << alpha << " beta=" << beta;
    return os.str();
  }
};

// The expected C (elements outside the matrices: their old values) and each element's S.
struct Bf16Expected {
  std::vector<double> value, bound;
};
template <class T>
Bf16Expected gemm_reference(const Bf16Case& c, const std::vector<T>& A, const std::vector<T>& B,
                            const std::vector<T>& C0, bool round_inputs) {
  auto in = [&](T x) { return round_inputs ? double(backend::cpu_detail::round_to_bf16(float(x))) : double(x); };
  Bf16Expected e{std::vector<double>(C0.begin(), C0.end()), std::vector<double>(C0.size(), 0.0)};
  for (int64_t o = 0; o < c.outer; ++o)
    for (int64_t i = 0; i < c.inner; ++i) {
      const T* a = A.data() + o * c.sa.outer + i * c.sa.inner;
      const T* b = B.data() + o * c.sb.outer + i * c.sb.inner;
      const int64_t c0 = o * c.sc.outer + i * c.sc.inner;
      for (int64_t m = 0; m < c.M; ++m)
        for (int64_t n = 0; n < c.N; ++n) {
          double sum = 0, abs_sum = 0;
          for (int64_t k = 0; k < c.K; ++k) {
            const double x = in(c.ta ? a[k * c.lda + m] : a[m * c.lda + k]) * in(c.tb ? b[n * c.ldb + k] : b[k * c.ldb + n]);
            sum += x;
            abs_sum += std::abs(x);
          }
          const std::size_t at = static_cast<std::size_t>(c0 + m * c.ldc + n);
          const double old = static_cast<double>(C0[at]);
          e.value[at] = double(c.alpha) * sum + (c.beta == 0 ? 0.0 : double(c.beta) * old);
          e.bound[at] = std::abs(double(c.alpha)) * abs_sum + std::abs(double(c.beta) * old);
        }
    }
  return e;
}

// max_i |got_i - want_i| / S_i (0 where equal; infinite where S_i = 0 and they differ, or NaN).
template <class T>
double bounded_error(const std::vector<T>& got, const Bf16Expected& want, int64_t* worst = nullptr) {
  double w = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double err = std::abs(static_cast<double>(got[i]) - want.value[i]);
    const double r = err == 0 ? 0.0 : (want.bound[i] > 0 && !std::isnan(err) ? err / want.bound[i] : INFINITY);
    if (r > w) {
      w = r;
      if (worst) *worst = static_cast<int64_t>(i);
    }
  }
  return w;
}
template <class T>
bool check_bounded(const std::string& name, const std::vector<T>& got, const Bf16Expected& want, double tol) {
  if (got.size() != want.value.size()) {
    record(false, name + ": sizes differ");
    return false;
  }
  int64_t worst = -1;
  const double w = bounded_error(got, want, &worst);
  std::ostringstream os;
  os.precision(9);
  os << name << ": max |got - want| / sum|terms| = " << w << " vs tolerance " << tol;
  if (worst >= 0)
    os << " (worst at [" << worst << "]: got " << static_cast<double>(got[worst]) << " want " << want.value[worst]
       << " sum|terms| " << want.bound[worst] << ")";
  record(w <= tol, os.str());
  return w <= tol;
}

template <class Ctx, class T>
void run_gemm_case(const Ctx& ctx, const Bf16Case& c, const T* A, const T* B, T* C) {
  using Backend = std::conditional_t<std::is_same_v<Ctx, Cuda::Context>, Cuda, Cpu>;
  if (c.single)
    Backend::gemm(ctx, c.ta, c.tb, c.M, c.N, c.K, T(c.alpha), A, c.lda, B, c.ldb, T(c.beta), C, c.ldc);
  else
    Backend::gemm_batched(ctx, c.ta, c.tb, c.M, c.N, c.K, T(c.alpha), A, c.lda, {c.sa.outer, c.sa.inner}, B, c.ldb,
                          {c.sb.outer, c.sb.inner}, T(c.beta), C, c.ldc, {c.sc.outer, c.sc.inner}, c.outer, c.inner);
}

// Runs case c on the GPU with context ctx (inputs random in [-1, 1]); returns the whole C
// buffer, and the inputs through *A, *B, *C0.
template <class T>
std::vector<T> gpu_gemm_case(const Cuda::Context& ctx, const Bf16Case& c, std::vector<T>* A, std::vector<T>* B,
                             std::vector<T>* C0) {
  *A = random_vec<T>(c.a_size());
  *B = random_vec<T>(c.b_size());
  *C0 = random_vec<T>(c.c_size());
  auto dA = up(*A), dB = up(*B), dC = up(*C0);
  run_gemm_case(ctx, c, dA.data(), dB.data(), dC.data());
  return down(dC);
}

// 2D GEMMs: every transpose pair, odd sizes (a single row, a single column, K = 1),
// leading dimensions above the widths, beta 0 and 1, alpha != 1.
std::vector<Bf16Case> bf16_gemm_cases() {
  std::vector<Bf16Case> cases;
  for (auto [M, N, K] : {std::array<int64_t, 3>{37, 29, 53}, std::array<int64_t, 3>{1, 45, 130},
                         std::array<int64_t, 3>{19, 1, 7}, std::array<int64_t, 3>{5, 3, 1}})
    for (int t = 0; t < 4; ++t)
      for (int b = 0; b < 2; ++b) {
        Bf16Case c;
        c.layout = "2D";
        c.single = true;
        c.ta = t & 1;
        c.tb = t & 2;
        c.M = M;
        c.N = N;
        c.K = K;
        c.lda = c.a_cols() + 3;
        c.ldb = c.b_cols() + 5;
        c.ldc = N + 2;
        c.sa = c.sb = c.sc = {0, 0};
        c.alpha = b ? -0.7f : 1.3f;
        c.beta = b ? 1.0f : 0.0f;
        cases.push_back(c);
      }
  return cases;
}

// Two-level batches, every transpose pair, beta 0 and 1: attention's interleaved heads
// (C's levels do not collapse: the pointer-array call), contiguous slices with gaps (one
// strided call), a single level of either kind, and B shared across the inner level.
std::vector<Bf16Case> bf16_gemm_batched_cases() {
  std::vector<Bf16Case> cases;
  const int64_t M = 13, N = 11, K = 21;
  for (int layout = 0; layout < 5; ++layout)
    for (int t = 0; t < 4; ++t)
      for (int b = 0; b < 2; ++b) {
        Bf16Case c;
        c.ta = t & 1;
        c.tb = t & 2;
        c.M = M;
        c.N = N;
        c.K = K;
        c.alpha = b ? -0.7f : 1.3f;
        c.beta = b ? 1.0f : 0.0f;
        c.outer = layout == 3 ? 1 : layout == 2 ? 5 : 3;
        c.inner = layout == 2 ? 1 : layout == 3 ? 6 : 4;
        if (layout == 0) {  // heads interleaved in rows: [outer][rows][inner * cols + pad]
          c.layout = "interleaved";
          c.lda = c.inner * c.a_cols() + 3;
          c.ldb = c.inner * c.b_cols() + 1;
          c.ldc = c.inner * N + 2;
          c.sa = {c.a_rows() * c.lda, c.a_cols()};
          c.sb = {c.b_rows() * c.ldb, c.b_cols()};
          c.sc = {M * c.ldc, N};
        } else {  // slices one after another, with gaps
          c.layout = layout == 1 ? "contiguous" : layout == 2 ? "outer only" : layout == 3 ? "inner only" : "B shared";
          c.lda = c.a_cols() + 2;
          c.ldb = c.b_cols() + 4;
          c.ldc = N + 3;
          const int64_t ia = c.a_rows() * c.lda + 5, ib = c.b_rows() * c.ldb + 1, ic = M * c.ldc + 7;
          c.sa = {c.inner * ia, ia};
          c.sb = layout == 4 ? Cuda::BatchStrides{ib, 0} : Cuda::BatchStrides{c.inner * ib, ib};
          c.sc = {c.inner * ic, ic};
          if (layout == 2) c.sc = {ic + 9, 0};  // only the outer stride matters
          if (layout == 3) c.sc = {0, ic};      // only the inner stride matters
        }
        cases.push_back(c);
      }
  return cases;
}

// Each case on the GPU in Bf16Mixed against the rounded-input reference, and once in F32
// to see that the reference tells the two apart.
void test_gemm_bf16(const std::vector<Bf16Case>& cases) {
  const Cuda::Context bf = with_bf16(gpu);
  double f32_smallest = INFINITY;
  for (const auto& c : cases) {
    std::vector<float> A, B, C0;
    const auto got = gpu_gemm_case<float>(bf, c, &A, &B, &C0);
    const auto want = gemm_reference(c, A, B, C0, true);
    check_bounded(c.name(), got, want, kBf16Tol);
    // The same inputs in float32: the rounding of the inputs shows well above the tolerance.
    auto dA = up(A), dB = up(B), dC = up(C0);
    run_gemm_case(gpu, c, dA.data(), dB.data(), dC.data());
    f32_smallest = std::min(f32_smallest, bounded_error(down(dC), want));
  }
  std::ostringstream os;
  os << "float32 products of the same inputs miss the bf16 reference: smallest worst error " << f32_smallest
     << " > 10 x tolerance " << kBf16Tol;
  check_true(f32_smallest > 10 * kBf16Tol, os.str());
}

// Corners: tf32 and Bf16Mixed both set (Bf16Mixed wins), K = 0 (C = beta C), double
// products unchanged by Bf16Mixed, and a growing scratch (a larger GEMM after smaller ones).
void test_gemm_bf16_corners() {
  Bf16Case c;
  c.layout = "2D";
  c.single = true;
  c.ta = false;
  c.tb = true;
  c.M = 70;
  c.N = 45;
  c.K = 129;
  c.lda = c.K + 1;
  c.ldb = c.K;
  c.ldc = c.N;
  c.sa = c.sb = c.sc = {0, 0};
  c.alpha = 0.5f;
  {
    Cuda::Context both = with_bf16(gpu);
    both.tf32 = true;
    std::vector<float> A, B, C0;
    const auto got = gpu_gemm_case<float>(both, c, &A, &B, &C0);
    check_bounded("tf32 and Bf16Mixed both set: the bf16 result " + c.name(), got, gemm_reference(c, A, B, C0, true),
                  kBf16Tol);
  }
  {
    std::vector<double> A, B, C0;
    const auto got = gpu_gemm_case<double>(with_bf16(gpu), c, &A, &B, &C0);
    check_bounded("double with Bf16Mixed stays float64 " + c.name(), got, gemm_reference(c, A, B, C0, false), 1e-13);
  }
  for (float beta : {0.0f, 0.5f}) {
    const auto C0 = random_vec<float>(15);
    auto dC = up(C0);
    DevT<float> dummy({1});
    Cuda::gemm(with_bf16(gpu), false, false, 3, 5, 0, 1.0f, dummy.data(), 1, dummy.data(), 5, beta, dC.data(), 5);
    std::vector<float> want(C0);
    for (auto& v : want) v = beta == 0 ? 0.0f : v * beta;
    check_same("Bf16Mixed gemm K=0 beta=" + std::to_string(beta) + ": C = beta C", down(dC), want);
  }
  {  // a large product after the small ones: the bf16 scratch grows (once), results stay right
    c.M = 300;
    c.N = 257;
    c.K = 96;
    c.lda = c.K;
    c.ldc = c.N + 1;
    c.beta = 1;
    std::vector<float> A, B, C0;
    const auto got = gpu_gemm_case<float>(with_bf16(gpu), c, &A, &B, &C0);
    check_bounded("after the scratch grows " + c.name(), got, gemm_reference(c, A, B, C0, true), kBf16Tol);
    const auto before = backend::cuda_allocation_count().load();
    auto dA = up(A), dB = up(B), dC = up(C0);
    const auto after_inputs = backend::cuda_allocation_count().load();
    run_gemm_case(with_bf16(gpu), c, dA.data(), dB.data(), dC.data());
    check_true(backend::cuda_allocation_count().load() == after_inputs,
               "the same Bf16Mixed GEMM again allocates nothing (" +
                   std::to_string(backend::cuda_allocation_count().load() - after_inputs) + " made, " +
                   std::to_string(after_inputs - before) + " for the inputs)");
  }
}

// The CPU backend's Bf16Mixed (cpu_bf16.hpp) and the GPU's on the same inputs: both round
// the inputs identically, so they agree within the reference tolerance.
void test_gemm_bf16_cpu_vs_cuda() {
  auto cases = bf16_gemm_cases();
  const auto batched = bf16_gemm_batched_cases();
  cases.insert(cases.end(), batched.begin(), batched.end());
  const Cuda::Context bf = with_bf16(gpu);
  for (const auto& c : cases) {
    std::vector<float> A, B, C0;
    const auto got = gpu_gemm_case<float>(bf, c, &A, &B, &C0);
    auto reference = gemm_reference(c, A, B, C0, true);  // for the bounds S
    std::vector<float> cpu_C(C0);
    run_gemm_case(cpu_bf16, c, A.data(), B.data(), cpu_C.data());
    reference.value.assign(cpu_C.begin(), cpu_C.end());
    check_bounded("CPU vs CUDA " + c.name(), got, reference, kBf16Tol);
  }
}

// The GPU sums each id's rows as 8 fixed partial sums: a second run from the same table
// gives the same bits (the conformance check measures the values, this their repeatability).
template <class T>
void test_embedding_backward_repeats() {
  for (auto [tokens, rows, dim] : {std::array<int64_t, 3>{50, 37, 64}, std::array<int64_t, 3>{3000, 400, 300},
                                   std::array<int64_t, 3>{1500, 3, 770}}) {
    const std::string at = std::string(type_name<T>()) + " tokens,rows,dim=" + shape_str({tokens, rows, dim});
    const auto ids = random_ints(tokens, 0, static_cast<int32_t>(rows - 1));
    const auto grad = random_vec<T>(tokens * dim);
    auto dids = up(ids);
    auto dgrad = up(grad);
    DevT<T> dtab({rows * dim});
    Cuda::fill(gpu, rows * dim, T(0), dtab.data());
    Cuda::embedding_backward(gpu, tokens, dim, dids.data(), dgrad.data(), dtab.data(), int64_t{0});
    const auto first_run = down(dtab);
    Cuda::fill(gpu, rows * dim, T(0), dtab.data());
    Cuda::embedding_backward(gpu, tokens, dim, dids.data(), dgrad.data(), dtab.data(), int64_t{0});
    check_same("embedding_backward repeats bit for bit " + at, down(dtab), first_run);
  }
}

// Cuda::select_top_p takes the rank variant only for rows whose sort does not fit in shared
// memory (Lk > 12288 floats); here it runs on ordinary rows, square and not, against the
// reference candidates.
template <class T>
void test_top_p_rank_variant() {
  struct Case { int64_t batch, H, Lq, Lk; };
  for (const Case c : {Case{1, 1, 1, 1}, Case{3, 2, 9, 9}, Case{4, 2, 64, 64}, Case{3, 2, 5, 13},
                       Case{4, 3, 11, 4}, Case{2, 1, 3, 130}}) {
    const int64_t B = c.batch, H = c.H, Lq = c.Lq, Lk = c.Lk, n = B * H * Lq * Lk;
    std::vector<int64_t> lengths;
    const std::vector<int32_t> mask = testing::reference::key_mask_cases(B, Lk, lengths);
    auto dmask = up(mask);
    for (int ties = 0; ties < 2; ++ties) {
      auto scores = random_vec<T>(n);
      if (ties)
        for (auto& s : scores) s = std::round(s * T(4)) / T(4);
      auto dscores = up(scores);
      for (double p : {0.0, 0.3, 0.9, 1.0})
        for (bool high : {true, false}) {
          const std::string at = std::string(type_name<T>()) + " B,H,Lq,Lk=" + shape_str({B, H, Lq, Lk}) +
                                 (ties ? " ties" : "") + " p=" + std::to_string(p) + (high ? " high" : " low");
          std::vector<int64_t> k(static_cast<std::size_t>(B));
          for (int64_t b = 0; b < B; ++b) k[b] = selection::threshold_index(high ? Side::High : Side::Low, p, lengths[b]);
          auto dk = up(k);
          std::vector<T> want(static_cast<std::size_t>(n));
          testing::reference::top_p_candidates(B, H, Lq, Lk, scores.data(), mask.data(), k.data(), high, want.data());
          DevT<T> dcand({n});
          Cuda::fill(gpu, n, T(5), dcand.data());
          backend::cuda_detail::top_p_candidates_rank(gpu.state(), B, H, Lq, Lk, dscores.data(), dmask.data(),
                                                      dk.data(), high, dcand.data());
          check_same("top_p candidates, rank variant " + at, down(dcand), want);
        }
    }
  }
}

// A shard of a batch split across processes passes the draw index of its first element
// (uniform and dropout's `first`, selection's `first_draw`) and the whole batch's count
// (cross_entropy's and mse's `denominator`): the CUDA results equal the CPU's for the same
// arguments, offsets that are not multiples of four (a Philox block straddling the
// shard's start) included. Draws, keep patterns and masks bit for bit; losses and
// gradients to rounding (1e-5 float, 1e-12 double, as the op conformance checks).
template <class T> constexpr double op_tol() { return sizeof(T) == 4 ? 1e-5 : 1e-12; }

template <class T>
void test_shard_draws_vs_cpu() {
  const uint64_t seed = 1234, stream = 7;
  for (int64_t n : {int64_t{1}, int64_t{2}, int64_t{3}, int64_t{4}, int64_t{5}, int64_t{1000}, int64_t{4099}}) {
    for (int64_t first : {int64_t{5}, int64_t{8}, int64_t{0}, int64_t{1}, int64_t{2}, int64_t{3}, int64_t{7},
                          (int64_t{1} << 34) + 3}) {
      const std::string at = std::string(type_name<T>()) + " n=" + std::to_string(n) + " first=" + std::to_string(first);
      std::vector<T> want(static_cast<std::size_t>(n));
      Cpu::uniform(cpu, n, seed, stream, want.data(), first);
      DevT<T> du({n});
      Cuda::fill(gpu, n, T(5), du.data());
      Cuda::uniform(gpu, n, seed, stream, du.data(), first);
      check_same("uniform " + at, down(du), want);
      if (first > 0 && first < 16) {  // draw first + i of a shard is draw first + i of the whole
        DevT<T> whole({first + n});
        Cuda::uniform(gpu, first + n, seed, stream, whole.data());
        check_same("uniform is the whole's tail " + at, down(du), down(whole.data() + first, n));
      }
    }
  }
  const float p = 0.3f;
  for (int64_t n : {int64_t{1}, int64_t{3}, int64_t{1000}, int64_t{4099}}) {
    for (int64_t first : {int64_t{7}, int64_t{5}, int64_t{8}}) {
      const std::string at = std::string(type_name<T>()) + " n=" + std::to_string(n) + " first=" + std::to_string(first);
      const auto x = random_vec<T>(n, 0.05, 1.0), dy = random_vec<T>(n, 0.05, 1.0), acc = random_vec<T>(n);
      auto dx_ = up(x), ddy = up(dy);
      std::vector<T> y(static_cast<std::size_t>(n));
      Cpu::dropout_forward(cpu, n, p, seed, stream, x.data(), y.data(), first);
      DevT<T> dout({n});
      Cuda::dropout_forward(gpu, n, p, seed, stream, dx_.data(), dout.data(), first);
      check_same("dropout_forward " + at, down(dout), y);
      std::vector<T> dx(static_cast<std::size_t>(n));
      Cpu::dropout_backward(cpu, n, p, seed, stream, dy.data(), dx.data(), false, first);
      Cuda::dropout_backward(gpu, n, p, seed, stream, ddy.data(), dout.data(), false, first);
      check_same("dropout_backward " + at, down(dout), dx);
      std::vector<T> dx_acc(acc);
      Cpu::dropout_backward(cpu, n, p, seed, stream, dy.data(), dx_acc.data(), true, first);
      auto dacc = up(acc);
      Cuda::dropout_backward(gpu, n, p, seed, stream, ddy.data(), dacc.data(), true, first);
      check_close("dropout_backward accumulated " + at, down(dacc), dx_acc, op_tol<T>());
    }
  }
}

template <class T>
void test_shard_selection_vs_cpu() {
  struct Case { int64_t batch, H, Lq, Lk; };
  const T dropped = T(-10000);
  for (const Case c : {Case{1, 1, 1, 1}, Case{3, 2, 9, 9}, Case{3, 2, 5, 13}, Case{4, 3, 11, 4}, Case{4, 1, 3, 700}}) {
    const int64_t B = c.batch, H = c.H, Lq = c.Lq, Lk = c.Lk, n = B * H * Lq * Lk, per_example = H * Lq * Lk;
    std::vector<int64_t> lengths;
    const std::vector<int32_t> mask = testing::reference::key_mask_cases(B, Lk, lengths);
    auto dmask = up(mask);
    const auto scores = random_vec<T>(n);
    auto dscores = up(scores);
    const auto u = random_vec<float>(n, 0.0, 1.0);
    auto du = up(u);
    DevT<T> da({n}), dc({n}), dk({n});
    // The shard would start at example 3 of the whole batch, then a few elements further
    // (not a multiple of four for most shapes).
    for (int64_t extra : {int64_t{1}, int64_t{2}, int64_t{3}, int64_t{0}}) {
      const int64_t first_draw = 3 * per_example + extra;
      for (bool high : {true, false}) {
        for (bool given : {false, true}) {
          const std::string at = std::string(type_name<T>()) + " B,H,Lq,Lk=" + shape_str({B, H, Lq, Lk}) +
                                 " first_draw=" + std::to_string(first_draw) + (high ? " high" : " low") +
                                 (given ? " given draws" : " generated draws");
          std::vector<int64_t> k(static_cast<std::size_t>(B));
          for (int64_t b = 0; b < B; ++b)
            k[b] = selection::threshold_index(high ? Side::High : Side::Low, 0.3, lengths[b]);
          auto dkk = up(k);
          std::vector<T> a(static_cast<std::size_t>(n), T(5)), cand(a), keep(a);
          Cpu::select_top_p(cpu, B, H, Lq, Lk, scores.data(), mask.data(), k.data(), high, given ? u.data() : nullptr,
                            21, 22, 0.7f, dropped, a.data(), cand.data(), keep.data(), first_draw);
          for (auto* t : {&da, &dc, &dk}) Cuda::fill(gpu, n, T(5), t->data());
          Cuda::select_top_p(gpu, B, H, Lq, Lk, dscores.data(), dmask.data(), dkk.data(), high,
                             given ? du.data() : nullptr, 21, 22, 0.7f, dropped, da.data(), dc.data(), dk.data(),
                             first_draw);
          check_same("select_top_p candidates " + at, down(dc), cand);
          check_same("select_top_p keep " + at, down(dk), keep);
          check_same("select_top_p additive " + at, down(da), a);
          Cuda::fill(gpu, n, T(5), da.data());  // the training step's call: additive alone
          Cuda::select_top_p(gpu, B, H, Lq, Lk, dscores.data(), dmask.data(), dkk.data(), high,
                             given ? du.data() : nullptr, 21, 22, 0.7f, dropped, da.data(), static_cast<T*>(nullptr),
                             static_cast<T*>(nullptr), first_draw);
          check_same("select_top_p additive alone " + at, down(da), a);
          if (!given) {  // generated draws are uniform(n, seed, stream, u, first_draw)
            DevT<float> dg({n});
            Cuda::uniform(gpu, n, 21, 22, dg.data(), first_draw);
            Cuda::fill(gpu, n, T(5), da.data());
            Cuda::select_top_p(gpu, B, H, Lq, Lk, dscores.data(), dmask.data(), dkk.data(), high, dg.data(), 21, 22,
                               0.7f, dropped, da.data(), static_cast<T*>(nullptr), static_cast<T*>(nullptr));
            check_same("select_top_p with the shard's uniforms given " + at, down(da), a);
          }
        }
      }
      // RD's rule: both draws generated, the first given and the second generated
      for (bool given1 : {false, true}) {
        const std::string at = std::string(type_name<T>()) + " B,H,Lq,Lk=" + shape_str({B, H, Lq, Lk}) +
                               " first_draw=" + std::to_string(first_draw) + (given1 ? " u1 given" : " u1 generated");
        std::vector<T> a(static_cast<std::size_t>(n), T(5)), cand(a), keep(a);
        Cpu::select_random(cpu, B, H, Lq, Lk, mask.data(), given1 ? u.data() : nullptr, 3, 1, 0.7f, nullptr, 2, 0.6f,
                           dropped, a.data(), cand.data(), keep.data(), first_draw);
        for (auto* t : {&da, &dc, &dk}) Cuda::fill(gpu, n, T(5), t->data());
        Cuda::select_random(gpu, B, H, Lq, Lk, dmask.data(), given1 ? du.data() : nullptr, 3, 1, 0.7f, nullptr, 2,
                            0.6f, dropped, da.data(), dc.data(), dk.data(), first_draw);
        check_same("select_random candidates " + at, down(dc), cand);
        check_same("select_random keep " + at, down(dk), keep);
        check_same("select_random additive " + at, down(da), a);
      }
    }
  }
}

template <class T>
void test_shard_losses_vs_cpu() {
  const int32_t ignore = -100;
  for (auto [rows, classes] : {std::array<int64_t, 2>{1, 5}, std::array<int64_t, 2>{37, 50},
                               std::array<int64_t, 2>{300, 1000}}) {
    auto labels = random_ints(rows, 0, static_cast<int32_t>(classes - 1));
    for (int64_t r = 1; r < rows; r += 3) labels[r] = ignore;  // every third row from the second ignored
    int64_t counted = 0;
    for (auto l : labels) counted += l != ignore;
    const int64_t denominator = 2 * counted;
    const auto logits = random_vec<T>(rows * classes, -3, 3);
    auto dl = up(logits);
    auto dlab = up(labels);
    DevT<T> dgrad({rows * classes});
    for (T eps : {T(0), T(0.1)}) {
      const std::string at = std::string(type_name<T>()) + " rows,classes=" + shape_str({rows, classes}) +
                             " eps=" + std::to_string(static_cast<double>(eps)) +
                             " denominator=" + std::to_string(denominator);
      std::vector<T> grad(static_cast<std::size_t>(rows * classes));
      const double want =
          Cpu::cross_entropy(cpu, rows, classes, logits.data(), labels.data(), ignore, eps, grad.data(), denominator);
      const double got = Cuda::cross_entropy(gpu, rows, classes, dl.data(), dlab.data(), ignore, eps, dgrad.data(),
                                             denominator);
      check_scalar("cross_entropy " + at, got, want, op_tol<T>());
      check_close("cross_entropy dlogits " + at, down(dgrad), grad, op_tol<T>());
      const double natural = Cuda::cross_entropy(gpu, rows, classes, dl.data(), dlab.data(), ignore, eps,
                                                 static_cast<T*>(nullptr));
      check_scalar("cross_entropy with twice the count is half the mean " + at, got, natural / 2, op_tol<T>());
    }
  }
  for (int64_t n : {int64_t{1}, int64_t{1000}, int64_t{100003}}) {
    const int64_t denominator = 2 * n;
    const std::string at =
        std::string(type_name<T>()) + " n=" + std::to_string(n) + " denominator=" + std::to_string(denominator);
    const auto pred = random_vec<T>(n), target = random_vec<T>(n);
    auto dp = up(pred), dt = up(target);
    std::vector<T> grad(static_cast<std::size_t>(n));
    const double want = Cpu::mse(cpu, n, pred.data(), target.data(), grad.data(), denominator);
    DevT<T> dd({n});
    check_scalar("mse " + at, Cuda::mse(gpu, n, dp.data(), dt.data(), dd.data(), denominator), want, op_tol<T>());
    check_close("mse dpred " + at, down(dd), grad, op_tol<T>());
    check_scalar("mse without dpred " + at,
                 Cuda::mse(gpu, n, dp.data(), dt.data(), static_cast<T*>(nullptr), denominator), want, op_tol<T>());
  }
}

void test_infrastructure() {
  // Buffers grow only, and count their allocations.
  const auto before = backend::cuda_allocation_count().load();
  Cuda::Buffer<float> b;
  b.reserve(100);
  float* first = b.data();
  b.reserve(50);
  check_true(b.data() == first && b.capacity() == 100, "Buffer::reserve keeps the allocation when shrinking");
  b.reserve(1000);
  check_true(b.capacity() == 1000, "Buffer::reserve grows");
  check_true(backend::cuda_allocation_count().load() - before == 2, "cuda_allocation_count counts the two growths");
  Cuda::Buffer<float> moved(std::move(b));
  check_true(moved.capacity() == 1000 && b.data() == nullptr, "Buffer moves");
  // A default Context (process-wide, legacy default stream) works and orders with `gpu`.
  Cuda::Context dflt;
  DevT<double> t({10});
  Cuda::fill(gpu, 10, 2.0, t.data());
  Cuda::scale(dflt, 10, 3.0, t.data());
  const auto h = down(t);
  check_true(std::all_of(h.begin(), h.end(), [](double v) { return v == 6.0; }),
             "default Context runs ops in order with a created one");
  check_true(gpu.num_threads() == 1 && gpu.stream() != nullptr && gpu.cublas() != nullptr,
             "created Context has its own stream and cuBLAS handle");
  // A clear error for a device that does not exist.
  bool threw = false;
  try {
    (void)Cuda::Context::create(4096);
  } catch (const std::runtime_error& e) {
    threw = std::string(e.what()).find("Context::create") != std::string::npos;
    if (g.verbose) std::printf("  (expected) %s\n", e.what());
  }
  check_true(threw, "Context::create(4096) throws a runtime_error naming Context::create");
}

// ================================================================== models vs fixtures
models::Batch read_fixture_batch(const io::SafeTensors& st, const models::ModelConfig& c) {
  models::Batch b;
  const auto& shape = st.at("input_ids").shape;
  b.size = shape.at(0);
  b.length = shape.at(1);
  b.input_ids = st.values<int32_t>("input_ids", shape);
  b.attention_mask = st.values<int32_t>("attention_mask", shape);
  b.token_type_ids = st.values<int32_t>("token_type_ids", shape);
  if (c.task == models::Task::Regression) b.targets = st.values<double>("labels");
  else b.labels = st.values<int32_t>("labels");
  return b;
}

fs::path g_fixtures;

// Compares a parameter gradient; the key bias's is zero in exact arithmetic, so its error is
// measured against the key weight's gradient scale (as tests/golden/ does).
template <class T>
void check_param_grad(const std::string& name, const std::vector<T>& got, const io::SafeTensors& expected, double tol) {
  const auto want = expected.values<double>("grad." + name);
  if (name.ends_with("attention.self.key.bias")) {
    double scale = 0;
    for (double w : expected.values<double>("grad." + name.substr(0, name.size() - 4) + "weight"))
      scale = std::max(scale, std::abs(w));
    const auto cmp = testing::compare("grad." + name, got, want, tol);
    record(cmp.max_abs_error <= tol * scale, cmp.report + " (against the key weight's scale " + std::to_string(scale) + ")");
  } else {
    check_close("grad." + name, got, want, tol);
  }
}

template <class T>
void model_vs_fixture(const std::string& name) {
  const fs::path dir = g_fixtures / name;
  const double tol = golden_tol<T>();
  const auto config = io::load_hf_config(dir);
  models::EncoderModel<T, Cuda> model(config, gpu);
  const auto report = io::load_weights(model, io::SafeTensors::load(dir / "model.safetensors"), true);
  check_true(report.unused.empty(), "every stored tensor loads");
  const auto batch_file = io::SafeTensors::load(dir / "batch.safetensors");
  const auto expected = io::SafeTensors::load(dir / "expected.safetensors");
  const auto batch = read_fixture_batch(batch_file, config);
  const int64_t B = batch.size, L = batch.length, H = config.num_attention_heads;
  std::vector<DevT<T>> masks(static_cast<std::size_t>(model.num_layers()));
  for (int l = 0; l < model.num_layers(); ++l) {
    const std::string mask_name = "extra_mask.layer" + std::to_string(l);
    if (batch_file.contains(mask_name)) {
      const auto v = batch_file.values<T>(mask_name, {B, H, L, L});
      masks[l].resize({B, H, L, L});
      Cuda::to_device(gpu, masks[l].numel(), v.data(), masks[l].data());
      model.set_attention_mask(l, &masks[l]);
    }
    const std::string alpha_name = "alpha.layer" + std::to_string(l);
    if (batch_file.contains(alpha_name)) model.set_attention_scale(l, batch_file.values<T>(alpha_name).at(0));
  }
  const auto& logits = model.forward(batch);
  check_close("logits", down(logits), expected.values<double>("logits"), tol);
  const double loss = model.loss(batch);
  check_scalar("loss", loss, expected.values<double>("loss").at(0), tol);
  model.zero_grad();
  model.backward();
  check_close("embedding_output", down(model.embedding_output()), expected.values<double>("embedding_output"), tol);
  for (int l = 0; l < model.num_layers(); ++l) {
    const std::string s = ".layer" + std::to_string(l);
    check_close("hidden_states" + s, down(model.hidden_states(l)), expected.values<double>("hidden_states" + s), tol);
    check_close("attention_probs" + s, down(model.attention_probs(l)), expected.values<double>("attention_probs" + s), tol);
    check_close("attention_probs_grad" + s, down(model.attention_probs_grad(l)),
                expected.values<double>("attention_probs_grad" + s), tol);
  }
  int checked = 0;
  for (const auto* p : model.parameters()) {
    check_param_grad(p->name, down(p->grad), expected, tol);
    ++checked;
  }
  check_true(checked == static_cast<int>(expected.names().size()) - 3 - 3 * model.num_layers(),
             "every parameter gradient of the fixture was checked (" + std::to_string(checked) + ")");
}

// ================================================================== AD-DROP vs fixtures
std::vector<int> parse_layers(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  for (std::string part; std::getline(ss, part, ',');) out.push_back(std::stoi(part));
  return out;
}

template <class T, class Attr, class Sel = selection::TopP>
void addrop_vs_fixture(const fs::path& file, const std::string& layout) {
  const auto expected = io::SafeTensors::load(file);
  const auto& meta = expected.metadata();
  const double tol = golden_tol<T>();
  const auto config = io::load_hf_config(g_fixtures / layout);
  models::EncoderModel<T, Cuda> model(config, gpu);
  io::load_weights(model, io::SafeTensors::load(g_fixtures / layout / "model.safetensors"), true);
  const auto batch = read_fixture_batch(io::SafeTensors::load(g_fixtures / layout / "batch.safetensors"), config);
  const auto layers = parse_layers(meta.at("layers"));

  const auto& logits = model.forward(batch);
  check_close("logits", down(logits), expected.values<double>("logits"), tol);
  for (int l = 0; l < model.num_layers(); ++l)
    check_close("attention_probs.layer" + std::to_string(l), down(model.attention_probs(l)),
                expected.values<double>("attention_probs.layer" + std::to_string(l)), tol);

  AdDropOptions options;
  options.p = std::stod(meta.at("p"));
  options.q = std::stod(meta.at("q"));
  options.layers = layers;
  AdDrop<Attr, Sel, schedule::Always> reg(options, testing::attribution_for<Attr>(meta), testing::selection_for<Sel>(meta));
  std::vector<std::vector<float>> draws, draws2;
  ExternalUniforms ext;
  for (int l : layers) {
    draws.push_back(expected.values<float>("uniforms.layer" + std::to_string(l)));
    if (!attribution::gives_scores<Attr>) draws2.push_back(expected.values<float>("uniforms2.layer" + std::to_string(l)));
  }
  for (auto& d : draws) ext.draws.emplace_back(d);
  for (auto& d : draws2) ext.second_draws.emplace_back(d);

  model.zero_grad();
  const auto r = reg.step_addrop(model, batch, &ext, /*train=*/false);
  check_true(r.used_addrop, "the step used AD-DROP");
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const std::string s = ".layer" + std::to_string(layers[i]);
    if (attribution::gives_scores<Attr>) {
      check_close("attribution" + s, down(*r.attributions[i]), expected.values<double>("attribution" + s), tol);
      check_same("candidates" + s, down(*r.candidates[i]), expected.values<double>("candidates" + s));
    }
    check_same("keep_mask" + s, down(*r.keep[i]), expected.values<double>("keep_mask" + s));
  }
  check_close("masked_logits", down(*r.logits), expected.values<double>("masked_logits"), tol);
  check_scalar("loss", r.loss, expected.values<double>("loss").at(0), tol);
  for (const auto* p : model.parameters()) check_param_grad(p->name, down(p->grad), expected, tol);
}

template <class T>
void addrop_fixtures(const std::string& layout) {
  std::vector<fs::path> paths;
  section("addrop fixtures found for " + layout + " " + type_name<T>(), [&] {
    for (const auto& e : fs::directory_iterator(g_fixtures.parent_path() / "addrop" / layout))
      if (e.path().extension() == ".safetensors") paths.push_back(e.path());
    std::sort(paths.begin(), paths.end());
    check_true(paths.size() >= 3, std::to_string(paths.size()) + " AD-DROP fixtures for " + layout);
  });
  for (const auto& path : paths) {
    section("addrop vs fixture " + layout + "/" + path.stem().string() + " " + type_name<T>(), [&] {
      const auto kind = io::SafeTensors::load(path).metadata().at("attribution");
      if (kind == "ga") addrop_vs_fixture<T, attribution::Gradient>(path, layout);
      else if (kind == "iga") addrop_vs_fixture<T, attribution::IntegratedGradients>(path, layout);
      else if (kind == "aa") addrop_vs_fixture<T, attribution::Attention>(path, layout);
      else if (kind == "rd") addrop_vs_fixture<T, attribution::None, selection::Random>(path, layout);
      else record(false, "unknown attribution " + kind);
    });
  }
}

// ================================================================== Marian vs fixtures
// The encoder-decoder on the GPU against tests/golden/marian/ (PyTorch's MarianMTModel and
// generate()): logits, losses, every site's A and dA, every gradient, the generation
// outputs (sequences identical, scores to the tolerance), and the seq2seq AD-DROP steps of
// tests/golden/addrop/marian_tied/ (masks identical).
template <class T>
void marian_vs_fixture(const std::string& name) {
  const fs::path dir = g_fixtures.parent_path() / "marian" / name;  // --fixtures / ADDROP_FIXTURE_DIR decide
  const double tol = golden_tol<T>();
  models::MarianModel<T, Cuda> model(models::load_marian_config(dir / "config.json"), gpu);
  io::load_weights(model, io::SafeTensors::load(dir / "model.safetensors"), true);
  const auto expected = io::SafeTensors::load(dir / "expected.safetensors");
  const auto batch = testing::read_seq2seq_batch(io::SafeTensors::load(dir / "batch.safetensors"));
  check_close("logits", down(model.forward(batch)), expected.values<double>("logits"), tol);
  model.set_label_smoothing(0.1);
  check_scalar("loss_label_smoothed", model.loss(batch), expected.values<double>("loss_label_smoothed").at(0), tol);
  model.set_label_smoothing(0);
  check_scalar("loss", model.loss(batch), expected.values<double>("loss").at(0), tol);
  model.zero_grad();
  model.backward();
  using Kind = typename models::MarianModel<T, Cuda>::SiteKind;
  for (int site = 0; site < model.num_attention_sites(); ++site) {
    const auto ref = model.site_ref(site);
    const std::string n = std::string(ref.kind == Kind::EncoderSelf ? "encoder" : ref.kind == Kind::DecoderSelf ? "decoder" : "cross") +
                          ".layer" + std::to_string(ref.layer);
    check_close("attention_probs." + n, down(model.attention_probs(site)), expected.values<double>("attention_probs." + n), tol);
    check_close("attention_probs_grad." + n, down(model.attention_probs_grad(site)),
                expected.values<double>("attention_probs_grad." + n), tol);
  }
  for (const auto* p : model.parameters()) {
    const std::string grad = "grad." + p->name;
    if (p->name.ends_with("k_proj.bias")) {  // zero in exact arithmetic: against the weight's scale
      double scale = 0;
      for (double w : expected.values<double>(grad.substr(0, grad.size() - 4) + "weight")) scale = std::max(scale, std::abs(w));
      const auto cmp = testing::compare(grad, down(p->grad), expected.values<double>(grad), tol);
      record(cmp.max_abs_error <= tol * scale, cmp.report);
    } else {
      check_close(grad, down(p->grad), expected.values<double>(grad), tol);
    }
  }
  for (const auto& [key, value] : expected.metadata()) {
    if (key.rfind("generation.", 0) != 0) continue;
    const std::string setting = key.substr(11);
    const nlohmann::json j = nlohmann::json::parse(value);
    models::GenerationOptions o;
    o.num_beams = j.at("num_beams").get<int64_t>();
    if (!j.at("max_length").is_null()) o.max_length = j.at("max_length").get<int64_t>();
    if (!j.at("max_new_tokens").is_null()) o.max_new_tokens = j.at("max_new_tokens").get<int64_t>();
    o.length_penalty = j.at("length_penalty").get<double>();
    o.early_stopping = models::early_stopping_from_json(j.at("early_stopping"));
    const auto got = models::generate(model, batch, o);
    std::vector<int64_t> flat;
    for (const auto& seq : got.sequences) flat.insert(flat.end(), seq.begin(), seq.end());
    check_same(setting + ".sequences", flat, expected.values<int64_t>(setting + ".sequences"));
    if (expected.contains(setting + ".sequences_scores"))
      check_close(setting + ".sequences_scores", got.scores, expected.values<double>(setting + ".sequences_scores"), tol);
  }
}

template <class T>
void marian_addrop_fixtures() {
  const fs::path dir = g_fixtures.parent_path() / "marian" / "marian_tied";
  for (const auto& e : fs::directory_iterator(g_fixtures.parent_path() / "addrop" / "marian_tied")) {
    if (e.path().extension() != ".safetensors") continue;
    section("seq2seq addrop vs fixture " + e.path().stem().string() + " " + type_name<T>(), [&] {
      const auto expected = io::SafeTensors::load(e.path());
      const auto& meta = expected.metadata();
      const double tol = golden_tol<T>();
      models::MarianModel<T, Cuda> model(models::load_marian_config(dir / "config.json"), gpu);
      io::load_weights(model, io::SafeTensors::load(dir / "model.safetensors"), true);
      const auto batch = testing::read_seq2seq_batch(io::SafeTensors::load(dir / "batch.safetensors"));
      const auto layers = parse_layers(meta.at("layers"));
      AdDropOptions options;  // members set one by one: no -Wmissing-field-initializers as fields are added
      options.p = std::stod(meta.at("p"));
      options.q = std::stod(meta.at("q"));
      options.layers = layers;
      std::vector<std::vector<float>> draws;
      ExternalUniforms ext;
      for (int l : layers) draws.push_back(expected.values<float>("uniforms.layer" + std::to_string(l)));
      for (auto& d : draws) ext.draws.emplace_back(d);
      auto check = [&](auto tag) {
        using Attr = decltype(tag);
        AdDrop<Attr, selection::TopP, schedule::Always> reg(options, testing::attribution_for<Attr>(meta),
                                                            testing::selection_for<selection::TopP>(meta));
        model.forward(batch);
        model.zero_grad();
        const auto r = reg.step_addrop(model, batch, &ext, /*train=*/false);
        for (std::size_t i = 0; i < layers.size(); ++i) {
          const std::string s = ".layer" + std::to_string(layers[i]);
          check_close("attribution" + s, down(*r.attributions[i]), expected.values<double>("attribution" + s), tol);
          check_same("keep_mask" + s, down(*r.keep[i]), expected.values<double>("keep_mask" + s));
        }
        check_close("masked_logits", down(*r.logits), expected.values<double>("masked_logits"), tol);
        check_scalar("loss", r.loss, expected.values<double>("loss").at(0), tol);
      };
      const auto kind = meta.at("attribution");
      if (kind == "ga") check(attribution::Gradient{});
      else if (kind == "iga") check(attribution::IntegratedGradients{});
      else if (kind == "aa") check(attribution::Attention{});
      else record(false, "unknown attribution " + kind);
    });
  }
}

// ================================================================== Bf16Mixed model: GPU vs CPU
// A model forward in Bf16Mixed on the GPU against the same on the CPU (same weights and
// batch): the logits agree within 1e-2 (both round every product's inputs to bf16; what
// differs is float32 rounding elsewhere, which can move an input across a bf16 rounding
// boundary now and then). And Bf16Mixed reached the model's GEMMs: the logits differ from
// the GPU's float32 ones.
void test_bf16_forward_gpu_vs_cpu(const std::string& name) {
  const fs::path dir = g_fixtures / name;
  const auto config = io::load_hf_config(dir);
  const auto weights = io::SafeTensors::load(dir / "model.safetensors");
  const auto batch = read_fixture_batch(io::SafeTensors::load(dir / "batch.safetensors"), config);
  models::EncoderModel<float, Cpu> cm(config, cpu_bf16);
  models::EncoderModel<float, Cuda> gm(config, with_bf16(gpu));
  models::EncoderModel<float, Cuda> gm32(config, gpu);
  io::load_weights(cm, weights, true);
  io::load_weights(gm, weights, true);
  io::load_weights(gm32, weights, true);
  const auto& cl = cm.forward(batch);
  const std::vector<float> want(cl.data(), cl.data() + cl.numel());
  const auto got = down(gm.forward(batch));
  check_close("logits, Bf16Mixed GPU vs CPU (tolerance 1e-2)", got, want, 1e-2);
  check_scalar("loss, Bf16Mixed GPU vs CPU (tolerance 1e-2)", gm.loss(batch), cm.loss(batch), 1e-2);
  const auto f32 = down(gm32.forward(batch));
  const double moved = testing::compare("logits bf16 vs f32", got, f32, 0).relative();
  check_true(moved > 1e-6, "Bf16Mixed logits differ from float32 ones (relative " + std::to_string(moved) +
                               "): the precision reached the model's GEMMs");
}

// ================================================================== AD-DROP step: GPU vs CPU
// Two models with the same weights, the same options and seed, generator draws (no external
// uniforms), train mode (dropout on): the keep masks and candidates must be identical, and
// losses, logits, attributions and every gradient agree to rounding. The second step must
// not allocate on the GPU.
template <class T, class Attr, class Sel>
void step_gpu_vs_cpu(models::EncoderModel<T, Cpu>& cm, models::EncoderModel<T, Cuda>& gm, const models::Batch& batch,
                     std::vector<int> layers, int steps) {
  const double tol = step_tol<T>();
  AdDropOptions options;
  options.p = 0.3;
  options.q = 0.3;
  options.layers = std::move(layers);
  options.seed = 1234;
  options.record_masks = true;  // the 0/1 masks are compared below (the additive mask is what the step uses)
  const Attr attribution = [] {
    if constexpr (std::is_same_v<Attr, attribution::IntegratedGradients>) return Attr({.steps = 4});
    else return Attr{};
  }();
  AdDrop<Attr, Sel, schedule::Always> rc(options, attribution), rg(options, attribution);
  for (int step = 0; step < steps; ++step) {
    const std::string at = " (step " + std::to_string(step) + ")";
    cm.zero_grad();
    gm.zero_grad();
    const auto allocations = backend::cuda_allocation_count().load();
    const auto c = rc.step(cm, batch, 0);
    const auto gr = rg.step(gm, batch, 0);
    if (step > 0)
      check_true(backend::cuda_allocation_count().load() == allocations,
                 "no GPU allocation in a step after the first" + at + ": " +
                     std::to_string(backend::cuda_allocation_count().load() - allocations) + " made");
    check_true(gr.used_addrop && c.used_addrop, "both steps used AD-DROP" + at);
    check_scalar("loss" + at, gr.loss, c.loss, tol);
    check_close("masked logits" + at, down(*gr.logits), std::vector<T>(c.logits->data(), c.logits->data() + c.logits->numel()), tol);
    for (std::size_t i = 0; i < c.layers.size(); ++i) {
      const std::string s = ".layer" + std::to_string(c.layers[i]) + at;
      auto host = [](const Tensor<T, Cpu>* t) { return std::vector<T>(t->data(), t->data() + t->numel()); };
      if (attribution::gives_scores<Attr>) check_close("attribution" + s, down(*gr.attributions[i]), host(c.attributions[i]), tol);
      check_same("candidates" + s, down(*gr.candidates[i]), host(c.candidates[i]));
      check_same("keep" + s, down(*gr.keep[i]), host(c.keep[i]));
    }
    const auto& cp = cm.parameters();
    const auto& gp = gm.parameters();
    double worst = 0;
    std::string worst_name;
    bool all = true;
    for (std::size_t k = 0; k < cp.size(); ++k) {
      const auto want = std::vector<T>(cp[k]->grad.data(), cp[k]->grad.data() + cp[k]->grad.numel());
      const auto got = down(gp[k]->grad);
      const auto cmp = testing::compare("grad." + cp[k]->name, got, want, tol);
      double rel = cmp.relative();
      if (cp[k]->name.ends_with("attention.self.key.bias")) {  // zero up to round-off: absolute against the weight's
        const auto& w = cp[k - 1]->grad;
        double scale = 0;
        for (int64_t j = 0; j < w.numel(); ++j) scale = std::max(scale, std::abs(static_cast<double>(w.data()[j])));
        rel = cmp.max_abs_error / std::max(scale, 1e-300);
      }
      if (!(rel <= tol)) {
        all = false;
        record(false, cmp.report);
      }
      if (!(rel <= worst)) {
        worst = rel;
        worst_name = cp[k]->name;
      }
    }
    if (all) record(true, "every parameter gradient" + at + ": worst relative " + std::to_string(worst) + " (" + worst_name + ")");
  }
}

template <class T>
void steps_on_fixture(const std::string& layout) {
  auto run = [&](const char* what, auto tag, std::vector<int> layers, auto selection) {
    using Attr = decltype(tag);
    using Sel = decltype(selection);
    section(std::string("step gpu vs cpu ") + layout + " " + what + " " + type_name<T>(), [&] {
      const auto config = io::load_hf_config(g_fixtures / layout);
      const auto weights = io::SafeTensors::load(g_fixtures / layout / "model.safetensors");
      const auto batch = read_fixture_batch(io::SafeTensors::load(g_fixtures / layout / "batch.safetensors"), config);
      models::EncoderModel<T, Cpu> cm(config, cpu);
      models::EncoderModel<T, Cuda> gm(config, gpu);
      io::load_weights(cm, weights, true);
      io::load_weights(gm, weights, true);
      step_gpu_vs_cpu<T, Attr, Sel>(cm, gm, batch, layers, 2);
    });
  };
  run("GA layers 0,1", attribution::Gradient{}, {0, 1}, selection::TopP{});
  run("IGA m=4 layer 0", attribution::IntegratedGradients{}, {0}, selection::TopP{});
  run("AA layer 1", attribution::Attention{}, {1}, selection::TopP{});
  run("RD layer 0", attribution::None{}, {0}, selection::Random{});
}

// A larger random model (L = 40, pads, 3 layers) in double: exact masks at realistic rows.
void steps_on_random_model() {
  models::ModelConfig c;
  c.vocab_size = 200;
  c.hidden_size = 64;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 4;
  c.intermediate_size = 128;
  c.max_position_embeddings = 64;
  c.num_labels = 3;
  models::Batch batch;
  batch.size = 4;
  batch.length = 40;
  const int64_t n = batch.size * batch.length;
  batch.input_ids = random_ints(n, 1, 199);
  batch.attention_mask.assign(static_cast<std::size_t>(n), 1);
  batch.token_type_ids.assign(static_cast<std::size_t>(n), 0);
  for (int64_t b = 0; b < batch.size; ++b)
    for (int64_t j = 40 - 9 * b; j < 40; ++j) {
      batch.input_ids[b * 40 + j] = 0;
      batch.attention_mask[b * 40 + j] = 0;
    }
  batch.labels = {0, 2, 1, 2};
  auto run = [&](const char* what, auto tag, std::vector<int> layers, auto selection) {
    using Attr = decltype(tag);
    using Sel = decltype(selection);
    section(std::string("step gpu vs cpu random L=40 model ") + what + " double", [&] {
      models::EncoderModel<double, Cpu> cm(c, cpu);
      models::EncoderModel<double, Cuda> gm(c, gpu);
      models::init_weights(cm, 5, 0.2);
      models::init_weights(gm, 5, 0.2);
      step_gpu_vs_cpu<double, Attr, Sel>(cm, gm, batch, layers, 2);
    });
  };
  run("GA layers 0,2", attribution::Gradient{}, {0, 2}, selection::TopP{});
  run("IGA m=4 layer 1", attribution::IntegratedGradients{}, {1}, selection::TopP{});
  run("AA layer 0", attribution::Attention{}, {0}, selection::TopP{});
  run("RD layers 1,2", attribution::None{}, {1, 2}, selection::Random{});
}

}  // namespace

int main(int argc, char** argv) {
  std::string fixtures = ADDROP_FIXTURE_DIR;
  if (const char* env = std::getenv("ADDROP_FIXTURE_DIR")) fixtures = env;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--verbose") g.verbose = true;
    else if (a == "--fixtures" && i + 1 < argc) fixtures = argv[++i];
    else if (a == "--only" && i + 1 < argc) g.only.push_back(argv[++i]);
    else {
      std::printf("usage: %s [--fixtures DIR] [--only SECTION_SUBSTRING]... [--verbose]\n", argv[0]);
      return 2;
    }
  }
  const std::string why = Cuda::unavailable_reason(0);
  if (!why.empty()) {
    std::printf("skipped: %s\n", why.c_str());
    return ADDROP_CUDA_SKIP_CODE;
  }
  g_fixtures = fixtures;
  try {
    gpu = Cuda::Context::create(0);
  } catch (const std::exception& e) {
    std::printf("FAILED: %s\n", e.what());
    return 1;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  std::printf("device 0: %s (sm_%d%d), fixtures %s\n", prop.name, prop.major, prop.minor, fixtures.c_str());

  section("infrastructure", test_infrastructure);
  auto run_ops = [](auto tag) {
    using T = decltype(tag);
    for (const auto& [name, check] : testing::conformance::op_checks<Cuda, T>())
      section("ops: " + name + " " + type_name<T>(), [check = check] {
        testing::conformance::Report report;
        report.sink = record;
        check(gpu, report);
      });
  };
  run_ops(float{});
  run_ops(double{});
  section("gemm float with tf32", test_gemm_tf32);
  section("gemm float Bf16Mixed vs rounded-input reference", [] { test_gemm_bf16(bf16_gemm_cases()); });
  section("gemm_batched float Bf16Mixed vs rounded-input reference", [] { test_gemm_bf16(bf16_gemm_batched_cases()); });
  section("gemm Bf16Mixed corners (tf32 too, K=0, double, scratch growth)", test_gemm_bf16_corners);
  section("gemm and gemm_batched Bf16Mixed CPU vs CUDA", test_gemm_bf16_cpu_vs_cuda);
  section("embedding_backward repeats float", test_embedding_backward_repeats<float>);
  section("embedding_backward repeats double", test_embedding_backward_repeats<double>);
  section("top-p rank variant float", test_top_p_rank_variant<float>);
  section("top-p rank variant double", test_top_p_rank_variant<double>);
  section("shard draws (uniform, dropout) vs cpu float", test_shard_draws_vs_cpu<float>);
  section("shard draws (uniform, dropout) vs cpu double", test_shard_draws_vs_cpu<double>);
  section("shard selection vs cpu float", test_shard_selection_vs_cpu<float>);
  section("shard selection vs cpu double", test_shard_selection_vs_cpu<double>);
  section("shard losses (denominator) vs cpu float", test_shard_losses_vs_cpu<float>);
  section("shard losses (denominator) vs cpu double", test_shard_losses_vs_cpu<double>);

  for (const char* name : {"bert_seqcls", "roberta_seqcls", "bert_regression", "bert_token", "electra_seqcls",
                           "electra_token"}) {
    section(std::string("model vs fixture ") + name + " float", [&] { model_vs_fixture<float>(name); });
    section(std::string("model vs fixture ") + name + " double", [&] { model_vs_fixture<double>(name); });
  }
  for (const char* layout : {"bert_seqcls", "roberta_seqcls"}) {
    addrop_fixtures<float>(layout);
    addrop_fixtures<double>(layout);
  }
  for (const char* name : {"bert_seqcls", "roberta_seqcls"})
    section(std::string("Bf16Mixed forward gpu vs cpu ") + name + " float", [&] { test_bf16_forward_gpu_vs_cpu(name); });
  steps_on_fixture<float>("bert_seqcls");
  steps_on_fixture<double>("bert_seqcls");
  steps_on_fixture<float>("roberta_seqcls");
  steps_on_random_model();
  for (const char* name : {"marian_tied", "marian_untied"}) {
    section(std::string("marian vs fixture ") + name + " float", [&] { marian_vs_fixture<float>(name); });
    section(std::string("marian vs fixture ") + name + " double", [&] { marian_vs_fixture<double>(name); });
  }
  marian_addrop_fixtures<float>();
  marian_addrop_fixtures<double>();

  gpu = Cuda::Context{};  // release the stream and cuBLAS handle while the CUDA runtime is alive
  std::printf("\n%d checks, %d failed\n", g.checks, g.failures);
  for (const auto& f : g.failed) std::printf("FAILED %s\n", f.c_str());
  return g.failures ? 1 : 0;
}
