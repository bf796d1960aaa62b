// Finite-difference gradient checks of every CPU backend op that has a backward, in double.
//
// Method: a scalar objective J = sum(w ⊙ y) with random weights w over the op's output y;
// the analytic gradient comes from the op's backward (for GEMM: the GEMMs the layers use
// as its backward), the numeric one from central differences with h = 2^-20 on input
// elements. The error measure is norm-wise: max|analytic - numeric| / max|numeric|.
// Parameter gradients must accumulate (they start from random values here and the start
// is subtracted); input gradients must be written unless a flag says accumulate.
// Most cases run single-threaded on tiny inputs; the "threaded" cases use sizes above the
// backend's parallel grain with Context{.threads = 2}: their backward runs threaded and is
// checked on sampled elements against central differences of the single-threaded forward,
// and the threaded forward must agree with the single-threaded one (so the differences are
// not at the mercy of thread scheduling on a loaded machine).
#define BOOST_TEST_MODULE gradcheck_ops
#include <boost/test/unit_test.hpp>

#include <addrop/backend/cpu.hpp>
#include <addrop/models/config.hpp>  // init.hpp names models::Family without including it
#include <addrop/models/init.hpp>
#include <addrop/nn/layer_norm.hpp>
#include <addrop/nn/linear.hpp>
#include <addrop/nn/losses.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "support/compare.hpp"

using namespace addrop;
using Cpu = backend::Cpu;
using Ctx = Cpu::Context;
using Vec = std::vector<double>;
using Index = std::vector<int64_t>;

namespace {

// Central-difference step: 2^-20 ~ 1e-6, a power of two so that a perturbed mask entry
// (-10000 + h, or 0 + h added to -10000 inside the op) is exact.
constexpr double kStep = 0x1p-20;
constexpr double kTol = 1e-7;   // norm-wise relative error allowed
const double kNaN = std::numeric_limits<double>::quiet_NaN();

const Ctx kOne{.threads = 1};
const Ctx kTwo{.threads = 2};

// The worst relative error of the whole binary, printed at the end.
struct Worst {
  double error = 0;
  std::string name;
  int checks = 0;
};
Worst& worst() {
  static Worst w;
  return w;
}
struct PrintSummary {
  ~PrintSummary() {
    std::cout << "gradcheck_ops: " << worst().checks << " gradient checks, max relative error " << worst().error
              << " (" << worst().name << ")\n";
  }
};
BOOST_TEST_GLOBAL_FIXTURE(PrintSummary);

/// n deterministic normal numbers (the library's counter-based generator): shift + scale * N(0, 1).
Vec randn(int64_t n, uint64_t seed, double scale = 1.0, double shift = 0.0) {
  Vec v(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = shift + scale * models::normal_draw(seed, 17, static_cast<uint64_t>(i));
  return v;
}

// J = sum(w ⊙ y), accumulated in long double: with thousands of terms, double round-off in the
// sum alone would put ~1e-13 of noise on J, 1e-7 after the division by 2h.
double dot(const Vec& a, const Vec& b) {
  long double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += static_cast<long double>(a[i]) * b[i];
  return static_cast<double>(s);
}

Index all_of(int64_t n) {
  Index idx(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) idx[i] = i;
  return idx;
}

/// `count` distinct indices in [0, n), spread deterministically (all of them when n <= count).
Index sample_of(int64_t n, int64_t count, uint64_t seed) {
  if (n <= count) return all_of(n);
  Index idx;
  for (uint64_t k = 0; static_cast<int64_t>(idx.size()) < count; ++k) {
    const auto i = static_cast<int64_t>(random::uniform(seed, 99, k) * static_cast<float>(n)) % n;
    if (std::find(idx.begin(), idx.end(), i) == idx.end()) idx.push_back(i);
  }
  std::sort(idx.begin(), idx.end());
  return idx;
}

/// Central differences of f() with respect to x[i] for i in idx. The step is taken as the
/// difference of the perturbed values actually stored, so large entries (-10000) lose nothing.
template <class F>
Vec numeric_gradient(double* x, const Index& idx, F&& f, double h = kStep) {
  Vec g(idx.size());
  for (std::size_t k = 0; k < idx.size(); ++k) {
    const int64_t i = idx[k];
    const double x0 = x[i], xp = x0 + h, xm = x0 - h;
    x[i] = xp;
    const double fp = f();
    x[i] = xm;
    const double fm = f();
    x[i] = x0;
    g[k] = (fp - fm) / (xp - xm);
  }
  return g;
}

/// Checks analytic[i] (i in idx; all of [0, n) when idx is empty) against central differences of f in x[i].
template <class F>
void check_gradient(const std::string& name, double* x, int64_t n, const double* analytic, F&& f, Index idx = {},
                    double tol = kTol) {
  if (idx.empty()) idx = all_of(n);
  const Vec num = numeric_gradient(x, idx, f);
  Vec got(idx.size());
  for (std::size_t k = 0; k < idx.size(); ++k) got[k] = analytic[idx[k]];
  const auto cmp = testing::compare(name, got.data(), num.data(), static_cast<int64_t>(idx.size()), tol);
  std::ostringstream where;
  if (cmp.worst >= 0)
    where << " -- worst at element " << idx[cmp.worst] << ": analytic " << got[cmp.worst] << ", numeric "
          << num[cmp.worst];
  BOOST_CHECK_MESSAGE(cmp.relative() <= tol, cmp.report << where.str());
  BOOST_TEST_MESSAGE(name << ": " << idx.size() << " elements, max relative error " << cmp.relative());
  auto& w = worst();
  ++w.checks;
  if (!(cmp.relative() <= w.error)) {
    w.error = cmp.relative();
    w.name = name;
  }
}
template <class F>
void check_gradient(const std::string& name, Vec& x, const Vec& analytic, F&& f, Index idx = {}, double tol = kTol) {
  BOOST_REQUIRE_EQUAL(x.size(), analytic.size());
  check_gradient(name, x.data(), static_cast<int64_t>(x.size()), analytic.data(), f, std::move(idx), tol);
}

/// Exact (bitwise up to -0 == 0) equality of two buffers, with the first difference in the message.
void check_same(const std::string& name, const double* a, const double* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (!(a[i] == b[i])) {
      BOOST_ERROR(name << ": differ at " << i << ": " << a[i] << " vs " << b[i]);
      return;
    }
  }
}
void check_same(const std::string& name, const Vec& a, const Vec& b) {
  BOOST_REQUIRE_EQUAL(a.size(), b.size());
  check_same(name, a.data(), b.data(), static_cast<int64_t>(a.size()));
}

/// Norm-wise relative agreement within 1e-14 (threaded vs serial results: summation order may differ).
void check_close(const std::string& name, const Vec& got, const Vec& want, double tol = 1e-14) {
  BOOST_REQUIRE_EQUAL(got.size(), want.size());
  const auto cmp = testing::compare(name, got.data(), want.data(), static_cast<int64_t>(got.size()), tol);
  BOOST_CHECK_MESSAGE(cmp.relative() <= tol, cmp.report);
}

Vec minus(const Vec& a, const Vec& b) {
  Vec d(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
  return d;
}

std::string tag(const Ctx& ctx) { return " [threads=" + std::to_string(ctx.threads) + "]"; }

// ====================================================================== GEMM
struct GemmCase {
  bool ta, tb;
  int64_t M, N, K;
  double alpha, beta;
  int64_t pad;  // extra elements per row in A, B, C
};

void check_gemm(const Ctx& ctx, const GemmCase& c, int64_t samples) {
  const int64_t M = c.M, N = c.N, K = c.K;
  const int64_t a_rows = c.ta ? K : M, a_cols = c.ta ? M : K;
  const int64_t b_rows = c.tb ? N : K, b_cols = c.tb ? K : N;
  const int64_t lda = a_cols + c.pad, ldb = b_cols + c.pad + 1, ldc = N + c.pad + 2;
  Vec A = randn(a_rows * lda, 1), B = randn(b_rows * ldb, 2), C0 = randn(M * ldc, 3), w = randn(M * ldc, 4);
  Vec C;
  auto run = [&](const Ctx& cx) {
    C = C0;
    Cpu::gemm(cx, c.ta, c.tb, M, N, K, c.alpha, A.data(), lda, B.data(), ldb, c.beta, C.data(), ldc);
    return dot(w, C);
  };
  auto J = [&] { return run(kOne); };
  // Backward as Linear does it: d op(A) = alpha dC op(B)^T, d op(B) = alpha op(A)^T dC, dC0 = beta dC.
  Vec dA(A.size(), 0.0), dB(B.size(), 0.0), dC0(C0.size());
  if (!c.ta) Cpu::gemm(ctx, false, !c.tb, M, K, N, c.alpha, w.data(), ldc, B.data(), ldb, 0.0, dA.data(), lda);
  else Cpu::gemm(ctx, c.tb, true, K, M, N, c.alpha, B.data(), ldb, w.data(), ldc, 0.0, dA.data(), lda);
  if (!c.tb) Cpu::gemm(ctx, !c.ta, false, K, N, M, c.alpha, A.data(), lda, w.data(), ldc, 0.0, dB.data(), ldb);
  else Cpu::gemm(ctx, true, c.ta, N, K, M, c.alpha, w.data(), ldc, A.data(), lda, 0.0, dB.data(), ldb);
  // The padding of C (columns N..ldc) is not touched: it passes through with gradient w.
  for (int64_t r = 0; r < M; ++r)
    for (int64_t j = 0; j < ldc; ++j) dC0[r * ldc + j] = j < N ? c.beta * w[r * ldc + j] : w[r * ldc + j];

  std::ostringstream name;
  name << "gemm(ta=" << c.ta << ", tb=" << c.tb << ", M=" << M << ", N=" << N << ", K=" << K << ", alpha=" << c.alpha
       << ", beta=" << c.beta << ", lda=" << lda << ", ldb=" << ldb << ", ldc=" << ldc << ")" << tag(ctx);
  if (ctx.threads != 1) {
    run(ctx);
    const Vec threaded = C;
    run(kOne);
    check_close(name.str() + " forward vs threads=1", threaded, C);
  }
  const bool all = samples <= 0;
  check_gradient(name.str() + " dA", A, dA, J, all ? Index{} : sample_of(A.size(), samples, 1));
  check_gradient(name.str() + " dB", B, dB, J, all ? Index{} : sample_of(B.size(), samples, 2));
  check_gradient(name.str() + " dC", C0, dC0, J, all ? Index{} : sample_of(C0.size(), samples, 3));
}

BOOST_AUTO_TEST_CASE(gemm_all_transposes_alpha_beta_leading_dimensions) {
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (double beta : {0.0, 1.0, -0.35}) check_gemm(kOne, {ta == 1, tb == 1, 3, 4, 5, 0.7, beta, 2}, 0);
  // Dense (ld == width) and a degenerate K = 1.
  check_gemm(kOne, {false, true, 4, 3, 2, -1.3, 0.5, 0}, 0);
  check_gemm(kOne, {true, false, 2, 3, 1, 1.0, 0.0, 1}, 0);
}

BOOST_AUTO_TEST_CASE(gemm_threaded) {
  // Above Eigen's threshold for a parallel product (M*N*K >= 2 * 50000).
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) check_gemm(kTwo, {ta == 1, tb == 1, 48, 50, 47, 0.9, 0.4, 3}, 8);
}

BOOST_AUTO_TEST_CASE(gemm_beta_zero_ignores_c_and_k_zero) {
  // BLAS semantics: with beta = 0 the old C is never read (NaN there must not leak).
  Vec A = randn(6, 5), B = randn(6, 6), C(4, kNaN);
  Cpu::gemm(kOne, false, false, 2, 2, 3, 1.0, A.data(), 3, B.data(), 2, 0.0, C.data(), 2);
  for (double v : C) BOOST_TEST(std::isfinite(v));
  // K = 0: C = beta * C.
  Vec D{1.0, 2.0, 3.0, 4.0};
  Cpu::gemm(kOne, false, false, 2, 2, 0, 1.0, A.data(), 1, B.data(), 2, 0.5, D.data(), 2);
  check_same("gemm K=0", D, Vec{0.5, 1.0, 1.5, 2.0});
}

// ====================================================================== batched GEMM (attention layout)
// Q, K, V, context: [B*L, D] with heads interleaved (head h: columns h*dh..h*dh+dh);
// scores/probs: [B, H, L, L]. These are exactly the calls nn::Attention makes.
void check_attention_gemms(const Ctx& ctx, int64_t B, int64_t H, int64_t L, int64_t dh, double alpha, double beta,
                           int64_t samples) {
  using S = Cpu::BatchStrides;
  const int64_t D = H * dh, N = B * L, P = B * H * L * L;
  const S tok{L * D, dh}, att{H * L * L, L * L};
  std::ostringstream os;
  os << "gemm_batched(B=" << B << ", H=" << H << ", L=" << L << ", dh=" << dh << ", alpha=" << alpha
     << ", beta=" << beta << ")" << tag(ctx);
  const std::string name = os.str();
  auto pick = [&](int64_t n, uint64_t seed) { return samples <= 0 ? Index{} : sample_of(n, samples, seed); };

  // scores = alpha * Q K^T + beta * S0
  Vec Q = randn(N * D, 11), Kt = randn(N * D, 12), S0 = randn(P, 13), wS = randn(P, 14), Sc;
  auto run1 = [&](const Ctx& cx) {
    Sc = S0;
    Cpu::gemm_batched(cx, false, true, L, L, dh, alpha, Q.data(), D, tok, Kt.data(), D, tok, beta, Sc.data(), L, att,
                      B, H);
    return dot(wS, Sc);
  };
  auto J1 = [&] { return run1(kOne); };
  Vec dQ(Q.size(), 0.0), dK(Kt.size(), 0.0), dS0(P);
  Cpu::gemm_batched(ctx, false, false, L, dh, L, alpha, wS.data(), L, att, Kt.data(), D, tok, 0.0, dQ.data(), D, tok,
                    B, H);
  Cpu::gemm_batched(ctx, true, false, L, dh, L, alpha, wS.data(), L, att, Q.data(), D, tok, 0.0, dK.data(), D, tok,
                    B, H);
  for (int64_t i = 0; i < P; ++i) dS0[i] = beta * wS[i];
  check_gradient(name + " scores: dQ", Q, dQ, J1, pick(N * D, 1));
  check_gradient(name + " scores: dK", Kt, dK, J1, pick(N * D, 2));
  check_gradient(name + " scores: dS0", S0, dS0, J1, pick(P, 3));

  // context = alpha * A V + beta * C0
  Vec A = randn(P, 15), V = randn(N * D, 16), C0 = randn(N * D, 17), wC = randn(N * D, 18), C;
  auto run2 = [&](const Ctx& cx) {
    C = C0;
    Cpu::gemm_batched(cx, false, false, L, dh, L, alpha, A.data(), L, att, V.data(), D, tok, beta, C.data(), D, tok, B,
                      H);
    return dot(wC, C);
  };
  auto J2 = [&] { return run2(kOne); };
  if (ctx.threads != 1) {
    run1(ctx);
    run2(ctx);
    const Vec s_threaded = Sc, c_threaded = C;
    run1(kOne);
    run2(kOne);
    check_close(name + " scores forward vs threads=1", s_threaded, Sc);
    check_close(name + " context forward vs threads=1", c_threaded, C);
  }
  Vec dA(P, 0.0), dV(V.size(), 0.0), dC0(C0.size());
  Cpu::gemm_batched(ctx, false, true, L, L, dh, alpha, wC.data(), D, tok, V.data(), D, tok, 0.0, dA.data(), L, att, B,
                    H);
  Cpu::gemm_batched(ctx, true, false, L, dh, L, alpha, A.data(), L, att, wC.data(), D, tok, 0.0, dV.data(), D, tok, B,
                    H);
  for (std::size_t i = 0; i < C0.size(); ++i) dC0[i] = beta * wC[i];
  check_gradient(name + " context: dA", A, dA, J2, pick(P, 4));
  check_gradient(name + " context: dV", V, dV, J2, pick(N * D, 5));
  check_gradient(name + " context: dC0", C0, dC0, J2, pick(N * D, 6));
}

BOOST_AUTO_TEST_CASE(gemm_batched_attention_strides) {
  check_attention_gemms(kOne, 2, 3, 4, 2, 1.0, 0.0, 0);
  check_attention_gemms(kOne, 2, 2, 3, 3, 0.7, 0.25, 0);
}

BOOST_AUTO_TEST_CASE(gemm_batched_threaded) {
  // outer*inner*M*N*K = 2*2*16*16*16 reaches the parallel grain.
  check_attention_gemms(kTwo, 2, 2, 16, 16, 0.8, 0.5, 12);
}

BOOST_AUTO_TEST_CASE(gemm_batched_equals_a_loop_of_gemms_all_transposes) {
  using S = Cpu::BatchStrides;
  const int64_t outer = 2, inner = 3, M = 3, N = 2, K = 4, ld = 5;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      const int64_t ar = ta ? K : M, br = tb ? N : K;
      const S sa{inner * ar * ld + 3, ar * ld}, sb{inner * br * ld + 1, br * ld}, sc{inner * M * ld + 2, M * ld};
      const Vec A = randn(outer * sa.outer, 21), B = randn(outer * sb.outer, 22), C0 = randn(outer * sc.outer, 23);
      Vec C1 = C0, C2 = C0;
      Cpu::gemm_batched(kOne, ta == 1, tb == 1, M, N, K, 0.6, A.data(), ld, sa, B.data(), ld, sb, 0.3, C1.data(), ld,
                        sc, outer, inner);
      for (int64_t o = 0; o < outer; ++o)
        for (int64_t i = 0; i < inner; ++i)
          Cpu::gemm(kOne, ta == 1, tb == 1, M, N, K, 0.6, A.data() + o * sa.outer + i * sa.inner, ld,
                    B.data() + o * sb.outer + i * sb.inner, ld, 0.3, C2.data() + o * sc.outer + i * sc.inner, ld);
      check_same("gemm_batched vs gemm ta=" + std::to_string(ta) + " tb=" + std::to_string(tb), C1, C2);
    }
}

// ====================================================================== bias
void check_bias(const Ctx& ctx, int64_t rows, int64_t cols, int64_t samples) {
  Vec x = randn(rows * cols, 31), bias = randn(cols, 32), w = randn(rows * cols, 33), y;
  auto run = [&](const Ctx& cx) {
    y = x;
    Cpu::add_bias(cx, rows, cols, bias.data(), y.data());
    return dot(w, y);
  };
  auto J = [&] { return run(kOne); };
  if (ctx.threads != 1) {
    run(ctx);
    const Vec threaded = y;
    run(kOne);
    check_same("add_bias threads vs threads=1", threaded, y);
  }
  const Vec g0 = randn(cols, 34);
  Vec g = g0;
  Cpu::bias_backward(ctx, rows, cols, w.data(), g.data());
  const std::string name = "add_bias/bias_backward(" + std::to_string(rows) + "x" + std::to_string(cols) + ")" + tag(ctx);
  check_gradient(name + " dbias (accumulated)", bias, minus(g, g0), J, samples ? sample_of(cols, samples, 1) : Index{});
  check_gradient(name + " dx (identity)", x, w, J, samples ? sample_of(rows * cols, samples, 2) : Index{});
}

BOOST_AUTO_TEST_CASE(bias) {
  check_bias(kOne, 3, 4, 0);
  check_bias(kTwo, 3, 4, 0);
  check_bias(kTwo, 200, 100, 16);  // above the parallel grain: columns split across threads
}

// ====================================================================== activations
BOOST_AUTO_TEST_CASE(gelu_and_tanh) {
  for (const Ctx& ctx : {kOne, kTwo}) {
    const int64_t n = 13;
    Vec x = randn(n, 41, 2.0), w = randn(n, 42), y(n);
    x[0] = 0.0;
    x[1] = -6.0;
    auto Jg = [&] {
      Cpu::gelu_forward(ctx, n, x.data(), y.data());
      return dot(w, y);
    };
    Vec dx(n, kNaN);
    Cpu::gelu_backward(ctx, n, x.data(), w.data(), dx.data());
    check_gradient("gelu" + tag(ctx), x, dx, Jg);
    // GELU(x) = x Phi(x): one value against the closed form.
    Cpu::gelu_forward(ctx, n, x.data(), y.data());
    BOOST_TEST(std::abs(y[2] - 0.5 * x[2] * std::erfc(-x[2] / std::sqrt(2.0))) <= 1e-15 * (1 + std::abs(x[2])));

    auto Jt = [&] {
      Cpu::tanh_forward(ctx, n, x.data(), y.data());
      return dot(w, y);
    };
    Jt();  // the backward reads the output
    const Vec yt = y;
    Cpu::tanh_backward(ctx, n, yt.data(), w.data(), dx.data());
    check_gradient("tanh" + tag(ctx), x, dx, Jt);
  }
  // In place (dx aliasing dy), as the layers call them.
  Vec x = randn(9, 43), d = randn(9, 44), ref(9), y(9);
  Cpu::gelu_backward(kOne, 9, x.data(), d.data(), ref.data());
  Cpu::gelu_backward(kOne, 9, x.data(), d.data(), d.data());
  check_same("gelu_backward in place", d, ref);
  Cpu::tanh_forward(kOne, 9, x.data(), y.data());
  d = randn(9, 44);
  Cpu::tanh_backward(kOne, 9, y.data(), d.data(), ref.data());
  Cpu::tanh_backward(kOne, 9, y.data(), d.data(), d.data());
  check_same("tanh_backward in place", d, ref);
}

// ====================================================================== layer norm
void check_layer_norm(const Ctx& ctx, int64_t rows, int64_t cols, double eps, int64_t samples) {
  const int64_t n = rows * cols;
  Vec x = randn(n, 51, 1.5, 0.3), gamma = randn(cols, 52, 0.5, 1.0), beta = randn(cols, 53, 0.5), w = randn(n, 54);
  Vec y(n), mean(rows), rstd(rows);
  auto run = [&](const Ctx& cx) {
    Cpu::layer_norm_forward(cx, rows, cols, eps, x.data(), gamma.data(), beta.data(), y.data(), mean.data(),
                            rstd.data());
    return dot(w, y);
  };
  auto J = [&] { return run(kOne); };
  if (ctx.threads != 1) {
    run(kOne);
    const Vec serial = y, serial_mean = mean, serial_rstd = rstd;
    run(ctx);
    check_same("layer_norm_forward threads vs threads=1", y, serial);
    check_same("layer_norm_forward mean threads vs threads=1", mean, serial_mean);
    check_same("layer_norm_forward rstd threads vs threads=1", rstd, serial_rstd);
  }
  run(ctx);  // mean and rstd of the base point, for the backward
  const Vec dg0 = randn(cols, 55), db0 = randn(cols, 56);
  Vec dx(n, 1e30), dg = dg0, db = db0;
  Cpu::layer_norm_backward(ctx, rows, cols, w.data(), x.data(), mean.data(), rstd.data(), gamma.data(), dx.data(),
                           false, dg.data(), db.data());

  // accumulate_dx adds to what is there; null dgamma/dbeta are skipped; dx may alias dy.
  const Vec d0 = randn(n, 57);
  Vec dx_acc = d0;
  Cpu::layer_norm_backward<double>(ctx, rows, cols, w.data(), x.data(), mean.data(), rstd.data(), gamma.data(), dx_acc.data(),
                           true, nullptr, nullptr);
  const Vec diff = minus(dx_acc, d0);
  const auto acc = testing::compare("layer_norm accumulate_dx", diff.data(), dx.data(), n, 1e-14);
  BOOST_CHECK_MESSAGE(acc.relative() <= 1e-14, acc.report);
  Vec inplace = w;
  Cpu::layer_norm_backward<double>(ctx, rows, cols, inplace.data(), x.data(), mean.data(), rstd.data(), gamma.data(),
                           inplace.data(), false, nullptr, nullptr);
  check_same("layer_norm_backward dx aliasing dy", inplace, dx);

  std::ostringstream os;
  os << "layer_norm(" << rows << "x" << cols << ", eps=" << eps << ")" << tag(ctx);
  auto pick = [&](int64_t m, uint64_t seed) { return samples <= 0 ? Index{} : sample_of(m, samples, seed); };
  check_gradient(os.str() + " dx", x, dx, J, pick(n, 1));
  check_gradient(os.str() + " dgamma (accumulated)", gamma, minus(dg, dg0), J, pick(cols, 2));
  check_gradient(os.str() + " dbeta (accumulated)", beta, minus(db, db0), J, pick(cols, 3));
}

BOOST_AUTO_TEST_CASE(layer_norm) {
  check_layer_norm(kOne, 3, 5, 1e-12, 0);
  check_layer_norm(kOne, 4, 7, 1e-5, 0);
  check_layer_norm(kTwo, 300, 64, 1e-12, 12);  // above the grain: rows and columns threaded
}

// ====================================================================== attention softmax
void check_softmax(const Ctx& ctx, int64_t B, int64_t H, int64_t L, double scale, int64_t samples) {
  const int64_t P = B * H * L * L, R = B * H * L;
  Vec scores = randn(P, 61, 1.5), extra = randn(P, 62, 0.5), key_bias(B * L, 0.0), w = randn(P, 63);
  // Example 1 has its last two keys padded.
  key_bias[1 * L + L - 1] = key_bias[1 * L + L - 2] = -10000.0;
  auto row = [&](int64_t b, int64_t h, int64_t i) { return ((b * H + h) * L + i) * L; };
  // A row whose keys are all masked by exactly -10000 (extra on the unpadded keys, key_bias on the padded ones):
  // the softmax must equal the plain softmax of its scaled scores.
  const int64_t all_masked = row(1, 0, 1);
  for (int64_t j = 0; j < L; ++j) extra[all_masked + j] = j < L - 2 ? -10000.0 : 0.0;
  // A row masked by -10000 everywhere on top of the padding: the padded keys sit at -20000.
  const int64_t doubly_masked = row(1, H - 1, L - 2);
  for (int64_t j = 0; j < L; ++j) extra[doubly_masked + j] = -10000.0;
  // One dropped key in an unpadded example (AD-DROP's usual case).
  extra[row(0, H - 1, 0) + 1] = -10000.0;

  Vec probs(P);
  auto run = [&](const Ctx& cx) {
    Cpu::attention_softmax_forward(cx, B, H, L, L, scale, scores.data(), key_bias.data(), extra.data(), false, probs.data());
    return dot(w, probs);
  };
  auto J = [&] { return run(kOne); };
  run(kOne);
  const Vec serial = probs;
  run(ctx);
  const Vec base = probs;
  check_same("attention_softmax_forward threads vs threads=1" + tag(ctx), base, serial);
  // The fully masked row keeps full precision.
  {
    double mx = -INFINITY, total = 0;
    for (int64_t j = 0; j < L; ++j) mx = std::max(mx, scale * scores[all_masked + j]);
    for (int64_t j = 0; j < L; ++j) total += std::exp(scale * scores[all_masked + j] - mx);
    for (int64_t j = 0; j < L; ++j) {
      const double want = std::exp(scale * scores[all_masked + j] - mx) / total;
      BOOST_TEST(std::abs(base[all_masked + j] - want) <= 1e-15, "all-masked row, key " << j);
    }
    double s = 0;
    for (int64_t j = 0; j < L; ++j) s += base[doubly_masked + j];
    BOOST_TEST(std::abs(s - 1.0) <= 1e-15);
    BOOST_TEST(base[doubly_masked + L - 1] == 0.0);
  }

  Vec dscores(P, kNaN), dextra(P, kNaN), dkb(B * L, 0.0);
  Cpu::softmax_backward(ctx, R, L, scale, base.data(), w.data(), dscores.data());
  Cpu::softmax_backward(ctx, R, L, 1.0, base.data(), w.data(), dextra.data());
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < L; ++i)
        for (int64_t j = 0; j < L; ++j) dkb[b * L + j] += dextra[row(b, h, i) + j];

  std::ostringstream os;
  os << "attention_softmax(B=" << B << ", H=" << H << ", L=" << L << ", scale=" << scale << ")" << tag(ctx);
  auto pick = [&](int64_t m, uint64_t seed) { return samples <= 0 ? Index{} : sample_of(m, samples, seed); };
  check_gradient(os.str() + " dscores", scores, dscores, J, pick(P, 1));
  // Entries of the two masked rows always, whatever the sampling.
  Index masked_rows;
  const int64_t stride = samples > 0 ? std::max<int64_t>(1, 2 * L / samples) : 1;
  for (int64_t j = 0; j < L; j += stride) {
    masked_rows.push_back(all_masked + j);
    masked_rows.push_back(doubly_masked + j);
  }
  check_gradient(os.str() + " dscores (masked rows)", scores, dscores, J, masked_rows);
  check_gradient(os.str() + " dextra", extra, dextra, J, pick(P, 2));
  check_gradient(os.str() + " dextra (masked rows)", extra, dextra, J, masked_rows);
  check_gradient(os.str() + " dkey_bias", key_bias, dkb, J, pick(B * L, 3));

  // In place: scores and probs alias; dprobs and dscores alias.
  Vec inplace = scores;
  Cpu::attention_softmax_forward(ctx, B, H, L, L, scale, inplace.data(), key_bias.data(), extra.data(), false,
                                 inplace.data());
  check_same("attention_softmax_forward in place" + tag(ctx), inplace, base);
  Vec dinplace = w;
  Cpu::softmax_backward(ctx, R, L, scale, base.data(), dinplace.data(), dinplace.data());
  check_same("softmax_backward in place" + tag(ctx), dinplace, dscores);
  // Null masks are zero masks.
  Vec p_null(P), p_zero(P);
  const Vec zeros_kb(B * L, 0.0), zeros_ex(P, 0.0);
  Cpu::attention_softmax_forward<double>(ctx, B, H, L, L, scale, scores.data(), nullptr, nullptr, false, p_null.data());
  Cpu::attention_softmax_forward(ctx, B, H, L, L, scale, scores.data(), zeros_kb.data(), zeros_ex.data(), false,
                                 p_zero.data());
  check_same("attention_softmax_forward null masks" + tag(ctx), p_null, p_zero);
}

BOOST_AUTO_TEST_CASE(attention_softmax_and_backward) {
  check_softmax(kOne, 2, 2, 4, 0.6, 0);
  check_softmax(kOne, 2, 3, 5, 1.0, 0);
  check_softmax(kTwo, 2, 4, 32, 0.35, 12);  // B*H*L rows of 32 keys: above the grain
}

// ====================================================================== dropout
BOOST_AUTO_TEST_CASE(dropout_gradient_is_the_forward_jacobian) {
  for (const Ctx& ctx : {kOne, kTwo}) {
    const int64_t n = 37;  // not a multiple of 4: the last Philox group is partial
    const float p = 0.3f;
    const uint64_t seed = 11, stream = 5;
    Vec x = randn(n, 71), w = randn(n, 72), y(n);
    auto J = [&] {
      Cpu::dropout_forward(ctx, n, p, seed, stream, x.data(), y.data());
      return dot(w, y);
    };
    Vec dx(n, kNaN);
    Cpu::dropout_backward(ctx, n, p, seed, stream, w.data(), dx.data());
    check_gradient("dropout(p=0.3)" + tag(ctx), x, dx, J);
    // accumulate adds the same thing.
    const Vec d0 = randn(n, 73);
    Vec acc = d0;
    Cpu::dropout_backward(ctx, n, p, seed, stream, w.data(), acc.data(), true);
    const Vec diff = minus(acc, d0);
    const auto cmp = testing::compare("dropout accumulate", diff.data(), dx.data(), n, 1e-15);
    BOOST_CHECK_MESSAGE(cmp.relative() <= 1e-15, cmp.report);
    // The mask is exactly the one uniform() describes, scaled by 1/(1-p).
    Vec u(n);
    Cpu::uniform(ctx, n, seed, stream, u.data());
    Cpu::dropout_forward(ctx, n, p, seed, stream, x.data(), y.data());
    for (int64_t i = 0; i < n; ++i) {
      const double want = u[i] >= p ? x[i] / (1.0 - static_cast<double>(p)) : 0.0;
      BOOST_TEST(std::abs(y[i] - want) <= 1e-15 * std::abs(want), "dropout element " << i);
      BOOST_TEST(u[i] == static_cast<double>(random::uniform(seed, stream, static_cast<uint64_t>(i))));
    }
    // p = 0 is the identity, forward and backward.
    Vec y0(n), d00(n);
    Cpu::dropout_forward(ctx, n, 0.0f, seed, stream, x.data(), y0.data());
    Cpu::dropout_backward(ctx, n, 0.0f, seed, stream, w.data(), d00.data());
    check_same("dropout p=0 forward", y0, x);
    check_same("dropout p=0 backward", d00, w);
  }
}

BOOST_AUTO_TEST_CASE(dropout_mask_is_a_function_of_seed_and_stream) {
  const int64_t n = 100000;  // 25000 Philox groups: above the grain, so threads=2 splits it
  const float p = 0.1f;
  const Vec ones(n, 1.0);
  auto mask = [&](const Ctx& ctx, uint64_t seed, uint64_t stream) {
    Vec y(n);
    Cpu::dropout_forward(ctx, n, p, seed, stream, ones.data(), y.data());
    return y;
  };
  const Vec a = mask(kOne, 7, (3ull << 24) | 2);
  check_same("dropout: same (seed, stream) twice", a, mask(kOne, 7, (3ull << 24) | 2));
  check_same("dropout: threads=1 vs threads=2", a, mask(kTwo, 7, (3ull << 24) | 2));
  BOOST_TEST((mask(kOne, 7, (4ull << 24) | 2) != a), "another stream gives another mask");
  BOOST_TEST((mask(kOne, 8, (3ull << 24) | 2) != a), "another seed gives another mask");

  int64_t kept = 0;
  const double scale = 1.0 / (1.0 - static_cast<double>(p));
  for (double v : a) {
    BOOST_TEST_REQUIRE((v == 0.0 || v == scale));
    kept += v != 0.0;
  }
  const double q = static_cast<double>(p), expect = n * (1 - q), sigma = std::sqrt(n * q * (1 - q));
  BOOST_TEST(std::abs(static_cast<double>(kept) - expect) <= 3 * sigma,
             "kept " << kept << " of " << n << ", expected " << expect << " +- 3 * " << sigma);
  BOOST_TEST_MESSAGE("dropout keep rate " << static_cast<double>(kept) / n << " (1-p = " << 1 - q << ", sigma "
                                          << sigma / n << ")");
  // The backward regenerates the same mask, also when threaded.
  Vec d1(n), d2(n);
  Cpu::dropout_backward(kOne, n, p, 7, (3ull << 24) | 2, ones.data(), d1.data());
  Cpu::dropout_backward(kTwo, n, p, 7, (3ull << 24) | 2, ones.data(), d2.data());
  check_same("dropout backward mask vs forward mask", d1, a);
  check_same("dropout backward threads=1 vs threads=2", d2, a);
}

// ====================================================================== embeddings
void check_embedding(const Ctx& ctx, int64_t rows, int64_t dim, const std::vector<int32_t>& ids, int64_t padding,
                     bool accumulate, int64_t samples) {
  const auto tokens = static_cast<int64_t>(ids.size());
  Vec table = randn(rows * dim, 81), out0 = randn(tokens * dim, 82), w = randn(tokens * dim, 83), out;
  auto run = [&](const Ctx& cx) {
    out = out0;
    Cpu::embedding_forward(cx, tokens, dim, ids.data(), table.data(), out.data(), accumulate);
    return dot(w, out);
  };
  auto J = [&] { return run(kOne); };
  if (ctx.threads != 1) {
    run(ctx);
    const Vec threaded = out;
    run(kOne);
    check_same("embedding_forward threads vs threads=1", threaded, out);
  }
  const Vec g0 = randn(rows * dim, 84);
  Vec g = g0;
  Cpu::embedding_backward(ctx, tokens, dim, ids.data(), w.data(), g.data(), padding);
  const Vec dtable = minus(g, g0);
  std::ostringstream os;
  os << "embedding(rows=" << rows << ", dim=" << dim << ", tokens=" << tokens << ", padding_idx=" << padding
     << ", accumulate=" << accumulate << ")" << tag(ctx);
  // Every row but the padding row: the gradient of the lookup, summed over repeated ids.
  Index idx;
  for (int64_t i : (samples ? sample_of(rows * dim, samples, 1) : all_of(rows * dim)))
    if (i / dim != padding) idx.push_back(i);
  check_gradient(os.str() + " dtable", table, dtable, J, idx);
  // The padding row is looked up like any other, but gets no gradient (torch's padding_idx).
  if (padding >= 0) {
    for (int64_t c = 0; c < dim; ++c) BOOST_TEST(g[padding * dim + c] == g0[padding * dim + c], "padding row grad");
  }
  // out0 survives (gradient w) only when the lookup accumulates onto it.
  const Vec dout0 = accumulate ? w : Vec(out0.size(), 0.0);
  check_gradient(os.str() + " dout (accumulate path)", out0, dout0, J,
                 samples ? sample_of(tokens * dim, samples, 2) : Index{});
}

BOOST_AUTO_TEST_CASE(embedding) {
  const std::vector<int32_t> ids{2, 4, 2, 0, 5, 2, 0};  // repeats, and the padding id twice
  for (bool acc : {false, true}) {
    check_embedding(kOne, 6, 3, ids, 0, acc, 0);
    check_embedding(kOne, 6, 3, ids, -1, acc, 0);  // no padding row: row 0 gets its gradient
  }
  // Threaded: columns split across threads, with heavy id repetition.
  std::vector<int32_t> many(256);
  for (std::size_t t = 0; t < many.size(); ++t) many[t] = static_cast<int32_t>((t * 7) % 23);
  check_embedding(kTwo, 23, 80, many, 1, true, 30);
  const Vec dout = randn(256 * 80, 85);
  Vec g1(23 * 80, 0.0), g2(23 * 80, 0.0);
  Cpu::embedding_backward(kOne, 256, 80, many.data(), dout.data(), g1.data(), 1);
  Cpu::embedding_backward(kTwo, 256, 80, many.data(), dout.data(), g2.data(), 1);
  check_same("embedding_backward threads=1 vs threads=2", g1, g2);
}

// ====================================================================== losses
BOOST_AUTO_TEST_CASE(cross_entropy_with_ignored_rows) {
  const int64_t rows = 5, C = 4;
  const std::vector<int32_t> labels{1, nn::kIgnoreIndex, 3, 0, nn::kIgnoreIndex};
  Vec logits = randn(rows * C, 91, 2.0);
  auto J = [&] { return Cpu::cross_entropy<double>(kOne, rows, C, logits.data(), labels.data(), nn::kIgnoreIndex, 0.0, nullptr); };
  Vec dl(rows * C, 7.0);  // written, also on ignored rows
  const double loss = nn::cross_entropy<Cpu>(kOne, rows, C, logits.data(), labels.data(), dl.data());
  BOOST_TEST(loss == J());
  double want = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (labels[r] == nn::kIgnoreIndex) continue;
    double s = 0;
    for (int64_t c = 0; c < C; ++c) s += std::exp(logits[r * C + c]);
    want += std::log(s) - logits[r * C + labels[r]];
  }
  want /= 3;
  BOOST_TEST(std::abs(loss - want) <= 1e-14 * std::abs(want));
  check_gradient("cross_entropy (ignore -100)", logits, dl, J);
  for (int64_t c = 0; c < C; ++c) BOOST_TEST(dl[1 * C + c] == 0.0);

  // Huge logits stay finite; all rows ignored gives 0 and zero gradients.
  Vec big = logits;
  for (auto& v : big) v += 1000.0;
  BOOST_TEST(std::abs(Cpu::cross_entropy<double>(kOne, rows, C, big.data(), labels.data(), -100, 0.0, nullptr) - loss) <= 1e-10);
  const std::vector<int32_t> none(rows, -100);
  Vec dn(rows * C, 7.0);
  BOOST_TEST(Cpu::cross_entropy(kOne, rows, C, logits.data(), none.data(), -100, 0.0, dn.data()) == 0.0);
  for (double v : dn) BOOST_TEST(v == 0.0);
}

BOOST_AUTO_TEST_CASE(label_smoothed_cross_entropy) {
  // torch's CrossEntropyLoss(label_smoothing=0.1): (1 - eps) nll + eps * mean_c(-log p_c),
  // averaged over the rows that are not ignored; checked by finite differences too.
  const int64_t rows = 6, C = 5;
  const double eps = 0.1;
  const std::vector<int32_t> labels{1, nn::kIgnoreIndex, 3, 0, 4, 2};
  Vec logits = randn(rows * C, 93, 2.0);
  auto J = [&] { return Cpu::cross_entropy<double>(kTwo, rows, C, logits.data(), labels.data(), nn::kIgnoreIndex, eps, nullptr); };
  Vec dl(rows * C, 7.0);
  const double loss = nn::cross_entropy<Cpu>(kTwo, rows, C, logits.data(), labels.data(), dl.data(), eps);
  double want = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (labels[r] == nn::kIgnoreIndex) continue;
    double s = 0, mean_nll = 0;
    for (int64_t c = 0; c < C; ++c) s += std::exp(logits[r * C + c]);
    for (int64_t c = 0; c < C; ++c) mean_nll += (std::log(s) - logits[r * C + c]) / C;
    want += (1 - eps) * (std::log(s) - logits[r * C + labels[r]]) + eps * mean_nll;
  }
  want /= 5;
  BOOST_TEST(std::abs(loss - want) <= 1e-14 * std::abs(want));
  check_gradient("cross_entropy (label smoothing 0.1)", logits, dl, J);
  for (int64_t c = 0; c < C; ++c) BOOST_TEST(dl[1 * C + c] == 0.0);
}

BOOST_AUTO_TEST_CASE(causal_and_rectangular_softmax_gradients) {
  // The decoder's causal self-attention ([B,H,L,L], keys after the query hidden) and the
  // cross-attention's rectangular rows: softmax_backward over the full key rows is the
  // gradient of the forward, masked keys included (their probability is exactly 0).
  for (auto [Lq, Lk, causal] : {std::array<int64_t, 3>{5, 5, 1}, {2, 6, 1}, {3, 7, 0}}) {
    const int64_t B = 2, H = 2, P = B * H * Lq * Lk;
    const double scale = 0.7;
    Vec scores = randn(P, 95 + Lq, 1.5), w = randn(P, 97, 1.0), probs(P), key_bias(B * Lk, 0.0);
    key_bias[1 * Lk + Lk - 1] = -10000.0;
    auto J = [&] {
      Cpu::attention_softmax_forward<double>(kOne, B, H, Lq, Lk, scale, scores.data(), key_bias.data(), nullptr,
                                     causal != 0, probs.data());
      return dot(w, probs);
    };
    J();
    const Vec base = probs;
    for (int64_t row = 0; row < B * H * Lq; ++row) {
      const int64_t visible = causal ? std::min(Lk, row % Lq + 1 + Lk - Lq) : Lk;
      double total = 0;
      for (int64_t j = 0; j < Lk; ++j) total += base[row * Lk + j];
      BOOST_TEST(std::abs(total - 1.0) <= 1e-14);
      for (int64_t j = visible; j < Lk; ++j) BOOST_TEST(base[row * Lk + j] == 0.0);
    }
    Vec dscores(P);
    Cpu::softmax_backward(kOne, B * H * Lq, Lk, scale, base.data(), w.data(), dscores.data());
    check_gradient("attention_softmax Lq=" + std::to_string(Lq) + " Lk=" + std::to_string(Lk) +
                       (causal ? " causal" : ""),
                   scores, dscores, J);
  }
}

BOOST_AUTO_TEST_CASE(mean_squared_error) {
  const int64_t n = 6;
  Vec pred = randn(n, 92), target = randn(n, 93);
  auto J = [&] { return Cpu::mse<double>(kOne, n, pred.data(), target.data(), nullptr); };
  Vec dp(n, kNaN);
  const double loss = nn::mean_squared_error<Cpu>(kOne, n, pred.data(), target.data(), dp.data());
  BOOST_TEST(loss == J());
  check_gradient("mse", pred, dp, J);
  Vec dt(n);  // d/dtarget = -d/dpred
  for (int64_t i = 0; i < n; ++i) dt[i] = -dp[i];
  check_gradient("mse (target)", target, dt, J);
}

// ====================================================================== nn wrappers
// nn::Linear with strided rows (ldx > in, ldy > out, as the pooler reads h[:, 0]) and dense.
void check_linear(const Ctx& ctx, int64_t N, int64_t in, int64_t out, int64_t ldx, int64_t ldy) {
  nn::Linear<double, Cpu> lin;
  lin.init("dense", in, out);
  const Vec W = randn(out * in, 101, 0.7), bvals = randn(out, 102);
  std::copy(W.begin(), W.end(), lin.weight.value.data());
  std::copy(bvals.begin(), bvals.end(), lin.bias.value.data());
  const bool dense = ldx == in && ldy == out;

  // Padding of x and of dy is NaN: reading it would poison the results.
  Vec x(N * ldx, kNaN), w(N * ldy, kNaN);
  const Vec xv = randn(N * in, 103), wv = randn(N * out, 104);
  Index x_valid;
  for (int64_t r = 0; r < N; ++r) {
    for (int64_t c = 0; c < in; ++c) {
      x[r * ldx + c] = xv[r * in + c];
      x_valid.push_back(r * ldx + c);
    }
    for (int64_t c = 0; c < out; ++c) w[r * ldy + c] = wv[r * out + c];
  }
  const double sentinel = 123.25;
  Vec y;
  auto J = [&] {
    y.assign(N * ldy, sentinel);
    if (dense) lin.forward(ctx, N, x.data(), y.data());
    else lin.forward(ctx, N, x.data(), ldx, y.data(), ldy);
    double s = 0;
    for (int64_t r = 0; r < N; ++r)
      for (int64_t c = 0; c < out; ++c) s += w[r * ldy + c] * y[r * ldy + c];
    return s;
  };
  J();
  for (int64_t r = 0; r < N; ++r)
    for (int64_t c = out; c < ldy; ++c) BOOST_TEST(y[r * ldy + c] == sentinel, "Linear wrote y's padding");
  BOOST_TEST(std::isfinite(J()));

  const Vec gW0 = randn(out * in, 105), gb0 = randn(out, 106);
  std::copy(gW0.begin(), gW0.end(), lin.weight.grad.data());
  std::copy(gb0.begin(), gb0.end(), lin.bias.grad.data());
  Vec dx(N * ldx, sentinel);
  if (dense) lin.backward(ctx, N, x.data(), w.data(), dx.data(), false, true);
  else lin.backward(ctx, N, x.data(), ldx, w.data(), ldy, dx.data(), ldx, false, true);
  for (int64_t r = 0; r < N; ++r)
    for (int64_t c = in; c < ldx; ++c) BOOST_TEST(dx[r * ldx + c] == sentinel, "Linear wrote dx's padding");
  const Vec gW(lin.weight.grad.data(), lin.weight.grad.data() + out * in);
  const Vec gb(lin.bias.grad.data(), lin.bias.grad.data() + out);

  std::ostringstream os;
  os << "nn::Linear(N=" << N << ", in=" << in << ", out=" << out << ", ldx=" << ldx << ", ldy=" << ldy << ")"
     << tag(ctx);
  check_gradient(os.str() + " dx", x.data(), N * ldx, dx.data(), J, x_valid);
  check_gradient(os.str() + " dW (accumulated)", lin.weight.value.data(), out * in, minus(gW, gW0).data(), J);
  check_gradient(os.str() + " db (accumulated)", lin.bias.value.data(), out, minus(gb, gb0).data(), J);

  // accumulate_dx adds; weight_grads = false leaves the gradients alone.
  const Vec d0 = randn(N * ldx, 107);
  Vec dacc = d0;
  if (dense) lin.backward(ctx, N, x.data(), w.data(), dacc.data(), true, false);
  else lin.backward(ctx, N, x.data(), ldx, w.data(), ldy, dacc.data(), ldx, true, false);
  for (int64_t i : x_valid) BOOST_TEST(std::abs((dacc[i] - d0[i]) - dx[i]) <= 1e-14, "Linear accumulate_dx at " << i);
  for (int64_t r = 0; r < N; ++r)
    for (int64_t c = in; c < ldx; ++c) BOOST_TEST(dacc[r * ldx + c] == d0[r * ldx + c]);
  check_same(os.str() + " weight_grads=false keeps dW", lin.weight.grad.data(), gW.data(), out * in);
  check_same(os.str() + " weight_grads=false keeps db", lin.bias.grad.data(), gb.data(), out);
}

BOOST_AUTO_TEST_CASE(nn_linear_strided_and_dense) {
  check_linear(kOne, 3, 4, 5, 4, 5);     // dense
  check_linear(kOne, 3, 4, 5, 4 * 3, 5);  // the pooler: rows h[b, 0] of [B, L, D], dense output
  check_linear(kOne, 2, 4, 3, 9, 7);     // strided input and output
  check_linear(kTwo, 2, 4, 3, 9, 7);
}

BOOST_AUTO_TEST_CASE(nn_layer_norm) {
  for (const Ctx& ctx : {kOne, kTwo}) {
    const int64_t N = 4, F = 6;
    nn::LayerNorm<double, Cpu> ln;
    ln.init("ln", F, 1e-5);
    const Vec gamma = randn(F, 111, 0.5, 1.0), beta = randn(F, 112, 0.5);
    std::copy(gamma.begin(), gamma.end(), ln.weight.value.data());
    std::copy(beta.begin(), beta.end(), ln.bias.value.data());
    Vec x = randn(N * F, 113, 2.0, -0.4), w = randn(N * F, 114), y(N * F), mean(N), rstd(N);
    auto J = [&] {
      ln.forward(ctx, N, x.data(), y.data(), mean.data(), rstd.data());
      return dot(w, y);
    };
    J();
    const Vec g0 = randn(F, 115), b0 = randn(F, 116);
    std::copy(g0.begin(), g0.end(), ln.weight.grad.data());
    std::copy(b0.begin(), b0.end(), ln.bias.grad.data());
    Vec dx(N * F, kNaN);
    ln.backward(ctx, N, w.data(), x.data(), mean.data(), rstd.data(), dx.data(), false, true);
    const Vec gg(ln.weight.grad.data(), ln.weight.grad.data() + F), gb(ln.bias.grad.data(), ln.bias.grad.data() + F);
    check_gradient("nn::LayerNorm dx" + tag(ctx), x, dx, J);
    check_gradient("nn::LayerNorm dweight (accumulated)" + tag(ctx), ln.weight.value.data(), F, minus(gg, g0).data(), J);
    check_gradient("nn::LayerNorm dbias (accumulated)" + tag(ctx), ln.bias.value.data(), F, minus(gb, b0).data(), J);
    // weight_grads = false: dx only; accumulate_dx adds.
    J();
    const Vec d0 = randn(N * F, 117);
    Vec dacc = d0;
    ln.backward(ctx, N, w.data(), x.data(), mean.data(), rstd.data(), dacc.data(), true, false);
    for (int64_t i = 0; i < N * F; ++i) BOOST_TEST(std::abs((dacc[i] - d0[i]) - dx[i]) <= 1e-14);
    check_same("nn::LayerNorm weight_grads=false keeps dweight", ln.weight.grad.data(), gg.data(), F);
    check_same("nn::LayerNorm weight_grads=false keeps dbias", ln.bias.grad.data(), gb.data(), F);
  }
}

}  // namespace
