// CUDA backend tests: every backend::Cuda op against the backend::Cpu op on random inputs at
// several shapes, then whole models and AD-DROP steps on the GPU against the golden
// fixtures (PyTorch) and against the same computation on the CPU.
//
// Tolerances (norm-wise relative: max |got - want| / max |want|):
//   op vs CPU op:                float 1e-5, double 1e-12; reductions returned as double 1e-10
//                                (float) / 1e-12 (double), the sum order being the only difference;
//   model / AD-DROP vs fixtures: float 1e-4, double 1e-9 (as tests/golden/);
//   AD-DROP step GPU vs CPU:     float 1e-4, double 1e-10.
// Integer-valued results must be identical: uniforms, dropout outputs (the same products),
// top-p candidates, q-sampled and random keep masks, additive masks.
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

#include "support/compare.hpp"

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

template <class T> constexpr double op_tol() { return sizeof(T) == 4 ? 1e-5 : 1e-12; }
template <class T> constexpr double reduce_tol() { return sizeof(T) == 4 ? 1e-10 : 1e-12; }
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

// ================================================================== op tests
template <class T>
void test_elementwise() {
  const double tol = op_tol<T>();
  for (int64_t n : {1, 1000, 100003}) {
    const std::string at = std::string(type_name<T>()) + " n=" + std::to_string(n);
    const auto x = random_vec<T>(n), y = random_vec<T>(n);
    auto dx = up(x), dy = up(y);
    // fill
    std::vector<T> hf(static_cast<std::size_t>(n));
    Cpu::fill(cpu, n, T(0.25), hf.data());
    Cuda::fill(gpu, n, T(0.25), dy.data());
    check_same("fill " + at, down(dy), hf);
    // copy
    Cuda::copy(gpu, n, dx.data(), dy.data());
    check_same("copy " + at, down(dy), x);
    // axpby
    dy = up(y);
    auto hy = y;
    Cpu::axpby(cpu, n, T(1.5), x.data(), T(-0.75), hy.data());
    Cuda::axpby(gpu, n, T(1.5), dx.data(), T(-0.75), dy.data());
    check_close("axpby " + at, down(dy), hy, tol);
    // add
    std::vector<T> ho(static_cast<std::size_t>(n));
    DevT<T> dout({n});
    Cpu::add(cpu, n, x.data(), y.data(), ho.data());
    dy = up(y);
    Cuda::add(gpu, n, dx.data(), dy.data(), dout.data());
    check_close("add " + at, down(dout), ho, tol);
    // mul
    Cpu::mul(cpu, n, x.data(), y.data(), ho.data());
    Cuda::mul(gpu, n, dx.data(), dy.data(), dout.data());
    check_same("mul " + at, down(dout), ho);
    // scale
    hy = y;
    Cpu::scale(cpu, n, T(-3), hy.data());
    Cuda::scale(gpu, n, T(-3), dy.data());
    check_same("scale " + at, down(dy), hy);
    dy = up(y);
    // activations on [-5, 5]
    const auto a = random_vec<T>(n, -5, 5);
    auto da = up(a);
    Cpu::gelu_forward(cpu, n, a.data(), ho.data());
    Cuda::gelu_forward(gpu, n, da.data(), dout.data());
    check_close("gelu_forward " + at, down(dout), ho, tol);
    Cpu::gelu_backward(cpu, n, a.data(), y.data(), ho.data());
    Cuda::gelu_backward(gpu, n, da.data(), dy.data(), dout.data());
    check_close("gelu_backward " + at, down(dout), ho, tol);
    Cpu::tanh_forward(cpu, n, a.data(), ho.data());
    Cuda::tanh_forward(gpu, n, da.data(), dout.data());
    check_close("tanh_forward " + at, down(dout), ho, tol);
    // tanh_backward from outputs in [-0.9, 0.9]: near |y| = 1, 1 - y*y cancels and the CPU's
    // separately rounded y*y is off by ~1e-5 relative where the GPU's fused one is not.
    const auto th = random_vec<T>(n, -0.9, 0.9);
    auto dth = up(th);
    Cpu::tanh_backward(cpu, n, th.data(), y.data(), ho.data());
    Cuda::tanh_backward(gpu, n, dth.data(), dy.data(), dout.data());
    check_close("tanh_backward " + at, down(dout), ho, tol);
    // reductions returned to the host
    check_scalar("sum " + at, Cuda::sum(gpu, n, dx.data()), Cpu::sum(cpu, n, x.data()), reduce_tol<T>() * 1e3);
    check_scalar("sum_squares " + at, Cuda::sum_squares(gpu, n, dx.data()), Cpu::sum_squares(cpu, n, x.data()),
                 reduce_tol<T>());
    // mse, with and without dpred
    std::vector<T> hd(static_cast<std::size_t>(n));
    const double want = Cpu::mse(cpu, n, x.data(), y.data(), hd.data());
    const double got = Cuda::mse(gpu, n, dx.data(), dy.data(), dout.data());
    check_scalar("mse " + at, got, want, reduce_tol<T>());
    check_close("mse dpred " + at, down(dout), hd, tol);
    check_scalar("mse (no dpred) " + at, Cuda::mse(gpu, n, dx.data(), dy.data(), static_cast<T*>(nullptr)), want,
                 reduce_tol<T>());
  }
  // sum: the relative measure is against |sum|, which cancellation can make small; a
  // sum of positive values checks the reduction itself at the tight tolerance.
  const auto pos = random_vec<T>(77777, 0, 1);
  auto dpos = up(pos);
  check_scalar(std::string("sum of positives ") + type_name<T>(), Cuda::sum(gpu, 77777, dpos.data()),
               Cpu::sum(cpu, 77777, pos.data()), reduce_tol<T>());
}

template <class T>
void test_gemm() {
  const double tol = op_tol<T>();
  struct Case { int64_t M, N, K; };
  for (const Case c : {Case{1, 1, 1}, Case{7, 13, 5}, Case{64, 96, 128}, Case{129, 65, 257}, Case{1, 300, 17}}) {
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      for (T beta : {T(0), T(1), T(-0.5)}) {
        const int64_t pad = 3;
        const int64_t a_rows = ta ? c.K : c.M, a_cols = ta ? c.M : c.K;
        const int64_t b_rows = tb ? c.N : c.K, b_cols = tb ? c.K : c.N;
        const int64_t lda = a_cols + pad, ldb = b_cols + pad, ldc = c.N + pad;
        const auto A = random_vec<T>(a_rows * lda), B = random_vec<T>(b_rows * ldb);
        auto C = random_vec<T>(c.M * ldc);
        auto dA = up(A), dB = up(B), dC = up(C);
        Cpu::gemm(cpu, ta, tb, c.M, c.N, c.K, T(1.3), A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
        Cuda::gemm(gpu, ta, tb, c.M, c.N, c.K, T(1.3), dA.data(), lda, dB.data(), ldb, beta, dC.data(), ldc);
        check_close(std::string("gemm ") + type_name<T>() + " M,N,K=" + shape_str({c.M, c.N, c.K}) +
                        " ta=" + std::to_string(ta) + " tb=" + std::to_string(tb) + " beta=" + std::to_string(beta),
                    down(dC), C, tol);
      }
    }
  }
  // K = 0: C = beta C (beta = 0 writes zeros, even over NaN)
  for (T beta : {T(0), T(0.5)}) {
    auto C = random_vec<T>(3 * 5);
    C[4] = beta == T(0) ? T(NAN) : C[4];
    auto dC = up(C);
    const T dummy = 0;
    Cpu::gemm(cpu, false, false, 3, 5, 0, T(1), &dummy, 0, &dummy, 5, beta, C.data(), 5);
    Cuda::gemm(gpu, false, false, 3, 5, 0, T(1), static_cast<const T*>(nullptr), 0, static_cast<const T*>(nullptr), 5,
               beta, dC.data(), 5);
    check_same(std::string("gemm K=0 ") + type_name<T>() + " beta=" + std::to_string(beta), down(dC), C);
  }
  // TF32 context (float only makes a difference): products within TF32's precision.
  if constexpr (sizeof(T) == 4) {
    Cuda::Context tf = gpu;
    tf.tf32 = true;
    const int64_t M = 96, N = 80, K = 256;
    const auto A = random_vec<T>(M * K), B = random_vec<T>(K * N);
    std::vector<T> C(static_cast<std::size_t>(M * N));
    auto dA = up(A), dB = up(B);
    DevT<T> dC({M * N});
    Cpu::gemm(cpu, false, false, M, N, K, T(1), A.data(), K, B.data(), N, T(0), C.data(), N);
    Cuda::gemm(tf, false, false, M, N, K, T(1), dA.data(), K, dB.data(), N, T(0), dC.data(), N);
    check_close("gemm float with tf32 = true (tolerance 1e-2)", down(dC), C, 1e-2);
  }
}

template <class T>
void test_gemm_batched() {
  const double tol = op_tol<T>();
  using S = Cuda::BatchStrides;
  using SC = Cpu::BatchStrides;
  // The four products of nn/attention.hpp: B outer, H inner, heads interleaved in [B*L, D].
  // Interleaved heads take the pointer-array call (B > H, B < H, B = H); B = 1 a strided one.
  for (auto [B, H, L, dh] : {std::array<int64_t, 4>{3, 4, 17, 8}, std::array<int64_t, 4>{2, 2, 64, 16},
                             std::array<int64_t, 4>{5, 2, 9, 8}, std::array<int64_t, 4>{1, 3, 5, 4},
                             std::array<int64_t, 4>{20, 16, 3, 2}}) {  // 320 pointers: several blocks
    const int64_t D = H * dh;
    const std::string at = std::string(type_name<T>()) + " B,H,L,dh=" + shape_str({B, H, L, dh});
    const auto q = random_vec<T>(B * L * D), k = random_vec<T>(B * L * D);
    const auto P = random_vec<T>(B * H * L * L);
    auto dq = up(q), dk = up(k), dP = up(P);
    // scores = Q K^T
    std::vector<T> s(static_cast<std::size_t>(B * H * L * L));
    DevT<T> ds({B * H * L * L});
    Cpu::gemm_batched(cpu, false, true, L, L, dh, T(1), q.data(), D, SC{L * D, dh}, k.data(), D, SC{L * D, dh}, T(0),
                      s.data(), L, SC{H * L * L, L * L}, B, H);
    Cuda::gemm_batched(gpu, false, true, L, L, dh, T(1), dq.data(), D, S{L * D, dh}, dk.data(), D, S{L * D, dh}, T(0),
                       ds.data(), L, S{H * L * L, L * L}, B, H);
    check_close("gemm_batched QK^T " + at, down(ds), s, tol);
    // context = alpha P V (beta 0)
    std::vector<T> ctxh(static_cast<std::size_t>(B * L * D));
    DevT<T> dctx({B * L * D});
    Cpu::gemm_batched(cpu, false, false, L, dh, L, T(0.7), P.data(), L, SC{H * L * L, L * L}, k.data(), D,
                      SC{L * D, dh}, T(0), ctxh.data(), D, SC{L * D, dh}, B, H);
    Cuda::gemm_batched(gpu, false, false, L, dh, L, T(0.7), dP.data(), L, S{H * L * L, L * L}, dk.data(), D,
                       S{L * D, dh}, T(0), dctx.data(), D, S{L * D, dh}, B, H);
    check_close("gemm_batched PV " + at, down(dctx), ctxh, tol);
    // dV = P^T dC, accumulated (beta 1) into random values
    auto acc = random_vec<T>(B * L * D);
    auto dacc = up(acc);
    Cpu::gemm_batched(cpu, true, false, L, dh, L, T(1), P.data(), L, SC{H * L * L, L * L}, q.data(), D, SC{L * D, dh},
                      T(1), acc.data(), D, SC{L * D, dh}, B, H);
    Cuda::gemm_batched(gpu, true, false, L, dh, L, T(1), dP.data(), L, S{H * L * L, L * L}, dq.data(), D,
                       S{L * D, dh}, T(1), dacc.data(), D, S{L * D, dh}, B, H);
    check_close("gemm_batched P^T dC (beta 1) " + at, down(dacc), acc, tol);
    // Collapsible strides (one cuBLAS call over outer * inner): contiguous [B*H, L, L] x [B*H, L, L]
    std::vector<T> o2(static_cast<std::size_t>(B * H * L * L));
    DevT<T> do2({B * H * L * L});
    Cpu::gemm_batched(cpu, false, false, L, L, L, T(1), P.data(), L, SC{H * L * L, L * L}, P.data(), L,
                      SC{H * L * L, L * L}, T(0), o2.data(), L, SC{H * L * L, L * L}, B, H);
    Cuda::gemm_batched(gpu, false, false, L, L, L, T(1), dP.data(), L, S{H * L * L, L * L}, dP.data(), L,
                       S{H * L * L, L * L}, T(0), do2.data(), L, S{H * L * L, L * L}, B, H);
    check_close("gemm_batched contiguous PP " + at, down(do2), o2, tol);
    // inner = 1 and outer = 1
    Cpu::gemm_batched(cpu, false, false, L, L, L, T(1), P.data(), L, SC{L * L, 0}, P.data(), L, SC{L * L, 0}, T(0),
                      o2.data(), L, SC{L * L, 0}, B * H, 1);
    Cuda::gemm_batched(gpu, false, false, L, L, L, T(1), dP.data(), L, S{L * L, 0}, dP.data(), L, S{L * L, 0}, T(0),
                       do2.data(), L, S{L * L, 0}, B * H, 1);
    check_close("gemm_batched inner=1 " + at, down(do2), o2, tol);
    Cpu::gemm_batched(cpu, false, true, L, L, L, T(1), P.data(), L, SC{0, L * L}, P.data(), L, SC{0, L * L}, T(0),
                      o2.data(), L, SC{0, L * L}, 1, B * H);
    Cuda::gemm_batched(gpu, false, true, L, L, L, T(1), dP.data(), L, S{0, L * L}, dP.data(), L, S{0, L * L}, T(0),
                       do2.data(), L, S{0, L * L}, 1, B * H);
    check_close("gemm_batched outer=1 " + at, down(do2), o2, tol);
  }
}

template <class T>
void test_bias_and_layer_norm() {
  const double tol = op_tol<T>();
  // (40000-row column sums in double only: the CPU's float sum of that many terms is itself
  // off by a few 1e-6 relative, too close to the tolerance to tell anything.)
  for (auto [rows, cols] : {std::array<int64_t, 2>{1, 1}, std::array<int64_t, 2>{5, 7},
                            std::array<int64_t, 2>{300, 768}, std::array<int64_t, 2>{2049, 33},
                            std::array<int64_t, 2>{sizeof(T) == 4 ? 4000 : 40000, 3}}) {
    const std::string at = std::string(type_name<T>()) + " rows,cols=" + shape_str({rows, cols});
    const auto bias = random_vec<T>(cols);
    auto y = random_vec<T>(rows * cols);
    auto dbias_d = up(bias), dy = up(y);
    Cpu::add_bias(cpu, rows, cols, bias.data(), y.data());
    Cuda::add_bias(gpu, rows, cols, dbias_d.data(), dy.data());
    check_close("add_bias " + at, down(dy), y, tol);
    // bias_backward accumulates into nonzero values
    auto db = random_vec<T>(cols);
    auto ddb = up(db);
    Cpu::bias_backward(cpu, rows, cols, y.data(), db.data());
    Cuda::bias_backward(gpu, rows, cols, dy.data(), ddb.data());
    check_close("bias_backward " + at, down(ddb), db, tol);
  }
  for (auto [rows, cols] : {std::array<int64_t, 2>{1, 8}, std::array<int64_t, 2>{37, 768},
                            std::array<int64_t, 2>{500, 100}, std::array<int64_t, 2>{3000, 16}}) {
    const std::string at = std::string(type_name<T>()) + " rows,cols=" + shape_str({rows, cols});
    auto x = random_vec<T>(rows * cols, -2, 3);
    for (int64_t c = 0; c < cols; ++c) x[static_cast<std::size_t>(c)] += T(5);  // a row offset
    const auto gamma = random_vec<T>(cols, 0.5, 1.5), beta = random_vec<T>(cols);
    const T eps = T(1e-5);
    std::vector<T> y(static_cast<std::size_t>(rows * cols)), mean(static_cast<std::size_t>(rows)),
        rstd(static_cast<std::size_t>(rows));
    auto dx = up(x), dg = up(gamma), dbt = up(beta);
    DevT<T> dyv({rows * cols}), dmean({rows}), drstd({rows});
    Cpu::layer_norm_forward(cpu, rows, cols, eps, x.data(), gamma.data(), beta.data(), y.data(), mean.data(), rstd.data());
    Cuda::layer_norm_forward(gpu, rows, cols, eps, dx.data(), dg.data(), dbt.data(), dyv.data(), dmean.data(),
                             drstd.data());
    check_close("layer_norm_forward y " + at, down(dyv), y, tol);
    check_close("layer_norm_forward mean " + at, down(dmean), mean, tol);
    check_close("layer_norm_forward rstd " + at, down(drstd), rstd, tol);
    // backward: (a) written dx with both parameter gradients, (b) accumulated dx, no dgamma,
    // (c) dx aliasing dy.
    const auto grad_out = random_vec<T>(rows * cols);
    auto dgo = up(grad_out);
    auto hdx = random_vec<T>(rows * cols);
    auto hdg = random_vec<T>(cols), hdb = random_vec<T>(cols);
    auto ddx = up(hdx), ddg = up(hdg), ddb = up(hdb);
    auto dmean_h = up(mean), drstd_h = up(rstd);  // the same saved statistics on both sides
    Cpu::layer_norm_backward(cpu, rows, cols, grad_out.data(), x.data(), mean.data(), rstd.data(), gamma.data(),
                             hdx.data(), false, hdg.data(), hdb.data());
    Cuda::layer_norm_backward(gpu, rows, cols, dgo.data(), dx.data(), dmean_h.data(), drstd_h.data(), dg.data(),
                              ddx.data(), false, ddg.data(), ddb.data());
    check_close("layer_norm_backward dx " + at, down(ddx), hdx, tol);
    check_close("layer_norm_backward dgamma " + at, down(ddg), hdg, tol);
    check_close("layer_norm_backward dbeta " + at, down(ddb), hdb, tol);
    Cpu::layer_norm_backward(cpu, rows, cols, grad_out.data(), x.data(), mean.data(), rstd.data(), gamma.data(),
                             hdx.data(), true, static_cast<T*>(nullptr), hdb.data());
    Cuda::layer_norm_backward(gpu, rows, cols, dgo.data(), dx.data(), dmean_h.data(), drstd_h.data(), dg.data(),
                              ddx.data(), true, static_cast<T*>(nullptr), ddb.data());
    check_close("layer_norm_backward accumulate dx " + at, down(ddx), hdx, tol);
    check_close("layer_norm_backward dbeta only " + at, down(ddb), hdb, tol);
    auto alias_h = grad_out;
    auto alias_d = up(grad_out);
    Cpu::layer_norm_backward(cpu, rows, cols, alias_h.data(), x.data(), mean.data(), rstd.data(), gamma.data(),
                             alias_h.data(), false, hdg.data(), static_cast<T*>(nullptr));
    Cuda::layer_norm_backward(gpu, rows, cols, alias_d.data(), dx.data(), dmean_h.data(), drstd_h.data(), dg.data(),
                              alias_d.data(), false, ddg.data(), static_cast<T*>(nullptr));
    check_close("layer_norm_backward dx aliasing dy " + at, down(alias_d), alias_h, tol);
    check_close("layer_norm_backward dgamma (alias case) " + at, down(ddg), hdg, tol);
  }
}

template <class T>
void test_softmax() {
  const double tol = op_tol<T>();
  for (auto [B, H, L] : {std::array<int64_t, 3>{1, 1, 1}, std::array<int64_t, 3>{2, 3, 7},
                         std::array<int64_t, 3>{3, 2, 130}, std::array<int64_t, 3>{1, 2, 512}}) {
    const std::string at = std::string(type_name<T>()) + " B,H,L=" + shape_str({B, H, L});
    const int64_t n = B * H * L * L;
    const auto scores = random_vec<T>(n, -4, 4);
    // key_bias: example b has L - b*L/4 real keys, the last example none (every key -10000).
    std::vector<T> key_bias(static_cast<std::size_t>(B * L), T(0));
    for (int64_t b = 0; b < B; ++b) {
      const int64_t len = b == B - 1 && B > 1 ? 0 : L - b * L / 4;
      for (int64_t j = len; j < L; ++j) key_bias[b * L + j] = T(-10000);
    }
    // extra: about 30% -10000, and one row entirely -10000
    std::vector<T> extra(static_cast<std::size_t>(n), T(0));
    std::bernoulli_distribution drop(0.3);
    for (auto& e : extra) e = drop(rng) ? T(-10000) : T(0);
    for (int64_t j = 0; j < L; ++j) extra[static_cast<std::size_t>(L + j) % n] = T(-10000);
    const T scale = T(1) / std::sqrt(T(8));
    auto ds = up(scores), dkb = up(key_bias), dex = up(extra);
    std::vector<T> p(static_cast<std::size_t>(n));
    DevT<T> dp({n});
    Cpu::attention_softmax_forward(cpu, B, H, L, scale, scores.data(), key_bias.data(), extra.data(), p.data());
    Cuda::attention_softmax_forward(gpu, B, H, L, scale, ds.data(), dkb.data(), dex.data(), dp.data());
    check_close("attention_softmax_forward masks " + at, down(dp), p, tol);
    Cpu::attention_softmax_forward(cpu, B, H, L, scale, scores.data(), static_cast<const T*>(nullptr),
                                   static_cast<const T*>(nullptr), p.data());
    Cuda::attention_softmax_forward(gpu, B, H, L, scale, ds.data(), static_cast<const T*>(nullptr),
                                    static_cast<const T*>(nullptr), dp.data());
    check_close("attention_softmax_forward no masks " + at, down(dp), p, tol);
    auto ph = scores;
    auto pd = up(scores);  // in place: scores and probs alias
    Cpu::attention_softmax_forward(cpu, B, H, L, scale, ph.data(), key_bias.data(), static_cast<const T*>(nullptr),
                                   ph.data());
    Cuda::attention_softmax_forward(gpu, B, H, L, scale, pd.data(), dkb.data(), static_cast<const T*>(nullptr),
                                    pd.data());
    check_close("attention_softmax_forward in place " + at, down(pd), ph, tol);
    // backward, written and in place
    const auto dprobs = random_vec<T>(n);
    auto ddp = up(dprobs);
    std::vector<T> dsc(static_cast<std::size_t>(n));
    DevT<T> ddsc({n});
    Cpu::softmax_backward(cpu, B * H * L, L, scale, ph.data(), dprobs.data(), dsc.data());
    Cuda::softmax_backward(gpu, B * H * L, L, scale, pd.data(), ddp.data(), ddsc.data());
    check_close("softmax_backward " + at, down(ddsc), dsc, tol);
    auto inplace = dprobs;
    Cpu::softmax_backward(cpu, B * H * L, L, scale, ph.data(), inplace.data(), inplace.data());
    Cuda::softmax_backward(gpu, B * H * L, L, scale, pd.data(), ddp.data(), ddp.data());
    check_close("softmax_backward in place " + at, down(ddp), inplace, tol);
  }
}

template <class T>
void test_random() {
  for (int64_t n : {1, 3, 5, 1001, 100000}) {
    for (uint64_t stream : {uint64_t{0}, uint64_t{7} << 24, (uint64_t{1} << 63) | (uint64_t{5} << 20) | 6}) {
      const uint64_t seed = 0x9E3779B97F4A7C15ull ^ static_cast<uint64_t>(n);
      const std::string at = std::string(type_name<T>()) + " n=" + std::to_string(n) + " stream=" + std::to_string(stream);
      std::vector<T> u(static_cast<std::size_t>(n));
      DevT<T> du({n});
      Cpu::uniform(cpu, n, seed, stream, u.data());
      Cuda::uniform(gpu, n, seed, stream, du.data());
      check_same("uniform " + at, down(du), u);
      const auto x = random_vec<T>(n);
      auto dx = up(x);
      for (float p : {0.0f, 0.1f, 0.5f}) {
        const std::string pa = at + " p=" + std::to_string(p);
        std::vector<T> y(static_cast<std::size_t>(n));
        DevT<T> dy({n});
        Cpu::dropout_forward(cpu, n, p, seed, stream, x.data(), y.data());
        Cuda::dropout_forward(gpu, n, p, seed, stream, dx.data(), dy.data());
        check_same("dropout_forward " + pa, down(dy), y);
        auto inplace_h = x;
        auto inplace_d = up(x);
        Cpu::dropout_forward(cpu, n, p, seed, stream, inplace_h.data(), inplace_h.data());
        Cuda::dropout_forward(gpu, n, p, seed, stream, inplace_d.data(), inplace_d.data());
        check_same("dropout_forward in place " + pa, down(inplace_d), inplace_h);
        auto acc = random_vec<T>(n);
        auto dacc = up(acc);
        Cpu::dropout_backward(cpu, n, p, seed, stream, x.data(), y.data(), false);
        Cuda::dropout_backward(gpu, n, p, seed, stream, dx.data(), dy.data(), false);
        check_same("dropout_backward " + pa, down(dy), y);
        Cpu::dropout_backward(cpu, n, p, seed, stream, x.data(), acc.data(), true);
        Cuda::dropout_backward(gpu, n, p, seed, stream, dx.data(), dacc.data(), true);
        // (the GPU may fuse the product and the sum into one rounding: close, not equal)
        check_close("dropout_backward accumulate " + pa, down(dacc), acc, op_tol<T>());
      }
    }
  }
}

template <class T>
void test_embeddings() {
  const double tol = op_tol<T>();
  for (auto [tokens, rows, dim] : {std::array<int64_t, 3>{1, 5, 1}, std::array<int64_t, 3>{50, 37, 64},
                                   std::array<int64_t, 3>{3000, 400, 300}, std::array<int64_t, 3>{2000, 2, 48},
                                   std::array<int64_t, 3>{1500, 3, 770}}) {  // one id in ~1/3 of the tokens
    for (int64_t padding : {int64_t{-1}, int64_t{0}, int64_t{1}}) {
      const std::string at = std::string(type_name<T>()) + " tokens,rows,dim=" + shape_str({tokens, rows, dim}) +
                             " padding_idx=" + std::to_string(padding);
      const auto ids = random_ints(tokens, 0, static_cast<int32_t>(rows - 1));
      const auto table = random_vec<T>(rows * dim);
      auto dids = up(ids);
      auto dtable = up(table);
      auto out = random_vec<T>(tokens * dim);
      auto dout = up(out);
      Cpu::embedding_forward(cpu, tokens, dim, ids.data(), table.data(), out.data(), true);
      Cuda::embedding_forward(gpu, tokens, dim, dids.data(), dtable.data(), dout.data(), true);
      check_same("embedding_forward accumulate " + at, down(dout), out);
      Cpu::embedding_forward(cpu, tokens, dim, ids.data(), table.data(), out.data(), false);
      Cuda::embedding_forward(gpu, tokens, dim, dids.data(), dtable.data(), dout.data(), false);
      check_same("embedding_forward " + at, down(dout), out);
      const auto grad = random_vec<T>(tokens * dim);
      auto dgrad = up(grad);
      auto dtab = random_vec<T>(rows * dim);
      auto ddtab = up(dtab);
      Cpu::embedding_backward(cpu, tokens, dim, ids.data(), grad.data(), dtab.data(), padding);
      Cuda::embedding_backward(gpu, tokens, dim, dids.data(), dgrad.data(), ddtab.data(), padding);
      // The GPU adds each id's rows as 8 fixed partial sums, the CPU in token order: close.
      check_close("embedding_backward " + at, down(ddtab), dtab, tol);
      // ... and the GPU's order is fixed: a second run from the same table gives the same bits.
      DevT<T> dtab2({rows * dim});
      Cuda::fill(gpu, rows * dim, T(0), dtab2.data());
      Cuda::embedding_backward(gpu, tokens, dim, dids.data(), dgrad.data(), dtab2.data(), padding);
      const auto first_run = down(dtab2);
      Cuda::fill(gpu, rows * dim, T(0), dtab2.data());
      Cuda::embedding_backward(gpu, tokens, dim, dids.data(), dgrad.data(), dtab2.data(), padding);
      check_same("embedding_backward repeats bit for bit " + at, down(dtab2), first_run);
    }
  }
}

template <class T>
void test_losses() {
  const double tol = op_tol<T>();
  for (auto [rows, classes] : {std::array<int64_t, 2>{1, 2}, std::array<int64_t, 2>{5, 9},
                               std::array<int64_t, 2>{300, 3}, std::array<int64_t, 2>{4000, 40}}) {
    const std::string at = std::string(type_name<T>()) + " rows,classes=" + shape_str({rows, classes});
    const auto logits = random_vec<T>(rows * classes, -6, 6);
    auto labels = random_ints(rows, 0, static_cast<int32_t>(classes - 1));
    for (std::size_t r = 1; r < labels.size(); r += 3) labels[r] = -100;
    auto dl = up(logits);
    auto dlab = up(labels);
    std::vector<T> grad(static_cast<std::size_t>(rows * classes), T(7));
    DevT<T> dgrad({rows * classes});
    Cuda::fill(gpu, rows * classes, T(7), dgrad.data());
    const double want = Cpu::cross_entropy(cpu, rows, classes, logits.data(), labels.data(), -100, grad.data());
    const double got = Cuda::cross_entropy(gpu, rows, classes, dl.data(), dlab.data(), -100, dgrad.data());
    check_scalar("cross_entropy " + at, got, want, tol);
    check_close("cross_entropy dlogits " + at, down(dgrad), grad, tol);
    check_scalar("cross_entropy (no dlogits) " + at,
                 Cuda::cross_entropy(gpu, rows, classes, dl.data(), dlab.data(), -100, static_cast<T*>(nullptr)), want,
                 tol);
    std::vector<int32_t> ignored(static_cast<std::size_t>(rows), -100);
    auto dign = up(ignored);
    check_scalar("cross_entropy all ignored " + at,
                 Cuda::cross_entropy(gpu, rows, classes, dl.data(), dign.data(), -100, dgrad.data()), 0.0, tol);
    const auto zeros = down(dgrad);
    check_true(std::all_of(zeros.begin(), zeros.end(), [](T v) { return v == T(0); }),
               "cross_entropy all ignored: dlogits all zero " + at);
  }
  // AdamW, both variants, a few steps
  for (bool hf : {true, false}) {
    const int64_t n = 10007;
    auto param = random_vec<T>(n), m = random_vec<T>(n, 0, 0.1), v = random_vec<T>(n, 0, 0.01);
    auto dparam = up(param), dm = up(m), dv = up(v);
    for (int64_t t = 1; t <= 7; t += 3) {
      const auto grad = random_vec<T>(n);
      auto dgrad = up(grad);
      Cpu::adamw_update(cpu, n, param.data(), grad.data(), m.data(), v.data(), 1e-3, 0.9, 0.999, 1e-6, 0.01, t, hf);
      Cuda::adamw_update(gpu, n, dparam.data(), dgrad.data(), dm.data(), dv.data(), 1e-3, 0.9, 0.999, 1e-6, 0.01, t, hf);
    }
    const std::string at = std::string(type_name<T>()) + (hf ? " hugging_face" : " torch");
    check_close("adamw_update param " + at, down(dparam), param, tol);
    check_close("adamw_update m " + at, down(dm), m, tol);
    check_close("adamw_update v " + at, down(dv), v, tol);
  }
}

template <class T>
void test_selection() {
  for (auto [B, H, L] : {std::array<int64_t, 3>{1, 1, 1}, std::array<int64_t, 3>{3, 2, 9},
                         std::array<int64_t, 3>{4, 2, 64}, std::array<int64_t, 3>{2, 3, 130},
                         std::array<int64_t, 3>{1, 1, 700}}) {
    const int64_t n = B * H * L * L;
    // key masks: lengths L, L-1, ..., some example with no real key when B > 2
    std::vector<int32_t> mask(static_cast<std::size_t>(B * L), 0);
    std::vector<int64_t> lengths(static_cast<std::size_t>(B));
    for (int64_t b = 0; b < B; ++b) {
      lengths[b] = b == 2 ? 0 : std::max<int64_t>(1, L - b * (L / 3 + 1));
      for (int64_t j = 0; j < lengths[b]; ++j) mask[b * L + j] = 1;
    }
    if (B > 3)  // a gap inside: keys need not be a prefix
      for (int64_t j = 0; j < L; j += 4) mask[3 * L + j] = 1 - mask[3 * L + j];
    for (int64_t b = 0; b < B; ++b) {
      lengths[b] = 0;
      for (int64_t j = 0; j < L; ++j) lengths[b] += mask[b * L + j];
    }
    auto dmask = up(mask);
    for (int ties = 0; ties < 2; ++ties) {
      auto scores = random_vec<T>(n);
      if (ties)
        for (auto& s : scores) s = std::round(s * T(4)) / T(4);  // 9 levels: many equal values
      auto dscores = up(scores);
      for (double p : {0.0, 0.3, 0.9, 1.0}) {
        for (bool high : {true, false}) {
          const std::string at = std::string(type_name<T>()) + " B,H,L=" + shape_str({B, H, L}) +
                                 (ties ? " ties" : "") + " p=" + std::to_string(p) + (high ? " high" : " low");
          std::vector<int64_t> k(static_cast<std::size_t>(B));
          for (int64_t b = 0; b < B; ++b) k[b] = selection::threshold_index(high ? Side::High : Side::Low, p, lengths[b]);
          auto dk = up(k);
          std::vector<T> cand(static_cast<std::size_t>(n));
          DevT<T> dcand({n});
          Cpu::top_p_candidates(cpu, B, H, L, scores.data(), mask.data(), k.data(), high, cand.data());
          Cuda::top_p_candidates(gpu, B, H, L, dscores.data(), dmask.data(), dk.data(), high, dcand.data());
          check_same("top_p_candidates " + at, down(dcand), cand);
          // the rank variant (used for rows too long for shared memory) on the same rows
          if (L <= 130) {
            Cuda::fill(gpu, n, T(5), dcand.data());
            backend::cuda_detail::top_p_candidates_rank(gpu.state(), B, H, L, dscores.data(), dmask.data(), dk.data(),
                                                        high, dcand.data());
            check_same("top_p_candidates (rank variant) " + at, down(dcand), cand);
          }
          // The fused op (what AdDrop runs): GPU against CPU, generated and given draws, every
          // output and the additive mask alone; and the CPU's fused op against its four passes.
          {
            std::vector<float> u(static_cast<std::size_t>(n));
            Cpu::uniform(cpu, n, 21, 22, u.data());
            auto du = up(u);
            std::vector<T> c4(static_cast<std::size_t>(n)), k4(static_cast<std::size_t>(n)),
                a4(static_cast<std::size_t>(n));
            Cpu::q_sample(cpu, n, cand.data(), u.data(), 0.7f, k4.data());
            Cpu::keep_to_additive(cpu, n, k4.data(), T(-10000), a4.data());
            for (bool given : {false, true}) {
              const std::string how = at + (given ? " given draws" : " generated draws");
              const float* cu = given ? u.data() : nullptr;
              const float* gu = given ? du.data() : nullptr;
              std::vector<T> fc(static_cast<std::size_t>(n)), fk(static_cast<std::size_t>(n)),
                  fa(static_cast<std::size_t>(n));
              Cpu::select_top_p(cpu, B, H, L, scores.data(), mask.data(), k.data(), high, cu, 21, 22, 0.7f, T(-10000),
                                fa.data(), fc.data(), fk.data());
              check_same("Cpu::select_top_p candidates vs top_p_candidates " + how, fc, cand);
              check_same("Cpu::select_top_p keep vs q_sample " + how, fk, k4);
              check_same("Cpu::select_top_p additive vs keep_to_additive " + how, fa, a4);
              DevT<T> gc({n}), gk({n}), ga({n});
              Cuda::fill(gpu, n, T(5), gc.data());
              Cuda::select_top_p(gpu, B, H, L, dscores.data(), dmask.data(), dk.data(), high, gu, 21, 22, 0.7f,
                                 T(-10000), ga.data(), gc.data(), gk.data());
              check_same("select_top_p candidates " + how, down(gc), fc);
              check_same("select_top_p keep " + how, down(gk), fk);
              check_same("select_top_p additive " + how, down(ga), fa);
              Cuda::fill(gpu, n, T(5), ga.data());
              Cuda::select_top_p(gpu, B, H, L, dscores.data(), dmask.data(), dk.data(), high, gu, 21, 22, 0.7f,
                                 T(-10000), ga.data(), static_cast<T*>(nullptr), static_cast<T*>(nullptr));
              check_same("select_top_p additive alone " + how, down(ga), fa);
              Cuda::fill(gpu, n, T(5), gk.data());
              Cuda::select_top_p(gpu, B, H, L, dscores.data(), dmask.data(), dk.data(), high, gu, 21, 22, 0.7f,
                                 T(-10000), static_cast<T*>(nullptr), static_cast<T*>(nullptr), gk.data());
              check_same("select_top_p keep alone " + how, down(gk), fk);
            }
          }
          if (p != 0.3) continue;
          // q-sampling from these candidates
          std::vector<float> u(static_cast<std::size_t>(n));
          Cpu::uniform(cpu, n, 11, 12, u.data());
          auto du = up(u);
          std::vector<T> keep(static_cast<std::size_t>(n));
          DevT<T> dkeep({n});
          auto dc = up(cand);
          Cpu::q_sample(cpu, n, cand.data(), u.data(), 0.7f, keep.data());
          Cuda::q_sample(gpu, n, dc.data(), du.data(), 0.7f, dkeep.data());
          check_same("q_sample " + at, down(dkeep), keep);
          std::vector<T> add(static_cast<std::size_t>(n));
          DevT<T> dadd({n});
          Cpu::keep_to_additive(cpu, n, keep.data(), T(-10000), add.data());
          Cuda::keep_to_additive(gpu, n, dkeep.data(), T(-10000), dadd.data());
          check_same("keep_to_additive " + at, down(dadd), add);
        }
      }
    }
    // RD's rule
    std::vector<float> u1(static_cast<std::size_t>(n)), u2(static_cast<std::size_t>(n));
    Cpu::uniform(cpu, n, 3, 1, u1.data());
    Cpu::uniform(cpu, n, 3, 2, u2.data());
    auto du1 = up(u1), du2 = up(u2);
    std::vector<T> cand(static_cast<std::size_t>(n)), keep(static_cast<std::size_t>(n));
    DevT<T> dcand({n}), dkeep({n});
    Cpu::random_keep(cpu, B, H, L, mask.data(), u1.data(), 0.7f, u2.data(), 0.6f, cand.data(), keep.data());
    Cuda::random_keep(gpu, B, H, L, dmask.data(), du1.data(), 0.7f, du2.data(), 0.6f, dcand.data(), dkeep.data());
    const std::string at = std::string(type_name<T>()) + " B,H,L=" + shape_str({B, H, L});
    check_same("random_keep candidates " + at, down(dcand), cand);
    check_same("random_keep keep " + at, down(dkeep), keep);
    // RD fused: CPU against its passes, GPU against CPU, given and generated draws
    std::vector<T> add(static_cast<std::size_t>(n));
    Cpu::keep_to_additive(cpu, n, keep.data(), T(-10000), add.data());
    for (bool given : {false, true}) {
      const std::string how = at + (given ? " given draws" : " generated draws");
      std::vector<T> fc(static_cast<std::size_t>(n)), fk(static_cast<std::size_t>(n)), fa(static_cast<std::size_t>(n));
      Cpu::select_random(cpu, B, H, L, mask.data(), given ? u1.data() : nullptr, 3, 1, 0.7f,
                         given ? u2.data() : nullptr, 2, 0.6f, T(-10000), fa.data(), fc.data(), fk.data());
      check_same("Cpu::select_random candidates vs random_keep " + how, fc, cand);
      check_same("Cpu::select_random keep vs random_keep " + how, fk, keep);
      check_same("Cpu::select_random additive vs keep_to_additive " + how, fa, add);
      DevT<T> gc({n}), gk({n}), ga({n});
      Cuda::select_random(gpu, B, H, L, dmask.data(), given ? du1.data() : nullptr, 3, 1, 0.7f,
                          given ? du2.data() : nullptr, 2, 0.6f, T(-10000), ga.data(), gc.data(), gk.data());
      check_same("select_random candidates " + how, down(gc), fc);
      check_same("select_random keep " + how, down(gk), fk);
      check_same("select_random additive " + how, down(ga), fa);
    }
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

template <class T, class Attr>
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
  options.steps = std::stoi(meta.at("steps"));
  options.iga_per_step = meta.at("iga_target") == "per-step";
  AdDrop<Attr, selection::TopP, schedule::Always> reg(options);
  reg.selection_policy().side = meta.at("side") == "low" ? Side::Low : Side::High;
  std::vector<std::vector<float>> draws, draws2;
  ExternalUniforms ext;
  for (int l : layers) {
    draws.push_back(expected.values<float>("uniforms.layer" + std::to_string(l)));
    if (Attr::is_random) draws2.push_back(expected.values<float>("uniforms2.layer" + std::to_string(l)));
  }
  for (auto& d : draws) ext.draws.emplace_back(d);
  for (auto& d : draws2) ext.second_draws.emplace_back(d);

  model.zero_grad();
  const auto r = reg.step_addrop(model, batch, &ext, /*train=*/false);
  check_true(r.used_addrop, "the step used AD-DROP");
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const std::string s = ".layer" + std::to_string(layers[i]);
    if (!Attr::is_random) {
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
      else if (kind == "iga") addrop_vs_fixture<T, attribution::IntegratedGradients<>>(path, layout);
      else if (kind == "aa") addrop_vs_fixture<T, attribution::Attention>(path, layout);
      else if (kind == "rd") addrop_vs_fixture<T, attribution::Random>(path, layout);
      else record(false, "unknown attribution " + kind);
    });
  }
}

// ================================================================== AD-DROP step: GPU vs CPU
// Two models with the same weights, the same options and seed, generator draws (no external
// uniforms), train mode (dropout on): the keep masks and candidates must be identical, and
// losses, logits, attributions and every gradient agree to rounding. The second step must
// not allocate on the GPU.
template <class T, class Attr>
void step_gpu_vs_cpu(models::EncoderModel<T, Cpu>& cm, models::EncoderModel<T, Cuda>& gm, const models::Batch& batch,
                     std::vector<int> layers, int steps) {
  const double tol = step_tol<T>();
  AdDropOptions options;
  options.p = 0.3;
  options.q = 0.3;
  options.layers = std::move(layers);
  options.steps = 4;
  options.seed = 1234;
  options.record_masks = true;  // the 0/1 masks are compared below (the additive mask is what the step uses)
  AdDrop<Attr, selection::TopP, schedule::Always> rc(options), rg(options);
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
      if (!Attr::is_random) check_close("attribution" + s, down(*gr.attributions[i]), host(c.attributions[i]), tol);
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
  auto run = [&](const char* what, auto tag, std::vector<int> layers) {
    using Attr = decltype(tag);
    section(std::string("step gpu vs cpu ") + layout + " " + what + " " + type_name<T>(), [&] {
      const auto config = io::load_hf_config(g_fixtures / layout);
      const auto weights = io::SafeTensors::load(g_fixtures / layout / "model.safetensors");
      const auto batch = read_fixture_batch(io::SafeTensors::load(g_fixtures / layout / "batch.safetensors"), config);
      models::EncoderModel<T, Cpu> cm(config, cpu);
      models::EncoderModel<T, Cuda> gm(config, gpu);
      io::load_weights(cm, weights, true);
      io::load_weights(gm, weights, true);
      step_gpu_vs_cpu<T, Attr>(cm, gm, batch, layers, 2);
    });
  };
  run("GA layers 0,1", attribution::Gradient{}, {0, 1});
  run("IGA m=4 layer 0", attribution::IntegratedGradients<>{}, {0});
  run("AA layer 1", attribution::Attention{}, {1});
  run("RD layer 0", attribution::Random{}, {0});
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
  auto run = [&](const char* what, auto tag, std::vector<int> layers) {
    using Attr = decltype(tag);
    section(std::string("step gpu vs cpu random L=40 model ") + what + " double", [&] {
      models::EncoderModel<double, Cpu> cm(c, cpu);
      models::EncoderModel<double, Cuda> gm(c, gpu);
      models::init_weights(cm, 5, 0.2);
      models::init_weights(gm, 5, 0.2);
      step_gpu_vs_cpu<double, Attr>(cm, gm, batch, layers, 2);
    });
  };
  run("GA layers 0,2", attribution::Gradient{}, {0, 2});
  run("IGA m=4 layer 1", attribution::IntegratedGradients<>{}, {1});
  run("AA layer 0", attribution::Attention{}, {0});
  run("RD layers 1,2", attribution::Random{}, {1, 2});
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
  section("elementwise, activations, reductions float", test_elementwise<float>);
  section("elementwise, activations, reductions double", test_elementwise<double>);
  section("gemm float", test_gemm<float>);
  section("gemm double", test_gemm<double>);
  section("gemm_batched float", test_gemm_batched<float>);
  section("gemm_batched double", test_gemm_batched<double>);
  section("bias and layer norm float", test_bias_and_layer_norm<float>);
  section("bias and layer norm double", test_bias_and_layer_norm<double>);
  section("attention softmax float", test_softmax<float>);
  section("attention softmax double", test_softmax<double>);
  section("uniform and dropout float", test_random<float>);
  section("uniform and dropout double", test_random<double>);
  section("embeddings float", test_embeddings<float>);
  section("embeddings double", test_embeddings<double>);
  section("losses and adamw float", test_losses<float>);
  section("losses and adamw double", test_losses<double>);
  section("selection float", test_selection<float>);
  section("selection double", test_selection<double>);

  for (const char* name : {"bert_seqcls", "roberta_seqcls", "bert_regression", "bert_token", "electra_seqcls",
                           "electra_token"}) {
    section(std::string("model vs fixture ") + name + " float", [&] { model_vs_fixture<float>(name); });
    section(std::string("model vs fixture ") + name + " double", [&] { model_vs_fixture<double>(name); });
  }
  for (const char* layout : {"bert_seqcls", "roberta_seqcls"}) {
    addrop_fixtures<float>(layout);
    addrop_fixtures<double>(layout);
  }
  steps_on_fixture<float>("bert_seqcls");
  steps_on_fixture<double>("bert_seqcls");
  steps_on_fixture<float>("roberta_seqcls");
  steps_on_random_model();

  gpu = Cuda::Context{};  // release the stream and cuBLAS handle while the CUDA runtime is alive
  std::printf("\n%d checks, %d failed\n", g.checks, g.failures);
  for (const auto& f : g.failed) std::printf("FAILED %s\n", f.c_str());
  return g.failures ? 1 : 0;
}
