#pragma once
// A trainable tensor with its gradient and its Hugging Face name.
#include <string>
#include <vector>

#include "../tensor.hpp"

namespace addrop::nn {

template <class T, class Backend>
struct Parameter {
  std::string name;            ///< exactly as Hugging Face names it, e.g. "bert.pooler.dense.weight"
  Tensor<T, Backend> value;
  Tensor<T, Backend> grad;     ///< accumulated by backward(); zeroed by the trainer

  void allocate(std::string parameter_name, const Shape& shape) {
    name = std::move(parameter_name);
    value.resize(shape);
    grad.resize(shape);
  }
  /// Hugging Face's (and the reference's) rule: no weight decay on biases and LayerNorm
  /// weights (BERT's "LayerNorm", Marian's "*_layer_norm").
  bool decays() const {
    return name.find("bias") == std::string::npos && name.find("LayerNorm.weight") == std::string::npos &&
           name.find("layer_norm.weight") == std::string::npos;
  }
};

template <class T, class Backend>
using ParameterList = std::vector<Parameter<T, Backend>*>;

}  // namespace addrop::nn
