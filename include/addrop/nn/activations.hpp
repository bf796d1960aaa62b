#pragma once
// Pointwise activations by name, as Hugging Face's config "hidden_act" spells them.
#include <stdexcept>
#include <string>

namespace addrop::nn {

enum class Activation { Gelu, Tanh };

inline Activation activation_from_name(const std::string& name) {
  if (name == "gelu") return Activation::Gelu;
  if (name == "tanh") return Activation::Tanh;
  throw std::invalid_argument("unsupported activation \"" + name + "\" (supported: gelu, tanh)");
}

/// y = f(x) for x, y [n]
template <class Backend, class T>
void activation_forward(const typename Backend::Context& ctx, Activation a, int64_t n, const T* x, T* y) {
  if (a == Activation::Gelu) Backend::gelu_forward(ctx, n, x, y);
  else Backend::tanh_forward(ctx, n, x, y);
}

/// dx = dy * f'(x); GELU reads the input x, tanh the output y.
template <class Backend, class T>
void activation_backward(const typename Backend::Context& ctx, Activation a, int64_t n, const T* x, const T* y,
                         const T* dy, T* dx) {
  if (a == Activation::Gelu) Backend::gelu_backward(ctx, n, x, dy, dx);
  else Backend::tanh_backward(ctx, n, y, dy, dx);
}

}  // namespace addrop::nn
