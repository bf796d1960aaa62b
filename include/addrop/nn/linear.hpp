#pragma once
// Linear layer in torch's layout: weight [out, in], bias [out]; y = x W^T + b.
#include "parameter.hpp"

namespace addrop::nn {

template <class T, class Backend>
struct Linear {
  using Context = typename Backend::Context;
  Parameter<T, Backend> weight, bias;
  int64_t in_features = 0, out_features = 0;

  void init(const std::string& prefix, int64_t in, int64_t out) {
    in_features = in;
    out_features = out;
    weight.allocate(prefix + ".weight", {out, in});
    bias.allocate(prefix + ".bias", {out});
  }
  void collect(ParameterList<T, Backend>& list) {
    list.push_back(&weight);
    list.push_back(&bias);
  }

  /// y[N, out] = x[N, in] W^T + b; ldx / ldy are the row strides (in / out when dense).
  void forward(const Context& ctx, int64_t N, const T* x, int64_t ldx, T* y, int64_t ldy) const {
    Backend::gemm(ctx, false, true, N, out_features, in_features, T(1), x, ldx, weight.value.data(), in_features,
                  T(0), y, ldy);
    for_rows(ctx, N, y, ldy, [&](T* rows, int64_t n) { Backend::add_bias(ctx, n, out_features, bias.value.data(), rows); });
  }
  void forward(const Context& ctx, int64_t N, const T* x, T* y) const { forward(ctx, N, x, in_features, y, out_features); }

  /// dx[N, in] = dy W (written, or added with accumulate_dx; skipped when dx is null);
  /// dW += dy^T x and db += sum_rows dy when weight_grads.
  void backward(const Context& ctx, int64_t N, const T* x, int64_t ldx, const T* dy, int64_t ldy, T* dx, int64_t lddx,
                bool accumulate_dx, bool weight_grads) {
    if (dx)
      Backend::gemm(ctx, false, false, N, in_features, out_features, T(1), dy, ldy, weight.value.data(), in_features,
                    accumulate_dx ? T(1) : T(0), dx, lddx);
    if (weight_grads) {
      Backend::gemm(ctx, true, false, out_features, in_features, N, T(1), dy, ldy, x, ldx, T(1), weight.grad.data(),
                    in_features);
      for_rows(ctx, N, dy, ldy, [&](const T* rows, int64_t n) { Backend::bias_backward(ctx, n, out_features, rows, bias.grad.data()); });
    }
  }
  void backward(const Context& ctx, int64_t N, const T* x, const T* dy, T* dx, bool accumulate_dx, bool weight_grads) {
    backward(ctx, N, x, in_features, dy, out_features, dx, in_features, accumulate_dx, weight_grads);
  }

 private:
  // Dense rows go to the op in one call; strided rows (a head reading h[:, 0]) one at a time.
  template <class P, class Fn>
  void for_rows(const Context&, int64_t N, P* rows, int64_t ld, Fn&& fn) const {
    if (ld == out_features) {
      fn(rows, N);
    } else {
      for (int64_t r = 0; r < N; ++r) fn(rows + r * ld, 1);
    }
  }
};

}  // namespace addrop::nn
