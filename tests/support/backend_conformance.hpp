#pragma once
// Op-by-op conformance of a backend: every op of the Backend concept
// (include/addrop/backend/backend.hpp) on small random inputs, against plain host loops
// written here from the semantics in backend/cpu.hpp's comments. No test framework: the
// checks append to a Report, which a Boost.Test case (tests/unit/test_backend_cpu.cpp) or
// the CUDA test's own harness (tests/cuda/test_cuda_backend.cu) turns into failures.
//
//   Report report;
//   check_backend_ops<backend::Cpu>(ctx, report);   // every category, float and double
//   for (auto& [name, check] : op_checks<backend::Cuda, float>()) check(ctx, report);
//
// Inputs go to the backend with to_device and come back with to_host, so the same code
// checks host and device backends. The int32_t / int64_t / float uploads the concept
// requires are checked by the ops that read them (embedding ids, labels, key masks,
// threshold indices, given draws): the concept has no to_host for them.
//
// Tolerances (norm-wise relative: max_i |got_i - want_i| / max_i |want_i|, as
// tests/support/compare.hpp measures). The references run in long double (64-bit
// mantissa on x86-64), so their own error is negligible and what is measured is the
// backend's rounding in T:
//   float  1e-5:  unit roundoff u = 6e-8. Elementwise ops round 1-3 times (<= 2e-7). The
//                 longest accumulations here are sums of <= 768 terms (GEMM K <= 257,
//                 layer-norm rows of 768, softmax rows of 130) and column sums of <= 4000
//                 rows; rounding errors of random-signed terms grow like sqrt(n) u
//                 (<= 4e-6), and the error is measured against the largest |want|, not
//                 element by element. Erf, exp and tanh of float libraries (Eigen's
//                 polynomial erf, CUDA's erff) are within a few ulp.
//   double 1e-12: u = 1.1e-16; the same argument gives <= 1e-14, and 1e-12 leaves room
//                 for libm differences (CUDA's double erf/exp are 1-2 ulp) and for the
//                 40000-row column sums.
//   Reductions returned as host doubles: sum_squares 1e-10 for both types (every backend
//   sums in double; a sum of <= 1e5 non-negative terms is within n u_double = 1.1e-11);
//   mse and cross_entropy, whose terms are computed in T, the T tolerance above.
// Integer-valued results must be identical: fill, copy, transfers, add, mul, scale,
// add_bias and embedding_forward (one rounding in T, the same on every IEEE machine), the
// generator's draws, dropout's keep pattern, and every AD-DROP selection output
// (candidates, keep, additive masks: the fused ops must equal the reference composition
// of tests/support/selection_reference.hpp bit for bit).
#include <addrop/backend/backend.hpp>
#include <addrop/backend/philox.hpp>
#include <addrop/backend/precision.hpp>
#include <addrop/tensor.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "compare.hpp"
#include "selection_reference.hpp"

namespace addrop::testing::conformance {

/// Where the checks go: a count, the failure lines, and an optional sink that sees every
/// check (a harness that prints or records them itself).
struct Report {
  std::function<void(bool ok, const std::string& line)> sink;
  int checks = 0;
  std::vector<std::string> failures;
  void record(bool ok, const std::string& line) {
    ++checks;
    if (!ok) failures.push_back(line);
    if (sink) sink(ok, line);
  }
};

/// Tolerances (see the file's header for why).
template <class T>
constexpr double tolerance() { return std::is_same_v<T, float> ? 1e-5 : 1e-12; }
inline constexpr double kSumSquaresTolerance = 1e-10;

namespace detail {

using R = long double;  // the references' arithmetic
template <class B>
using Ctx = typename B::Context;

template <class T>
const char* type_name() { return std::is_same_v<T, float> ? "float" : "double"; }

inline std::string dims(std::initializer_list<int64_t> d) {
  std::string s = "[";
  for (auto it = d.begin(); it != d.end(); ++it) {
    if (it != d.begin()) s += ',';
    s += std::to_string(*it);
  }
  s += ']';
  return s;
}

// ---------------------------------------------------------------- transfers
template <class B, class E>
Tensor<E, B> up(const Ctx<B>& ctx, const std::vector<E>& h) {
  Tensor<E, B> t(Shape{static_cast<int64_t>(h.size())});
  if (!h.empty()) B::to_device(ctx, t.numel(), h.data(), t.data());
  return t;
}
template <class B, class E>
Tensor<E, B> empty(int64_t n) { return Tensor<E, B>(Shape{n}); }
template <class B, class E>
std::vector<E> down(const Ctx<B>& ctx, const Tensor<E, B>& t) {
  std::vector<E> h(static_cast<std::size_t>(t.numel()));
  if (!h.empty()) B::to_host(ctx, t.numel(), t.data(), h.data());
  return h;
}

// ---------------------------------------------------------------- inputs
class Inputs {
 public:
  explicit Inputs(uint64_t seed) : rng_(seed) {}
  template <class T>
  std::vector<T> reals(int64_t n, double lo = -1, double hi = 1) {
    std::uniform_real_distribution<double> d(lo, hi);
    std::vector<T> v(static_cast<std::size_t>(n));
    for (auto& x : v) x = static_cast<T>(d(rng_));
    return v;
  }
  // Values with |x| in [0.05, 1]: never zero (dropout's keep pattern is read from zeros).
  template <class T>
  std::vector<T> nonzero(int64_t n) {
    auto v = reals<T>(n, 0.05, 1);
    std::bernoulli_distribution sign(0.5);
    for (auto& x : v) x = sign(rng_) ? -x : x;
    return v;
  }
  std::vector<int32_t> ints(int64_t n, int32_t lo, int32_t hi) {
    std::uniform_int_distribution<int32_t> d(lo, hi);
    std::vector<int32_t> v(static_cast<std::size_t>(n));
    for (auto& x : v) x = d(rng_);
    return v;
  }
  bool coin(double p) { return std::bernoulli_distribution(p)(rng_); }

 private:
  std::mt19937_64 rng_;
};

// ---------------------------------------------------------------- comparisons
template <class A, class W>
void close(Report& r, const std::string& name, const std::vector<A>& got, const std::vector<W>& want, double tol) {
  if (got.size() != want.size()) {
    r.record(false, name + ": sizes differ, got " + std::to_string(got.size()) + " want " + std::to_string(want.size()));
    return;
  }
  std::vector<double> w(want.size());
  for (std::size_t i = 0; i < want.size(); ++i) w[i] = static_cast<double>(want[i]);
  const auto c = compare(name, got.data(), w.data(), static_cast<int64_t>(got.size()), tol);
  r.record(c.relative() <= tol, c.report);
}
// Equal element by element (NaN never equals).
template <class A, class W>
void same(Report& r, const std::string& name, const std::vector<A>& got, const std::vector<W>& want) {
  if (got.size() != want.size()) {
    r.record(false, name + ": sizes differ, got " + std::to_string(got.size()) + " want " + std::to_string(want.size()));
    return;
  }
  std::ostringstream os;
  os.precision(17);
  os << name << ": ";
  int64_t differ = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (!(static_cast<double>(got[i]) == static_cast<double>(want[i]))) {
      if (differ < 5) os << "[" << i << "] got " << static_cast<double>(got[i]) << " want " << static_cast<double>(want[i]) << "; ";
      ++differ;
    }
  }
  os << differ << " of " << got.size() << " differ";
  r.record(differ == 0, os.str());
}
inline void scalar(Report& r, const std::string& name, double got, double want, double tol) {
  const double err = std::abs(got - want), scale = std::max(std::abs(want), 1e-300);
  std::ostringstream os;
  os.precision(17);
  os << name << ": got " << got << " want " << want << ", relative " << err / scale << " vs tolerance " << tol;
  r.record(err == 0 || err <= tol * scale, os.str());
}
template <class T>
std::vector<T> rounded(const std::vector<R>& v) {
  std::vector<T> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = static_cast<T>(v[i]);
  return out;
}

// ---------------------------------------------------------------- reference GEMM
// C[M,N] (ldc) = alpha op(A) op(B) + beta C; beta = 0 does not read C (the BLAS convention:
// the library multiplies into workspaces whose contents are unspecified, NaN included).
// The float nearest to x with bfloat16's 8 significant bits, ties to even (written here
// with integer arithmetic, apart from the library's own conversion).
inline float bf16_value(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  const uint32_t lower = u & 0xffffu, upper = u & 0xffff0000u;
  uint32_t r = upper;
  if (lower > 0x8000u || (lower == 0x8000u && (upper & 0x10000u))) r += 0x10000u;
  float y;
  std::memcpy(&y, &r, 4);
  return y;
}

// Whether ctx asks for bf16 products of T (a float product under Precision::Bf16Mixed, on
// a backend whose context has a precision member): the reference rounds the inputs alike.
template <class T, class Context>
bool bf16_products(const Context& ctx) {
  if constexpr (std::is_same_v<T, float> && requires { ctx.precision; })
    return ctx.precision == addrop::Precision::Bf16Mixed;
  return false;
}

template <class T>
void gemm_ref(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
              int64_t ldb, T beta, T* C, int64_t ldc, bool bf16_inputs = false) {
  auto input = [bf16_inputs](T v) -> R {
    if constexpr (std::is_same_v<T, float>)
      if (bf16_inputs) return R(bf16_value(v));
    return R(v);
  };
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      R acc = 0;
      for (int64_t k = 0; k < K; ++k) {
        const R a = input(ta ? A[k * lda + i] : A[i * lda + k]);
        const R b = input(tb ? B[j * ldb + k] : B[k * ldb + j]);
        acc += a * b;
      }
      const R c = beta == T(0) ? R(0) : R(beta) * R(C[i * ldc + j]);
      C[i * ldc + j] = static_cast<T>(R(alpha) * acc + c);
    }
}

}  // namespace detail

// ====================================================================== storage
/// Buffer<T> (what Tensor<T, B> owns): grow-only reserve, data, capacity, moves.
template <backend::Backend B, class T>
  requires backend::BackendFor<B, T>
void check_storage(const typename B::Context&, Report& r) {
  const std::string at = std::string(" ") + detail::type_name<T>();
  typename B::template Buffer<T> b;
  r.record(b.data() == nullptr && b.capacity() == 0, "Buffer: a default buffer is empty" + at);
  b.reserve(100);
  T* first = b.data();
  r.record(first != nullptr && b.capacity() == 100, "Buffer::reserve(100) allocates" + at);
  b.reserve(50);
  r.record(b.data() == first && b.capacity() == 100, "Buffer::reserve keeps the allocation when it fits" + at);
  b.reserve(1000);
  r.record(b.data() != nullptr && b.capacity() == 1000, "Buffer::reserve grows" + at);
  typename B::template Buffer<T> moved(std::move(b));
  r.record(moved.capacity() == 1000 && moved.data() != nullptr, "Buffer moves" + at);
  Tensor<T, B> t(Shape{4, 5});
  t.resize(Shape{2, 3});
  const T* kept = t.data();
  t.resize(Shape{20});
  r.record(t.data() == kept && t.capacity() == 20, "Tensor::resize within the capacity keeps the storage" + at);
}

// ====================================================================== data movement
/// to_device / to_host (T), fill, copy, axpby, add (also in place), scale, mul.
template <backend::Backend B, class T>
  requires backend::BackendFor<B, T>
void check_data_movement(const typename B::Context& ctx, Report& r) {
  using namespace detail;
  Inputs in(1);
  for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{1000}, int64_t{100003}}) {
    const std::string at = std::string(" ") + type_name<T>() + " n=" + std::to_string(n);
    const auto x = in.reals<T>(n), y = in.reals<T>(n);
    auto dx = up<B>(ctx, x), dy = up<B>(ctx, y);
    same(r, "to_device then to_host" + at, down<B>(ctx, dx), x);
    auto dout = empty<B, T>(n);
    B::fill(ctx, n, T(0.25), dout.data());
    same(r, "fill" + at, down<B>(ctx, dout), std::vector<T>(static_cast<std::size_t>(n), T(0.25)));
    B::copy(ctx, n, dx.data(), dout.data());
    same(r, "copy" + at, down<B>(ctx, dout), x);
    // axpby: y = a x + b y (a device may fuse the product and the sum: close, not equal)
    std::vector<R> want(static_cast<std::size_t>(n));
    for (int64_t i = 0; i < n; ++i) want[i] = R(T(1.5)) * R(x[i]) + R(T(-0.75)) * R(y[i]);
    B::axpby(ctx, n, T(1.5), dx.data(), T(-0.75), dy.data());
    close(r, "axpby" + at, down<B>(ctx, dy), want, tolerance<T>());
    // add, mul, scale: one rounding in T, identical everywhere
    std::vector<T> exact(static_cast<std::size_t>(n));
    dy = up<B>(ctx, y);
    for (int64_t i = 0; i < n; ++i) exact[i] = x[i] + y[i];
    B::add(ctx, n, dx.data(), dy.data(), dout.data());
    same(r, "add" + at, down<B>(ctx, dout), exact);
    B::add(ctx, n, dy.data(), dx.data(), dy.data());  // out aliasing an input, as the residual sums do
    same(r, "add in place" + at, down<B>(ctx, dy), exact);
    for (int64_t i = 0; i < n; ++i) exact[i] = x[i] * y[i];
    dy = up<B>(ctx, y);
    B::mul(ctx, n, dx.data(), dy.data(), dout.data());
    same(r, "mul" + at, down<B>(ctx, dout), exact);
    for (int64_t i = 0; i < n; ++i) exact[i] = y[i] * T(-3);
    B::scale(ctx, n, T(-3), dy.data());
    same(r, "scale" + at, down<B>(ctx, dy), exact);
  }
}

// ====================================================================== GEMM
/// gemm: every transpose pair, padded leading dimensions (pads untouched), beta 0 (C full
/// of NaN: not read), 1 and -0.5, and K = 0 (C = beta C).
template <backend::Backend B, class T>
  requires backend::BackendFor<B, T>
void check_gemm(const typename B::Context& ctx, Report& r) {
  using namespace detail;
  Inputs in(2);
  struct Case { int64_t M, N, K; };
  for (const Case c : {Case{1, 1, 1}, Case{7, 13, 5}, Case{64, 96, 128}, Case{129, 65, 257}, Case{1, 300, 17},
                       Case{12, 2000, 48}}) {  // the last: few rows, many columns (column-split threads)
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      for (T beta : {T(0), T(1), T(-0.5)}) {
        const int64_t pad = 3;
        const int64_t a_rows = ta ? c.K : c.M, a_cols = ta ? c.M : c.K;
        const int64_t b_rows = tb ? c.N : c.K, b_cols = tb ? c.K : c.N;
        const int64_t lda = a_cols + pad, ldb = b_cols + pad, ldc = c.N + pad;
        const auto A = in.reals<T>(a_rows * lda), Bm = in.reals<T>(b_rows * ldb);
        auto C = in.reals<T>(c.M * ldc);
        if (beta == T(0))
          for (int64_t i = 0; i < c.M; ++i)
            for (int64_t j = 0; j < c.N; ++j) C[i * ldc + j] = std::numeric_limits<T>::quiet_NaN();
        auto dA = up<B>(ctx, A), dB = up<B>(ctx, Bm), dC = up<B>(ctx, C);
        B::gemm(ctx, ta, tb, c.M, c.N, c.K, T(1.3), dA.data(), lda, dB.data(), ldb, beta, dC.data(), ldc);
        gemm_ref(ta, tb, c.M, c.N, c.K, T(1.3), A.data(), lda, Bm.data(), ldb, beta, C.data(), ldc,
                 bf16_products<T>(ctx));
        close(r,
              std::string("gemm ") + type_name<T>() + " M,N,K=" + dims({c.M, c.N, c.K}) + " ta=" +
                  std::to_string(ta) + " tb=" + std::to_string(tb) + " beta=" + std::to_string(double(beta)),
              down<B>(ctx, dC), C, tolerance<T>());
      }
    }
  }
  for (T beta : {T(0), T(0.5)}) {  // K = 0: C = beta C, zeros for beta = 0 even over NaN
    auto C = in.reals<T>(3 * 5);
    if (beta == T(0)) C[4] = std::numeric_limits<T>::quiet_NaN();
    auto dC = up<B>(ctx, C);
    auto dummy = up<B>(ctx, std::vector<T>{T(0)});
    B::gemm(ctx, false, false, 3, 5, 0, T(1), dummy.data(), 1, dummy.data(), 5, beta, dC.data(), 5);
    for (auto& v : C) v = beta == T(0) ? T(0) : v * beta;
    same(r, std::string("gemm K=0 ") + type_name<T>() + " beta=" + std::to_string(double(beta)), down<B>(ctx, dC), C);
  }
}

/// gemm_batched with attention's strides: queries [B*Lq, D] and keys [B*Lk, D] with the
/// heads interleaved (outer = example, inner = head), scores [B, H, Lq, Lk]; square and
/// cross-attention shapes; plus collapsible strides, inner = 1 and outer = 1.
template <backend::Backend B, class T>
  requires backend::BackendFor<B, T>
void check_gemm_batched(const typename B::Context& ctx, Report& r) {
  using namespace detail;
  using S = typename B::BatchStrides;
  Inputs in(3);
  const bool bf16 = bf16_products<T>(ctx);
  auto batched_ref = [bf16](bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                            std::pair<int64_t, int64_t> sa, const T* Bm, int64_t ldb, std::pair<int64_t, int64_t> sb,
                            T beta, T* C, int64_t ldc, std::pair<int64_t, int64_t> sc, int64_t outer, int64_t inner) {
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t i = 0; i < inner; ++i)
        gemm_ref(ta, tb, M, N, K, alpha, A + o * sa.first + i * sa.second, lda, Bm + o * sb.first + i * sb.second, ldb,
                 beta, C + o * sc.first + i * sc.second, ldc, bf16);
  };
  struct Case { int64_t batch, H, Lq, Lk, dh; };
  for (const Case c : {Case{3, 4, 17, 17, 8}, Case{2, 2, 9, 5, 16}, Case{5, 2, 9, 9, 8}, Case{1, 3, 5, 7, 4},
                       Case{20, 16, 3, 3, 2}, Case{2, 3, 4, 11, 8}}) {
    const int64_t Bn = c.batch, H = c.H, Lq = c.Lq, Lk = c.Lk, dh = c.dh, D = H * dh;
    const std::string at = std::string(" ") + type_name<T>() + " B,H,Lq,Lk,dh=" + dims({Bn, H, Lq, Lk, dh});
    const auto q = in.reals<T>(Bn * Lq * D), k = in.reals<T>(Bn * Lk * D), v = in.reals<T>(Bn * Lk * D);
    const auto P = in.reals<T>(Bn * H * Lq * Lk), dctx = in.reals<T>(Bn * Lq * D);
    auto dq = up<B>(ctx, q), dk = up<B>(ctx, k), dv = up<B>(ctx, v), dP = up<B>(ctx, P), ddctx = up<B>(ctx, dctx);
    // scores = Q K^T
    std::vector<T> s(static_cast<std::size_t>(Bn * H * Lq * Lk));
    auto ds = empty<B, T>(Bn * H * Lq * Lk);
    B::gemm_batched(ctx, false, true, Lq, Lk, dh, T(1), dq.data(), D, S{Lq * D, dh}, dk.data(), D, S{Lk * D, dh},
                    T(0), ds.data(), Lk, S{H * Lq * Lk, Lq * Lk}, Bn, H);
    batched_ref(false, true, Lq, Lk, dh, T(1), q.data(), D, {Lq * D, dh}, k.data(), D, {Lk * D, dh}, T(0), s.data(),
                Lk, {H * Lq * Lk, Lq * Lk}, Bn, H);
    close(r, "gemm_batched Q K^T" + at, down<B>(ctx, ds), s, tolerance<T>());
    // context = alpha P V
    std::vector<T> o(static_cast<std::size_t>(Bn * Lq * D));
    auto dout = empty<B, T>(Bn * Lq * D);
    B::gemm_batched(ctx, false, false, Lq, dh, Lk, T(0.7), dP.data(), Lk, S{H * Lq * Lk, Lq * Lk}, dv.data(), D,
                    S{Lk * D, dh}, T(0), dout.data(), D, S{Lq * D, dh}, Bn, H);
    batched_ref(false, false, Lq, dh, Lk, T(0.7), P.data(), Lk, {H * Lq * Lk, Lq * Lk}, v.data(), D, {Lk * D, dh},
                T(0), o.data(), D, {Lq * D, dh}, Bn, H);
    close(r, "gemm_batched P V" + at, down<B>(ctx, dout), o, tolerance<T>());
    // dV += P^T dC (beta 1 into random values)
    auto acc = in.reals<T>(Bn * Lk * D);
    auto dacc = up<B>(ctx, acc);
    B::gemm_batched(ctx, true, false, Lk, dh, Lq, T(1), dP.data(), Lk, S{H * Lq * Lk, Lq * Lk}, ddctx.data(), D,
                    S{Lq * D, dh}, T(1), dacc.data(), D, S{Lk * D, dh}, Bn, H);
    batched_ref(true, false, Lk, dh, Lq, T(1), P.data(), Lk, {H * Lq * Lk, Lq * Lk}, dctx.data(), D, {Lq * D, dh},
                T(1), acc.data(), D, {Lk * D, dh}, Bn, H);
    close(r, "gemm_batched P^T dC (beta 1)" + at, down<B>(ctx, dacc), acc, tolerance<T>());
    if (Lq != Lk) continue;
    // collapsible strides: contiguous [B*H, L, L] x [B*H, L, L]; inner = 1; outer = 1
    const int64_t L = Lq, LL = L * L;
    std::vector<T> o2(static_cast<std::size_t>(Bn * H * LL));
    auto do2 = empty<B, T>(Bn * H * LL);
    B::gemm_batched(ctx, false, false, L, L, L, T(1), dP.data(), L, S{H * LL, LL}, dP.data(), L, S{H * LL, LL}, T(0),
                    do2.data(), L, S{H * LL, LL}, Bn, H);
    batched_ref(false, false, L, L, L, T(1), P.data(), L, {H * LL, LL}, P.data(), L, {H * LL, LL}, T(0), o2.data(), L,
                {H * LL, LL}, Bn, H);
    close(r, "gemm_batched contiguous P P" + at, down<B>(ctx, do2), o2, tolerance<T>());
    B::gemm_batched(ctx, false, false, L, L, L, T(1), dP.data(), L, S{LL, 0}, dP.data(), L, S{LL, 0}, T(0),
                    do2.data(), L, S{LL, 0}, Bn * H, 1);
    batched_ref(false, false, L, L, L, T(1), P.data(), L, {LL, 0}, P.data(), L, {LL, 0}, T(0), o2.data(), L, {LL, 0},
                Bn * H, 1);
    close(r, "gemm_batched inner=1" + at, down<B>(ctx, do2), o2, tolerance<T>());
    B::gemm_batched(ctx, false, true, L, L, L, T(1), dP.data(), L, S{0, LL}, dP.data(), L, S{0, LL}, T(0),
                    do2.data(), L, S{0, LL}, 1, Bn * H);
    batched_ref(false, true, L, L, L, T(1), P.data(), L, {0, LL}, P.data(), L, {0, LL}, T(0), o2.data(), L, {0, LL}, 1,
                Bn * H);
    close(r, "gemm_batched outer=1" + at, down<B>(ctx, do2), o2, tolerance<T>());
  }
}

// ====================================================================== bias
/// add_bias (exact), bias_backward (accumulates into nonzero values).
template <backend::Backend B, class T>
  requires backend::BackendFor<B, T>
void check_bias(const typename B::Context& ctx, Report& r) {
  using namespace detail;
  Inputs in(4);
  const int64_t tall = std::is_same_v<T, float> ? 4000 : 40000;  // float: see the header
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 1}, {5, 7}, {300, 768}, {2049, 33}, {tall, 3}}) {
    const std::string at = std::string(" ") + type_name<T>() + " rows,cols=" + dims({rows, cols});
    const auto bias = in.reals<T>(cols), y = in.reals<T>(rows * cols);
    auto dbias = up<B>(ctx, bias), dy = up<B>(ctx, y);
    std::vector<T> want(y);
    for (int64_t i = 0; i < rows * cols; ++i) want[i] = y[i] + bias[i % cols];
    B::add_bias(ctx, rows, cols, dbias.data(), dy.data());
    same(r, "add_bias" + at, down<B>(ctx, dy), want);
    const auto db = in.reals<T>(cols);
    auto ddb = up<B>(ctx, db);
    std::vector<R> sums(db.begin(), db.end());
    for (int64_t i = 0; i < rows * cols; ++i) sums[i % cols] += R(want[i]);
    B::bias_backward(ctx, rows, cols, dy.data(), ddb.data());
    close(r, "bias_backward" + at, down<B>(ctx, ddb), sums, tolerance<T>());
  }
}

// ====================================================================== activations
/// GELU (exact erf), SiLU, ReLU and tanh, forward and backward.
template <backend::Backend B, class T>
  requires backend::BackendFor<B, T>
void check_activations(const typename B::Context& ctx, Report& r) {
  using namespace detail;
  Inputs in(5);
  for (int64_t n : {int64_t{1}, int64_t{1000}, int64_t{100003}}) {
    const std::string at = std::string(" ") + type_name<T>() + " n=" + std::to_string(n);
    const auto x = in.reals<T>(n, -5, 5), dy = in.reals<T>(n), th = in.reals<T>(n, -0.95, 0.95);
    auto dx = up<B>(ctx, x), ddy = up<B>(ctx, dy), dth = up<B>(ctx, th);
    auto dout = empty<B, T>(n);
    const R inv_sqrt2 = 1 / std::sqrt(R(2)), inv_sqrt_2pi = 1 / std::sqrt(2 * std::acos(R(-1)));
    std::vector<R> want(static_cast<std::size_t>(n));
    for (int64_t i = 0; i < n; ++i) want[i] = R(x[i]) * (1 + std::erf(R(x[i]) * inv_sqrt2)) / 2;
    B::gelu_forward(ctx, n, dx.data(), dout.data());
    close(r, "gelu_forward" + at, down<B>(ctx, dout), want, tolerance<T>());
    for (int64_t i = 0; i < n; ++i) {
      const R v = x[i];
      want[i] = R(dy[i]) * ((1 + std::erf(v * inv_sqrt2)) / 2 + v * inv_sqrt_2pi * std::exp(-v * v / 2));
    }
    B::gelu_backward(ctx, n, dx.data(), ddy.data(), dout.data());
    close(r, "gelu_backward" + at, down<B>(ctx, dout), want, tolerance<T>());
    for (int64_t i = 0; i < n; ++i) want[i] = R(x[i]) / (1 + std::exp(-R(x[i])));
    B::silu_forward(ctx, n, dx.data(), dout.data());
    close(r, "silu_forward" + at, down<B>(ctx, dout), want, tolerance<T>());
    for (int64_t i = 0; i < n; ++i) {
      const R v = x[i], sig = 1 / (1 + std::exp(-v));
      want[i] = R(dy[i]) * sig * (1 + v * (1 - sig));
    }
    B::silu_backward(ctx, n, dx.data(), ddy.data(), dout.data());
    close(r, "silu_backward" + at, down<B>(ctx, dout), want, tolerance<T>());
    for (int64_t i = 0; i < n; ++i) want[i] = x[i] > T(0) ? R(x[i]) : R(0);
    B::relu_forward(ctx, n, dx.data(), dout.data());
    close(r, "relu_forward" + at, down<B>(ctx, dout), want, tolerance<T>());
    for (int64_t i = 0; i < n; ++i) want[i] = x[i] > T(0) ? R(dy[i]) : R(0);
    B::relu_backward(ctx, n, dx.data(), ddy.data(), dout.data());
    close(r, "relu_backward" + at, down<B>(ctx, dout), want, tolerance<T>());
    for (int64_t i = 0; i < n; ++i) want[i] = std::tanh(R(x[i]));
    B::tanh_forward(ctx, n, dx.data(), dout.data());
    close(r, "tanh_forward" + at, down<B>(ctx, dout), want, tolerance<T>());
    for (int64_t i = 0; i < n; ++i) want[i] = R(dy[i]) * (1 - R(th[i]) * R(th[i]));  // from the output y
    B::tanh_backward(ctx, n, dth.data(), ddy.data(), dout.data());
    close(r, "tanh_backward" + at, down<B>(ctx, dout), want, tolerance<T>());
  }
}

// ====================================================================== layer norm
/// Forward (y, mean, rstd; biased variance) and backward: written dx with both parameter
/// gradients accumulating, accumulated dx without dgamma, dx aliasing dy without dbeta.
template <backend::Backend B, class T>
  requires backend::BackendFor<B, T>
void check_layer_norm(const typename B::Context& ctx, Report& r) {
  using namespace detail;
  Inputs in(6);
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 8}, {37, 768}, {500, 100}, {3000, 16}}) {
    const std::string at = std::string(" ") + type_name<T>() + " rows,cols=" + dims({rows, cols});
    auto x = in.reals<T>(rows * cols, -2, 3);
    for (int64_t c = 0; c < cols; ++c) x[c] += T(5);  // an offset row: the variance must not cancel
    const auto gamma = in.reals<T>(cols, 0.5, 1.5), beta = in.reals<T>(cols);
    const T eps = T(1e-5);
    std::vector<R> y(static_cast<std::size_t>(rows * cols)), mean(static_cast<std::size_t>(rows)),
        rstd(static_cast<std::size_t>(rows));
    for (int64_t i = 0; i < rows; ++i) {
      R m = 0, v = 0;
      for (int64_t c = 0; c < cols; ++c) m += x[i * cols + c];
      m /= cols;
      for (int64_t c = 0; c < cols; ++c) v += (x[i * cols + c] - m) * (x[i * cols + c] - m);
      v /= cols;
      mean[i] = m;
      rstd[i] = 1 / std::sqrt(v + R(eps));
      for (int64_t c = 0; c < cols; ++c) y[i * cols + c] = (x[i * cols + c] - m) * rstd[i] * gamma[c] + beta[c];
    }
    auto dx = up<B>(ctx, x), dg = up<B>(ctx, gamma), dbt = up<B>(ctx, beta);
    auto dyv = empty<B, T>(rows * cols), dmean = empty<B, T>(rows), drstd = empty<B, T>(rows);
    B::layer_norm_forward(ctx, rows, cols, eps, dx.data(), dg.data(), dbt.data(), dyv.data(), dmean.data(),
                          drstd.data());
    close(r, "layer_norm_forward y" + at, down<B>(ctx, dyv), y, tolerance<T>());
    close(r, "layer_norm_forward mean" + at, down<B>(ctx, dmean), mean, tolerance<T>());
    close(r, "layer_norm_forward rstd" + at, down<B>(ctx, drstd), rstd, tolerance<T>());
    // backward from the reference's statistics (rounded to T, the same on both sides)
    const auto mean_t = rounded<T>(mean), rstd_t = rounded<T>(rstd);
    auto dm = up<B>(ctx, mean_t), dr = up<B>(ctx, rstd_t);
    const auto dy = in.reals<T>(rows * cols);
    auto ddy = up<B>(ctx, dy);
    const auto dx0 = in.reals<T>(rows * cols), dg0 = in.reals<T>(cols), db0 = in.reals<T>(cols);
    std::vector<R> want_dx(static_cast<std::size_t>(rows * cols)), want_dg(dg0.begin(), dg0.end()),
        want_db(db0.begin(), db0.end());
    for (int64_t i = 0; i < rows; ++i) {
      const R m = mean_t[i], s = rstd_t[i];
      R mean_g = 0, mean_gx = 0;
      for (int64_t c = 0; c < cols; ++c) {
        const R g = R(dy[i * cols + c]) * gamma[c], xhat = (x[i * cols + c] - m) * s;
        mean_g += g;
        mean_gx += g * xhat;
        want_dg[c] += R(dy[i * cols + c]) * xhat;
        want_db[c] += dy[i * cols + c];
      }
      mean_g /= cols;
      mean_gx /= cols;
      for (int64_t c = 0; c < cols; ++c) {
        const R xhat = (x[i * cols + c] - m) * s;
        want_dx[i * cols + c] = s * (R(dy[i * cols + c]) * gamma[c] - mean_g - xhat * mean_gx);
      }
    }
    auto ddx = up<B>(ctx, dx0), ddg = up<B>(ctx, dg0), ddb = up<B>(ctx, db0);
    B::layer_norm_backward(ctx, rows, cols, ddy.data(), dx.data(), dm.data(), dr.data(), dg.data(), ddx.data(), false,
                           ddg.data(), ddb.data());
    close(r, "layer_norm_backward dx" + at, down<B>(ctx, ddx), want_dx, tolerance<T>());
    close(r, "layer_norm_backward dgamma (accumulated)" + at, down<B>(ctx, ddg), want_dg, tolerance<T>());
    close(r, "layer_norm_backward dbeta (accumulated)" + at, down<B>(ctx, ddb), want_db, tolerance<T>());
    // accumulated dx, no dgamma: dx0 + dx
    std::vector<R> acc(static_cast<std::size_t>(rows * cols));
    for (int64_t i = 0; i < rows * cols; ++i) acc[i] = R(dx0[i]) + want_dx[i];
    auto ddx2 = up<B>(ctx, dx0), ddb2 = up<B>(ctx, db0);
    B::layer_norm_backward(ctx, rows, cols, ddy.data(), dx.data(), dm.data(), dr.data(), dg.data(), ddx2.data(), true,
                           static_cast<T*>(nullptr), ddb2.data());
    close(r, "layer_norm_backward accumulated dx" + at, down<B>(ctx, ddx2), acc, tolerance<T>());
    close(r, "layer_norm_backward dbeta alone" + at, down<B>(ctx, ddb2), want_db, tolerance<T>());
    // dx written over dy, no dbeta
    auto alias = up<B>(ctx, dy), ddg3 = up<B>(ctx, dg0);
    B::layer_norm_backward(ctx, rows, cols, alias.data(), dx.data(), dm.data(), dr.data(), dg.data(), alias.data(),
                           false, ddg3.data(), static_cast<T*>(nullptr));
    close(r, "layer_norm_backward dx aliasing dy" + at, down<B>(ctx, alias), want_dx, tolerance<T>());
    close(r, "layer_norm_backward dgamma alone" + at, down<B>(ctx, ddg3), want_dg, tolerance<T>());
  }
}

// ====================================================================== attention softmax
/// attention_softmax_forward with the key bias and the extra additive mask (rows fully
/// masked included), without them, in place; softmax_backward written and in place.
template <backend::Backend B, class T>
  requires backend::BackendFor<B, T>
void check_softmax(const typename B::Context& ctx, Report& r) {
  using namespace detail;
  Inputs in(7);
  for (auto [Bn, H, L] : {std::array<int64_t, 3>{1, 1, 1}, {2, 3, 7}, {3, 2, 130}, {1, 2, 33}}) {
    const std::string at = std::string(" ") + type_name<T>() + " B,H,L=" + dims({Bn, H, L});
    const int64_t n = Bn * H * L * L, rows = Bn * H * L;
    const auto scores = in.reals<T>(n, -4, 4);
    // key_bias: example b has L - b*L/4 real keys, the last example (when B > 1) none
    std::vector<T> key_bias(static_cast<std::size_t>(Bn * L), T(0));
    for (int64_t b = 0; b < Bn; ++b) {
      const int64_t len = b == Bn - 1 && Bn > 1 ? 0 : L - b * L / 4;
      for (int64_t j = len; j < L; ++j) key_bias[b * L + j] = T(-10000);
    }
    // extra: about 30% -10000, and row 1 entirely
    std::vector<T> extra(static_cast<std::size_t>(n), T(0));
    for (auto& e : extra) e = in.coin(0.3) ? T(-10000) : T(0);
    for (int64_t j = 0; j < L; ++j) extra[(L + j) % n] = T(-10000);
    const T scale = T(1) / std::sqrt(T(8));
    auto softmax_ref = [&](const T* kb, const T* ex) {
      std::vector<R> p(static_cast<std::size_t>(n));
      for (int64_t row = 0; row < rows; ++row) {
        const int64_t b = row / (H * L);
        R m = -std::numeric_limits<R>::infinity(), total = 0;
        for (int64_t j = 0; j < L; ++j) {
          const R v = R(scale) * scores[row * L + j] + (kb ? R(kb[b * L + j]) : 0) + (ex ? R(ex[row * L + j]) : 0);
          p[row * L + j] = v;
          m = std::max(m, v);
        }
        for (int64_t j = 0; j < L; ++j) total += p[row * L + j] = std::exp(p[row * L + j] - m);
        for (int64_t j = 0; j < L; ++j) p[row * L + j] /= total;
      }
      return p;
    };
    auto ds = up<B>(ctx, scores), dkb = up<B>(ctx, key_bias), dex = up<B>(ctx, extra);
    auto dp = empty<B, T>(n);
    const auto want = softmax_ref(key_bias.data(), extra.data());
    B::attention_softmax_forward(ctx, Bn, H, L, L, scale, ds.data(), dkb.data(), dex.data(), false, dp.data());
    close(r, "attention_softmax_forward with both masks" + at, down<B>(ctx, dp), want, tolerance<T>());
    B::attention_softmax_forward(ctx, Bn, H, L, L, scale, ds.data(), static_cast<const T*>(nullptr),
                                 static_cast<const T*>(nullptr), false, dp.data());
    close(r, "attention_softmax_forward without masks" + at, down<B>(ctx, dp), softmax_ref(nullptr, nullptr),
          tolerance<T>());
    auto inplace = up<B>(ctx, scores);  // scores and probs alias, as nn::Attention calls it
    B::attention_softmax_forward(ctx, Bn, H, L, L, scale, inplace.data(), dkb.data(), static_cast<const T*>(nullptr),
                                 false, inplace.data());
    const auto want_kb = softmax_ref(key_bias.data(), nullptr);
    close(r, "attention_softmax_forward in place, key bias only" + at, down<B>(ctx, inplace), want_kb, tolerance<T>());
    // backward: dscores = scale * p * (dp - sum_j dp p), from probs rounded to T
    const auto probs = rounded<T>(want_kb);
    const auto dprobs = in.reals<T>(n);
    std::vector<R> dsc(static_cast<std::size_t>(n));
    for (int64_t row = 0; row < rows; ++row) {
      R dot = 0;
      for (int64_t j = 0; j < L; ++j) dot += R(probs[row * L + j]) * dprobs[row * L + j];
      for (int64_t j = 0; j < L; ++j) dsc[row * L + j] = R(scale) * probs[row * L + j] * (dprobs[row * L + j] - dot);
    }
    auto dpr = up<B>(ctx, probs), ddp = up<B>(ctx, dprobs);
    auto ddsc = empty<B, T>(n);
    B::softmax_backward(ctx, rows, L, scale, dpr.data(), ddp.data(), ddsc.data());
    close(r, "softmax_backward" + at, down<B>(ctx, ddsc), dsc, tolerance<T>());
    B::softmax_backward(ctx, rows, L, scale, dpr.data(), ddp.data(), ddp.data());
    close(r, "softmax_backward in place" + at, down<B>(ctx, ddp), dsc, tolerance<T>());
  }
  // Rectangular sites (cross-attention: Lq != Lk) and causal rows (a decoder's
  // self-attention, and its incremental steps whose Lq queries are the last of Lk keys).
  for (auto [Bn, H, Lq, Lk, causal] : {std::array<int64_t, 5>{2, 3, 4, 9, 0}, {2, 2, 6, 6, 1}, {3, 2, 1, 7, 1},
                                       {1, 2, 3, 40, 1}, {2, 1, 50, 5, 0}}) {
    const std::string at = std::string(" ") + type_name<T>() + " B,H,Lq,Lk,causal=" + dims({Bn, H, Lq, Lk, causal});
    const int64_t n = Bn * H * Lq * Lk, rows = Bn * H * Lq;
    const auto scores = in.reals<T>(n, -4, 4);
    std::vector<T> key_bias(static_cast<std::size_t>(Bn * Lk), T(0));
    for (int64_t b = 1; b < Bn; ++b) key_bias[b * Lk + Lk - 1] = T(-10000);
    std::vector<T> extra(static_cast<std::size_t>(n), T(0));
    for (auto& e : extra) e = in.coin(0.2) ? T(-10000) : T(0);
    const T scale = T(0.5);
    std::vector<R> want(static_cast<std::size_t>(n), R(0));
    for (int64_t row = 0; row < rows; ++row) {
      const int64_t b = row / (H * Lq), visible = causal ? std::min(Lk, row % Lq + 1 + Lk - Lq) : Lk;
      R m = -std::numeric_limits<R>::infinity(), total = 0;
      for (int64_t j = 0; j < visible; ++j)
        m = std::max(m, R(scale) * scores[row * Lk + j] + R(key_bias[b * Lk + j]) + R(extra[row * Lk + j]));
      for (int64_t j = 0; j < visible; ++j)
        total += want[row * Lk + j] =
            std::exp(R(scale) * scores[row * Lk + j] + R(key_bias[b * Lk + j]) + R(extra[row * Lk + j]) - m);
      for (int64_t j = 0; j < visible; ++j) want[row * Lk + j] /= total;
    }
    auto ds = up<B>(ctx, scores), dkb = up<B>(ctx, key_bias), dex = up<B>(ctx, extra);
    auto dp = empty<B, T>(n);
    B::attention_softmax_forward(ctx, Bn, H, Lq, Lk, scale, ds.data(), dkb.data(), dex.data(), causal != 0, dp.data());
    close(r, "attention_softmax_forward" + at, down<B>(ctx, dp), want, tolerance<T>());
  }
}

// ====================================================================== dropout and draws
/// uniform (the generator, exactly), dropout_forward (also in place) and dropout_backward
/// (written and accumulated): keep iff draw i >= p, kept values scaled by 1 / (1 - p).
template <backend::Backend B, class T>
  requires backend::BackendFor<B, T>
void check_dropout(const typename B::Context& ctx, Report& r) {
  using namespace detail;
  Inputs in(8);
  for (int64_t n : {int64_t{1}, int64_t{3}, int64_t{5}, int64_t{1001}, int64_t{100000}}) {
    for (uint64_t stream : {uint64_t{0}, uint64_t{7} << 24, (uint64_t{1} << 63) | (uint64_t{5} << 20) | 6}) {
      const uint64_t seed = 0x9E3779B97F4A7C15ull ^ static_cast<uint64_t>(n);
      const std::string at = std::string(" ") + type_name<T>() + " n=" + std::to_string(n) + " stream=" +
                             std::to_string(stream);
      const auto draws = reference::uniforms(n, seed, stream);
      auto du = empty<B, float>(n);
      B::uniform(ctx, n, seed, stream, du.data());
      same(r, "uniform" + at, down<B>(ctx, du), draws);
      const auto x = in.nonzero<T>(n);
      auto dx = up<B>(ctx, x);
      for (float p : {0.0f, 0.1f, 0.5f}) {
        const std::string pa = at + " p=" + std::to_string(p);
        std::vector<R> want(static_cast<std::size_t>(n));
        std::vector<T> pattern(static_cast<std::size_t>(n));  // 1 kept, 0 dropped
        for (int64_t i = 0; i < n; ++i) {
          const bool kept = draws[i] >= p;
          pattern[i] = kept ? T(1) : T(0);
          want[i] = kept ? R(x[i]) / (1 - R(p)) : R(0);
        }
        auto kept_of = [](const std::vector<T>& v) {
          std::vector<T> k(v.size());
          for (std::size_t i = 0; i < v.size(); ++i) k[i] = v[i] != T(0) ? T(1) : T(0);
          return k;
        };
        auto dy = empty<B, T>(n);
        B::dropout_forward(ctx, n, p, seed, stream, dx.data(), dy.data());
        const auto y = down<B>(ctx, dy);
        same(r, "dropout_forward keep pattern" + pa, kept_of(y), pattern);
        close(r, "dropout_forward" + pa, y, want, tolerance<T>());
        auto inplace = up<B>(ctx, x);
        B::dropout_forward(ctx, n, p, seed, stream, inplace.data(), inplace.data());
        same(r, "dropout_forward in place" + pa, down<B>(ctx, inplace), y);
        B::dropout_backward(ctx, n, p, seed, stream, dx.data(), dy.data(), false);
        same(r, "dropout_backward" + pa, down<B>(ctx, dy), y);  // the same mask, the same products
        const auto acc = in.reals<T>(n);
        std::vector<R> want_acc(acc.begin(), acc.end());
        for (int64_t i = 0; i < n; ++i) want_acc[i] += want[i];
        auto dacc = up<B>(ctx, acc);
        B::dropout_backward(ctx, n, p, seed, stream, dx.data(), dacc.data(), true);
        close(r, "dropout_backward accumulated" + pa, down<B>(ctx, dacc), want_acc, tolerance<T>());
      }
      // A shard: elements [first, n) drawn with first as the draw index of element 0 are
      // the whole tensor's elements first.. (any first, aligned to a Philox block or not).
      for (int64_t first : {int64_t{1}, int64_t{4}, int64_t{7}}) {
        if (first >= n) continue;
        const int64_t m = n - first;
        const std::string fa = at + " first=" + std::to_string(first);
        auto su = empty<B, float>(m);
        B::uniform(ctx, m, seed, stream, su.data(), first);
        same(r, "uniform of a shard" + fa, down<B>(ctx, su), std::vector<float>(draws.begin() + first, draws.end()));
        const float p = 0.5f;
        auto whole = empty<B, T>(n);
        B::dropout_forward(ctx, n, p, seed, stream, dx.data(), whole.data());
        const auto whole_y = down<B>(ctx, whole);
        auto part_x = up<B>(ctx, std::vector<T>(x.begin() + first, x.end()));
        auto part_y = empty<B, T>(m);
        B::dropout_forward(ctx, m, p, seed, stream, part_x.data(), part_y.data(), first);
        same(r, "dropout_forward of a shard" + fa, down<B>(ctx, part_y),
             std::vector<T>(whole_y.begin() + first, whole_y.end()));
        B::dropout_backward(ctx, m, p, seed, stream, part_x.data(), part_y.data(), false, first);
        same(r, "dropout_backward of a shard" + fa, down<B>(ctx, part_y),
             std::vector<T>(whole_y.begin() + first, whole_y.end()));
      }
    }
  }
}

// ====================================================================== embeddings
/// embedding_forward written and accumulated (exact), embedding_backward with and without
/// a padding row (ids shared by many tokens included).
template <backend::Backend B, class T>
  requires backend::BackendFor<B, T>
void check_embeddings(const typename B::Context& ctx, Report& r) {
  using namespace detail;
  Inputs in(9);
  for (auto [tokens, rows, dim] : {std::array<int64_t, 3>{1, 5, 1}, {50, 37, 64}, {3000, 400, 64}, {2000, 2, 48},
                                   {1500, 3, 770}}) {
    for (int64_t padding : {int64_t{-1}, int64_t{0}, int64_t{1}}) {
      const std::string at = std::string(" ") + type_name<T>() + " tokens,rows,dim=" + dims({tokens, rows, dim}) +
                             " padding_idx=" + std::to_string(padding);
      const auto ids = in.ints(tokens, 0, static_cast<int32_t>(rows - 1));
      const auto table = in.reals<T>(rows * dim);
      auto dids = up<B>(ctx, ids);
      auto dtable = up<B>(ctx, table);
      const auto out = in.reals<T>(tokens * dim);
      std::vector<T> want(out);
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t c = 0; c < dim; ++c) want[t * dim + c] = out[t * dim + c] + table[ids[t] * dim + c];
      auto dout = up<B>(ctx, out);
      B::embedding_forward(ctx, tokens, dim, dids.data(), dtable.data(), dout.data(), true);
      same(r, "embedding_forward accumulated" + at, down<B>(ctx, dout), want);
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t c = 0; c < dim; ++c) want[t * dim + c] = table[ids[t] * dim + c];
      B::embedding_forward(ctx, tokens, dim, dids.data(), dtable.data(), dout.data(), false);
      same(r, "embedding_forward" + at, down<B>(ctx, dout), want);
      const auto grad = in.reals<T>(tokens * dim), dtab = in.reals<T>(rows * dim);
      std::vector<R> sums(dtab.begin(), dtab.end());
      for (int64_t t = 0; t < tokens; ++t)
        if (ids[t] != padding)
          for (int64_t c = 0; c < dim; ++c) sums[ids[t] * dim + c] += grad[t * dim + c];
      auto dgrad = up<B>(ctx, grad), ddtab = up<B>(ctx, dtab);
      B::embedding_backward(ctx, tokens, dim, dids.data(), dgrad.data(), ddtab.data(), padding);
      close(r, "embedding_backward" + at, down<B>(ctx, ddtab), sums, tolerance<T>());
    }
  }
}

// ====================================================================== losses and reductions
/// cross_entropy (ignored rows, with and without dlogits, all rows ignored), mse (with
/// and without dpred), sum_squares.
template <backend::Backend B, class T>
  requires backend::BackendFor<B, T>
void check_losses(const typename B::Context& ctx, Report& r) {
  using namespace detail;
  Inputs in(10);
  constexpr int32_t ignore = -100;
  for (auto [rows, classes] : {std::pair<int64_t, int64_t>{1, 2}, {5, 9}, {300, 3}, {4000, 40}}) {
    const std::string at = std::string(" ") + type_name<T>() + " rows,classes=" + dims({rows, classes});
    const auto logits = in.reals<T>(rows * classes, -6, 6);
    auto labels = in.ints(rows, 0, static_cast<int32_t>(classes - 1));
    for (std::size_t i = 1; i < labels.size(); i += 3) labels[i] = ignore;
    int64_t counted = 0;
    for (int32_t l : labels) counted += l != ignore;
    auto dl = up<B>(ctx, logits);
    auto dlab = up<B>(ctx, labels);
    auto dgrad = up<B>(ctx, std::vector<T>(static_cast<std::size_t>(rows * classes), T(7)));
    for (const T eps : {T(0), T(0.1)}) {  // plain, and label-smoothed as translation trains
      const std::string with = eps == T(0) ? "" : " label smoothing 0.1";
      R total = 0;
      std::vector<R> grad(static_cast<std::size_t>(rows * classes), R(0));
      for (int64_t i = 0; i < rows; ++i) {
        if (labels[i] == ignore) continue;
        const T* z = logits.data() + i * classes;
        R m = *std::max_element(z, z + classes), s = 0, mean_nll = 0;
        for (int64_t c = 0; c < classes; ++c) s += std::exp(R(z[c]) - m);
        const R log_z = m + std::log(s);
        for (int64_t c = 0; c < classes; ++c) mean_nll += (log_z - z[c]) / R(classes);
        total += (1 - R(eps)) * (log_z - z[labels[i]]) + R(eps) * mean_nll;
        for (int64_t c = 0; c < classes; ++c)
          grad[i * classes + c] =
              (std::exp(R(z[c]) - log_z) - (1 - R(eps)) * R(c == labels[i]) - R(eps) / R(classes)) / R(counted);
      }
      const double want = static_cast<double>(total / R(counted));
      scalar(r, "cross_entropy" + with + at,
             B::cross_entropy(ctx, rows, classes, dl.data(), dlab.data(), ignore, eps, dgrad.data()), want,
             tolerance<T>());
      close(r, "cross_entropy dlogits (ignored rows zero)" + with + at, down<B>(ctx, dgrad), grad, tolerance<T>());
      scalar(r, "cross_entropy without dlogits" + with + at,
             B::cross_entropy(ctx, rows, classes, dl.data(), dlab.data(), ignore, eps, static_cast<T*>(nullptr)),
             want, tolerance<T>());
    }
    {  // a shard divides by the whole batch's count: the loss and dlogits scale by counted / denominator
      const int64_t denominator = 3 * counted + 1;
      const double mean = B::cross_entropy(ctx, rows, classes, dl.data(), dlab.data(), ignore, T(0), dgrad.data());
      const auto g_mean = down<B>(ctx, dgrad);
      const double share =
          B::cross_entropy(ctx, rows, classes, dl.data(), dlab.data(), ignore, T(0), dgrad.data(), denominator);
      const R f = R(counted) / R(denominator);
      scalar(r, "cross_entropy with the whole batch's denominator" + at, share, mean * static_cast<double>(f),
             tolerance<T>());
      std::vector<R> g_want(g_mean.begin(), g_mean.end());
      for (auto& v : g_want) v *= f;
      close(r, "cross_entropy dlogits with the whole batch's denominator" + at, down<B>(ctx, dgrad), g_want,
            tolerance<T>());
    }
    auto dnone = up<B>(ctx, std::vector<int32_t>(static_cast<std::size_t>(rows), ignore));
    scalar(r, "cross_entropy every row ignored" + at,
           B::cross_entropy(ctx, rows, classes, dl.data(), dnone.data(), ignore, T(0), dgrad.data()), 0.0, 0.0);
    same(r, "cross_entropy every row ignored: dlogits zero" + at, down<B>(ctx, dgrad),
         std::vector<T>(static_cast<std::size_t>(rows * classes), T(0)));
  }
  for (int64_t n : {int64_t{1}, int64_t{1000}, int64_t{100003}}) {
    const std::string at = std::string(" ") + type_name<T>() + " n=" + std::to_string(n);
    const auto pred = in.reals<T>(n), target = in.reals<T>(n);
    R total = 0, squares = 0;
    std::vector<R> dpred(static_cast<std::size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const R d = R(pred[i]) - R(target[i]);
      total += d * d;
      dpred[i] = 2 * d / R(n);
      squares += R(pred[i]) * R(pred[i]);
    }
    auto dp = up<B>(ctx, pred), dt = up<B>(ctx, target);
    auto dd = empty<B, T>(n);
    scalar(r, "mse" + at, B::mse(ctx, n, dp.data(), dt.data(), dd.data()), static_cast<double>(total / R(n)),
           tolerance<T>());
    close(r, "mse dpred" + at, down<B>(ctx, dd), dpred, tolerance<T>());
    scalar(r, "mse without dpred" + at, B::mse(ctx, n, dp.data(), dt.data(), static_cast<T*>(nullptr)),
           static_cast<double>(total / R(n)), tolerance<T>());
    {  // a shard's share of a whole batch of 2n + 1
      const int64_t whole = 2 * n + 1;
      std::vector<R> dshare(dpred.begin(), dpred.end());
      for (auto& v : dshare) v = v * R(n) / R(whole);
      scalar(r, "mse with the whole batch's denominator" + at, B::mse(ctx, n, dp.data(), dt.data(), dd.data(), whole),
             static_cast<double>(total / R(whole)), tolerance<T>());
      close(r, "mse dpred with the whole batch's denominator" + at, down<B>(ctx, dd), dshare, tolerance<T>());
    }
    scalar(r, "sum_squares" + at, B::sum_squares(ctx, n, dp.data()), static_cast<double>(squares),
           kSumSquaresTolerance);
  }
}

// ====================================================================== AD-DROP selection
/// select_top_p and select_random against tests/support/selection_reference.hpp, bit for
/// bit: square and cross-attention sites (Lq != Lk), pad keys (suffixes, a gap, an example
/// with none), ties and signed zeros, p from 0 to 1, both sides, given and generated
/// draws, every output, each output alone.
template <backend::Backend B, class T>
  requires backend::BackendFor<B, T>
void check_selection(const typename B::Context& ctx, Report& r) {
  using namespace detail;
  Inputs in(11);
  const T dropped = T(-10000);
  struct Case { int64_t batch, H, Lq, Lk; };
  for (const Case c : {Case{1, 1, 1, 1}, Case{3, 2, 9, 9}, Case{4, 2, 64, 64}, Case{2, 3, 130, 130},
                       Case{3, 2, 5, 13}, Case{4, 3, 11, 4}, Case{4, 1, 3, 700}}) {
    const int64_t Bn = c.batch, H = c.H, Lq = c.Lq, Lk = c.Lk, n = Bn * H * Lq * Lk;
    // key masks: decreasing lengths, example 2 without keys, example 3 with a gap pattern
    std::vector<int64_t> lengths;
    const std::vector<int32_t> mask = reference::key_mask_cases(Bn, Lk, lengths);
    auto dmask = up<B>(ctx, mask);
    const auto u = reference::uniforms(n, 21, 22);
    auto du = up<B>(ctx, u);
    auto dc = empty<B, T>(n), dk = empty<B, T>(n), da = empty<B, T>(n);
    for (int ties = 0; ties < 2; ++ties) {
      auto scores = in.reals<T>(n);
      if (ties) {
        for (auto& s : scores) s = std::round(s * T(4)) / T(4);  // 9 levels: many equal values
        for (int64_t i = 0; i < n; i += 7) scores[i] = i % 2 ? T(0) : -T(0);
      }
      auto dscores = up<B>(ctx, scores);
      for (double p : {0.0, 0.3, 0.9, 1.0}) {
        for (bool high : {true, false}) {
          std::vector<int64_t> k(static_cast<std::size_t>(Bn));
          for (int64_t b = 0; b < Bn; ++b) {  // the float32 product truncated (selection::threshold_index)
            const float fraction = high ? static_cast<float>(1.0 - p) : static_cast<float>(p);
            k[b] = static_cast<int64_t>(fraction * static_cast<float>(lengths[b]));
          }
          auto dkk = up<B>(ctx, k);
          for (bool given : {false, true}) {
            const std::string at = std::string(" ") + type_name<T>() + " B,H,Lq,Lk=" + dims({Bn, H, Lq, Lk}) +
                                   (ties ? " ties" : "") + " p=" + std::to_string(p) + (high ? " high" : " low") +
                                   (given ? " given draws" : " generated draws");
            const auto want = reference::select_top_p<T>(Bn, H, Lq, Lk, scores.data(), mask.data(), k.data(), high,
                                                         u.data(), 21, 22, 0.7f, dropped);
            const float* gu = given ? du.data() : nullptr;
            auto run = [&](T* a, T* cand, T* keep) {
              for (auto* t : {&da, &dc, &dk}) B::fill(ctx, n, T(5), t->data());
              B::select_top_p(ctx, Bn, H, Lq, Lk, dscores.data(), dmask.data(), dkk.data(), high, gu, 21, 22, 0.7f,
                              dropped, a, cand, keep);
            };
            run(da.data(), dc.data(), dk.data());
            same(r, "select_top_p candidates" + at, down<B>(ctx, dc), want.candidates);
            same(r, "select_top_p keep" + at, down<B>(ctx, dk), want.keep);
            same(r, "select_top_p additive" + at, down<B>(ctx, da), want.additive);
            run(da.data(), nullptr, nullptr);  // the training step's call
            same(r, "select_top_p additive alone" + at, down<B>(ctx, da), want.additive);
            run(nullptr, nullptr, dk.data());
            same(r, "select_top_p keep alone" + at, down<B>(ctx, dk), want.keep);
            run(nullptr, dc.data(), nullptr);
            same(r, "select_top_p candidates alone" + at, down<B>(ctx, dc), want.candidates);
          }
        }
      }
    }
    // RD's rule: both draws given, both generated, the first given and the second generated
    const auto u2 = reference::uniforms(n, 3, 2);
    auto du2 = up<B>(ctx, u2);
    for (int how = 0; how < 3; ++how) {
      const bool given1 = how != 1, given2 = how == 0;
      const std::string at = std::string(" ") + type_name<T>() + " B,H,Lq,Lk=" + dims({Bn, H, Lq, Lk}) +
                             (given1 ? " u1 given" : " u1 generated") + (given2 ? " u2 given" : " u2 generated");
      const auto want = reference::select_random<T>(Bn, H, Lq, Lk, mask.data(), given1 ? u.data() : nullptr, 3, 1,
                                                    0.7f, given2 ? u2.data() : nullptr, 2, 0.6f, dropped);
      for (auto* t : {&da, &dc, &dk}) B::fill(ctx, n, T(5), t->data());
      B::select_random(ctx, Bn, H, Lq, Lk, dmask.data(), given1 ? du.data() : nullptr, 3, 1, 0.7f,
                       given2 ? du2.data() : nullptr, 2, 0.6f, dropped, da.data(), dc.data(), dk.data());
      same(r, "select_random candidates" + at, down<B>(ctx, dc), want.candidates);
      same(r, "select_random keep" + at, down<B>(ctx, dk), want.keep);
      same(r, "select_random additive" + at, down<B>(ctx, da), want.additive);
      B::fill(ctx, n, T(5), da.data());
      B::select_random(ctx, Bn, H, Lq, Lk, dmask.data(), given1 ? du.data() : nullptr, 3, 1, 0.7f,
                       given2 ? du2.data() : nullptr, 2, 0.6f, dropped, da.data(), static_cast<T*>(nullptr),
                       static_cast<T*>(nullptr));
      same(r, "select_random additive alone" + at, down<B>(ctx, da), want.additive);
    }
    // A shard: examples [1, B) run alone with first_draw at example 1 draw what the whole
    // batch draws for them (generated draws; a data-parallel rank's call).
    if (Bn > 1) {
      const int64_t per = H * Lq * Lk, m = (Bn - 1) * per;
      const std::string at = std::string(" ") + type_name<T>() + " B,H,Lq,Lk=" + dims({Bn, H, Lq, Lk}) + " shard";
      const auto scores = in.reals<T>(n);
      std::vector<int64_t> k(static_cast<std::size_t>(Bn));
      for (int64_t b = 0; b < Bn; ++b) k[b] = static_cast<int64_t>(0.7f * static_cast<float>(lengths[b]));
      auto dscores = up<B>(ctx, scores);
      auto dkk = up<B>(ctx, k);
      B::select_top_p(ctx, Bn, H, Lq, Lk, dscores.data(), dmask.data(), dkk.data(), true, static_cast<const float*>(nullptr),
                      21, 22, 0.7f, dropped, da.data(), static_cast<T*>(nullptr), static_cast<T*>(nullptr));
      const auto whole_top = down<B>(ctx, da);
      B::select_random(ctx, Bn, H, Lq, Lk, dmask.data(), static_cast<const float*>(nullptr), 3, 1, 0.7f,
                       static_cast<const float*>(nullptr), 2, 0.6f, dropped, dk.data(), static_cast<T*>(nullptr),
                       static_cast<T*>(nullptr));
      const auto whole_rd = down<B>(ctx, dk);
      auto part_scores = up<B>(ctx, std::vector<T>(scores.begin() + per, scores.end()));
      auto part_mask = up<B>(ctx, std::vector<int32_t>(mask.begin() + Lk, mask.end()));
      auto part_k = up<B>(ctx, std::vector<int64_t>(k.begin() + 1, k.end()));
      auto part = empty<B, T>(m);
      B::select_top_p(ctx, Bn - 1, H, Lq, Lk, part_scores.data(), part_mask.data(), part_k.data(), true,
                      static_cast<const float*>(nullptr), 21, 22, 0.7f, dropped, part.data(), static_cast<T*>(nullptr),
                      static_cast<T*>(nullptr), per);
      same(r, "select_top_p of a shard" + at, down<B>(ctx, part), std::vector<T>(whole_top.begin() + per, whole_top.end()));
      B::select_random(ctx, Bn - 1, H, Lq, Lk, part_mask.data(), static_cast<const float*>(nullptr), 3, 1, 0.7f,
                       static_cast<const float*>(nullptr), 2, 0.6f, dropped, part.data(), static_cast<T*>(nullptr),
                       static_cast<T*>(nullptr), per);
      same(r, "select_random of a shard" + at, down<B>(ctx, part), std::vector<T>(whole_rd.begin() + per, whole_rd.end()));
    }
  }
}

// ====================================================================== optimizer
/// adamw_update, Hugging Face's and torch's variants, over a few steps:
///   m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2,  bc_i = 1 - b_i^t;
///   hugging_face: p -= lr sqrt(bc2) / bc1 * m / (sqrt(v) + eps); then p -= lr wd p;
///   torch:        p *= 1 - lr wd first; then p -= lr / bc1 * m / (sqrt(v / bc2) + eps).
template <backend::Backend B, class T>
  requires backend::BackendFor<B, T>
void check_adamw(const typename B::Context& ctx, Report& r) {
  using namespace detail;
  Inputs in(12);
  const double lr = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-6, wd = 0.01;
  for (bool hf : {true, false}) {
    const int64_t n = 10007;
    const auto p0 = in.reals<T>(n), m0 = in.reals<T>(n, 0, 0.1), v0 = in.reals<T>(n, 0, 0.01);
    std::vector<R> p(p0.begin(), p0.end()), m(m0.begin(), m0.end()), v(v0.begin(), v0.end());
    auto dp = up<B>(ctx, p0), dm = up<B>(ctx, m0), dv = up<B>(ctx, v0);
    for (int64_t t = 1; t <= 7; t += 3) {
      const auto g = in.reals<T>(n);
      auto dg = up<B>(ctx, g);
      B::adamw_update(ctx, n, dp.data(), dg.data(), dm.data(), dv.data(), lr, b1, b2, eps, wd, t, hf);
      const R bc1 = 1 - std::pow(R(b1), R(t)), bc2 = 1 - std::pow(R(b2), R(t));
      for (int64_t i = 0; i < n; ++i) {
        if (!hf) p[i] *= 1 - R(lr) * R(wd);
        m[i] = R(b1) * m[i] + (1 - R(b1)) * g[i];
        v[i] = R(b2) * v[i] + (1 - R(b2)) * R(g[i]) * g[i];
        if (hf) {
          p[i] -= R(lr) * std::sqrt(bc2) / bc1 * m[i] / (std::sqrt(v[i]) + R(eps));
          p[i] -= R(lr) * R(wd) * p[i];
        } else {
          p[i] -= R(lr) / bc1 * m[i] / (std::sqrt(v[i] / bc2) + R(eps));
        }
      }
    }
    const std::string at = std::string(" ") + type_name<T>() + (hf ? " hugging_face" : " torch");
    close(r, "adamw_update param" + at, down<B>(ctx, dp), p, tolerance<T>());
    close(r, "adamw_update m" + at, down<B>(ctx, dm), m, tolerance<T>());
    close(r, "adamw_update v" + at, down<B>(ctx, dv), v, tolerance<T>());
  }
}

// ====================================================================== all of them
template <class B>
using CheckFn = void (*)(const typename B::Context&, Report&);

/// Every category for element type T, by name (a harness can run them one by one).
template <backend::Backend B, class T>
  requires backend::BackendFor<B, T>
std::vector<std::pair<std::string, CheckFn<B>>> op_checks() {
  return {
      {"storage", &check_storage<B, T>},
      {"data movement", &check_data_movement<B, T>},
      {"gemm", &check_gemm<B, T>},
      {"gemm_batched", &check_gemm_batched<B, T>},
      {"bias", &check_bias<B, T>},
      {"activations", &check_activations<B, T>},
      {"layer norm", &check_layer_norm<B, T>},
      {"attention softmax", &check_softmax<B, T>},
      {"dropout and uniform", &check_dropout<B, T>},
      {"embeddings", &check_embeddings<B, T>},
      {"losses and reductions", &check_losses<B, T>},
      {"AD-DROP selection", &check_selection<B, T>},
      {"adamw", &check_adamw<B, T>},
  };
}

/// Every op of the Backend concept, for float and (where the backend supports it) double.
/// Failure lines name the op, the element type and the shape.
template <backend::Backend B>
void check_backend_ops(const typename B::Context& ctx, Report& report) {
  for (const auto& [name, check] : op_checks<B, float>()) check(ctx, report);
  if constexpr (backend::BackendFor<B, double>)
    for (const auto& [name, check] : op_checks<B, double>()) check(ctx, report);
}

}  // namespace addrop::testing::conformance
