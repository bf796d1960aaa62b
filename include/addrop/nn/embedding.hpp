#pragma once
// Embedding table [rows, dim]; the padding row (if any) gets no gradient, as torch's padding_idx.
#include "parameter.hpp"

namespace addrop::nn {

template <class T, class Backend>
struct Embedding {
  using Context = typename Backend::Context;
  Parameter<T, Backend> weight;
  int64_t rows = 0, dim = 0, padding_idx = -1;

  void init(const std::string& prefix, int64_t num_rows, int64_t embedding_dim, int64_t padding = -1) {
    rows = num_rows;
    dim = embedding_dim;
    padding_idx = padding;
    weight.allocate(prefix + ".weight", {num_rows, embedding_dim});
  }
  void collect(ParameterList<T, Backend>& list) { list.push_back(&weight); }

  /// out[t, :] (+)= weight[ids[t], :] for out [tokens, dim]
  void forward(const Context& ctx, int64_t tokens, const int32_t* ids, T* out, bool accumulate) const {
    Backend::embedding_forward(ctx, tokens, dim, ids, weight.value.data(), out, accumulate);
  }
  void backward(const Context& ctx, int64_t tokens, const int32_t* ids, const T* dout) {
    Backend::embedding_backward(ctx, tokens, dim, ids, dout, weight.grad.data(), padding_idx);
  }
};

}  // namespace addrop::nn
