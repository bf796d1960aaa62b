#pragma once
// The Backend concept: exactly what the library (nn/, models/, attribution/, selection/,
// train/, io/, Tensor) calls on a backend, and nothing else. backend::Cpu (cpu.hpp) and
// backend::Cuda (cuda/cuda.hpp) assert it for the element types they support; a new
// backend (another GPU API, a counting or checking wrapper) is complete when
//   static_assert(addrop::backend::BackendFor<MyBackend, float>);
// holds. The semantics of every op are in cpu.hpp's comments; tests/support/
// backend_conformance.hpp checks any backend op by op against plain host loops.
//
// Conventions (cpu.hpp): every op is a static member function template of the backend,
// takes the backend's Context first and raw row-major buffers of backend memory with
// explicit sizes; host memory crosses only through to_device / to_host. Results returned
// by value (losses, norms) are host doubles.
#include <concepts>
#include <cstdint>

namespace addrop::backend {

/// Backend B for element type T (float or double): the parameters of the requires-
/// expression only name the argument types the library passes.
template <class B, class T>
concept BackendFor =
    std::floating_point<T> &&
    // The context: models, optimizers and the trainer hold a copy, and default it
    // (`Context ctx = {}`) when the caller gives none.
    std::default_initializable<typename B::Context> && std::copyable<typename B::Context> &&
    // Storage: Tensor<E, B> owns a B::Buffer<E> (grow-only; moved, never copied) for the
    // activations and parameters (T), token ids, labels and key masks (int32_t), top-p
    // threshold indices (int64_t) and supplied AD-DROP draws (float).
    std::default_initializable<typename B::template Buffer<T>> && std::movable<typename B::template Buffer<T>> &&
    std::default_initializable<typename B::template Buffer<int32_t>> &&
    std::movable<typename B::template Buffer<int32_t>> &&
    std::default_initializable<typename B::template Buffer<int64_t>> &&
    std::movable<typename B::template Buffer<int64_t>> &&
    std::default_initializable<typename B::template Buffer<float>> &&
    std::movable<typename B::template Buffer<float>> &&
    requires(const typename B::Context& ctx, typename B::template Buffer<T>& buffer,
             const typename B::template Buffer<T>& const_buffer, int64_t n, T a, T* y, const T* x, bool flag,
             float p, uint64_t seed, const int32_t* i32, int32_t* i32_out, const int64_t* i64, int64_t* i64_out,
             const float* u, float* f32_out) {
      // Tensor::resize / data / capacity: the whole storage interface the library uses.
      buffer.reserve(n);
      { buffer.data() } -> std::same_as<T*>;
      { const_buffer.data() } -> std::same_as<const T*>;
      { const_buffer.capacity() } -> std::same_as<int64_t>;

      // Data movement: zeroing gradients and moments (fill), workspace copies and residual
      // sums (copy, add), accumulating gradients and IG's sum of path gradients (axpby),
      // and the only host crossings: batches, weights, checkpoints, logits for the
      // attribution objective (to_device for every element type above, to_host for T).
      B::fill(ctx, n, a, y);
      B::copy(ctx, n, x, y);
      B::axpby(ctx, n, a, x, a, y);
      B::add(ctx, n, x, x, y);
      B::to_device(ctx, n, x, y);
      B::to_device(ctx, n, i32, i32_out);
      B::to_device(ctx, n, i64, i64_out);
      B::to_device(ctx, n, u, f32_out);
      B::to_host(ctx, n, x, y);

      // GEMM: nn::Linear's products (with leading dimensions, for the strided row blocks of
      // fused QKV and of the heads) and attention's per-example, per-head products
      // (outer = batch, inner = heads; strides built as BatchStrides{outer, inner}).
      B::gemm(ctx, flag, flag, n, n, n, a, x, n, x, n, a, y, n);
      B::gemm_batched(ctx, flag, flag, n, n, n, a, x, n, typename B::BatchStrides{n, n}, x, n,
                      typename B::BatchStrides{n, n}, a, y, n, typename B::BatchStrides{n, n}, n, n);

      // Bias: nn::Linear's forward and its bias gradient.
      B::add_bias(ctx, n, n, x, y);
      B::bias_backward(ctx, n, n, x, y);

      // Activations: the feed-forward GELU (exact erf), SiLU (Marian's "swish") and ReLU,
      // and the pooler / head tanh.
      B::gelu_forward(ctx, n, x, y);
      B::gelu_backward(ctx, n, x, x, y);
      B::silu_forward(ctx, n, x, y);
      B::silu_backward(ctx, n, x, x, y);
      B::relu_forward(ctx, n, x, y);
      B::relu_backward(ctx, n, x, x, y);
      B::tanh_forward(ctx, n, x, y);
      B::tanh_backward(ctx, n, x, x, y);

      // Layer norm: every sublayer's output and the embeddings (nn::LayerNorm).
      B::layer_norm_forward(ctx, n, n, a, x, x, x, y, y, y);
      B::layer_norm_backward(ctx, n, n, x, x, x, x, x, y, flag, y, y);

      // Attention softmax over [B, H, Lq, Lk] with the key-padding bias, AD-DROP's additive
      // mask and a decoder's causal mask, and its backward (nn::Attention).
      B::attention_softmax_forward(ctx, n, n, n, n, a, x, x, x, flag, y);
      B::softmax_backward(ctx, n, n, a, x, x, y);

      // Dropout with regenerated masks (nn/dropout.hpp), and the generator's draws
      // themselves: what AD-DROP's generated draws are defined as (selection.hpp) and what a
      // caller makes to supply them (ExternalUniforms).
      B::dropout_forward(ctx, n, p, seed, seed, x, y, n);  // n: the draw index of element 0
      B::dropout_backward(ctx, n, p, seed, seed, x, y, flag, n);
      B::uniform(ctx, n, seed, seed, f32_out, n);

      // Embeddings: word, position and token-type lookups and their gradients.
      B::embedding_forward(ctx, n, n, i32, x, y, flag);
      B::embedding_backward(ctx, n, n, i32, x, y, n);

      // Losses and reductions, returned as host doubles: the task losses (nn/losses.hpp;
      // cross-entropy with label smoothing),
      // gradient norms for clipping (grad_clip.hpp); scale for clipping, IG's 1/m and
      // per-example attention scales; mul for IG's A ⊙ mean gradient.
      { B::cross_entropy(ctx, n, n, x, i32, int32_t{}, a, y, n) } -> std::same_as<double>;  // n: the denominator
      { B::mse(ctx, n, x, x, y, n) } -> std::same_as<double>;
      { B::sum_squares(ctx, n, x) } -> std::same_as<double>;
      B::scale(ctx, n, a, y);
      B::mul(ctx, n, x, x, y);

      // AD-DROP selection (selection.hpp), over [B, H, Lq, Lk] attention sites: the top-p
      // candidate region, q-sampling and the additive mask in one pass, and RD's rule.
      B::select_top_p(ctx, n, n, n, n, x, i32, i64, flag, u, seed, seed, p, a, y, y, y, n);  // n: the first draw
      B::select_random(ctx, n, n, n, n, i32, u, seed, seed, p, u, seed, p, a, y, y, y, n);

      // Optimizer: one AdamW step (train/adamw.hpp), Hugging Face's or torch's variant.
      B::adamw_update(ctx, n, y, x, y, y, double{}, double{}, double{}, double{}, double{}, n, flag);
    };

/// A backend for float, the library's working precision.
template <class B>
concept Backend = BackendFor<B, float>;

}  // namespace addrop::backend
