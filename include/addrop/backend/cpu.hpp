#pragma once
// The CPU backend: Eigen for GEMM, OpenMP loops for everything else.
//
// Every op takes the backend context first and raw row-major buffers with explicit
// sizes (the llm.c convention: shapes are written in the comments). The CUDA backend
// offers the same static members with device pointers, so nn/ and models/ are written
// once against `Backend::op(...)`. The ops the library calls, and only those, make up the
// Backend concept (backend.hpp); this file's comments give their semantics.
//
// Backward ops *write* their input gradient (dx = ...) unless the name or a flag says
// `accumulate`; parameter gradients always accumulate (dW += ...), like autograd.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

#include "backend.hpp"
#include "philox.hpp"
#include "precision.hpp"

namespace addrop::backend {

/// Counts buffer allocations made by all CPU tensors; the "no allocation inside a step
/// after the first" tests read it before and after a step.
inline std::atomic<int64_t>& cpu_allocation_count() {
  static std::atomic<int64_t> count{0};
  return count;
}

struct Cpu {
  static constexpr const char* name = "cpu";

  /// Per-run settings of the backend: how many threads the ops use, and the precision of
  /// float matrix products (gemm, gemm_batched; see precision.hpp and cpu_bf16.hpp).
  struct Context {
    int threads = 0;  ///< 0 = OpenMP's default (all cores)
    Precision precision = Precision::F32;
    int num_threads() const;
  };

  /// 64-byte aligned, grow-only storage.
  template <class T>
  class Buffer {
   public:
    Buffer() = default;
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    Buffer(Buffer&& o) noexcept : data_(o.data_), capacity_(o.capacity_) { o.data_ = nullptr; o.capacity_ = 0; }
    Buffer& operator=(Buffer&& o) noexcept {
      if (this != &o) { release(); data_ = o.data_; capacity_ = o.capacity_; o.data_ = nullptr; o.capacity_ = 0; }
      return *this;
    }
    ~Buffer() { release(); }
    void reserve(int64_t n) {
      if (n <= capacity_) return;
      release();
      const std::size_t bytes = ((static_cast<std::size_t>(n) * sizeof(T) + 63) / 64) * 64;
      data_ = static_cast<T*>(::operator new(bytes, std::align_val_t{64}));
      capacity_ = n;
      ++cpu_allocation_count();
    }
    T* data() { return data_; }
    const T* data() const { return data_; }
    int64_t capacity() const { return capacity_; }

   private:
    void release() {
      if (data_) ::operator delete(data_, std::align_val_t{64});
      data_ = nullptr;
      capacity_ = 0;
    }
    T* data_ = nullptr;
    int64_t capacity_ = 0;
  };

  // ---------------------------------------------------------------- data movement
  template <class T> static void fill(const Context&, int64_t n, T value, T* x);
  template <class T> static void copy(const Context&, int64_t n, const T* x, T* y);
  /// y = a * x + b * y
  template <class T> static void axpby(const Context&, int64_t n, T a, const T* x, T b, T* y);
  /// out = a + b
  template <class T> static void add(const Context&, int64_t n, const T* a, const T* b, T* out);
  /// Host <-> backend copies (identity on the CPU); the only crossing points.
  template <class T> static void to_device(const Context&, int64_t n, const T* host, T* dev) { copy_plain(n, host, dev); }
  template <class T> static void to_host(const Context&, int64_t n, const T* dev, T* host) { copy_plain(n, dev, host); }

  // ---------------------------------------------------------------- GEMM
  /// C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, all row-major with leading
  /// dimensions lda, ldb, ldc (elements between consecutive rows as stored).
  template <class T>
  static void gemm(const Context&, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha,
                   const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

  /// Two-level strided batch of small GEMMs, for attention: problem (o, i) for o < outer,
  /// i < inner reads A + o*sa_outer + i*sa_inner (likewise B, C). Threads over problems.
  struct BatchStrides { int64_t outer, inner; };
  template <class T>
  static void gemm_batched(const Context&, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha,
                           const T* A, int64_t lda, BatchStrides sa, const T* B, int64_t ldb, BatchStrides sb,
                           T beta, T* C, int64_t ldc, BatchStrides sc, int64_t outer, int64_t inner);

  // ---------------------------------------------------------------- bias
  /// y[r, c] += bias[c] for y [rows, cols]
  template <class T> static void add_bias(const Context&, int64_t rows, int64_t cols, const T* bias, T* y);
  /// dbias[c] += sum_r dy[r, c]
  template <class T> static void bias_backward(const Context&, int64_t rows, int64_t cols, const T* dy, T* dbias);

  // ---------------------------------------------------------------- activations
  /// GELU with the exact erf: y = x * Phi(x)
  template <class T> static void gelu_forward(const Context&, int64_t n, const T* x, T* y);
  /// dx = dy * (Phi(x) + x * phi(x))
  template <class T> static void gelu_backward(const Context&, int64_t n, const T* x, const T* dy, T* dx);
  template <class T> static void tanh_forward(const Context&, int64_t n, const T* x, T* y);
  /// dx = dy * (1 - y^2), from the output y
  template <class T> static void tanh_backward(const Context&, int64_t n, const T* y, const T* dy, T* dx);
  /// SiLU ("swish", Marian's activation): y = x * sigmoid(x)
  template <class T> static void silu_forward(const Context&, int64_t n, const T* x, T* y);
  /// dx = dy * sigmoid(x) * (1 + x * (1 - sigmoid(x)))
  template <class T> static void silu_backward(const Context&, int64_t n, const T* x, const T* dy, T* dx);
  /// y = max(x, 0)
  template <class T> static void relu_forward(const Context&, int64_t n, const T* x, T* y);
  /// dx = dy where x > 0, else 0
  template <class T> static void relu_backward(const Context&, int64_t n, const T* x, const T* dy, T* dx);

  // ---------------------------------------------------------------- layer norm
  /// y = (x - mean) * rstd * gamma + beta per row of x [rows, cols]; saves mean, rstd [rows].
  template <class T>
  static void layer_norm_forward(const Context&, int64_t rows, int64_t cols, T eps, const T* x, const T* gamma,
                                 const T* beta, T* y, T* mean, T* rstd);
  /// dx (written, or added when accumulate_dx), dgamma += , dbeta += ; dgamma/dbeta may be null.
  template <class T>
  static void layer_norm_backward(const Context&, int64_t rows, int64_t cols, const T* dy, const T* x,
                                  const T* mean, const T* rstd, const T* gamma, T* dx, bool accumulate_dx,
                                  T* dgamma, T* dbeta);

  // ---------------------------------------------------------------- attention softmax
  /// probs[b,h,i,:] = softmax(scale * scores[b,h,i,:] + key_bias[b,:] + extra[b,h,i,:])
  /// scores/probs/extra: [B, H, Lq, Lk]; key_bias: [B, Lk] (additive, e.g. -10000 at pads) or
  /// null; extra: per-layer additive mask or null. causal: query i sees keys j <= i + Lk - Lq
  /// only (a decoder's self-attention; the queries are the last Lq of the Lk positions), the
  /// others get probability 0. scores and probs may alias.
  template <class T>
  static void attention_softmax_forward(const Context&, int64_t B, int64_t H, int64_t Lq, int64_t Lk, T scale,
                                        const T* scores, const T* key_bias, const T* extra, bool causal, T* probs);
  /// dscores = scale * probs * (dprobs - sum_j dprobs * probs), rows of length L; may alias dprobs.
  template <class T>
  static void softmax_backward(const Context&, int64_t rows, int64_t L, T scale, const T* probs, const T* dprobs,
                               T* dscores);

  // ---------------------------------------------------------------- dropout
  /// Inverted dropout: y = x * keep / (1 - p), keep iff uniform(seed, stream, first + i) >= p.
  /// The mask is never stored: the backward regenerates it from (seed, stream, first).
  /// `first` is the draw index of element 0: a shard of a batch split across processes
  /// passes its offset in the whole batch, so it draws what one process would.
  template <class T>
  static void dropout_forward(const Context&, int64_t n, float p, uint64_t seed, uint64_t stream, const T* x, T* y,
                              int64_t first = 0);
  /// dx = dy * keep / (1 - p); accumulate adds instead of writing.
  template <class T>
  static void dropout_backward(const Context&, int64_t n, float p, uint64_t seed, uint64_t stream, const T* dy,
                               T* dx, bool accumulate = false, int64_t first = 0);
  /// The draws themselves: out[i] = draw first + i of (seed, stream), a float in [0, 1)
  /// (Philox4x32-10, random::uniform). AD-DROP's generated draws are these (select_top_p,
  /// select_random).
  template <class T>
  static void uniform(const Context&, int64_t n, uint64_t seed, uint64_t stream, T* out, int64_t first = 0);

  // ---------------------------------------------------------------- embeddings
  /// out[t, :] (+)= table[ids[t], :], out [tokens, dim], table [rows, dim]
  template <class T>
  static void embedding_forward(const Context&, int64_t tokens, int64_t dim, const int32_t* ids, const T* table,
                                T* out, bool accumulate);
  /// dtable[ids[t], :] += dout[t, :] for every t whose id != padding_idx (padding_idx < 0: none)
  template <class T>
  static void embedding_backward(const Context&, int64_t tokens, int64_t dim, const int32_t* ids, const T* dout,
                                 T* dtable, int64_t padding_idx);

  // ---------------------------------------------------------------- losses and reductions
  /// Mean cross-entropy over rows whose label != ignore_index, with label smoothing eps
  /// (torch's CrossEntropyLoss(label_smoothing=eps), Hugging Face's LabelSmoother):
  ///   loss_r = (1 - eps) * -log p[label] + eps * mean_c -log p[c].
  /// Writes dlogits = d(mean)/dlogits = (p - (1 - eps) onehot - eps / classes) / counted (zero
  /// rows for ignored labels) when dlogits is not null. Returns the loss (host value).
  /// denominator > 0 replaces `counted` (the sum over these rows divided by the count of a
  /// whole batch that other processes share: train/distributed.hpp).
  template <class T>
  static double cross_entropy(const Context&, int64_t rows, int64_t classes, const T* logits, const int32_t* labels,
                              int32_t ignore_index, T label_smoothing, T* dlogits, int64_t denominator = 0);
  /// Mean squared error of pred [n] against target [n]; dpred = 2 (pred - target) / n.
  /// denominator > 0 replaces n, as for cross_entropy.
  template <class T>
  static double mse(const Context&, int64_t n, const T* pred, const T* target, T* dpred, int64_t denominator = 0);
  /// sum x[i]^2 in double (gradient norms)
  template <class T> static double sum_squares(const Context&, int64_t n, const T* x);
  /// x *= a
  template <class T> static void scale(const Context&, int64_t n, T a, T* x);

  /// out = a * b elementwise
  template <class T> static void mul(const Context&, int64_t n, const T* a, const T* b, T* out);

  // ---------------------------------------------------------------- AD-DROP selection
  // Attention sites are [B, H, Lq, Lk] (queries x keys: Lq == Lk for self-attention, not
  // for an encoder-decoder's cross-attention), row-major: row r < B*H*Lq of Lk keys belongs
  // to example b = r / (H*Lq); element e = r*Lk + j. key_mask is [B, Lk] (!= 0: a real key,
  // 0: a pad key); k is [B]. Generated draws are keyed by e: element e takes draw
  // first_draw + e of (seed, stream), what uniform(B*H*Lq*Lk, seed, stream, u, first_draw)
  // writes at u[e] (first_draw: the offset of a shard's first element in the whole batch).
  // additive, candidates and keep [B,H,Lq,Lk] are each written only when not null (the
  // training step asks for additive alone).

  /// Steps 4-5 and the additive mask in one pass per row, with no intermediate buffer:
  ///  - candidates: over the n_b non-pad keys of the row, t = the k[b]-th smallest score
  ///    (0-based); high: candidates are the non-pad keys with score >= t, low: score < t.
  ///    k[b] >= n_b (or n_b = 0) gives no candidates (high) or every non-pad key (low).
  ///    Pad keys are never candidates;
  ///  - keep = !candidate || draw < keep_below, the draw being u[e] when u is not null,
  ///    else generated (drawn only for candidates: a draw is a pure function of e);
  ///  - additive = keep ? 0 : dropped_value (AD-DROP's -10000); candidates, keep as 0/1.
  template <class T>
  static void select_top_p(const Context&, int64_t B, int64_t H, int64_t Lq, int64_t Lk, const T* scores,
                           const int32_t* key_mask, const int64_t* k, bool high, const float* u, uint64_t seed,
                           uint64_t stream, float keep_below, T dropped_value, T* additive, T* candidates, T* keep,
                           int64_t first_draw = 0);
  /// RD's rule fused the same way: every non-pad key is a candidate, kept iff
  /// d1 < keep_p or d2 < keep_q (d1 = u1[e] or generated from (seed, stream1), d2 = u2[e]
  /// or generated from (seed, stream2); d2 is read or drawn only where d1 does not already
  /// keep the key); pad keys are kept. additive as for select_top_p.
  template <class T>
  static void select_random(const Context&, int64_t B, int64_t H, int64_t Lq, int64_t Lk, const int32_t* key_mask,
                            const float* u1, uint64_t seed, uint64_t stream1, float keep_p, const float* u2,
                            uint64_t stream2, float keep_q, T dropped_value, T* additive, T* candidates, T* keep,
                            int64_t first_draw = 0);

  // ---------------------------------------------------------------- optimizer
  /// One AdamW update of param [n] from grad [n] with moments m, v [n], at step t (1-based).
  /// hugging_face = true: transformers' AdamW (eps added to sqrt(v) before the bias
  /// correction is folded into the step size; decay p -= lr*wd*p after the update);
  /// false: torch.optim.AdamW (decay p *= 1 - lr*wd first; eps added to sqrt(v / (1 - b2^t))).
  template <class T>
  static void adamw_update(const Context&, int64_t n, T* param, const T* grad, T* m, T* v, double lr, double beta1,
                           double beta2, double eps, double weight_decay, int64_t t, bool hugging_face);

 private:
  template <class T> static void copy_plain(int64_t n, const T* x, T* y);
};

}  // namespace addrop::backend

#include "cpu_impl.hpp"

// The CPU backend is a Backend (backend.hpp) for both element types it implements.
static_assert(addrop::backend::BackendFor<addrop::backend::Cpu, float>,
              "backend::Cpu must satisfy BackendFor<Cpu, float>: see the first unsatisfied requirement above");
static_assert(addrop::backend::BackendFor<addrop::backend::Cpu, double>,
              "backend::Cpu must satisfy BackendFor<Cpu, double>: see the first unsatisfied requirement above");
