#pragma once
// The CUDA backend: cuBLAS for GEMM, hand-written kernels for everything else.
//
// `backend::Cuda` has the same static members as `backend::Cpu` (cpu.hpp; read its
// comments for the semantics of every op), taking device pointers, so
//   models::EncoderModel<float, backend::Cuda> model(config, backend::Cuda::Context::create());
// and AdDrop<...>::step(model, ...) run on the GPU with no other change. Host data crosses
// only through to_device / to_host (both synchronous with respect to the host).
//
// Results against the CPU backend:
//   - integer-valued outputs are identical: uniforms, dropout keep decisions, AD-DROP
//     candidates, keep masks and additive masks (the same Philox4x32-10 draws, the same
//     comparisons), and embedding_backward (the same order of additions);
//   - floating-point outputs agree to rounding (other summation orders, CUDA's libm);
//     with Precision::Bf16Mixed both round the float GEMM inputs to bfloat16 the same way
//     (nearest even), so their products differ only in the float32 accumulation order;
//   - reductions (sum_squares, mse, cross_entropy) return a double on the host and
//     are deterministic run to run (fixed reduction trees, no atomics on floating values).
//
// Streams: every op of a Context runs on its stream, in call order. Context::create()
// makes a stream (blocking: it orders with the legacy default stream) and a cuBLAS handle;
// a default-constructed Context uses a process-wide context of the current device on the
// legacy default stream, so objects made with `Context ctx = {}` (an optimizer, say) stay
// ordered with a created context's work. A Context and its copies share their handles and
// scratch memory: use them from one host thread at a time.
//
// Compile with nvcc (this header holds the kernels). The CPU backend compiles there too;
// EIGEN_NO_CUDA is defined below (when this header comes before Eigen's) so that Eigen,
// host-only in this library, does not annotate itself for the device.
#if !defined(__CUDACC__)
#error "addrop/backend/cuda/cuda.hpp holds CUDA kernels: include it from a .cu file compiled by nvcc"
#endif
#ifndef EIGEN_NO_CUDA
#define EIGEN_NO_CUDA 1
#endif

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "../backend.hpp"
#include "../philox.hpp"
#include "../precision.hpp"

namespace addrop::backend {

/// Counts device allocations (Buffer growth and scratch growth) of the CUDA backend; the
/// "no allocation inside a step after the first" checks read it before and after a step.
inline std::atomic<int64_t>& cuda_allocation_count() {
  static std::atomic<int64_t> count{0};
  return count;
}

namespace cuda_detail {

[[noreturn]] inline void fail(const std::string& op, const std::string& what) {
  throw std::runtime_error("addrop::backend::Cuda::" + op + ": " + what);
}
inline std::string error_text(cudaError_t e) {
  return std::string(cudaGetErrorName(e)) + " (" + cudaGetErrorString(e) + ")";
}
inline void check(cudaError_t e, const char* op) {
  if (e != cudaSuccess) fail(op, error_text(e));
}
inline void check(cublasStatus_t s, const char* op) {
  if (s != CUBLAS_STATUS_SUCCESS)
    fail(op, std::string("cuBLAS ") + cublasGetStatusName(s) + " (" + cublasGetStatusString(s) + ")");
}

/// The handles behind a Context: device, stream, cuBLAS handle, grow-only scratch.
struct State {
  int device = 0;
  cudaStream_t stream = nullptr;  ///< nullptr: the legacy default stream
  bool owns_stream = false;
  cublasHandle_t blas = nullptr;
  void* scratch = nullptr;        ///< device scratch of one op at a time: partial sums, GEMM pointer arrays (grow-only)
  std::size_t scratch_bytes = 0;
  void* bf16 = nullptr;           ///< device scratch of one GEMM at a time: its bf16-rounded operands (grow-only)
  std::size_t bf16_bytes = 0;
  std::vector<double> host;       ///< host landing area of reduction results (grow-only)

  State() = default;
  State(const State&) = delete;
  State& operator=(const State&) = delete;
  ~State() {
    // Errors are ignored here: a destructor must not throw, and at process exit the
    // runtime may already be gone.
    if (scratch) cudaFree(scratch);
    if (bf16) cudaFree(bf16);
    if (blas) cublasDestroy(blas);
    if (owns_stream && stream) cudaStreamDestroy(stream);
  }

  /// At least `bytes` of device scratch, valid until the next call (ops on one stream run
  /// in order, so one op's scratch is never in use by another).
  void* workspace(std::size_t bytes, const char* op) { return grow(scratch, scratch_bytes, bytes, op); }
  /// At least `bytes` of device scratch for a Bf16Mixed GEMM's rounded operands, valid until
  /// the next call; apart from workspace(), which the same GEMM uses for its pointer arrays.
  void* bf16_workspace(std::size_t bytes, const char* op) { return grow(bf16, bf16_bytes, bytes, op); }

 private:
  static void* grow(void*& p, std::size_t& held, std::size_t bytes, const char* op) {
    if (bytes <= held) return p;
    if (p) {
      check(cudaFree(p), op);  // synchronizes the device: earlier users are done
      p = nullptr;
      held = 0;
    }
    const std::size_t rounded = ((bytes + 255) / 256) * 256;
    check(cudaMalloc(&p, rounded), op);
    held = rounded;
    ++cuda_allocation_count();
    return p;
  }
};

/// Makes the state's device current for the calling thread (cheap when it already is).
inline void activate(const State& s, const char* op) {
  int current = -1;
  check(cudaGetDevice(&current), op);
  if (current != s.device) check(cudaSetDevice(s.device), op);
}

/// Number of CUDA devices, 0 when the runtime reports none or fails (the reason in *why).
inline int device_count(std::string* why = nullptr) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the runtime's error state
    if (why) *why = "cudaGetDeviceCount: " + error_text(e);
    return 0;
  }
  if (n == 0 && why) *why = "cudaGetDeviceCount returned 0 devices";
  return n;
}

inline std::shared_ptr<State> make_state(int device, bool own_stream) {
  std::string why;
  const int n = device_count(&why);
  if (n == 0) fail("Context::create", "no CUDA device (" + why + ")");
  if (device < 0 || device >= n)
    fail("Context::create", "device " + std::to_string(device) + " requested but " + std::to_string(n) +
                                " CUDA device(s) are present");
  check(cudaSetDevice(device), "Context::create (cudaSetDevice)");
  auto s = std::make_shared<State>();
  s->device = device;
  if (own_stream) {
    check(cudaStreamCreate(&s->stream), "Context::create (cudaStreamCreate)");
    s->owns_stream = true;
  }
  check(cublasCreate(&s->blas), "Context::create (cublasCreate)");
  check(cublasSetStream(s->blas, s->stream), "Context::create (cublasSetStream)");
  return s;
}

/// The process-wide context of a device on the legacy default stream (made on first use,
/// intentionally never destroyed: the CUDA runtime may be torn down before static
/// destructors run).
inline State& default_state() {
  static std::mutex mutex;
  static auto* states = new std::vector<std::shared_ptr<State>>();
  int device = 0;
  check(cudaGetDevice(&device), "default context (cudaGetDevice)");
  std::lock_guard<std::mutex> lock(mutex);
  if (states->size() <= static_cast<std::size_t>(device)) states->resize(static_cast<std::size_t>(device) + 1);
  auto& s = (*states)[static_cast<std::size_t>(device)];
  if (!s) s = make_state(device, false);
  return *s;
}

}  // namespace cuda_detail

struct Cuda {
  static constexpr const char* name = "cuda";

  /// Per-run settings and handles. Copies are cheap and share the handles.
  struct Context {
    /// Device, stream and cuBLAS handle; null: the process-wide default context of the
    /// current device (legacy default stream).
    std::shared_ptr<cuda_detail::State> handles;
    /// TF32 tensor-core GEMMs for float: cuBLAS may round both inputs of a float product to
    /// TF32 (10 mantissa bits) and accumulate in float32. Off by default, so float GEMMs
    /// are plain FP32.
    bool tf32 = false;
    /// Precision of the float GEMMs (precision.hpp). Bf16Mixed: both inputs rounded to
    /// bfloat16 (round to nearest even, into grow-only scratch), multiplied on the tensor
    /// cores with float32 accumulation into the float32 output (cublasGemmEx with
    /// CUBLAS_COMPUTE_32F), as torch.autocast(dtype=torch.bfloat16) and as the CPU
    /// backend's Bf16Mixed. When both are set, Bf16Mixed wins for float products (tf32 is
    /// then ignored). double GEMMs ignore both and stay exact float64.
    Precision precision = Precision::F32;

    /// A context with its own stream and cuBLAS handle on `device`. Throws
    /// std::runtime_error naming the CUDA error when no such device can be used.
    static Context create(int device = 0, bool tf32 = false, Precision precision = Precision::F32) {
      Context c;
      c.handles = cuda_detail::make_state(device, true);
      c.tf32 = tf32;
      c.precision = precision;
      return c;
    }
    cuda_detail::State& state() const { return handles ? *handles : cuda_detail::default_state(); }
    int device() const { return state().device; }
    cudaStream_t stream() const { return state().stream; }
    cublasHandle_t cublas() const { return state().blas; }
    /// Host threads the backend uses (interface parity with Cpu::Context): always 1.
    int num_threads() const { return 1; }
    /// Waits for every op queued on this context's stream.
    void synchronize() const {
      auto& s = state();
      cuda_detail::activate(s, "Context::synchronize");
      cuda_detail::check(cudaStreamSynchronize(s.stream), "Context::synchronize");
    }
  };

  /// Number of usable CUDA devices (0 on any runtime error).
  static int device_count() { return cuda_detail::device_count(); }
  /// Empty when device `device` exists and this binary holds kernels it can run; else why not.
  static std::string unavailable_reason(int device = 0);

  /// cudaMalloc'd, grow-only storage (on the device current when it grows).
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
      const std::size_t bytes = ((static_cast<std::size_t>(n) * sizeof(T) + 255) / 256) * 256;
      void* p = nullptr;
      const cudaError_t e = cudaMalloc(&p, bytes);
      if (e != cudaSuccess)
        cuda_detail::fail("Buffer::reserve", "cudaMalloc of " + std::to_string(bytes) + " bytes (" +
                                                 std::to_string(n) + " elements): " + cuda_detail::error_text(e));
      data_ = static_cast<T*>(p);
      capacity_ = n;
      ++cuda_allocation_count();
    }
    T* data() { return data_; }
    const T* data() const { return data_; }
    int64_t capacity() const { return capacity_; }

   private:
    void release() {
      if (data_) cudaFree(data_);  // synchronizes the device; errors cannot be reported here
      data_ = nullptr;
      capacity_ = 0;
    }
    T* data_ = nullptr;
    int64_t capacity_ = 0;
  };

  // ---------------------------------------------------------------- data movement
  template <class T> static void fill(const Context&, int64_t n, T value, T* x);
  template <class T> static void copy(const Context&, int64_t n, const T* x, T* y);
  template <class T> static void axpby(const Context&, int64_t n, T a, const T* x, T b, T* y);
  template <class T> static void add(const Context&, int64_t n, const T* a, const T* b, T* out);
  /// Host -> device; returns once the host data was consumed (the host buffer may be reused).
  template <class T> static void to_device(const Context&, int64_t n, const T* host, T* dev);
  /// Device -> host; returns once the data is on the host (after all earlier ops of the stream).
  template <class T> static void to_host(const Context&, int64_t n, const T* dev, T* host);
  /// Waits for every op queued on the context's stream.
  static void synchronize(const Context& ctx) { ctx.synchronize(); }

  // ---------------------------------------------------------------- GEMM (cuBLAS)
  // float with ctx.precision == Precision::Bf16Mixed: the operands are rounded to bfloat16
  // into scratch first (a kernel), then cublasGemmEx / cublasGemm(Strided)BatchedEx.
  template <class T>
  static void gemm(const Context&, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha,
                   const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);
  struct BatchStrides { int64_t outer, inner; };
  template <class T>
  static void gemm_batched(const Context&, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha,
                           const T* A, int64_t lda, BatchStrides sa, const T* B, int64_t ldb, BatchStrides sb,
                           T beta, T* C, int64_t ldc, BatchStrides sc, int64_t outer, int64_t inner);

  // ---------------------------------------------------------------- bias
  template <class T> static void add_bias(const Context&, int64_t rows, int64_t cols, const T* bias, T* y);
  template <class T> static void bias_backward(const Context&, int64_t rows, int64_t cols, const T* dy, T* dbias);

  // ---------------------------------------------------------------- activations
  template <class T> static void gelu_forward(const Context&, int64_t n, const T* x, T* y);
  template <class T> static void gelu_backward(const Context&, int64_t n, const T* x, const T* dy, T* dx);
  template <class T> static void silu_forward(const Context&, int64_t n, const T* x, T* y);
  template <class T> static void silu_backward(const Context&, int64_t n, const T* x, const T* dy, T* dx);
  template <class T> static void relu_forward(const Context&, int64_t n, const T* x, T* y);
  template <class T> static void relu_backward(const Context&, int64_t n, const T* x, const T* dy, T* dx);
  template <class T> static void tanh_forward(const Context&, int64_t n, const T* x, T* y);
  template <class T> static void tanh_backward(const Context&, int64_t n, const T* y, const T* dy, T* dx);

  // ---------------------------------------------------------------- layer norm
  template <class T>
  static void layer_norm_forward(const Context&, int64_t rows, int64_t cols, T eps, const T* x, const T* gamma,
                                 const T* beta, T* y, T* mean, T* rstd);
  template <class T>
  static void layer_norm_backward(const Context&, int64_t rows, int64_t cols, const T* dy, const T* x,
                                  const T* mean, const T* rstd, const T* gamma, T* dx, bool accumulate_dx,
                                  T* dgamma, T* dbeta);

  // ---------------------------------------------------------------- attention softmax
  template <class T>
  static void attention_softmax_forward(const Context&, int64_t B, int64_t H, int64_t Lq, int64_t Lk, T scale,
                                        const T* scores, const T* key_bias, const T* extra, bool causal, T* probs);
  template <class T>
  static void softmax_backward(const Context&, int64_t rows, int64_t L, T scale, const T* probs, const T* dprobs,
                               T* dscores);

  // ---------------------------------------------------------------- dropout
  // first: the draw index of element 0 (any value >= 0, not only multiples of four), as Cpu.
  template <class T>
  static void dropout_forward(const Context&, int64_t n, float p, uint64_t seed, uint64_t stream, const T* x, T* y,
                              int64_t first = 0);
  template <class T>
  static void dropout_backward(const Context&, int64_t n, float p, uint64_t seed, uint64_t stream, const T* dy,
                               T* dx, bool accumulate = false, int64_t first = 0);
  template <class T>
  static void uniform(const Context&, int64_t n, uint64_t seed, uint64_t stream, T* out, int64_t first = 0);

  // ---------------------------------------------------------------- embeddings
  template <class T>
  static void embedding_forward(const Context&, int64_t tokens, int64_t dim, const int32_t* ids, const T* table,
                                T* out, bool accumulate);
  template <class T>
  static void embedding_backward(const Context&, int64_t tokens, int64_t dim, const int32_t* ids, const T* dout,
                                 T* dtable, int64_t padding_idx);

  // ---------------------------------------------------------------- losses and reductions
  // denominator > 0 replaces the count of non-ignored labels (cross_entropy) or n (mse), as Cpu.
  template <class T>
  static double cross_entropy(const Context&, int64_t rows, int64_t classes, const T* logits, const int32_t* labels,
                              int32_t ignore_index, T label_smoothing, T* dlogits, int64_t denominator = 0);
  template <class T>
  static double mse(const Context&, int64_t n, const T* pred, const T* target, T* dpred, int64_t denominator = 0);
  template <class T> static double sum_squares(const Context&, int64_t n, const T* x);
  template <class T> static void scale(const Context&, int64_t n, T a, T* x);
  template <class T> static void mul(const Context&, int64_t n, const T* a, const T* b, T* out);

  // ---------------------------------------------------------------- AD-DROP selection
  /// As Cpu::select_top_p (identical outputs) over [B, H, Lq, Lk]; key_mask [B*Lk] and
  /// k [B] are device buffers. The candidates of every row go into the first output that
  /// is given (candidates, else additive, else keep), then one elementwise pass draws (or
  /// reads u), q-samples and writes the outputs in place. Element e's generated draw is
  /// draw first_draw + e (u, when given, is still read at u[e]).
  template <class T>
  static void select_top_p(const Context&, int64_t B, int64_t H, int64_t Lq, int64_t Lk, const T* scores,
                           const int32_t* key_mask, const int64_t* k, bool high, const float* u, uint64_t seed,
                           uint64_t stream, float keep_below, T dropped_value, T* additive, T* candidates, T* keep,
                           int64_t first_draw = 0);
  /// As Cpu::select_random (identical outputs) over [B, H, Lq, Lk], one elementwise pass.
  template <class T>
  static void select_random(const Context&, int64_t B, int64_t H, int64_t Lq, int64_t Lk, const int32_t* key_mask,
                            const float* u1, uint64_t seed, uint64_t stream1, float keep_p, const float* u2,
                            uint64_t stream2, float keep_q, T dropped_value, T* additive, T* candidates, T* keep,
                            int64_t first_draw = 0);

  // ---------------------------------------------------------------- optimizer
  template <class T>
  static void adamw_update(const Context&, int64_t n, T* param, const T* grad, T* m, T* v, double lr, double beta1,
                           double beta2, double eps, double weight_decay, int64_t t, bool hugging_face);
};

}  // namespace addrop::backend

#include "cuda_impl.cuh"

// The CUDA backend is a Backend (backend.hpp) for both element types it implements.
static_assert(addrop::backend::BackendFor<addrop::backend::Cuda, float>,
              "backend::Cuda must satisfy BackendFor<Cuda, float>: see the first unsatisfied requirement above");
static_assert(addrop::backend::BackendFor<addrop::backend::Cuda, double>,
              "backend::Cuda must satisfy BackendFor<Cuda, double>: see the first unsatisfied requirement above");
