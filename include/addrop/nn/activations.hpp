#pragma once
// Pointwise activations by name, as Hugging Face's config "hidden_act" spells them.
#include <stdexcept>
#include <string>

namespace addrop::nn {

enum class Activation { Gelu, Tanh, Silu, Relu };

/// "swish" and "silu" are the same function (Marian configs say "swish").
inline Activation activation_from_name(const std::string& name) {
  if (name == "gelu") return Activation::Gelu;
  if (name == "tanh") return Activation::Tanh;
  if (name == "swish" || name == "silu") return Activation::Silu;
  if (name == "relu") return Activation::Relu;
  throw std::invalid_argument("unsupported activation \"" + name + "\" (supported: gelu, tanh, swish/silu, relu)");
}

/// y = f(x) for x, y [n]
template <class Backend, class T>
void activation_forward(const typename Backend::Context& ctx, Activation a, int64_t n, const T* x, T* y) {
  switch (a) {
    case Activation::Gelu: Backend::gelu_forward(ctx, n, x, y); break;
    case Activation::Tanh: Backend::tanh_forward(ctx, n, x, y); break;
    case Activation::Silu: Backend::silu_forward(ctx, n, x, y); break;
    case Activation::Relu: Backend::relu_forward(ctx, n, x, y); break;
  }
}

/// dx = dy * f'(x); tanh reads the output y, the others the input x.
template <class Backend, class T>
void activation_backward(const typename Backend::Context& ctx, Activation a, int64_t n, const T* x, const T* y,
                         const T* dy, T* dx) {
  switch (a) {
    case Activation::Gelu: Backend::gelu_backward(ctx, n, x, dy, dx); break;
    case Activation::Tanh: Backend::tanh_backward(ctx, n, y, dy, dx); break;
    case Activation::Silu: Backend::silu_backward(ctx, n, x, dy, dx); break;
    case Activation::Relu: Backend::relu_backward(ctx, n, x, dy, dx); break;
  }
}

}  // namespace addrop::nn
