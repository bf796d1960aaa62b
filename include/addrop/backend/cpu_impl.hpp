#pragma once
// Definitions of the CPU backend (declared in cpu.hpp, which includes this file last).
#include "cpu.hpp"
#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <unsupported/Eigen/SpecialFunctions>
#include <vector>

namespace addrop::backend {

namespace cpu_detail {
// Elementwise loops smaller than this stay on one thread: the fork costs more.
inline constexpr int64_t kParallelGrain = 1 << 14;

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using ConstMap = Eigen::Map<const RowMat<T>, 0, Eigen::OuterStride<>>;
template <class T>
using MutMap = Eigen::Map<RowMat<T>, 0, Eigen::OuterStride<>>;
template <class T>
using ArrayMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using ConstArrayMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

// Runs fn(begin, end) over [0, n) split in contiguous chunks, one per thread.
template <class Fn>
inline void parallel_chunks(int threads, int64_t n, Fn&& fn) {
  if (threads <= 1 || n < kParallelGrain || omp_in_parallel()) {
    fn(int64_t{0}, n);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t begin = n * t / nt, end = n * (t + 1) / nt;
    if (begin < end) fn(begin, end);
  }
}

// Runs fn(i) for i in [0, n) with `work` elements of work each, threaded when worth it.
template <class Fn>
inline void parallel_for(int threads, int64_t n, int64_t work, Fn&& fn) {
  if (threads <= 1 || n * work < kParallelGrain || n == 1 || omp_in_parallel()) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t i = 0; i < n; ++i) fn(i);
}

// Eigen's packing blocks, held by us: Eigen's GEMM driver is given buffers that live as
// long as the (OpenMP pool) thread, so no GEMM allocates once the largest shape was seen.
template <class T>
class HeldBlocking : public Eigen::internal::level3_blocking<T, T> {
 public:
  HeldBlocking(Eigen::Index rows, Eigen::Index cols, Eigen::Index depth) {
    Eigen::Index k = depth, m = rows, n = cols;
    Eigen::internal::computeProductBlockingSizes<T, T, 1>(k, m, n, Eigen::Index{1});
    this->m_mc = m;
    this->m_nc = n;
    this->m_kc = k;
    thread_local Cpu::Buffer<T> block_a, block_b;
    block_a.reserve(m * k);
    block_b.reserve(k * n);
    this->m_blockA = block_a.data();
    this->m_blockB = block_b.data();
  }
};

// Single-threaded C[M,N] = alpha op(A) op(B) + beta C, row-major. Eigen's kernels are
// column-major, so this computes C^T (col-major [N, M], stride ldc) = op(B)^T op(A)^T,
// where a row-major matrix is the col-major view of its transpose.
template <class T>
inline void gemm_serial(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                        const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  for (int64_t r = 0; r < M; ++r) {
    T* row = C + r * ldc;
    if (beta == T(0)) std::fill(row, row + N, T(0));
    else if (beta != T(1)) for (int64_t c = 0; c < N; ++c) row[c] *= beta;
  }
  if (K == 0) return;
  using Eigen::ColMajor;
  using Eigen::RowMajor;
  using Eigen::internal::general_matrix_matrix_product;
  HeldBlocking<T> blocking(N, M, K);
  // lhs = op(B)^T [N, K]: col-major with stride ldb when B is [K, N] row-major (no transpose).
  if (!tb && !ta)
    general_matrix_matrix_product<Eigen::Index, T, ColMajor, false, T, ColMajor, false, ColMajor, 1>::run(
        N, M, K, B, ldb, A, lda, C, 1, ldc, alpha, blocking, nullptr);
  else if (!tb && ta)
    general_matrix_matrix_product<Eigen::Index, T, ColMajor, false, T, RowMajor, false, ColMajor, 1>::run(
        N, M, K, B, ldb, A, lda, C, 1, ldc, alpha, blocking, nullptr);
  else if (tb && !ta)
    general_matrix_matrix_product<Eigen::Index, T, RowMajor, false, T, ColMajor, false, ColMajor, 1>::run(
        N, M, K, B, ldb, A, lda, C, 1, ldc, alpha, blocking, nullptr);
  else
    general_matrix_matrix_product<Eigen::Index, T, RowMajor, false, T, RowMajor, false, ColMajor, 1>::run(
        N, M, K, B, ldb, A, lda, C, 1, ldc, alpha, blocking, nullptr);
}

// Products of at most this many rows per slice take gemm_few_rows: a decoding step's
// attention, one query per (row, head) slice, or a source's beams against its keys.
inline constexpr int64_t kFewRows = 8;

// Single-threaded C[M,N] = alpha op(A) op(B) + beta C for M <= kFewRows, in plain loops
// that read the operands where they lie: Eigen's GEMM driver (packing, blocking) and the
// bf16 path's packing cost more than such a product, and for a decoder's cached keys and
// values re-packing every step moved the whole cache. `in` is how the product sees an
// input (bf16 rounding, or as is). Each C element is summed by one thread in a fixed order.
template <class T, class In>
inline void gemm_few_rows(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                          const T* B, int64_t ldb, T beta, T* C, int64_t ldc, In in) {
  constexpr int kLanes = 16;  // independent partial sums, which the compiler vectorises
  thread_local std::vector<T> a_rows, sums;
  a_rows.resize(static_cast<std::size_t>(M * K));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k) a_rows[m * K + k] = in(ta ? A[k * lda + m] : A[m * lda + k]);
  auto finish = [&](T* c, int64_t n, T s) { c[n] = alpha * s + (beta == T(0) ? T(0) : beta * c[n]); };
  if (tb) {  // C[m, n] = <a_m, B[n, :]>, contiguous in k; each row of B read once
    for (int64_t n = 0; n < N; ++n) {
      const T* b = B + n * ldb;
      for (int64_t m = 0; m < M; ++m) {
        const T* a = a_rows.data() + m * K;
        T part[kLanes] = {};
        int64_t k = 0;
        for (; k + kLanes <= K; k += kLanes)
          for (int j = 0; j < kLanes; ++j) part[j] += a[k + j] * in(b[k + j]);
        T s = 0;
        for (; k < K; ++k) s += a[k] * in(b[k]);
        for (int j = 0; j < kLanes; ++j) s += part[j];
        finish(C + m * ldc, n, s);
      }
    }
  } else {  // C[m, :] = sum_k a_m[k] B[k, :], contiguous in n; each row of B read once
    sums.assign(static_cast<std::size_t>(M * N), T(0));
    for (int64_t k = 0; k < K; ++k) {
      const T* b = B + k * ldb;
      for (int64_t m = 0; m < M; ++m) {
        const T ak = a_rows[m * K + k];
        T* acc = sums.data() + m * N;
        for (int64_t n = 0; n < N; ++n) acc[n] += ak * in(b[n]);
      }
    }
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) finish(C + m * ldc, n, sums[m * N + n]);
  }
}

inline double normal_cdf(double x) { return 0.5 * std::erfc(-x * M_SQRT1_2); }
}  // namespace cpu_detail
}  // namespace addrop::backend

// The bf16 products use the loops above; Cpu::gemm below dispatches to them.
#include "cpu_bf16.hpp"

namespace addrop::backend {

inline int Cpu::Context::num_threads() const { return threads > 0 ? threads : omp_get_max_threads(); }

template <class T>
void Cpu::copy_plain(int64_t n, const T* x, T* y) {
  if (n > 0 && x != y) std::memcpy(y, x, static_cast<std::size_t>(n) * sizeof(T));
}

template <class T>
void Cpu::fill(const Context& ctx, int64_t n, T value, T* x) {
  cpu_detail::parallel_chunks(ctx.num_threads(), n, [&](int64_t b, int64_t e) { std::fill(x + b, x + e, value); });
}

template <class T>
void Cpu::copy(const Context& ctx, int64_t n, const T* x, T* y) {
  if (x == y) return;
  cpu_detail::parallel_chunks(ctx.num_threads(), n, [&](int64_t b, int64_t e) { copy_plain(e - b, x + b, y + b); });
}

template <class T>
void Cpu::axpby(const Context& ctx, int64_t n, T a, const T* x, T b, T* y) {
  cpu_detail::parallel_chunks(ctx.num_threads(), n, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) y[i] = a * x[i] + b * y[i];
  });
}

template <class T>
void Cpu::add(const Context& ctx, int64_t n, const T* a, const T* b, T* out) {
  cpu_detail::parallel_chunks(ctx.num_threads(), n, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) out[i] = a[i] + b[i];
  });
}

template <class T>
void Cpu::scale(const Context& ctx, int64_t n, T a, T* x) {
  cpu_detail::parallel_chunks(ctx.num_threads(), n, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) x[i] *= a;
  });
}

template <class T>
void Cpu::gemm(const Context& ctx, bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
               int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  if constexpr (std::is_same_v<T, float>)
    if (ctx.precision == Precision::Bf16Mixed) {
      cpu_detail::gemm_bf16(ctx, ta, tb, M, N, K, alpha, {A, ta ? K : M, ta ? M : K, lda, 0, 0},
                            {B, tb ? N : K, tb ? K : N, ldb, 0, 0}, beta, C, ldc, {M * ldc, M * ldc}, 1, 1);
      return;
    }
  const int threads = ctx.num_threads();
  if (M <= cpu_detail::kFewRows) {
    // The loops gemm_batched runs for slices of few rows, so that a batched product equals a
    // loop of single ones; threads take column blocks (each element summed by one thread).
    cpu_detail::parallel_chunks(M * N * K < (int64_t{1} << 16) ? 1 : threads, N, [&](int64_t c0, int64_t c1) {
      cpu_detail::gemm_few_rows(ta, tb, M, c1 - c0, K, alpha, A, lda, tb ? B + c0 * ldb : B + c0, ldb, beta, C + c0,
                                ldc, [](T x) { return x; });
    });
    return;
  }
  // Threads take contiguous row blocks of C (rows of op(A)); each packs op(B) itself, which
  // costs K*N per thread against M*N*K/threads of arithmetic.
  if (threads <= 1 || M * N * K < (int64_t{1} << 20) || omp_in_parallel() || (M < 64 && N < 64 * threads)) {
    cpu_detail::gemm_serial(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  if (M < 64 || (M <= 128 && N >= 8 * M)) {
    // Few rows and many columns (a decoding step's output projection: beams x vocabulary):
    // threads take contiguous column blocks of C instead, each packing all of op(A), the
    // smaller operand, instead of each packing the whole op(B). Measured on the 59.5k x 512
    // projection (2 threads): 10-14 % faster at 128 rows (beam 4 x 32 sentences), 7-14 %
    // slower at 512 rows, where the row split stays.
#pragma omp parallel num_threads(threads)
    {
      const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
      const int64_t blocks = (N + 15) / 16;
      const int64_t c0 = std::min(N, blocks * t / nt * 16), c1 = std::min(N, blocks * (t + 1) / nt * 16);
      if (c0 < c1) {
        const T* b = tb ? B + c0 * ldb : B + c0;
        cpu_detail::gemm_serial(ta, tb, M, c1 - c0, K, alpha, A, lda, b, ldb, beta, C + c0, ldc);
      }
    }
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    // Row blocks in multiples of 16 keep the kernels' register tiles whole.
    const int64_t blocks = (M + 15) / 16;
    const int64_t r0 = std::min(M, blocks * t / nt * 16), r1 = std::min(M, blocks * (t + 1) / nt * 16);
    if (r0 < r1) {
      const T* a = ta ? A + r0 : A + r0 * lda;
      cpu_detail::gemm_serial(ta, tb, r1 - r0, N, K, alpha, a, lda, B, ldb, beta, C + r0 * ldc, ldc);
    }
  }
}

template <class T>
void Cpu::gemm_batched(const Context& ctx, bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                       int64_t lda, BatchStrides sa, const T* B, int64_t ldb, BatchStrides sb, T beta, T* C,
                       int64_t ldc, BatchStrides sc, int64_t outer, int64_t inner) {
  if constexpr (std::is_same_v<T, float>)
    if (ctx.precision == Precision::Bf16Mixed) {
      cpu_detail::gemm_bf16(ctx, ta, tb, M, N, K, alpha, {A, ta ? K : M, ta ? M : K, lda, sa.outer, sa.inner},
                            {B, tb ? N : K, tb ? K : N, ldb, sb.outer, sb.inner}, beta, C, ldc, sc, outer, inner);
      return;
    }
  const bool few_rows = M <= cpu_detail::kFewRows && N > 0;
  cpu_detail::parallel_for(ctx.num_threads(), outer * inner, M * N * K, [&](int64_t p) {
    const int64_t o = p / inner, i = p % inner;
    const T *a = A + o * sa.outer + i * sa.inner, *b = B + o * sb.outer + i * sb.inner;
    T* c = C + o * sc.outer + i * sc.inner;
    if (few_rows)
      cpu_detail::gemm_few_rows(ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc, [](T x) { return x; });
    else
      cpu_detail::gemm_serial(ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
  });
}

template <class T>
void Cpu::add_bias(const Context& ctx, int64_t rows, int64_t cols, const T* bias, T* y) {
  cpu_detail::parallel_for(ctx.num_threads(), rows, cols, [&](int64_t r) {
    T* row = y + r * cols;
    for (int64_t c = 0; c < cols; ++c) row[c] += bias[c];
  });
}

template <class T>
void Cpu::bias_backward(const Context& ctx, int64_t rows, int64_t cols, const T* dy, T* dbias) {
  // Columns split across threads; each thread walks all rows of its column range.
  const int threads = (rows * cols < cpu_detail::kParallelGrain) ? 1 : ctx.num_threads();
  cpu_detail::parallel_chunks(threads, cols, [&](int64_t c0, int64_t c1) {
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = dy + r * cols;
      for (int64_t c = c0; c < c1; ++c) dbias[c] += row[c];
    }
  });
}

template <class T>
void Cpu::gelu_forward(const Context& ctx, int64_t n, const T* x, T* y) {
  cpu_detail::parallel_chunks(ctx.num_threads(), n, [&](int64_t s, int64_t e) {
    const cpu_detail::ConstArrayMap<T> xs(x + s, e - s);
    cpu_detail::ArrayMap<T> ys(y + s, e - s);
    ys = T(0.5) * xs * (T(1) + (xs * T(M_SQRT1_2)).erf());
  });
}

template <class T>
void Cpu::gelu_backward(const Context& ctx, int64_t n, const T* x, const T* dy, T* dx) {
  cpu_detail::parallel_chunks(ctx.num_threads(), n, [&](int64_t s, int64_t e) {
    const cpu_detail::ConstArrayMap<T> xs(x + s, e - s), dys(dy + s, e - s);
    cpu_detail::ArrayMap<T> dxs(dx + s, e - s);
    const T inv_sqrt_2pi = T(0.3989422804014326779399460599343818684758586311649);
    dxs = dys * (T(0.5) * (T(1) + (xs * T(M_SQRT1_2)).erf()) + xs * inv_sqrt_2pi * (T(-0.5) * xs * xs).exp());
  });
}

template <class T>
void Cpu::tanh_forward(const Context& ctx, int64_t n, const T* x, T* y) {
  cpu_detail::parallel_chunks(ctx.num_threads(), n, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) y[i] = std::tanh(x[i]);
  });
}

template <class T>
void Cpu::tanh_backward(const Context& ctx, int64_t n, const T* y, const T* dy, T* dx) {
  cpu_detail::parallel_chunks(ctx.num_threads(), n, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) dx[i] = dy[i] * (T(1) - y[i] * y[i]);
  });
}

template <class T>
void Cpu::silu_forward(const Context& ctx, int64_t n, const T* x, T* y) {
  cpu_detail::parallel_chunks(ctx.num_threads(), n, [&](int64_t s, int64_t e) {
    const cpu_detail::ConstArrayMap<T> xs(x + s, e - s);
    cpu_detail::ArrayMap<T> ys(y + s, e - s);
    ys = xs / (T(1) + (-xs).exp());
  });
}

template <class T>
void Cpu::silu_backward(const Context& ctx, int64_t n, const T* x, const T* dy, T* dx) {
  cpu_detail::parallel_chunks(ctx.num_threads(), n, [&](int64_t s, int64_t e) {
    const cpu_detail::ConstArrayMap<T> xs(x + s, e - s), dys(dy + s, e - s);
    cpu_detail::ArrayMap<T> dxs(dx + s, e - s);
    const auto sig = T(1) / (T(1) + (-xs).exp());
    dxs = dys * sig * (T(1) + xs * (T(1) - sig));
  });
}

template <class T>
void Cpu::relu_forward(const Context& ctx, int64_t n, const T* x, T* y) {
  cpu_detail::parallel_chunks(ctx.num_threads(), n, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) y[i] = x[i] > T(0) ? x[i] : T(0);
  });
}

template <class T>
void Cpu::relu_backward(const Context& ctx, int64_t n, const T* x, const T* dy, T* dx) {
  cpu_detail::parallel_chunks(ctx.num_threads(), n, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) dx[i] = x[i] > T(0) ? dy[i] : T(0);
  });
}

template <class T>
void Cpu::layer_norm_forward(const Context& ctx, int64_t rows, int64_t cols, T eps, const T* x, const T* gamma,
                             const T* beta, T* y, T* mean, T* rstd) {
  cpu_detail::parallel_for(ctx.num_threads(), rows, cols, [&](int64_t r) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    T m = 0;
    for (int64_t c = 0; c < cols; ++c) m += xr[c];
    m /= T(cols);
    T v = 0;
    for (int64_t c = 0; c < cols; ++c) v += (xr[c] - m) * (xr[c] - m);
    v /= T(cols);  // biased variance, as torch.nn.LayerNorm
    const T s = T(1) / std::sqrt(v + eps);
    for (int64_t c = 0; c < cols; ++c) yr[c] = (xr[c] - m) * s * gamma[c] + beta[c];
    mean[r] = m;
    rstd[r] = s;
  });
}

template <class T>
void Cpu::layer_norm_backward(const Context& ctx, int64_t rows, int64_t cols, const T* dy, const T* x,
                              const T* mean, const T* rstd, const T* gamma, T* dx, bool accumulate_dx, T* dgamma,
                              T* dbeta) {
  if (dgamma || dbeta) {
    const int threads = (rows * cols < cpu_detail::kParallelGrain) ? 1 : ctx.num_threads();
    cpu_detail::parallel_chunks(threads, cols, [&](int64_t c0, int64_t c1) {
      for (int64_t r = 0; r < rows; ++r) {
        const T* xr = x + r * cols;
        const T* dyr = dy + r * cols;
        for (int64_t c = c0; c < c1; ++c) {
          if (dgamma) dgamma[c] += dyr[c] * (xr[c] - mean[r]) * rstd[r];
          if (dbeta) dbeta[c] += dyr[c];
        }
      }
    });
  }
  if (!dx) return;
  cpu_detail::parallel_for(ctx.num_threads(), rows, cols, [&](int64_t r) {
    const T* xr = x + r * cols;
    const T* dyr = dy + r * cols;
    T* dxr = dx + r * cols;
    const T m = mean[r], s = rstd[r];
    T mean_g = 0, mean_gx = 0;  // means of g = dy*gamma and of g*xhat
    for (int64_t c = 0; c < cols; ++c) {
      const T g = dyr[c] * gamma[c];
      mean_g += g;
      mean_gx += g * (xr[c] - m) * s;
    }
    mean_g /= T(cols);
    mean_gx /= T(cols);
    for (int64_t c = 0; c < cols; ++c) {
      const T xhat = (xr[c] - m) * s;
      const T v = s * (dyr[c] * gamma[c] - mean_g - xhat * mean_gx);
      dxr[c] = accumulate_dx ? dxr[c] + v : v;
    }
  });
}

namespace cpu_detail {
// Row-wise exponentials and sums that do not depend on where the row lies in memory: every
// element goes through Eigen's packet exp (an Eigen expression would peel an unaligned head
// off to std::exp, which differs in the last bit, and would sum in an order that depends on
// the alignment), the tail through one padded packet; sums add packets from index 0, then
// the packet's lanes, then the tail, always in that order. So a row gives the same bits in
// place or not, in any shard of a batch, at any thread count.
template <class T>
struct RowPackets {
  using Packet = typename Eigen::internal::packet_traits<T>::type;
  static constexpr int64_t width = Eigen::internal::unpacket_traits<Packet>::size;
  static Packet exp_at(const T* x, Packet shift) {
    return Eigen::internal::pexp(Eigen::internal::psub(Eigen::internal::ploadu<Packet>(x), shift));
  }
  // exp(x[i] - shift) for the last r < width elements, padded with x = shift
  static Packet exp_tail(const T* x, int64_t r, T shift) {
    alignas(64) T padded[width];
    for (int64_t i = 0; i < width; ++i) padded[i] = i < r ? x[i] : shift;
    return exp_at(padded, Eigen::internal::pset1<Packet>(shift));
  }
};

/// y[i] = exp(x[i] - shift), i < n (y may be x).
template <class T>
inline void exp_shifted(const T* x, T shift, T* y, int64_t n) {
  using P = RowPackets<T>;
  const auto s = Eigen::internal::pset1<typename P::Packet>(shift);
  int64_t i = 0;
  for (; i + P::width <= n; i += P::width) Eigen::internal::pstoreu(y + i, P::exp_at(x + i, s));
  if (i < n) {
    alignas(64) T out[P::width];
    Eigen::internal::pstore(out, P::exp_tail(x + i, n - i, shift));
    std::copy(out, out + (n - i), y + i);
  }
}

/// sum of exp(x[i] - shift), i < n, in the fixed order above.
template <class T>
inline T sum_exp_shifted(const T* x, T shift, int64_t n) {
  using P = RowPackets<T>;
  const auto s = Eigen::internal::pset1<typename P::Packet>(shift);
  auto acc = Eigen::internal::pset1<typename P::Packet>(T(0));
  int64_t i = 0;
  for (; i + P::width <= n; i += P::width) acc = Eigen::internal::padd(acc, P::exp_at(x + i, s));
  T total = Eigen::internal::predux(acc);
  if (i < n) {
    alignas(64) T out[P::width];
    Eigen::internal::pstore(out, P::exp_tail(x + i, n - i, shift));
    for (int64_t j = 0; j < n - i; ++j) total += out[j];
  }
  return total;
}

/// sum of x[i], i < n, in the fixed order above.
template <class T>
inline T sum_row(const T* x, int64_t n) {
  using P = RowPackets<T>;
  auto acc = Eigen::internal::pset1<typename P::Packet>(T(0));
  int64_t i = 0;
  for (; i + P::width <= n; i += P::width) acc = Eigen::internal::padd(acc, Eigen::internal::ploadu<typename P::Packet>(x + i));
  T total = Eigen::internal::predux(acc);
  for (; i < n; ++i) total += x[i];
  return total;
}

// Results below the normal range set to 0: Eigen's exp clamps its input, so exp(-10000)
// comes out 3e-39 where std::exp and torch give 0, and a masked key would keep a (tiny)
// probability.
template <class T>
inline void flush_below_normal(T* v, int64_t n) {
  const T smallest = std::numeric_limits<T>::min();
  for (int64_t i = 0; i < n; ++i) v[i] = v[i] < smallest ? T(0) : v[i];
}

// A row's additive masks summed (key bias + extra), or the one that is present, or null.
template <class T>
inline const T* row_mask(const T* key_bias, const T* extra, int64_t n) {
  if (!key_bias || !extra) return key_bias ? key_bias : extra;
  thread_local std::vector<T> sum;  // grow-only: no allocation once the longest row was seen
  if (static_cast<int64_t>(sum.size()) < n) sum.resize(static_cast<std::size_t>(n));
  ArrayMap<T>(sum.data(), n) = ConstArrayMap<T>(key_bias, n) + ConstArrayMap<T>(extra, n);
  return sum.data();
}
}  // namespace cpu_detail

template <class T>
void Cpu::attention_softmax_forward(const Context& ctx, int64_t B, int64_t H, int64_t Lq, int64_t Lk, T scale,
                                    const T* scores, const T* key_bias, const T* extra, bool causal, T* probs) {
  using cpu_detail::ArrayMap;
  using cpu_detail::ConstArrayMap;
  cpu_detail::parallel_for(ctx.num_threads(), B * H * Lq, Lk * 8, [&](int64_t row) {
    const int64_t b = row / (H * Lq);
    T* p = probs + row * Lk;
    // Causal rows attend to keys 0..visible-1 only; the rest are exactly 0 (as exp of a
    // -inf-like additive mask in the reference).
    const int64_t visible = causal ? std::min<int64_t>(Lk, row % Lq + 1 + (Lk - Lq)) : Lk;
    ArrayMap<T> pv(p, visible);
    pv = scale * ConstArrayMap<T>(scores + row * Lk, visible);
    // The additive masks (0, -10000, -20000: exact) are kept apart from the scaled scores so
    // that a row whose keys are all masked keeps full precision: exp((a_j - a_m) + (s_j - s_m))
    // around the row's maximum m, instead of rounding s_j + -10000 first.
    const T* a = cpu_detail::row_mask(key_bias ? key_bias + b * Lk : nullptr, extra ? extra + row * Lk : nullptr,
                                      visible);
    int64_t best = 0;
    T best_value = -std::numeric_limits<T>::infinity();
    for (int64_t j = 0; j < visible; ++j) {
      const T v = (a ? a[j] : T(0)) + p[j];
      if (v > best_value) { best_value = v; best = j; }
    }
    const T s_best = p[best];
    if (a) pv = (ConstArrayMap<T>(a, visible) - a[best]) + (pv - s_best);
    else pv -= s_best;
    cpu_detail::exp_shifted(p, T(0), p, visible);
    cpu_detail::flush_below_normal(p, visible);
    pv *= T(1) / cpu_detail::sum_row(p, visible);
    std::fill(p + visible, p + Lk, T(0));
  });
}

template <class T>
void Cpu::softmax_backward(const Context& ctx, int64_t rows, int64_t L, T scale, const T* probs, const T* dprobs,
                           T* dscores) {
  cpu_detail::parallel_for(ctx.num_threads(), rows, L * 4, [&](int64_t r) {
    const T* p = probs + r * L;
    const T* dp = dprobs + r * L;
    T* ds = dscores + r * L;
    T dot = 0;
    for (int64_t j = 0; j < L; ++j) dot += p[j] * dp[j];
    for (int64_t j = 0; j < L; ++j) ds[j] = scale * p[j] * (dp[j] - dot);
  });
}

namespace cpu_detail {
// f(i, draw first + i of (seed, stream)) for i in [0, n), over the threads in whole
// Philox blocks (four draws each); `first` need not be a multiple of four.
template <class F>
void for_each_draw(const Cpu::Context& ctx, int64_t n, uint64_t seed, uint64_t stream, int64_t first, F&& f) {
  if (n <= 0) return;
  const int64_t g_first = first >> 2, g_last = (first + n - 1) >> 2;
  parallel_chunks(ctx.num_threads(), g_last - g_first + 1, [&](int64_t c0, int64_t c1) {
    uint32_t w[4];
    for (int64_t g = g_first + c0; g < g_first + c1; ++g) {
      random::Philox4x32::generate(seed, static_cast<uint64_t>(g), stream, w);
      for (int k = 0; k < 4; ++k) {
        const int64_t i = g * 4 + k - first;
        if (i >= 0 && i < n) f(i, random::to_unit_float(w[k]));
      }
    }
  });
}
}  // namespace cpu_detail

template <class T>
void Cpu::uniform(const Context& ctx, int64_t n, uint64_t seed, uint64_t stream, T* out, int64_t first) {
  cpu_detail::for_each_draw(ctx, n, seed, stream, first,
                            [&](int64_t i, float u) { out[i] = static_cast<T>(u); });
}

template <class T>
void Cpu::dropout_forward(const Context& ctx, int64_t n, float p, uint64_t seed, uint64_t stream, const T* x, T* y,
                          int64_t first) {
  if (p <= 0.0f) { copy(ctx, n, x, y); return; }
  const T keep_scale = T(1) / (T(1) - T(p));
  cpu_detail::for_each_draw(ctx, n, seed, stream, first,
                            [&](int64_t i, float u) { y[i] = u >= p ? x[i] * keep_scale : T(0); });
}

template <class T>
void Cpu::dropout_backward(const Context& ctx, int64_t n, float p, uint64_t seed, uint64_t stream, const T* dy,
                           T* dx, bool accumulate, int64_t first) {
  if (p <= 0.0f) {
    if (accumulate) axpby(ctx, n, T(1), dy, T(1), dx); else copy(ctx, n, dy, dx);
    return;
  }
  const T keep_scale = T(1) / (T(1) - T(p));
  cpu_detail::for_each_draw(ctx, n, seed, stream, first, [&](int64_t i, float u) {
    const T v = u >= p ? dy[i] * keep_scale : T(0);
    dx[i] = accumulate ? dx[i] + v : v;
  });
}

template <class T>
void Cpu::embedding_forward(const Context& ctx, int64_t tokens, int64_t dim, const int32_t* ids, const T* table,
                            T* out, bool accumulate) {
  cpu_detail::parallel_for(ctx.num_threads(), tokens, dim, [&](int64_t t) {
    const T* row = table + static_cast<int64_t>(ids[t]) * dim;
    T* o = out + t * dim;
    if (accumulate) for (int64_t c = 0; c < dim; ++c) o[c] += row[c];
    else std::memcpy(o, row, static_cast<std::size_t>(dim) * sizeof(T));
  });
}

template <class T>
void Cpu::embedding_backward(const Context& ctx, int64_t tokens, int64_t dim, const int32_t* ids, const T* dout,
                             T* dtable, int64_t padding_idx) {
  // Column ranges per thread: no two threads ever touch the same element, whatever the ids.
  const int threads = (tokens * dim < cpu_detail::kParallelGrain) ? 1 : ctx.num_threads();
  cpu_detail::parallel_chunks(threads, dim, [&](int64_t c0, int64_t c1) {
    for (int64_t t = 0; t < tokens; ++t) {
      if (ids[t] == padding_idx) continue;
      T* row = dtable + static_cast<int64_t>(ids[t]) * dim;
      const T* d = dout + t * dim;
      for (int64_t c = c0; c < c1; ++c) row[c] += d[c];
    }
  });
}

template <class T>
double Cpu::cross_entropy(const Context& ctx, int64_t rows, int64_t classes, const T* logits, const int32_t* labels,
                          int32_t ignore_index, T label_smoothing, T* dlogits, int64_t denominator) {
  int64_t counted = 0;
  for (int64_t r = 0; r < rows; ++r) counted += labels[r] != ignore_index;
  if (denominator > 0) counted = denominator;
  const T eps = label_smoothing, uniform_weight = label_smoothing / static_cast<T>(classes);
  // Per-row losses summed afterwards in row order (the same total for any thread count);
  // the buffer only grows, so a training step allocates nothing once it has seen its shape.
  thread_local std::vector<double> row_loss;
  if (row_loss.size() < static_cast<std::size_t>(rows)) row_loss.resize(static_cast<std::size_t>(rows));
  std::fill(row_loss.begin(), row_loss.begin() + rows, 0.0);
  double* const losses = row_loss.data();  // the calling thread's buffer, written by every worker
  // Rows are independent (a seq2seq batch has thousands of rows of a large vocabulary).
  cpu_detail::parallel_for(ctx.num_threads(), rows, classes * 8, [&](int64_t r) {
    const T* z = logits + r * classes;
    T* dz = dlogits ? dlogits + r * classes : nullptr;
    if (labels[r] == ignore_index) {
      if (dz) std::fill(dz, dz + classes, T(0));
      return;
    }
    const T mx = cpu_detail::ConstArrayMap<T>(z, classes).maxCoeff();
    const T log_z = mx + std::log(cpu_detail::sum_exp_shifted(z, mx, classes));
    double loss = static_cast<double>(log_z - z[labels[r]]);
    if (eps != T(0))  // mean_c -log p[c] = log_z - mean_c z[c]
      loss = (1.0 - static_cast<double>(eps)) * loss +
             static_cast<double>(eps) * static_cast<double>(log_z - cpu_detail::sum_row(z, classes) / static_cast<T>(classes));
    losses[r] = loss;
    if (dz) {
      const T inv = T(1) / T(counted);
      cpu_detail::ArrayMap<T> dzs(dz, classes);
      cpu_detail::exp_shifted(z, log_z, dz, classes);  // p
      dz[labels[r]] -= T(1) - eps;
      dzs = (dzs - uniform_weight) * inv;
    }
  });
  double total = 0;
  for (int64_t r = 0; r < rows; ++r) total += losses[r];
  return counted ? total / static_cast<double>(counted) : 0.0;
}

template <class T>
double Cpu::mse(const Context&, int64_t n, const T* pred, const T* target, T* dpred, int64_t denominator) {
  const int64_t count = denominator > 0 ? denominator : n;
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    const T d = pred[i] - target[i];
    total += static_cast<double>(d) * static_cast<double>(d);
    if (dpred) dpred[i] = T(2) * d / T(count);
  }
  return count ? total / static_cast<double>(count) : 0.0;
}

namespace cpu_detail {
// Reductions in fixed blocks (partial sums in double, added in block order): vectorised,
// spread over the threads, and the same result for any thread count.
constexpr int64_t kReduceBlock = 1 << 14;

template <class T, class BlockFn>
double blocked_reduce(int threads, int64_t n, BlockFn&& block_sum) {
  const int64_t blocks = (n + kReduceBlock - 1) / kReduceBlock;
  if (blocks <= 1) return n > 0 ? block_sum(int64_t{0}, n) : 0.0;
  thread_local std::vector<double> partial;  // grow-only: no allocation in steady state
  if (static_cast<int64_t>(partial.size()) < blocks) partial.resize(static_cast<std::size_t>(blocks));
  double* out = partial.data();
  parallel_for(threads, blocks, kReduceBlock, [&](int64_t b) {
    const int64_t begin = b * kReduceBlock;
    out[b] = block_sum(begin, std::min(n, begin + kReduceBlock));
  });
  double s = 0;
  for (int64_t b = 0; b < blocks; ++b) s += out[b];
  return s;
}
}  // namespace cpu_detail

template <class T>
double Cpu::sum_squares(const Context& ctx, int64_t n, const T* x) {
  return cpu_detail::blocked_reduce<T>(ctx.num_threads(), n, [x](int64_t begin, int64_t end) {
    return Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(x + begin, end - begin).template cast<double>().square().sum();
  });
}

template <class T>
void Cpu::mul(const Context& ctx, int64_t n, const T* a, const T* b, T* out) {
  cpu_detail::parallel_chunks(ctx.num_threads(), n, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) out[i] = a[i] * b[i];
  });
}

namespace cpu_detail {
// Selection keys: a float's bits as a signed integer whose order is the float order
// (negative values have their magnitude bits flipped; -0 sorts just below +0, NaN is not
// supported). float -> int32_t, double -> int64_t.
template <class T>
struct OrderedKey;
template <>
struct OrderedKey<float> { using type = int32_t; };
template <>
struct OrderedKey<double> { using type = int64_t; };

template <class T>
inline typename OrderedKey<T>::type ordered_key(T x) {
  using I = typename OrderedKey<T>::type;
  I b;
  std::memcpy(&b, &x, sizeof b);
  return b ^ ((b >> (8 * sizeof(I) - 1)) & std::numeric_limits<I>::max());
}
template <class T>
inline T from_ordered_key(typename OrderedKey<T>::type key) {
  using I = typename OrderedKey<T>::type;
  const I b = key ^ ((key >> (8 * sizeof(I) - 1)) & std::numeric_limits<I>::max());
  T x;
  std::memcpy(&x, &b, sizeof x);
  return x;
}

// The k-th smallest (0-based, 0 <= k < n) of keys[0..n): the largest v with #{key < v} <= k,
// built bit by bit from the top (a branch-free, vectorisable count per bit). It stops early
// once the range [v, v + 2^(bit+1)) still open holds a single key: that key is the answer.
// Same value as std::nth_element's, in a quarter of its time for rows of ~100 keys.
template <class I>
inline I kth_smallest_key(const I* keys, int64_t n, int64_t k) {
  using U = std::make_unsigned_t<I>;
  constexpr int kBits = 8 * sizeof(I);
  constexpr U kFlip = U(1) << (kBits - 1);  // signed order <-> unsigned order
  U prefix = 0;
  int64_t lo = 0, hi = n;  // #{key < prefix}, #{key < prefix + 2^(bit+1)}
  for (int bit = kBits - 1; bit >= 0; --bit) {
    if (hi - lo == 1) {
      const I first = static_cast<I>(prefix ^ kFlip);
      const I last = static_cast<I>((prefix + ((U(2) << bit) - 1)) ^ kFlip);
      I found = first;
      for (int64_t j = 0; j < n; ++j) found = keys[j] >= first && keys[j] <= last ? keys[j] : found;
      return found;
    }
    const U trial = prefix | (U(1) << bit);
    const I bound = static_cast<I>(trial ^ kFlip);
    I count = 0;  // the key type keeps the count loop in one vector width
    for (int64_t j = 0; j < n; ++j) count += keys[j] < bound;
    const bool below = count <= k;  // selects, not a branch: its outcome is a coin flip
    prefix = below ? trial : prefix;
    lo = below ? count : lo;
    hi = below ? hi : count;
  }
  return static_cast<I>(prefix ^ kFlip);
}

// Scratch for one row (its keys, its draws): on the stack up to kStackRow elements, else
// per-thread vectors that grow once (no allocation inside a step once the longest row was
// seen).
inline constexpr int64_t kStackRow = 1024;

// The draws of elements [base, base + L) of the stream (seed, stream), written to out[0..L):
// whole Philox blocks in a tight loop (as uniform() makes them), shifted by base % 4.
// `scratch` holds L + 8 floats.
inline const float* row_draws(uint64_t seed, uint64_t stream, int64_t base, int64_t L, float* scratch) {
  const int64_t first = base >> 2, last = (base + L - 1) >> 2;
  uint32_t w[4];
  for (int64_t g = first; g <= last; ++g) {
    random::Philox4x32::generate(seed, static_cast<uint64_t>(g), stream, w);
    float* o = scratch + 4 * (g - first);
    for (int q = 0; q < 4; ++q) o[q] = random::to_unit_float(w[q]);
  }
  return scratch + (base & 3);
}

// A row's scratch: keys and one or two draw rows.
template <class I>
class RowScratch {
 public:
  explicit RowScratch(int64_t L) {
    if (L <= kStackRow) return;
    thread_local std::vector<I> heap_keys;
    thread_local std::vector<float> heap_draws;
    if (static_cast<int64_t>(heap_keys.size()) < L) heap_keys.resize(static_cast<std::size_t>(L));
    if (static_cast<int64_t>(heap_draws.size()) < 2 * (L + 8)) heap_draws.resize(static_cast<std::size_t>(2 * (L + 8)));
    keys_ = heap_keys.data();
    draws_ = heap_draws.data();
    stride_ = L + 8;
  }
  I* keys() { return keys_; }
  float* draws(int which) { return draws_ + which * stride_; }

 private:
  I stack_keys_[kStackRow];
  float stack_draws_[2 * (kStackRow + 8)];
  I* keys_ = stack_keys_;
  float* draws_ = stack_draws_;
  int64_t stride_ = kStackRow + 8;
};

// Writes one element's outputs that are asked for.
template <class T>
inline void put_selection(int64_t j, bool candidate, bool kept, T dropped_value, T* additive, T* candidates,
                          T* keep) {
  if (additive) additive[j] = kept ? T(0) : dropped_value;
  if (candidates) candidates[j] = candidate ? T(1) : T(0);
  if (keep) keep[j] = kept ? T(1) : T(0);
}

// One row's outputs from its candidate flags cand(j) and its draws d: kept iff not a
// candidate or d[j] < keep_below. Branch-free loops; the training step's case (additive
// mask alone) has its own.
template <class T, class Candidate>
inline void write_row(int64_t L, Candidate cand, const float* d, float keep_below, T dropped_value, T* a, T* c,
                      T* kp) {
  if (a && !c && !kp) {
    for (int64_t j = 0; j < L; ++j) a[j] = !cand(j) || d[j] < keep_below ? T(0) : dropped_value;
    return;
  }
  for (int64_t j = 0; j < L; ++j) {
    const bool candidate = cand(j);
    put_selection(j, candidate, !candidate || d[j] < keep_below, dropped_value, a, c, kp);
  }
}
}  // namespace cpu_detail

template <class T>
void Cpu::select_top_p(const Context& ctx, int64_t B, int64_t H, int64_t Lq, int64_t Lk, const T* scores,
                       const int32_t* key_mask, const int64_t* k, bool high, const float* u, uint64_t seed,
                       uint64_t stream, float keep_below, T dropped_value, T* additive, T* candidates, T* keep,
                       int64_t first_draw) {
  using I = typename cpu_detail::OrderedKey<T>::type;
  if (B <= 0 || H <= 0 || Lq <= 0 || Lk <= 0) return;
  const int64_t rows_per_example = H * Lq;
  cpu_detail::parallel_for(ctx.num_threads(), B * rows_per_example, Lk * 16, [&](int64_t row) {
    const int64_t b = row / rows_per_example, base = row * Lk;
    const int32_t* mask = key_mask + b * Lk;
    const T* s = scores + base;
    cpu_detail::RowScratch<I> scratch(Lk);
    I* keys = scratch.keys();
    int64_t n = 0;  // the non-pad keys
    for (int64_t j = 0; j < Lk; ++j) n += mask[j] != 0;
    if (n == Lk) {
      for (int64_t j = 0; j < Lk; ++j) keys[j] = cpu_detail::ordered_key(s[j]);
    } else {
      for (int64_t j = 0, m = 0; j < Lk; ++j) {  // gathered without a branch
        keys[m] = cpu_detail::ordered_key(s[j]);
        m += mask[j] != 0;
      }
    }
    T* a = additive ? additive + base : nullptr;
    T* c = candidates ? candidates + base : nullptr;
    T* kp = keep ? keep + base : nullptr;
    // k >= n (p = 0 for High) or an all-pad row: High has no candidates, Low every key.
    const bool have_threshold = n > 0 && k[b] < n;
    if (!have_threshold && high) {  // nothing to draw
      for (int64_t j = 0; j < Lk; ++j) cpu_detail::put_selection(j, false, true, dropped_value, a, c, kp);
      return;
    }
    const float* d = u ? u + base : cpu_detail::row_draws(seed, stream, first_draw + base, Lk, scratch.draws(0));
    if (!have_threshold) {
      cpu_detail::write_row(Lk, [&](int64_t j) { return mask[j] != 0; }, d, keep_below, dropped_value, a, c, kp);
      return;
    }
    // The comparison is on the values (-0 == +0), not on the keys.
    const T t = cpu_detail::from_ordered_key<T>(cpu_detail::kth_smallest_key(keys, n, k[b]));
    if (high)
      cpu_detail::write_row(Lk, [&](int64_t j) { return (mask[j] != 0) & (s[j] >= t); }, d, keep_below,
                            dropped_value, a, c, kp);
    else
      cpu_detail::write_row(Lk, [&](int64_t j) { return (mask[j] != 0) & (s[j] < t); }, d, keep_below,
                            dropped_value, a, c, kp);
  });
}

template <class T>
void Cpu::select_random(const Context& ctx, int64_t B, int64_t H, int64_t Lq, int64_t Lk, const int32_t* key_mask,
                        const float* u1, uint64_t seed, uint64_t stream1, float keep_p, const float* u2,
                        uint64_t stream2, float keep_q, T dropped_value, T* additive, T* candidates, T* keep,
                        int64_t first_draw) {
  if (B <= 0 || H <= 0 || Lq <= 0 || Lk <= 0) return;
  const int64_t rows_per_example = H * Lq;
  cpu_detail::parallel_for(ctx.num_threads(), B * rows_per_example, Lk * 16, [&](int64_t row) {
    const int64_t base = row * Lk;
    const int32_t* mask = key_mask + (row / rows_per_example) * Lk;
    cpu_detail::RowScratch<int32_t> scratch(Lk);
    const float* d1 = u1 ? u1 + base : cpu_detail::row_draws(seed, stream1, first_draw + base, Lk, scratch.draws(0));
    const float* d2 = u2 ? u2 + base : cpu_detail::row_draws(seed, stream2, first_draw + base, Lk, scratch.draws(1));
    T* a = additive ? additive + base : nullptr;
    T* c = candidates ? candidates + base : nullptr;
    T* kp = keep ? keep + base : nullptr;
    for (int64_t j = 0; j < Lk; ++j) {
      const bool candidate = mask[j] != 0;
      const bool kept = !candidate || d1[j] < keep_p || d2[j] < keep_q;
      cpu_detail::put_selection(j, candidate, kept, dropped_value, a, c, kp);
    }
  });
}

template <class T>
void Cpu::adamw_update(const Context& ctx, int64_t n, T* param, const T* grad, T* m, T* v, double lr, double beta1,
                       double beta2, double eps, double weight_decay, int64_t t, bool hugging_face) {
  const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(t));
  const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(t));
  // 1 - beta in double, then rounded (as torch does), not 1 - float(beta).
  const T b1 = T(beta1), b2 = T(beta2), c1 = T(1.0 - beta1), c2 = T(1.0 - beta2), e = T(eps);
  if (hugging_face) {
    const T step = T(lr * std::sqrt(bc2) / bc1), decay = T(lr * weight_decay);
    cpu_detail::parallel_chunks(ctx.num_threads(), n, [&](int64_t s, int64_t end) {
      for (int64_t i = s; i < end; ++i) {
        m[i] = b1 * m[i] + c1 * grad[i];
        v[i] = b2 * v[i] + c2 * grad[i] * grad[i];
        param[i] -= step * m[i] / (std::sqrt(v[i]) + e);
        param[i] -= decay * param[i];
      }
    });
  } else {
    const T keep = T(1.0 - lr * weight_decay), step = T(lr / bc1), inv_sqrt_bc2 = T(1.0 / std::sqrt(bc2));
    cpu_detail::parallel_chunks(ctx.num_threads(), n, [&](int64_t s, int64_t end) {
      for (int64_t i = s; i < end; ++i) {
        param[i] *= keep;
        m[i] = b1 * m[i] + c1 * grad[i];
        v[i] = b2 * v[i] + c2 * grad[i] * grad[i];
        param[i] -= step * m[i] / (std::sqrt(v[i]) * inv_sqrt_bc2 + e);
      }
    });
  }
}

}  // namespace addrop::backend
