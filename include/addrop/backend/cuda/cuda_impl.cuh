#pragma once
// Definitions of the CUDA backend (declared in cuda.hpp, which includes this file last):
// the kernels, then the ops that launch them. Every launch is checked; every op runs on
// the context's stream.
#include "cuda.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <type_traits>

namespace addrop::backend {

namespace cuda_detail {

constexpr int kThreads = 256;            // threads per block of the elementwise and row kernels
constexpr int kWarpsPerBlock = kThreads / 32;
constexpr int64_t kMaxBlocks = 1 << 20;  // grid-stride loops cover the rest

inline unsigned blocks_for(int64_t work, int64_t per_block = kThreads) {
  const int64_t b = (work + per_block - 1) / per_block;
  return static_cast<unsigned>(std::clamp<int64_t>(b, 1, kMaxBlocks));
}

inline void check_launch(const char* op) { check(cudaGetLastError(), op); }

// ---------------------------------------------------------------- device math (float / double)
__device__ inline float d_exp(float x) { return expf(x); }
__device__ inline double d_exp(double x) { return exp(x); }
__device__ inline float d_log(float x) { return logf(x); }
__device__ inline double d_log(double x) { return log(x); }
__device__ inline float d_erf(float x) { return erff(x); }
__device__ inline double d_erf(double x) { return erf(x); }
__device__ inline float d_tanh(float x) { return tanhf(x); }
__device__ inline double d_tanh(double x) { return tanh(x); }
__device__ inline float d_sqrt(float x) { return sqrtf(x); }
__device__ inline double d_sqrt(double x) { return sqrt(x); }

template <class T>
__device__ inline T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
template <class T>
__device__ inline T warp_max(T v) {
  for (int o = 16; o > 0; o >>= 1) {
    const T w = __shfl_xor_sync(0xffffffffu, v, o);
    v = w > v ? w : v;
  }
  return v;
}

// Sum over a block of kThreads threads; the result is valid in thread 0.
__device__ inline double block_sum(double v) {
  __shared__ double partial[kWarpsPerBlock];
  v = warp_sum(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  double total = 0;
  if (threadIdx.x == 0)
    for (int w = 0; w < kWarpsPerBlock; ++w) total += partial[w];
  __syncthreads();
  return total;
}

#define ADDROP_CUDA_GRID_STRIDE(i, n)                                                      \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

// Warp-per-row loops: kWarpsPerBlock rows per block, then the grid strides.
#define ADDROP_CUDA_WARP_ROWS(row, rows)                                                              \
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5); row < (rows); \
       row += static_cast<int64_t>(gridDim.x) * kWarpsPerBlock)

// ---------------------------------------------------------------- elementwise kernels
template <class T>
__global__ void fill_kernel(int64_t n, T value, T* x) {
  ADDROP_CUDA_GRID_STRIDE(i, n) x[i] = value;
}
template <class T>
__global__ void axpby_kernel(int64_t n, T a, const T* x, T b, T* y) {
  ADDROP_CUDA_GRID_STRIDE(i, n) y[i] = a * x[i] + b * y[i];
}
template <class T>
__global__ void add_kernel(int64_t n, const T* a, const T* b, T* out) {
  ADDROP_CUDA_GRID_STRIDE(i, n) out[i] = a[i] + b[i];
}
template <class T>
__global__ void scale_kernel(int64_t n, T a, T* x) {
  ADDROP_CUDA_GRID_STRIDE(i, n) x[i] *= a;
}
template <class T>
__global__ void mul_kernel(int64_t n, const T* a, const T* b, T* out) {
  ADDROP_CUDA_GRID_STRIDE(i, n) out[i] = a[i] * b[i];
}
// C[M,N] (row stride ldc) = beta * C, with beta = 0 writing zeros (GEMM with K = 0).
template <class T>
__global__ void scale_matrix_kernel(int64_t M, int64_t N, T beta, T* C, int64_t ldc) {
  ADDROP_CUDA_GRID_STRIDE(i, M * N) {
    T& c = C[(i / N) * ldc + i % N];
    c = beta == T(0) ? T(0) : c * beta;
  }
}
template <class T>
__global__ void add_bias_kernel(int64_t rows, int64_t cols, const T* bias, T* y) {
  ADDROP_CUDA_GRID_STRIDE(i, rows * cols) y[i] += bias[i % cols];
}
template <class T>
__global__ void gelu_forward_kernel(int64_t n, const T* x, T* y) {
  const T r = T(0.70710678118654752440084436210484903928483593768847);  // 1/sqrt(2)
  ADDROP_CUDA_GRID_STRIDE(i, n) {
    const T v = x[i];
    y[i] = T(0.5) * v * (T(1) + d_erf(v * r));
  }
}
template <class T>
__global__ void gelu_backward_kernel(int64_t n, const T* x, const T* dy, T* dx) {
  const T r = T(0.70710678118654752440084436210484903928483593768847);
  const T inv_sqrt_2pi = T(0.3989422804014326779399460599343818684758586311649);
  ADDROP_CUDA_GRID_STRIDE(i, n) {
    const T v = x[i];
    dx[i] = dy[i] * (T(0.5) * (T(1) + d_erf(v * r)) + v * inv_sqrt_2pi * d_exp(T(-0.5) * v * v));
  }
}
template <class T>
__global__ void silu_forward_kernel(int64_t n, const T* x, T* y) {
  ADDROP_CUDA_GRID_STRIDE(i, n) y[i] = x[i] / (T(1) + d_exp(-x[i]));
}
template <class T>
__global__ void silu_backward_kernel(int64_t n, const T* x, const T* dy, T* dx) {
  ADDROP_CUDA_GRID_STRIDE(i, n) {
    const T sig = T(1) / (T(1) + d_exp(-x[i]));
    dx[i] = dy[i] * sig * (T(1) + x[i] * (T(1) - sig));
  }
}
template <class T>
__global__ void relu_forward_kernel(int64_t n, const T* x, T* y) {
  ADDROP_CUDA_GRID_STRIDE(i, n) y[i] = x[i] > T(0) ? x[i] : T(0);
}
template <class T>
__global__ void relu_backward_kernel(int64_t n, const T* x, const T* dy, T* dx) {
  ADDROP_CUDA_GRID_STRIDE(i, n) dx[i] = x[i] > T(0) ? dy[i] : T(0);
}
template <class T>
__global__ void tanh_forward_kernel(int64_t n, const T* x, T* y) {
  ADDROP_CUDA_GRID_STRIDE(i, n) y[i] = d_tanh(x[i]);
}
template <class T>
__global__ void tanh_backward_kernel(int64_t n, const T* y, const T* dy, T* dx) {
  ADDROP_CUDA_GRID_STRIDE(i, n) dx[i] = dy[i] * (T(1) - y[i] * y[i]);
}

// ---------------------------------------------------------------- column reductions
// part_b[split, c] = sum over the split's rows of dy[r, c]; with_gamma also
// part_g[split, c] = sum dy[r, c] * (x[r, c] - mean[r]) * rstd[r]. Block (32, 8), grid
// (ceil(cols / 32), splits); a fixed tree, so the result does not depend on scheduling.
template <class T, bool WithGamma>
__global__ void column_partials_kernel(int64_t rows, int64_t cols, int64_t rows_per_split, const T* dy, const T* x,
                                       const T* mean, const T* rstd, T* part_g, T* part_b) {
  __shared__ T sg[8][33];
  __shared__ T sb[8][33];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * 32 + tx;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * rows_per_split;
  const int64_t r1 = r0 + rows_per_split < rows ? r0 + rows_per_split : rows;
  T g = 0, b = 0;
  if (c < cols) {
    for (int64_t r = r0 + ty; r < r1; r += 8) {
      const T d = dy[r * cols + c];
      if constexpr (WithGamma) g += d * (x[r * cols + c] - mean[r]) * rstd[r];
      b += d;
    }
  }
  sg[ty][tx] = g;
  sb[ty][tx] = b;
  __syncthreads();
  if (ty == 0 && c < cols) {
    for (int k = 1; k < 8; ++k) {
      g += sg[k][tx];
      b += sb[k][tx];
    }
    if constexpr (WithGamma) part_g[static_cast<int64_t>(blockIdx.y) * cols + c] = g;
    part_b[static_cast<int64_t>(blockIdx.y) * cols + c] = b;
  }
}
// out[c] += sum over splits (in order) of part[split, c]; null outputs are skipped.
template <class T>
__global__ void column_finish_kernel(int64_t cols, int64_t splits, const T* part_g, const T* part_b, T* dgamma,
                                     T* dbeta) {
  ADDROP_CUDA_GRID_STRIDE(c, cols) {
    if (dgamma) {
      T s = 0;
      for (int64_t k = 0; k < splits; ++k) s += part_g[k * cols + c];
      dgamma[c] += s;
    }
    if (dbeta) {
      T s = 0;
      for (int64_t k = 0; k < splits; ++k) s += part_b[k * cols + c];
      dbeta[c] += s;
    }
  }
}

// ---------------------------------------------------------------- layer norm (a warp per row)
template <class T>
__global__ void layer_norm_forward_kernel(int64_t rows, int64_t cols, T eps, const T* x, const T* gamma, const T* beta,
                                          T* y, T* mean, T* rstd) {
  const int lane = threadIdx.x & 31;
  ADDROP_CUDA_WARP_ROWS(r, rows) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    T m = 0;
    for (int64_t c = lane; c < cols; c += 32) m += xr[c];
    m = warp_sum(m) / T(cols);
    T v = 0;
    for (int64_t c = lane; c < cols; c += 32) v += (xr[c] - m) * (xr[c] - m);
    v = warp_sum(v) / T(cols);  // biased variance, as torch.nn.LayerNorm
    const T s = T(1) / d_sqrt(v + eps);
    for (int64_t c = lane; c < cols; c += 32) yr[c] = (xr[c] - m) * s * gamma[c] + beta[c];
    if (lane == 0) {
      mean[r] = m;
      rstd[r] = s;
    }
  }
}
// dx may alias dy: each lane reads and writes only its own columns.
template <class T>
__global__ void layer_norm_backward_dx_kernel(int64_t rows, int64_t cols, const T* dy, const T* x, const T* mean,
                                              const T* rstd, const T* gamma, T* dx, bool accumulate) {
  const int lane = threadIdx.x & 31;
  ADDROP_CUDA_WARP_ROWS(r, rows) {
    const T* xr = x + r * cols;
    const T* dyr = dy + r * cols;
    T* dxr = dx + r * cols;
    const T m = mean[r], s = rstd[r];
    T mean_g = 0, mean_gx = 0;
    for (int64_t c = lane; c < cols; c += 32) {
      const T g = dyr[c] * gamma[c];
      mean_g += g;
      mean_gx += g * (xr[c] - m) * s;
    }
    mean_g = warp_sum(mean_g) / T(cols);
    mean_gx = warp_sum(mean_gx) / T(cols);
    for (int64_t c = lane; c < cols; c += 32) {
      const T xhat = (xr[c] - m) * s;
      const T v = s * (dyr[c] * gamma[c] - mean_g - xhat * mean_gx);
      dxr[c] = accumulate ? dxr[c] + v : v;
    }
  }
}

// ---------------------------------------------------------------- attention softmax (a warp per row)
// As the CPU: the additive masks a_j stay apart from the scaled scores s_j, and
// p_j = exp((a_j - a_m) + (s_j - s_m)) around the first maximum m of a_j + s_j.
// scores and probs may alias: pass 1 only reads, and every element is read and written by
// one lane; the maximum's terms are read by lane 0 and broadcast before anything is written.
template <class T>
__global__ void attention_softmax_kernel(int64_t rows, int64_t Lq, int64_t HLq, int64_t L, T scale, const T* scores,
                                         const T* key_bias, const T* extra, bool causal, T* probs) {
  const int lane = threadIdx.x & 31;
  ADDROP_CUDA_WARP_ROWS(row, rows) {
    const int64_t b = row / HLq;
    const T* s = scores + row * L;
    const T* kb = key_bias ? key_bias + b * L : nullptr;
    const T* ex = extra ? extra + row * L : nullptr;
    T* p = probs + row * L;
    // causal: keys past the query's own position (queries are the last Lq of the L) get 0
    const int64_t visible = causal ? min(L, row % Lq + 1 + (L - Lq)) : L;
    T best_value = -T(INFINITY);
    int64_t best = L;  // none yet
    for (int64_t j = lane; j < visible; j += 32) {
      const T a = (kb ? kb[j] : T(0)) + (ex ? ex[j] : T(0));
      const T v = a + scale * s[j];
      if (v > best_value) {
        best_value = v;
        best = j;
      }
    }
    for (int o = 16; o > 0; o >>= 1) {
      const T ov = __shfl_xor_sync(0xffffffffu, best_value, o);
      const int64_t oi = __shfl_xor_sync(0xffffffffu, best, o);
      if (ov > best_value || (ov == best_value && oi < best)) {
        best_value = ov;
        best = oi;
      }
    }
    if (best >= L) best = 0;  // no element above -inf: the CPU keeps index 0
    T a_best = 0, s_best = 0;
    if (lane == 0) {
      a_best = (kb ? kb[best] : T(0)) + (ex ? ex[best] : T(0));
      s_best = scale * s[best];
    }
    a_best = __shfl_sync(0xffffffffu, a_best, 0);
    s_best = __shfl_sync(0xffffffffu, s_best, 0);
    T total = 0;
    for (int64_t j = lane; j < visible; j += 32) {
      const T a = (kb ? kb[j] : T(0)) + (ex ? ex[j] : T(0));
      const T e = d_exp((a - a_best) + (scale * s[j] - s_best));
      p[j] = e;
      total += e;
    }
    const T inv = T(1) / warp_sum(total);
    for (int64_t j = lane; j < visible; j += 32) p[j] *= inv;
    for (int64_t j = visible + lane; j < L; j += 32) p[j] = T(0);
  }
}
// dscores may alias dprobs (each lane owns its elements).
template <class T>
__global__ void softmax_backward_kernel(int64_t rows, int64_t L, T scale, const T* probs, const T* dprobs, T* dscores) {
  const int lane = threadIdx.x & 31;
  ADDROP_CUDA_WARP_ROWS(r, rows) {
    const T* p = probs + r * L;
    const T* dp = dprobs + r * L;
    T* ds = dscores + r * L;
    T dot = 0;
    for (int64_t j = lane; j < L; j += 32) dot += p[j] * dp[j];
    dot = warp_sum(dot);
    for (int64_t j = lane; j < L; j += 32) ds[j] = scale * p[j] * (dp[j] - dot);
  }
}

// ---------------------------------------------------------------- randomness (a thread per Philox block)
// Element i takes draw first + i: word (first + i) % 4 of Philox block (first + i) / 4 (the
// CPU's cpu_detail::for_each_draw). The n draws lie in blocks first / 4 .. (first + n - 1) / 4
// (n > 0), a thread each; word k of block g is element g * 4 + k - first when that is in
// [0, n). With first % 4 == 0 every block holds four consecutive elements (bar the last), as
// before `first` existed; otherwise the first and last blocks are partly outside.
__host__ __device__ inline int64_t draw_group_count(int64_t n, int64_t first) {
  return ((first + n - 1) >> 2) - (first >> 2) + 1;
}
template <class T>
__global__ void uniform_kernel(int64_t n, uint64_t seed, uint64_t stream, T* out, int64_t first) {
  const int64_t g0 = first >> 2, groups = draw_group_count(n, first);
  ADDROP_CUDA_GRID_STRIDE(g, groups) {
    uint32_t w[4];
    random::Philox4x32::generate(seed, static_cast<uint64_t>(g0 + g), stream, w);
    const int64_t i0 = (g0 + g) * 4 - first;  // the element of word 0 (negative in a partial first block)
    for (int k = 0; k < 4; ++k) {
      const int64_t i = i0 + k;
      if (i >= 0 && i < n) out[i] = static_cast<T>(random::to_unit_float(w[k]));
    }
  }
}
template <class T>
__global__ void dropout_forward_kernel(int64_t n, float p, uint64_t seed, uint64_t stream, T keep_scale, const T* x,
                                       T* y, int64_t first) {
  const int64_t g0 = first >> 2, groups = draw_group_count(n, first);
  ADDROP_CUDA_GRID_STRIDE(g, groups) {
    uint32_t w[4];
    random::Philox4x32::generate(seed, static_cast<uint64_t>(g0 + g), stream, w);
    const int64_t i0 = (g0 + g) * 4 - first;
    for (int k = 0; k < 4; ++k) {
      const int64_t i = i0 + k;
      if (i >= 0 && i < n) y[i] = random::to_unit_float(w[k]) >= p ? x[i] * keep_scale : T(0);
    }
  }
}
template <class T>
__global__ void dropout_backward_kernel(int64_t n, float p, uint64_t seed, uint64_t stream, T keep_scale, const T* dy,
                                        T* dx, bool accumulate, int64_t first) {
  const int64_t g0 = first >> 2, groups = draw_group_count(n, first);
  ADDROP_CUDA_GRID_STRIDE(g, groups) {
    uint32_t w[4];
    random::Philox4x32::generate(seed, static_cast<uint64_t>(g0 + g), stream, w);
    const int64_t i0 = (g0 + g) * 4 - first;
    for (int k = 0; k < 4; ++k) {
      const int64_t i = i0 + k;
      if (i < 0 || i >= n) continue;
      const T v = random::to_unit_float(w[k]) >= p ? dy[i] * keep_scale : T(0);
      dx[i] = accumulate ? dx[i] + v : v;
    }
  }
}

// ---------------------------------------------------------------- embeddings
template <class T>
__global__ void embedding_forward_kernel(int64_t tokens, int64_t dim, const int32_t* ids, const T* table, T* out,
                                         bool accumulate) {
  ADDROP_CUDA_GRID_STRIDE(i, tokens * dim) {
    const int64_t t = i / dim, c = i % dim;
    const T v = table[static_cast<int64_t>(ids[t]) * dim + c];
    out[i] = accumulate ? out[i] + v : v;
  }
}
// first[t] = 1 when token t is the first with its id (and that id is not padding_idx): the
// owner of the id's table row in embedding_backward_kernel. A block per token.
template <int = 0>
__global__ void embedding_first_kernel(int64_t tokens, const int32_t* ids, int64_t padding_idx, int32_t* first) {
  for (int64_t t = blockIdx.x; t < tokens; t += gridDim.x) {
    const int32_t id = ids[t];
    bool owner = static_cast<int64_t>(id) != padding_idx;
    for (int64_t base = 0; owner && base < t; base += kThreads) {  // owner is uniform over the block
      const int64_t j = base + threadIdx.x;
      if (__syncthreads_or(j < t && ids[j] == id)) owner = false;
    }
    if (threadIdx.x == 0) first[t] = owner ? 1 : 0;
  }
}
// dtable[ids[t], :] += dout[t, :], deterministic with one writer per table row: block
// (t, y) works only when t owns its id, and sums the rows of all tokens with that id for the
// 32 columns y*32 .. y*32+31. Its 8 warps take every 8th matching token (a fixed split, so
// the sum does not depend on timing), then warp 0 adds the 8 partials in order. Spreading an
// id over column tiles and warps matters for ids that most tokens share (token type 0): one
// block summing them all serially was latency-bound. Blocks of kThreads threads.
template <class T>
__global__ void embedding_backward_kernel(int64_t tokens, int64_t dim, const int32_t* ids, const int32_t* first,
                                          const T* dout, T* dtable) {
  __shared__ int64_t list[kThreads];
  __shared__ int warp_count[kWarpsPerBlock];
  __shared__ T partial[kWarpsPerBlock][32];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t c = static_cast<int64_t>(blockIdx.y) * 32 + lane;
  for (int64_t t = blockIdx.x; t < tokens; t += gridDim.x) {
    if (!first[t]) continue;  // uniform over the block
    const int32_t id = ids[t];
    T acc = 0;
    for (int64_t base = t; base < tokens; base += kThreads) {
      const int64_t j = base + tid;
      const bool match = j < tokens && ids[j] == id;
      const unsigned ballot = __ballot_sync(0xffffffffu, match);
      if (lane == 0) warp_count[warp] = __popc(ballot);
      __syncthreads();
      int offset = 0, total = 0;
      for (int w = 0; w < kWarpsPerBlock; ++w) {
        if (w < warp) offset += warp_count[w];
        total += warp_count[w];
      }
      if (match) list[offset + __popc(ballot & ((1u << lane) - 1u))] = j;
      __syncthreads();
      if (c < dim) {
#pragma unroll 4
        for (int q = warp; q < total; q += kWarpsPerBlock) acc += dout[list[q] * dim + c];
      }
      __syncthreads();  // list and warp_count are rewritten by the next chunk
    }
    partial[warp][lane] = acc;
    __syncthreads();
    if (warp == 0 && c < dim) {
      T sum = partial[0][lane];
      for (int w = 1; w < kWarpsPerBlock; ++w) sum += partial[w][lane];
      dtable[static_cast<int64_t>(id) * dim + c] += sum;
    }
    __syncthreads();  // partial is rewritten by the next owner
  }
}

// ---------------------------------------------------------------- reductions
// partial[block] = sum over the block's grid-stride elements of x (Square: x^2), in double.
template <class T, bool Square>
__global__ void reduce_partial_kernel(int64_t n, const T* x, double* partial) {
  double acc = 0;
  ADDROP_CUDA_GRID_STRIDE(i, n) {
    const double v = static_cast<double>(x[i]);
    acc += Square ? v * v : v;
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}
// (Kernels are templates, even without a type to vary, so that the header can be included
// by several translation units of one program.)
template <int = 0>
__global__ void reduce_finish_kernel(int64_t count, const double* partial, double* out) {
  double acc = 0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) acc += partial[i];
  acc = block_sum(acc);
  if (threadIdx.x == 0) out[0] = acc;
}
// d = pred - target; dpred = 2 d / count (when asked; count: n, or the caller's denominator);
// sq[i] = d^2 in double.
template <class T>
__global__ void mse_kernel(int64_t n, int64_t count, const T* pred, const T* target, T* dpred, double* sq) {
  ADDROP_CUDA_GRID_STRIDE(i, n) {
    const T d = pred[i] - target[i];
    sq[i] = static_cast<double>(d) * static_cast<double>(d);
    if (dpred) dpred[i] = T(2) * d / T(count);
  }
}
// out[0] = number of labels != ignore_index (one block).
template <int = 0>
__global__ void count_labels_kernel(int64_t rows, const int32_t* labels, int32_t ignore_index, double* out) {
  int64_t count = 0;
  for (int64_t base = 0; base < rows; base += blockDim.x) {
    const int64_t r = base + threadIdx.x;
    count += __syncthreads_count(r < rows && labels[r] != ignore_index);
  }
  if (threadIdx.x == 0) out[0] = static_cast<double>(count);
}
// A warp per row: losses[r] = log_z - z[label], with label smoothing eps
// (1 - eps) (log_z - z[label]) + eps (log_z - mean z) (0 for ignored rows); dlogits as the CPU,
// divided by denominator when it is > 0, else by counted[0] (count_labels_kernel's count,
// not read otherwise).
template <class T>
__global__ void cross_entropy_kernel(int64_t rows, int64_t classes, const T* logits, const int32_t* labels,
                                     int32_t ignore_index, T eps, T* dlogits, const double* counted, double* losses,
                                     int64_t denominator) {
  const int lane = threadIdx.x & 31;
  const T inv = T(1) / T(denominator > 0 ? denominator : static_cast<int64_t>(counted[0]));
  const T uniform_weight = eps / T(classes);
  ADDROP_CUDA_WARP_ROWS(r, rows) {
    const T* z = logits + r * classes;
    T* dz = dlogits ? dlogits + r * classes : nullptr;
    const int32_t label = labels[r];
    if (label == ignore_index) {
      if (dz)
        for (int64_t c = lane; c < classes; c += 32) dz[c] = T(0);
      if (lane == 0) losses[r] = 0.0;
      continue;
    }
    T mx = -T(INFINITY);
    for (int64_t c = lane; c < classes; c += 32) mx = z[c] > mx ? z[c] : mx;
    mx = warp_max(mx);
    T s = 0, sum_z = 0;
    for (int64_t c = lane; c < classes; c += 32) {
      s += d_exp(z[c] - mx);
      sum_z += z[c];
    }
    s = warp_sum(s);
    sum_z = warp_sum(sum_z);
    const T log_z = mx + d_log(s);
    if (lane == 0) {
      double loss = static_cast<double>(log_z - z[label]);
      if (eps != T(0))
        loss = (1.0 - static_cast<double>(eps)) * loss +
               static_cast<double>(eps) * static_cast<double>(log_z - sum_z / T(classes));
      losses[r] = loss;
    }
    if (dz)
      for (int64_t c = lane; c < classes; c += 32)
        dz[c] = (d_exp(z[c] - log_z) - (T(1) - eps) * T(c == label) - uniform_weight) * inv;
  }
}

// ---------------------------------------------------------------- AD-DROP selection
// Sites are [B, H, Lq, Lk]: rows = B*H*Lq rows of Lk keys, row r belonging to example
// r / rows_per_example (rows_per_example = H*Lq), whose key mask is key_mask + b*Lk.
//
// Candidates of row r from the k[b]-th smallest (0-based) of its non-pad scores.
// Sort variant: a block per row sorts the row in shared memory (P = Lk rounded up to a power
// of two; pad keys and the tail hold +inf, which sorts them after every real score, so the
// first n sorted entries are the real scores in order) with a bitonic network.
template <class T>
__device__ inline void write_candidates(int64_t Lk, const int32_t* mask, const T* s, bool have_threshold, T t,
                                        bool high, T* c) {
  for (int64_t j = threadIdx.x; j < Lk; j += blockDim.x) {
    if (!have_threshold) c[j] = mask[j] ? (high ? T(0) : T(1)) : T(0);
    else c[j] = mask[j] != 0 && (high ? s[j] >= t : s[j] < t) ? T(1) : T(0);
  }
}
template <class T>
__global__ void top_p_sort_kernel(int64_t rows, int64_t rows_per_example, int64_t Lk, int64_t P, const T* scores,
                                  const int32_t* key_mask, const int64_t* k, bool high, T* candidates) {
  extern __shared__ __align__(16) unsigned char top_p_shared[];
  T* v = reinterpret_cast<T*>(top_p_shared);
  __shared__ int count;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t b = row / rows_per_example;
    const int32_t* mask = key_mask + b * Lk;
    const T* s = scores + row * Lk;
    T* c = candidates + row * Lk;
    if (threadIdx.x == 0) count = 0;
    __syncthreads();
    int local = 0;
    for (int64_t j = threadIdx.x; j < P; j += blockDim.x) {
      const bool m = j < Lk && mask[j] != 0;
      v[j] = m ? s[j] : T(INFINITY);
      local += m;
    }
    atomicAdd(&count, local);
    __syncthreads();
    const int64_t n = count, kb = k[b];
    const bool have_threshold = kb < n && n > 0 && kb >= 0;
    T t = 0;
    if (have_threshold) {  // uniform over the block
      for (int64_t size = 2; size <= P; size <<= 1) {
        for (int64_t stride = size >> 1; stride > 0; stride >>= 1) {
          for (int64_t i = threadIdx.x; i < P; i += blockDim.x) {
            const int64_t j = i ^ stride;
            if (j > i) {
              const bool ascending = (i & size) == 0;
              const T a = v[i], bv = v[j];
              if ((a > bv) == ascending && a != bv) {
                v[i] = bv;
                v[j] = a;
              }
            }
          }
          __syncthreads();
        }
      }
      t = v[kb];
    }
    write_candidates(Lk, mask, s, have_threshold, t, high, c);
    __syncthreads();  // v and count are reused by the next row
  }
}
// Rank variant for rows too long for shared memory: the threshold is the score whose rank
// range [#less, #less_or_equal) holds k (the first such key, found with an atomic minimum);
// O(Lk^2) reads per row from global memory.
template <class T>
__global__ void top_p_rank_kernel(int64_t rows, int64_t rows_per_example, int64_t Lk, const T* scores,
                                  const int32_t* key_mask, const int64_t* k, bool high, T* candidates) {
  __shared__ unsigned long long first;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t b = row / rows_per_example;
    const int32_t* mask = key_mask + b * Lk;
    const T* s = scores + row * Lk;
    T* c = candidates + row * Lk;
    int64_t n = 0;
    for (int64_t base = 0; base < Lk; base += blockDim.x) {
      const int64_t j = base + threadIdx.x;
      n += __syncthreads_count(j < Lk && mask[j] != 0);
    }
    const int64_t kb = k[b];
    const bool have_threshold = kb < n && n > 0 && kb >= 0;
    if (threadIdx.x == 0) first = static_cast<unsigned long long>(Lk);
    __syncthreads();
    if (have_threshold) {
      for (int64_t j = threadIdx.x; j < Lk; j += blockDim.x) {
        if (!mask[j]) continue;
        const T x = s[j];
        int64_t less = 0, less_equal = 0;
        for (int64_t m = 0; m < Lk; ++m) {
          if (!mask[m]) continue;
          less += s[m] < x;
          less_equal += s[m] <= x;
        }
        if (less <= kb && kb < less_equal) atomicMin(&first, static_cast<unsigned long long>(j));
      }
    }
    __syncthreads();
    const bool found = have_threshold && first < static_cast<unsigned long long>(Lk);  // false only with NaN scores
    write_candidates(Lk, mask, s, found, found ? s[first] : T(0), high, c);
    __syncthreads();
  }
}
// Fused q-sampling (Cuda::select_top_p), a thread per Philox block of four draws:
// `flags` holds the 0/1 candidates (the top-p kernels' output; it may be one of the outputs,
// each element is read before it is written). Element i's draw is u[i], or draw first + i
// of (seed, stream): the draws of uniform_kernel (blocked the same way, also when u is
// given). Elementwise over the n elements: the site's shape does not matter here.
template <class T>
__global__ void q_sample_fused_kernel(int64_t n, const T* flags, const float* u, uint64_t seed, uint64_t stream,
                                      float keep_below, T dropped_value, T* additive, T* candidates, T* keep,
                                      int64_t first) {
  const int64_t g0 = first >> 2, groups = draw_group_count(n, first);
  ADDROP_CUDA_GRID_STRIDE(g, groups) {
    uint32_t w[4] = {0, 0, 0, 0};
    if (!u) random::Philox4x32::generate(seed, static_cast<uint64_t>(g0 + g), stream, w);
    const int64_t i0 = (g0 + g) * 4 - first;
    for (int k = 0; k < 4; ++k) {
      const int64_t i = i0 + k;
      if (i < 0 || i >= n) continue;
      const bool candidate = flags[i] != T(0);
      const float draw = u ? u[i] : random::to_unit_float(w[k]);
      const bool kept = !candidate || draw < keep_below;
      if (additive) additive[i] = kept ? T(0) : dropped_value;
      if (candidates) candidates[i] = candidate ? T(1) : T(0);
      if (keep) keep[i] = kept ? T(1) : T(0);
    }
  }
}
// Fused RD rule (Cuda::select_random), a thread per Philox block of four draws as
// q_sample_fused_kernel: element i is key j = i % Lk of row i / Lk.
template <class T>
__global__ void random_select_kernel(int64_t n, int64_t rows_per_example, int64_t Lk, const int32_t* key_mask,
                                     const float* u1, uint64_t seed, uint64_t stream1, float keep_p, const float* u2,
                                     uint64_t stream2, float keep_q, T dropped_value, T* additive, T* candidates,
                                     T* keep, int64_t first) {
  const int64_t g0 = first >> 2, groups = draw_group_count(n, first);
  ADDROP_CUDA_GRID_STRIDE(g, groups) {
    uint32_t w1[4] = {0, 0, 0, 0}, w2[4] = {0, 0, 0, 0};
    if (!u1) random::Philox4x32::generate(seed, static_cast<uint64_t>(g0 + g), stream1, w1);
    if (!u2) random::Philox4x32::generate(seed, static_cast<uint64_t>(g0 + g), stream2, w2);
    const int64_t i0 = (g0 + g) * 4 - first;
    for (int k = 0; k < 4; ++k) {
      const int64_t i = i0 + k;
      if (i < 0 || i >= n) continue;
      const int64_t row = i / Lk, j = i % Lk;
      const bool candidate = key_mask[(row / rows_per_example) * Lk + j] != 0;
      const float d1 = u1 ? u1[i] : random::to_unit_float(w1[k]);
      const float d2 = u2 ? u2[i] : random::to_unit_float(w2[k]);
      const bool kept = !candidate || d1 < keep_p || d2 < keep_q;
      if (additive) additive[i] = kept ? T(0) : dropped_value;
      if (candidates) candidates[i] = candidate ? T(1) : T(0);
      if (keep) keep[i] = kept ? T(1) : T(0);
    }
  }
}

// ---------------------------------------------------------------- AdamW
template <class T>
__global__ void adamw_hf_kernel(int64_t n, T* param, const T* grad, T* m, T* v, T b1, T b2, T c1, T c2, T e, T step, T decay) {
  ADDROP_CUDA_GRID_STRIDE(i, n) {
    m[i] = b1 * m[i] + c1 * grad[i];
    v[i] = b2 * v[i] + c2 * grad[i] * grad[i];
    param[i] -= step * m[i] / (d_sqrt(v[i]) + e);
    param[i] -= decay * param[i];
  }
}
template <class T>
__global__ void adamw_torch_kernel(int64_t n, T* param, const T* grad, T* m, T* v, T b1, T b2, T c1, T c2, T e, T keep, T step,
                                   T inv_sqrt_bc2) {
  ADDROP_CUDA_GRID_STRIDE(i, n) {
    param[i] *= keep;
    m[i] = b1 * m[i] + c1 * grad[i];
    v[i] = b2 * v[i] + c2 * grad[i] * grad[i];
    param[i] -= step * m[i] / (d_sqrt(v[i]) * inv_sqrt_bc2 + e);
  }
}

// ---------------------------------------------------------------- batched GEMM pointers
// The matrices of a two-level batch (outer o, inner i; entry o * inner + i) as the pointer
// arrays of cublas?gemmBatched / cublasGemmBatchedEx: pa[e] = a + o * a_outer + i * a_inner,
// likewise b and c (TC: C's element type, float where A and B are Bf16Mixed's bf16 copies).
template <class T, class TC = T>
__global__ void batch_pointers_kernel(int64_t count, int64_t inner, const T* a, int64_t a_outer, int64_t a_inner,
                                      const T* b, int64_t b_outer, int64_t b_inner, TC* c, int64_t c_outer,
                                      int64_t c_inner, const T** pa, const T** pb, TC** pc) {
  ADDROP_CUDA_GRID_STRIDE(e, count) {
    const int64_t o = e / inner, i = e % inner;
    pa[e] = a + o * a_outer + i * a_inner;
    pb[e] = b + o * b_outer + i * b_inner;
    pc[e] = c + o * c_outer + i * c_inner;
  }
}

// ---------------------------------------------------------------- bf16 GEMM operands (Precision::Bf16Mixed)
// Packs the slices of a stored float operand, rounded to bfloat16 (nearest even, as torch's
// float -> bfloat16 cast and the CPU backend), densely into dst:
//   dst[p * dst_slice + r * dst_ld + c] = bf16(src[(p / inner) * s_outer + (p % inner) * s_inner + r * ld + c])
// for slice p = o * inner + i, row r < rows, column c < cols. I: the index type (uint32_t
// where every offset fits, which makes the divisions cheaper, else int64_t).
template <class I>
__global__ void pack_bf16_kernel(int64_t total, I rows, I cols, I inner, const float* src, I ld, I s_outer, I s_inner,
                                 __nv_bfloat16* dst, I dst_ld, I dst_slice) {
  ADDROP_CUDA_GRID_STRIDE(e, total) {
    const I x = static_cast<I>(e);
    const I c = x % cols, t = x / cols, r = t % rows, p = t / rows;
    dst[p * dst_slice + r * dst_ld + c] = __float2bfloat16_rn(src[(p / inner) * s_outer + (p % inner) * s_inner + r * ld + c]);
  }
}

#undef ADDROP_CUDA_GRID_STRIDE
#undef ADDROP_CUDA_WARP_ROWS

// ---------------------------------------------------------------- cuBLAS wrappers
inline cublasStatus_t blas_gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                const float* alpha, const float* A, int lda, const float* B, int ldb,
                                const float* beta, float* C, int ldc) {
  return cublasSgemm(h, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}
inline cublasStatus_t blas_gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                const double* alpha, const double* A, int lda, const double* B, int ldb,
                                const double* beta, double* C, int ldc) {
  return cublasDgemm(h, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}
inline cublasStatus_t blas_gemm_strided(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                        int k, const float* alpha, const float* A, int lda, long long sa,
                                        const float* B, int ldb, long long sb, const float* beta, float* C, int ldc,
                                        long long sc, int count) {
  return cublasSgemmStridedBatched(h, ta, tb, m, n, k, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, count);
}
inline cublasStatus_t blas_gemm_strided(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                        int k, const double* alpha, const double* A, int lda, long long sa,
                                        const double* B, int ldb, long long sb, const double* beta, double* C,
                                        int ldc, long long sc, int count) {
  return cublasDgemmStridedBatched(h, ta, tb, m, n, k, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, count);
}

inline cublasStatus_t blas_gemm_pointers(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                         int k, const float* alpha, const float* const* A, int lda,
                                         const float* const* B, int ldb, const float* beta, float* const* C, int ldc,
                                         int count) {
  return cublasSgemmBatched(h, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, count);
}
inline cublasStatus_t blas_gemm_pointers(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                         int k, const double* alpha, const double* const* A, int lda,
                                         const double* const* B, int ldb, const double* beta, double* const* C,
                                         int ldc, int count) {
  return cublasDgemmBatched(h, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, count);
}

inline int to_int(int64_t v, const char* op, const char* what) {
  if (v < 0 || v > INT_MAX) fail(op, std::string(what) + " = " + std::to_string(v) + " is outside cuBLAS's int range");
  return static_cast<int>(v);
}

// The leading dimension cuBLAS sees for a row-major matrix of `rows` x `cols` stored with row
// stride ld: it must be >= cols, which a single-row matrix need not satisfy (its ld is unused).
inline int blas_ld(int64_t ld, int64_t rows, int64_t cols, const char* op, const char* what) {
  if (ld < cols) {
    if (rows > 1)
      fail(op, std::string(what) + " = " + std::to_string(ld) + " is below the row length " + std::to_string(cols));
    ld = cols;
  }
  return to_int(std::max<int64_t>(ld, 1), op, what);
}

/// Row-major C[M,N] = alpha op(A) op(B) + beta C as the column-major C^T = op(B)^T op(A)^T
/// (a row-major matrix is the column-major view of its transpose), like the CPU's gemm_serial.
struct GemmPlan {
  cublasOperation_t op_b, op_a;
  int m, n, k, lda, ldb, ldc;
};
inline GemmPlan plan_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldb, int64_t ldc,
                          const char* op) {
  GemmPlan p;
  p.op_a = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  p.op_b = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  p.m = to_int(N, op, "N");
  p.n = to_int(M, op, "M");
  p.k = to_int(K, op, "K");
  // Stored shapes (row-major): A is [M,K] or [K,M] (ta); B is [K,N] or [N,K] (tb); C is [M,N].
  p.lda = ta ? blas_ld(lda, K, M, op, "lda") : blas_ld(lda, M, K, op, "lda");
  p.ldb = tb ? blas_ld(ldb, N, K, op, "ldb") : blas_ld(ldb, K, N, op, "ldb");
  p.ldc = blas_ld(ldc, M, N, op, "ldc");
  return p;
}

inline void set_math_mode(const Cuda::Context& ctx, cublasHandle_t h, const char* op) {
  check(cublasSetMathMode(h, ctx.tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH), op);
}

// ---------------------------------------------------------------- Bf16Mixed GEMMs
// One float operand as stored (like the CPU's cpu_detail::StoredOperand): `rows` x `cols`
// with row stride ld; slice (o, i) starts at o * outer + i * inner.
struct StoredOperand {
  const float* data;
  int64_t rows, cols, ld, outer, inner;
};

/// Row stride of a packed bf16 operand: whole 16-byte groups, so that every row and every
/// slice of the dense copy is 16-byte aligned (what cuBLAS's tensor-core kernels want).
inline int64_t bf16_packed_ld(int64_t cols) { return (cols + 7) / 8 * 8; }

// Rounds the n_outer x n_inner slices of `src` to bf16 into dst (rows dst_ld apart, slices
// dst_slice apart), on the stream.
inline void pack_bf16(const State& s, StoredOperand src, int64_t n_outer, int64_t n_inner, __nv_bfloat16* dst,
                      int64_t dst_ld, int64_t dst_slice, const char* op) {
  const int64_t slices = n_outer * n_inner, total = slices * src.rows * src.cols;
  if (total <= 0) return;
  // Strides of a level with one entry are never used: zero them (they may be anything).
  if (n_outer == 1) src.outer = 0;
  if (n_inner == 1) src.inner = 0;
  if (src.rows == 1) src.ld = 0;
  const int64_t src_end = (n_outer - 1) * src.outer + (n_inner - 1) * src.inner + (src.rows - 1) * src.ld + src.cols;
  const int64_t dst_end = slices * dst_slice;
  constexpr int64_t kMax32 = INT32_MAX;
  const bool fits32 = src.outer >= 0 && src.inner >= 0 && src.ld >= 0 && total <= kMax32 && src_end <= kMax32 &&
                      dst_end <= kMax32;
  if (fits32) {
    using I = uint32_t;
    pack_bf16_kernel<I><<<blocks_for(total), kThreads, 0, s.stream>>>(
        total, static_cast<I>(src.rows), static_cast<I>(src.cols), static_cast<I>(n_inner), src.data,
        static_cast<I>(src.ld), static_cast<I>(src.outer), static_cast<I>(src.inner), dst, static_cast<I>(dst_ld),
        static_cast<I>(dst_slice));
  } else {
    pack_bf16_kernel<int64_t><<<blocks_for(total), kThreads, 0, s.stream>>>(
        total, src.rows, src.cols, n_inner, src.data, src.ld, src.outer, src.inner, dst, dst_ld, dst_slice);
  }
  check_launch(op);
}

// Cuda::gemm / gemm_batched for float with Precision::Bf16Mixed (M, N, K, outer, inner > 0):
// C[o, i] = alpha op(A[o, i]) op(B[o, i]) + beta C[o, i] for o < outer, i < inner, both
// inputs rounded to bfloat16, products accumulated in float32 on the tensor cores.
// A and B are packed densely (slice after slice in o * inner + i order) into the bf16
// scratch, so their batch is always one stride; C stays where it is: one strided call when
// its two levels collapse into one stride, else one pointer-array call (pointers in the
// ordinary scratch), as the float path.
inline void gemm_bf16(State& s, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, StoredOperand a,
                      StoredOperand b, float beta, float* C, int64_t ldc, Cuda::BatchStrides sc, int64_t outer,
                      int64_t inner, const char* op) {
  // The float path's checks of the stored leading dimensions (the same errors).
  (void)plan_gemm(ta, tb, M, N, K, a.ld, b.ld, ldc, op);
  const int64_t count = outer * inner;
  const int64_t a_ld = bf16_packed_ld(a.cols), b_ld = bf16_packed_ld(b.cols);
  const int64_t a_slice = a.rows * a_ld, b_slice = b.rows * b_ld;
  const int64_t b_offset = (count * a_slice + 127) / 128 * 128;  // B from a 256-byte boundary
  auto* pa = static_cast<__nv_bfloat16*>(
      s.bf16_workspace(static_cast<std::size_t>(b_offset + count * b_slice) * sizeof(__nv_bfloat16), op));
  __nv_bfloat16* pb = pa + b_offset;
  pack_bf16(s, a, outer, inner, pa, a_ld, a_slice, op);
  pack_bf16(s, b, outer, inner, pb, b_ld, b_slice, op);
  // Row-major C = op(A) op(B) as column-major C^T = op(B)^T op(A)^T, as plan_gemm says.
  const auto p = plan_gemm(ta, tb, M, N, K, a_ld, b_ld, ldc, op);
  // The handle's math mode is shared with the float path: no TF32 here (Bf16Mixed wins);
  // bf16 inputs with CUBLAS_COMPUTE_32F run on the tensor cores in the default mode.
  check(cublasSetMathMode(s.blas, CUBLAS_DEFAULT_MATH), op);
  constexpr cudaDataType_t kIn = CUDA_R_16BF, kOut = CUDA_R_32F;
  constexpr cublasComputeType_t kCompute = CUBLAS_COMPUTE_32F;
  if (count == 1) {
    check(cublasGemmEx(s.blas, p.op_b, p.op_a, p.m, p.n, p.k, &alpha, pb, kIn, p.ldb, pa, kIn, p.lda, &beta, C, kOut,
                       p.ldc, kCompute, CUBLAS_GEMM_DEFAULT),
          op);
    return;
  }
  const int batch = to_int(count, op, "batch count");
  // C's stride when its slices (o, i) lie one stride apart in o * inner + i order.
  int64_t c_stride = -1;
  if (inner == 1) c_stride = sc.outer;
  else if (outer == 1) c_stride = sc.inner;
  else if (sc.outer == inner * sc.inner) c_stride = sc.inner;
  if (c_stride >= 0) {
    check(cublasGemmStridedBatchedEx(s.blas, p.op_b, p.op_a, p.m, p.n, p.k, &alpha, pb, kIn, p.ldb, b_slice, pa, kIn,
                                     p.lda, a_slice, &beta, C, kOut, p.ldc, c_stride, batch, kCompute,
                                     CUBLAS_GEMM_DEFAULT),
          op);
    return;
  }
  void* scratch = s.workspace(3 * static_cast<std::size_t>(count) * sizeof(void*), op);
  auto** ppa = static_cast<const __nv_bfloat16**>(scratch);
  auto** ppb = ppa + count;
  auto** ppc = static_cast<float**>(scratch) + 2 * count;
  batch_pointers_kernel<__nv_bfloat16, float><<<blocks_for(count), kThreads, 0, s.stream>>>(
      count, inner, pa, inner * a_slice, a_slice, pb, inner * b_slice, b_slice, C, sc.outer, sc.inner, ppa, ppb, ppc);
  check_launch(op);
  check(cublasGemmBatchedEx(s.blas, p.op_b, p.op_a, p.m, p.n, p.k, &alpha, reinterpret_cast<const void* const*>(ppb),
                            kIn, p.ldb, reinterpret_cast<const void* const*>(ppa), kIn, p.lda, &beta,
                            reinterpret_cast<void* const*>(ppc), kOut, p.ldc, batch, kCompute, CUBLAS_GEMM_DEFAULT),
        op);
}

template <class T>
void scale_matrix(const State& s, int64_t M, int64_t N, T beta, T* C, int64_t ldc, const char* op) {
  if (beta == T(1) || M * N == 0) return;
  scale_matrix_kernel<T><<<blocks_for(M * N), kThreads, 0, s.stream>>>(M, N, beta, C, ldc);
  check_launch(op);
}

// Sum (Square: sum of squares) of n values in double, left in device memory at `result`;
// scratch holds the per-block partials. The grid depends on n only, so results repeat.
template <class T, bool Square>
void reduce_to_device(const State& s, int64_t n, const T* x, double* partial, double* result, const char* op) {
  const unsigned blocks = std::min<unsigned>(blocks_for(n, int64_t{kThreads} * 8), 1024u);
  reduce_partial_kernel<T, Square><<<blocks, kThreads, 0, s.stream>>>(n, x, partial);
  check_launch(op);
  reduce_finish_kernel<><<<1, kThreads, 0, s.stream>>>(blocks, partial, result);
  check_launch(op);
}
inline constexpr int64_t kReduceSlots = 1024 + 8;  // partials + the result, in doubles

inline double fetch_double(State& s, const double* dev, const char* op) {
  double host = 0;
  check(cudaMemcpyAsync(&host, dev, sizeof(double), cudaMemcpyDeviceToHost, s.stream), op);
  check(cudaStreamSynchronize(s.stream), op);
  return host;
}

// Column sums for bias_backward / layer_norm_backward: splits of rows_per_split rows.
inline void column_split(int64_t rows, int64_t& splits, int64_t& rows_per_split) {
  splits = std::clamp<int64_t>((rows + 255) / 256, 1, 64);
  rows_per_split = (rows + splits - 1) / splits;
  if (rows_per_split == 0) rows_per_split = 1;
}

}  // namespace cuda_detail

// ====================================================================== ops

inline std::string Cuda::unavailable_reason(int device) {
  std::string why;
  const int n = cuda_detail::device_count(&why);
  if (n == 0) return "no CUDA device (" + why + ")";
  if (device < 0 || device >= n) return "no CUDA device " + std::to_string(device) + " (" + std::to_string(n) + " present)";
  int current = 0;
  if (cudaGetDevice(&current) != cudaSuccess) current = -1;
  if (current != device && cudaSetDevice(device) != cudaSuccess) {
    cudaGetLastError();
    return "cudaSetDevice(" + std::to_string(device) + ") failed";
  }
  cudaFuncAttributes attributes{};
  const cudaError_t e = cudaFuncGetAttributes(&attributes, cuda_detail::fill_kernel<float>);
  if (current >= 0 && current != device) cudaSetDevice(current);
  if (e != cudaSuccess) {
    cudaGetLastError();
    cudaDeviceProp prop{};
    cudaGetDeviceProperties(&prop, device);
    return "this binary holds no kernel for device " + std::to_string(device) + " (" + prop.name + ", sm_" +
           std::to_string(prop.major) + std::to_string(prop.minor) + "): " + cuda_detail::error_text(e) +
           "; add it to CMAKE_CUDA_ARCHITECTURES";
  }
  return {};
}

template <class T>
void Cuda::fill(const Context& ctx, int64_t n, T value, T* x) {
  if (n <= 0) return;
  auto& s = ctx.state();
  cuda_detail::activate(s, "fill");
  cuda_detail::fill_kernel<T><<<cuda_detail::blocks_for(n), cuda_detail::kThreads, 0, s.stream>>>(n, value, x);
  cuda_detail::check_launch("fill");
}

template <class T>
void Cuda::copy(const Context& ctx, int64_t n, const T* x, T* y) {
  if (n <= 0 || x == y) return;
  auto& s = ctx.state();
  cuda_detail::activate(s, "copy");
  cuda_detail::check(cudaMemcpyAsync(y, x, static_cast<std::size_t>(n) * sizeof(T), cudaMemcpyDeviceToDevice, s.stream),
                     "copy");
}

template <class T>
void Cuda::axpby(const Context& ctx, int64_t n, T a, const T* x, T b, T* y) {
  if (n <= 0) return;
  auto& s = ctx.state();
  cuda_detail::activate(s, "axpby");
  cuda_detail::axpby_kernel<T><<<cuda_detail::blocks_for(n), cuda_detail::kThreads, 0, s.stream>>>(n, a, x, b, y);
  cuda_detail::check_launch("axpby");
}

template <class T>
void Cuda::add(const Context& ctx, int64_t n, const T* a, const T* b, T* out) {
  if (n <= 0) return;
  auto& s = ctx.state();
  cuda_detail::activate(s, "add");
  cuda_detail::add_kernel<T><<<cuda_detail::blocks_for(n), cuda_detail::kThreads, 0, s.stream>>>(n, a, b, out);
  cuda_detail::check_launch("add");
}

template <class T>
void Cuda::scale(const Context& ctx, int64_t n, T a, T* x) {
  if (n <= 0) return;
  auto& s = ctx.state();
  cuda_detail::activate(s, "scale");
  cuda_detail::scale_kernel<T><<<cuda_detail::blocks_for(n), cuda_detail::kThreads, 0, s.stream>>>(n, a, x);
  cuda_detail::check_launch("scale");
}

template <class T>
void Cuda::mul(const Context& ctx, int64_t n, const T* a, const T* b, T* out) {
  if (n <= 0) return;
  auto& s = ctx.state();
  cuda_detail::activate(s, "mul");
  cuda_detail::mul_kernel<T><<<cuda_detail::blocks_for(n), cuda_detail::kThreads, 0, s.stream>>>(n, a, b, out);
  cuda_detail::check_launch("mul");
}

template <class T>
void Cuda::to_device(const Context& ctx, int64_t n, const T* host, T* dev) {
  if (n <= 0) return;
  auto& s = ctx.state();
  cuda_detail::activate(s, "to_device");
  cuda_detail::check(cudaMemcpyAsync(dev, host, static_cast<std::size_t>(n) * sizeof(T), cudaMemcpyHostToDevice,
                                     s.stream),
                     "to_device");
  // Callers reuse their host buffers at once (even pinned ones, which the copy reads late).
  cuda_detail::check(cudaStreamSynchronize(s.stream), "to_device");
}

template <class T>
void Cuda::to_host(const Context& ctx, int64_t n, const T* dev, T* host) {
  if (n <= 0) return;
  auto& s = ctx.state();
  cuda_detail::activate(s, "to_host");
  cuda_detail::check(cudaMemcpyAsync(host, dev, static_cast<std::size_t>(n) * sizeof(T), cudaMemcpyDeviceToHost,
                                     s.stream),
                     "to_host");
  cuda_detail::check(cudaStreamSynchronize(s.stream), "to_host");
}

template <class T>
void Cuda::gemm(const Context& ctx, bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "Cuda::gemm: float or double");
  if (M <= 0 || N <= 0) return;
  auto& s = ctx.state();
  cuda_detail::activate(s, "gemm");
  if (K <= 0) {  // C = beta C, as the CPU (beta = 0 writes zeros)
    cuda_detail::scale_matrix(s, M, N, beta, C, ldc, "gemm");
    return;
  }
  if constexpr (std::is_same_v<T, float>)
    if (ctx.precision == Precision::Bf16Mixed) {
      cuda_detail::gemm_bf16(s, ta, tb, M, N, K, alpha, {A, ta ? K : M, ta ? M : K, lda, 0, 0},
                             {B, tb ? N : K, tb ? K : N, ldb, 0, 0}, beta, C, ldc, {0, 0}, 1, 1, "gemm");
      return;
    }
  const auto p = cuda_detail::plan_gemm(ta, tb, M, N, K, lda, ldb, ldc, "gemm");
  cuda_detail::set_math_mode(ctx, s.blas, "gemm");
  cuda_detail::check(cuda_detail::blas_gemm(s.blas, p.op_b, p.op_a, p.m, p.n, p.k, &alpha, B, p.ldb, A, p.lda, &beta, C,
                                            p.ldc),
                     "gemm");
}

template <class T>
void Cuda::gemm_batched(const Context& ctx, bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                        int64_t lda, BatchStrides sa, const T* B, int64_t ldb, BatchStrides sb, T beta, T* C,
                        int64_t ldc, BatchStrides sc, int64_t outer, int64_t inner) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "Cuda::gemm_batched: float or double");
  if (M <= 0 || N <= 0 || outer <= 0 || inner <= 0) return;
  auto& s = ctx.state();
  cuda_detail::activate(s, "gemm_batched");
  if (K <= 0) {
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t i = 0; i < inner; ++i)
        cuda_detail::scale_matrix(s, M, N, beta, C + o * sc.outer + i * sc.inner, ldc, "gemm_batched");
    return;
  }
  if constexpr (std::is_same_v<T, float>)
    if (ctx.precision == Precision::Bf16Mixed) {
      cuda_detail::gemm_bf16(s, ta, tb, M, N, K, alpha, {A, ta ? K : M, ta ? M : K, lda, sa.outer, sa.inner},
                             {B, tb ? N : K, tb ? K : N, ldb, sb.outer, sb.inner}, beta, C, ldc, sc, outer, inner,
                             "gemm_batched");
      return;
    }
  const auto p = cuda_detail::plan_gemm(ta, tb, M, N, K, lda, ldb, ldc, "gemm_batched");
  cuda_detail::set_math_mode(ctx, s.blas, "gemm_batched");
  auto run = [&](const T* a, const T* b, T* c, int64_t stride_a, int64_t stride_b, int64_t stride_c, int64_t count) {
    cuda_detail::check(cuda_detail::blas_gemm_strided(s.blas, p.op_b, p.op_a, p.m, p.n, p.k, &alpha, b, p.ldb,
                                                      stride_b, a, p.lda, stride_a, &beta, c, p.ldc, stride_c,
                                                      cuda_detail::to_int(count, "gemm_batched", "batch count")),
                       "gemm_batched");
  };
  // One strided call when the two levels collapse into one stride.
  if (inner == 1) {
    run(A, B, C, sa.outer, sb.outer, sc.outer, outer);
  } else if (outer == 1) {
    run(A, B, C, sa.inner, sb.inner, sc.inner, inner);
  } else if (sa.outer == inner * sa.inner && sb.outer == inner * sb.inner && sc.outer == inner * sc.inner) {
    run(A, B, C, sa.inner, sb.inner, sc.inner, outer * inner);
  } else {
    // Two levels that do not collapse (attention's [example][head] blocks, heads interleaved
    // in [B*L, D]): one pointer-array call over all outer * inner matrices instead of a
    // strided call per example. A kernel writes the pointers into scratch, on the stream.
    const int64_t count = outer * inner;
    const int batch = cuda_detail::to_int(count, "gemm_batched", "batch count");
    void* scratch = s.workspace(3 * static_cast<std::size_t>(count) * sizeof(T*), "gemm_batched");
    auto** pa = static_cast<const T**>(scratch);
    auto** pb = pa + count;
    auto** pc = static_cast<T**>(scratch) + 2 * count;
    cuda_detail::batch_pointers_kernel<T><<<cuda_detail::blocks_for(count), cuda_detail::kThreads, 0, s.stream>>>(
        count, inner, A, sa.outer, sa.inner, B, sb.outer, sb.inner, C, sc.outer, sc.inner, pa, pb, pc);
    cuda_detail::check_launch("gemm_batched");
    cuda_detail::check(cuda_detail::blas_gemm_pointers(s.blas, p.op_b, p.op_a, p.m, p.n, p.k, &alpha, pb, p.ldb, pa,
                                                       p.lda, &beta, pc, p.ldc, batch),
                       "gemm_batched");
  }
}

template <class T>
void Cuda::add_bias(const Context& ctx, int64_t rows, int64_t cols, const T* bias, T* y) {
  if (rows <= 0 || cols <= 0) return;
  auto& s = ctx.state();
  cuda_detail::activate(s, "add_bias");
  cuda_detail::add_bias_kernel<T><<<cuda_detail::blocks_for(rows * cols), cuda_detail::kThreads, 0, s.stream>>>(
      rows, cols, bias, y);
  cuda_detail::check_launch("add_bias");
}

template <class T>
void Cuda::bias_backward(const Context& ctx, int64_t rows, int64_t cols, const T* dy, T* dbias) {
  if (rows <= 0 || cols <= 0) return;
  auto& s = ctx.state();
  cuda_detail::activate(s, "bias_backward");
  int64_t splits = 1, per = 1;
  cuda_detail::column_split(rows, splits, per);
  T* part = static_cast<T*>(s.workspace(static_cast<std::size_t>(splits * cols) * sizeof(T), "bias_backward"));
  const dim3 grid(static_cast<unsigned>((cols + 31) / 32), static_cast<unsigned>(splits));
  cuda_detail::column_partials_kernel<T, false><<<grid, dim3(32, 8), 0, s.stream>>>(rows, cols, per, dy, nullptr,
                                                                                   nullptr, nullptr, nullptr, part);
  cuda_detail::check_launch("bias_backward");
  cuda_detail::column_finish_kernel<T><<<cuda_detail::blocks_for(cols), cuda_detail::kThreads, 0, s.stream>>>(
      cols, splits, nullptr, part, nullptr, dbias);
  cuda_detail::check_launch("bias_backward");
}

template <class T>
void Cuda::gelu_forward(const Context& ctx, int64_t n, const T* x, T* y) {
  if (n <= 0) return;
  auto& s = ctx.state();
  cuda_detail::activate(s, "gelu_forward");
  cuda_detail::gelu_forward_kernel<T><<<cuda_detail::blocks_for(n), cuda_detail::kThreads, 0, s.stream>>>(n, x, y);
  cuda_detail::check_launch("gelu_forward");
}

#define ADDROP_CUDA_POINTWISE_OP(name, params, args)                                                   \
  template <class T>                                                                                   \
  void Cuda::name params {                                                                             \
    if (n <= 0) return;                                                                                \
    auto& s = ctx.state();                                                                             \
    cuda_detail::activate(s, #name);                                                                   \
    cuda_detail::name##_kernel<T><<<cuda_detail::blocks_for(n), cuda_detail::kThreads, 0, s.stream>>> args; \
    cuda_detail::check_launch(#name);                                                                  \
  }
ADDROP_CUDA_POINTWISE_OP(silu_forward, (const Context& ctx, int64_t n, const T* x, T* y), (n, x, y))
ADDROP_CUDA_POINTWISE_OP(silu_backward, (const Context& ctx, int64_t n, const T* x, const T* dy, T* dx), (n, x, dy, dx))
ADDROP_CUDA_POINTWISE_OP(relu_forward, (const Context& ctx, int64_t n, const T* x, T* y), (n, x, y))
ADDROP_CUDA_POINTWISE_OP(relu_backward, (const Context& ctx, int64_t n, const T* x, const T* dy, T* dx), (n, x, dy, dx))
#undef ADDROP_CUDA_POINTWISE_OP

template <class T>
void Cuda::gelu_backward(const Context& ctx, int64_t n, const T* x, const T* dy, T* dx) {
  if (n <= 0) return;
  auto& s = ctx.state();
  cuda_detail::activate(s, "gelu_backward");
  cuda_detail::gelu_backward_kernel<T><<<cuda_detail::blocks_for(n), cuda_detail::kThreads, 0, s.stream>>>(n, x, dy,
                                                                                                          dx);
  cuda_detail::check_launch("gelu_backward");
}

template <class T>
void Cuda::tanh_forward(const Context& ctx, int64_t n, const T* x, T* y) {
  if (n <= 0) return;
  auto& s = ctx.state();
  cuda_detail::activate(s, "tanh_forward");
  cuda_detail::tanh_forward_kernel<T><<<cuda_detail::blocks_for(n), cuda_detail::kThreads, 0, s.stream>>>(n, x, y);
  cuda_detail::check_launch("tanh_forward");
}

template <class T>
void Cuda::tanh_backward(const Context& ctx, int64_t n, const T* y, const T* dy, T* dx) {
  if (n <= 0) return;
  auto& s = ctx.state();
  cuda_detail::activate(s, "tanh_backward");
  cuda_detail::tanh_backward_kernel<T><<<cuda_detail::blocks_for(n), cuda_detail::kThreads, 0, s.stream>>>(n, y, dy,
                                                                                                          dx);
  cuda_detail::check_launch("tanh_backward");
}

template <class T>
void Cuda::layer_norm_forward(const Context& ctx, int64_t rows, int64_t cols, T eps, const T* x, const T* gamma,
                              const T* beta, T* y, T* mean, T* rstd) {
  if (rows <= 0 || cols <= 0) return;
  auto& s = ctx.state();
  cuda_detail::activate(s, "layer_norm_forward");
  cuda_detail::layer_norm_forward_kernel<T>
      <<<cuda_detail::blocks_for(rows, cuda_detail::kWarpsPerBlock), cuda_detail::kThreads, 0, s.stream>>>(
          rows, cols, eps, x, gamma, beta, y, mean, rstd);
  cuda_detail::check_launch("layer_norm_forward");
}

template <class T>
void Cuda::layer_norm_backward(const Context& ctx, int64_t rows, int64_t cols, const T* dy, const T* x, const T* mean,
                               const T* rstd, const T* gamma, T* dx, bool accumulate_dx, T* dgamma, T* dbeta) {
  if (rows <= 0 || cols <= 0) return;
  auto& s = ctx.state();
  cuda_detail::activate(s, "layer_norm_backward");
  // Parameter gradients first: dx may overwrite dy.
  if (dgamma || dbeta) {
    int64_t splits = 1, per = 1;
    cuda_detail::column_split(rows, splits, per);
    T* part = static_cast<T*>(s.workspace(static_cast<std::size_t>(2 * splits * cols) * sizeof(T), "layer_norm_backward"));
    const dim3 grid(static_cast<unsigned>((cols + 31) / 32), static_cast<unsigned>(splits));
    cuda_detail::column_partials_kernel<T, true><<<grid, dim3(32, 8), 0, s.stream>>>(rows, cols, per, dy, x, mean, rstd,
                                                                                    part, part + splits * cols);
    cuda_detail::check_launch("layer_norm_backward");
    cuda_detail::column_finish_kernel<T><<<cuda_detail::blocks_for(cols), cuda_detail::kThreads, 0, s.stream>>>(
        cols, splits, part, part + splits * cols, dgamma, dbeta);
    cuda_detail::check_launch("layer_norm_backward");
  }
  if (!dx) return;
  cuda_detail::layer_norm_backward_dx_kernel<T>
      <<<cuda_detail::blocks_for(rows, cuda_detail::kWarpsPerBlock), cuda_detail::kThreads, 0, s.stream>>>(
          rows, cols, dy, x, mean, rstd, gamma, dx, accumulate_dx);
  cuda_detail::check_launch("layer_norm_backward");
}

template <class T>
void Cuda::attention_softmax_forward(const Context& ctx, int64_t B, int64_t H, int64_t Lq, int64_t Lk, T scale,
                                     const T* scores, const T* key_bias, const T* extra, bool causal, T* probs) {
  const int64_t rows = B * H * Lq;
  if (rows <= 0 || Lk <= 0) return;
  auto& s = ctx.state();
  cuda_detail::activate(s, "attention_softmax_forward");
  cuda_detail::attention_softmax_kernel<T>
      <<<cuda_detail::blocks_for(rows, cuda_detail::kWarpsPerBlock), cuda_detail::kThreads, 0, s.stream>>>(
          rows, Lq, H * Lq, Lk, scale, scores, key_bias, extra, causal, probs);
  cuda_detail::check_launch("attention_softmax_forward");
}

template <class T>
void Cuda::softmax_backward(const Context& ctx, int64_t rows, int64_t L, T scale, const T* probs, const T* dprobs,
                            T* dscores) {
  if (rows <= 0 || L <= 0) return;
  auto& s = ctx.state();
  cuda_detail::activate(s, "softmax_backward");
  cuda_detail::softmax_backward_kernel<T>
      <<<cuda_detail::blocks_for(rows, cuda_detail::kWarpsPerBlock), cuda_detail::kThreads, 0, s.stream>>>(
          rows, L, scale, probs, dprobs, dscores);
  cuda_detail::check_launch("softmax_backward");
}

template <class T>
void Cuda::uniform(const Context& ctx, int64_t n, uint64_t seed, uint64_t stream, T* out, int64_t first) {
  if (n <= 0) return;
  auto& s = ctx.state();
  cuda_detail::activate(s, "uniform");
  cuda_detail::uniform_kernel<T>
      <<<cuda_detail::blocks_for(cuda_detail::draw_group_count(n, first)), cuda_detail::kThreads, 0, s.stream>>>(
          n, seed, stream, out, first);
  cuda_detail::check_launch("uniform");
}

template <class T>
void Cuda::dropout_forward(const Context& ctx, int64_t n, float p, uint64_t seed, uint64_t stream, const T* x, T* y,
                           int64_t first) {
  if (p <= 0.0f) { copy(ctx, n, x, y); return; }
  if (n <= 0) return;
  auto& s = ctx.state();
  cuda_detail::activate(s, "dropout_forward");
  const T keep_scale = T(1) / (T(1) - T(p));
  cuda_detail::dropout_forward_kernel<T>
      <<<cuda_detail::blocks_for(cuda_detail::draw_group_count(n, first)), cuda_detail::kThreads, 0, s.stream>>>(
          n, p, seed, stream, keep_scale, x, y, first);
  cuda_detail::check_launch("dropout_forward");
}

template <class T>
void Cuda::dropout_backward(const Context& ctx, int64_t n, float p, uint64_t seed, uint64_t stream, const T* dy, T* dx,
                            bool accumulate, int64_t first) {
  if (p <= 0.0f) {
    if (accumulate) axpby(ctx, n, T(1), dy, T(1), dx); else copy(ctx, n, dy, dx);
    return;
  }
  if (n <= 0) return;
  auto& s = ctx.state();
  cuda_detail::activate(s, "dropout_backward");
  const T keep_scale = T(1) / (T(1) - T(p));
  cuda_detail::dropout_backward_kernel<T>
      <<<cuda_detail::blocks_for(cuda_detail::draw_group_count(n, first)), cuda_detail::kThreads, 0, s.stream>>>(
          n, p, seed, stream, keep_scale, dy, dx, accumulate, first);
  cuda_detail::check_launch("dropout_backward");
}

template <class T>
void Cuda::embedding_forward(const Context& ctx, int64_t tokens, int64_t dim, const int32_t* ids, const T* table,
                             T* out, bool accumulate) {
  if (tokens <= 0 || dim <= 0) return;
  auto& s = ctx.state();
  cuda_detail::activate(s, "embedding_forward");
  cuda_detail::embedding_forward_kernel<T><<<cuda_detail::blocks_for(tokens * dim), cuda_detail::kThreads, 0, s.stream>>>(
      tokens, dim, ids, table, out, accumulate);
  cuda_detail::check_launch("embedding_forward");
}

template <class T>
void Cuda::embedding_backward(const Context& ctx, int64_t tokens, int64_t dim, const int32_t* ids, const T* dout,
                              T* dtable, int64_t padding_idx) {
  if (tokens <= 0 || dim <= 0) return;
  auto& s = ctx.state();
  cuda_detail::activate(s, "embedding_backward");
  auto* first = static_cast<int32_t*>(s.workspace(static_cast<std::size_t>(tokens) * sizeof(int32_t),
                                                   "embedding_backward"));
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(tokens, cuda_detail::kMaxBlocks));
  cuda_detail::embedding_first_kernel<><<<blocks, cuda_detail::kThreads, 0, s.stream>>>(tokens, ids, padding_idx,
                                                                                       first);
  cuda_detail::check_launch("embedding_backward");
  const int64_t tiles = (dim + 31) / 32;
  if (tiles > 65535) cuda_detail::fail("embedding_backward", "dim = " + std::to_string(dim) + " is above 2097120");
  const dim3 grid(blocks, static_cast<unsigned>(tiles));
  cuda_detail::embedding_backward_kernel<T><<<grid, cuda_detail::kThreads, 0, s.stream>>>(tokens, dim, ids, first,
                                                                                         dout, dtable);
  cuda_detail::check_launch("embedding_backward");
}

template <class T>
double Cuda::cross_entropy(const Context& ctx, int64_t rows, int64_t classes, const T* logits, const int32_t* labels,
                           int32_t ignore_index, T label_smoothing, T* dlogits, int64_t denominator) {
  if (rows <= 0) return 0.0;
  auto& s = ctx.state();
  cuda_detail::activate(s, "cross_entropy");
  // scratch: [counted (only without a denominator)][losses per row]
  auto* scratch = static_cast<double*>(s.workspace(static_cast<std::size_t>(rows + 1) * sizeof(double), "cross_entropy"));
  if (denominator <= 0) {
    cuda_detail::count_labels_kernel<><<<1, cuda_detail::kThreads, 0, s.stream>>>(rows, labels, ignore_index, scratch);
    cuda_detail::check_launch("cross_entropy");
  }
  cuda_detail::cross_entropy_kernel<T>
      <<<cuda_detail::blocks_for(rows, cuda_detail::kWarpsPerBlock), cuda_detail::kThreads, 0, s.stream>>>(
          rows, classes, logits, labels, ignore_index, label_smoothing, dlogits, scratch, scratch + 1, denominator);
  cuda_detail::check_launch("cross_entropy");
  s.host.resize(std::max(s.host.size(), static_cast<std::size_t>(rows + 1)));
  const int64_t skip = denominator > 0 ? 1 : 0;  // scratch[0] holds no count then: not read
  cuda_detail::check(cudaMemcpyAsync(s.host.data() + skip, scratch + skip,
                                     static_cast<std::size_t>(rows + 1 - skip) * sizeof(double),
                                     cudaMemcpyDeviceToHost, s.stream),
                     "cross_entropy");
  cuda_detail::check(cudaStreamSynchronize(s.stream), "cross_entropy");
  // The rows' losses summed on the host in row order, as the CPU does (ignored rows add 0).
  const auto counted = denominator > 0 ? denominator : static_cast<int64_t>(s.host[0]);
  double total = 0;
  for (int64_t r = 0; r < rows; ++r) total += s.host[static_cast<std::size_t>(r + 1)];
  return counted ? total / static_cast<double>(counted) : 0.0;
}

template <class T>
double Cuda::mse(const Context& ctx, int64_t n, const T* pred, const T* target, T* dpred, int64_t denominator) {
  if (n <= 0) return 0.0;
  auto& s = ctx.state();
  cuda_detail::activate(s, "mse");
  auto* scratch = static_cast<double*>(
      s.workspace(static_cast<std::size_t>(n + cuda_detail::kReduceSlots) * sizeof(double), "mse"));
  double* sq = scratch + cuda_detail::kReduceSlots;
  const int64_t count = denominator > 0 ? denominator : n;
  cuda_detail::mse_kernel<T><<<cuda_detail::blocks_for(n), cuda_detail::kThreads, 0, s.stream>>>(n, count, pred,
                                                                                                target, dpred, sq);
  cuda_detail::check_launch("mse");
  cuda_detail::reduce_to_device<double, false>(s, n, sq, scratch, scratch + 1024, "mse");
  return cuda_detail::fetch_double(s, scratch + 1024, "mse") / static_cast<double>(count);
}

template <class T>
double Cuda::sum_squares(const Context& ctx, int64_t n, const T* x) {
  if (n <= 0) return 0.0;
  auto& s = ctx.state();
  cuda_detail::activate(s, "sum_squares");
  auto* scratch = static_cast<double*>(s.workspace(cuda_detail::kReduceSlots * sizeof(double), "sum_squares"));
  cuda_detail::reduce_to_device<T, true>(s, n, x, scratch, scratch + 1024, "sum_squares");
  return cuda_detail::fetch_double(s, scratch + 1024, "sum_squares");
}

namespace cuda_detail {
// The candidates of a [B, H, Lq, Lk] site (0/1 into `candidates`), in two variants callable
// directly (tests reach the rank variant), and the choice between them.
template <class T>
void top_p_candidates_sort(const State& s, int64_t B, int64_t H, int64_t Lq, int64_t Lk, const T* scores,
                           const int32_t* key_mask, const int64_t* k, bool high, T* candidates) {
  int64_t P = 1;
  while (P < Lk) P <<= 1;
  const int64_t rows = B * H * Lq;
  const unsigned threads = static_cast<unsigned>(std::clamp<int64_t>(P / 2, 32, kThreads));
  top_p_sort_kernel<T><<<static_cast<unsigned>(std::min(rows, kMaxBlocks)), threads,
                         static_cast<std::size_t>(P) * sizeof(T), s.stream>>>(rows, H * Lq, Lk, P, scores, key_mask,
                                                                              k, high, candidates);
  check_launch("select_top_p");
}
template <class T>
void top_p_candidates_rank(const State& s, int64_t B, int64_t H, int64_t Lq, int64_t Lk, const T* scores,
                           const int32_t* key_mask, const int64_t* k, bool high, T* candidates) {
  const int64_t rows = B * H * Lq;
  top_p_rank_kernel<T><<<static_cast<unsigned>(std::min(rows, kMaxBlocks)), kThreads, 0, s.stream>>>(
      rows, H * Lq, Lk, scores, key_mask, k, high, candidates);
  check_launch("select_top_p");
}
inline constexpr std::size_t kTopPSharedBytes = 48 * 1024;  // the default dynamic shared-memory limit
template <class T>
void top_p_candidates(const State& s, int64_t B, int64_t H, int64_t Lq, int64_t Lk, const T* scores,
                      const int32_t* key_mask, const int64_t* k, bool high, T* candidates) {
  int64_t P = 1;
  while (P < Lk) P <<= 1;
  if (static_cast<std::size_t>(P) * sizeof(T) <= kTopPSharedBytes)
    top_p_candidates_sort(s, B, H, Lq, Lk, scores, key_mask, k, high, candidates);
  else
    top_p_candidates_rank(s, B, H, Lq, Lk, scores, key_mask, k, high, candidates);
}
}  // namespace cuda_detail

template <class T>
void Cuda::select_top_p(const Context& ctx, int64_t B, int64_t H, int64_t Lq, int64_t Lk, const T* scores,
                        const int32_t* key_mask, const int64_t* k, bool high, const float* u, uint64_t seed,
                        uint64_t stream, float keep_below, T dropped_value, T* additive, T* candidates, T* keep,
                        int64_t first_draw) {
  if (B <= 0 || H <= 0 || Lq <= 0 || Lk <= 0) return;
  const int64_t n = B * H * Lq * Lk;
  T* flags = candidates ? candidates : additive ? additive : keep;
  if (!flags) return;
  auto& s = ctx.state();
  cuda_detail::activate(s, "select_top_p");
  cuda_detail::top_p_candidates(s, B, H, Lq, Lk, scores, key_mask, k, high, flags);
  cuda_detail::q_sample_fused_kernel<T>
      <<<cuda_detail::blocks_for(cuda_detail::draw_group_count(n, first_draw)), cuda_detail::kThreads, 0, s.stream>>>(
          n, flags, u, seed, stream, keep_below, dropped_value, additive, candidates, keep, first_draw);
  cuda_detail::check_launch("select_top_p");
}

template <class T>
void Cuda::select_random(const Context& ctx, int64_t B, int64_t H, int64_t Lq, int64_t Lk, const int32_t* key_mask,
                         const float* u1, uint64_t seed, uint64_t stream1, float keep_p, const float* u2,
                         uint64_t stream2, float keep_q, T dropped_value, T* additive, T* candidates, T* keep,
                         int64_t first_draw) {
  if (B <= 0 || H <= 0 || Lq <= 0 || Lk <= 0) return;
  const int64_t n = B * H * Lq * Lk;
  auto& s = ctx.state();
  cuda_detail::activate(s, "select_random");
  cuda_detail::random_select_kernel<T>
      <<<cuda_detail::blocks_for(cuda_detail::draw_group_count(n, first_draw)), cuda_detail::kThreads, 0, s.stream>>>(
          n, H * Lq, Lk, key_mask, u1, seed, stream1, keep_p, u2, stream2, keep_q, dropped_value, additive, candidates,
          keep, first_draw);
  cuda_detail::check_launch("select_random");
}

template <class T>
void Cuda::adamw_update(const Context& ctx, int64_t n, T* param, const T* grad, T* m, T* v, double lr, double beta1,
                        double beta2, double eps, double weight_decay, int64_t t, bool hugging_face) {
  if (n <= 0) return;
  auto& s = ctx.state();
  cuda_detail::activate(s, "adamw_update");
  // The step constants exactly as the CPU computes them (on the host, in double).
  const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(t));
  const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(t));
  // 1 - beta in double, then rounded (as torch does), not 1 - float(beta).
  const T b1 = T(beta1), b2 = T(beta2), c1 = T(1.0 - beta1), c2 = T(1.0 - beta2), e = T(eps);
  if (hugging_face) {
    const T step = T(lr * std::sqrt(bc2) / bc1), decay = T(lr * weight_decay);
    cuda_detail::adamw_hf_kernel<T><<<cuda_detail::blocks_for(n), cuda_detail::kThreads, 0, s.stream>>>(
        n, param, grad, m, v, b1, b2, c1, c2, e, step, decay);
  } else {
    const T keep = T(1.0 - lr * weight_decay), step = T(lr / bc1), inv_sqrt_bc2 = T(1.0 / std::sqrt(bc2));
    cuda_detail::adamw_torch_kernel<T><<<cuda_detail::blocks_for(n), cuda_detail::kThreads, 0, s.stream>>>(
        n, param, grad, m, v, b1, b2, c1, c2, e, keep, step, inv_sqrt_bc2);
  }
  cuda_detail::check_launch("adamw_update");
}

}  // namespace addrop::backend
