#pragma once
// LayerNorm over the last dimension; parameters "<prefix>.weight" (gamma) and "<prefix>.bias" (beta).
#include "parameter.hpp"

namespace addrop::nn {

template <class T, class Backend>
struct LayerNorm {
  using Context = typename Backend::Context;
  Parameter<T, Backend> weight, bias;
  int64_t features = 0;
  T eps = T(1e-12);

  void init(const std::string& prefix, int64_t n, double epsilon) {
    features = n;
    eps = static_cast<T>(epsilon);
    weight.allocate(prefix + ".weight", {n});
    bias.allocate(prefix + ".bias", {n});
  }
  void collect(ParameterList<T, Backend>& list) {
    list.push_back(&weight);
    list.push_back(&bias);
  }
  /// y[N, F] = LN(x); mean, rstd [N] are saved for the backward.
  void forward(const Context& ctx, int64_t N, const T* x, T* y, T* mean, T* rstd) const {
    Backend::layer_norm_forward(ctx, N, features, eps, x, weight.value.data(), bias.value.data(), y, mean, rstd);
  }
  /// dx may alias dy (rows are finished before they are overwritten).
  void backward(const Context& ctx, int64_t N, const T* dy, const T* x, const T* mean, const T* rstd, T* dx,
                bool accumulate_dx, bool weight_grads) {
    Backend::layer_norm_backward(ctx, N, features, dy, x, mean, rstd, weight.value.data(), dx, accumulate_dx,
                                 weight_grads ? weight.grad.data() : nullptr, weight_grads ? bias.grad.data() : nullptr);
  }
};

}  // namespace addrop::nn
