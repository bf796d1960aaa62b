#pragma once
// frozen_weights(model): the scope in which a model's weights stay fixed (decoding,
// evaluation), so that bf16 products round them once instead of at every product
// (backend::Bf16FrozenOperands). A no-op unless the model is a float model on the CPU
// backend in Precision::Bf16Mixed; nothing may write the weights while it lives.
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include "../backend/cpu.hpp"

namespace addrop::models {

struct NoFrozenWeights {};

template <class Model>
auto frozen_weights(const Model& model) {
  if constexpr (std::is_same_v<typename Model::backend_type, backend::Cpu> &&
                std::is_same_v<typename Model::value_type, float>) {
    if (model.context().precision != Precision::Bf16Mixed) return backend::Bf16FrozenOperands{};
    std::vector<std::pair<const float*, int64_t>> ranges;
    for (const auto* p : model.parameters()) ranges.emplace_back(p->value.data(), p->value.numel());
    return backend::Bf16FrozenOperands(std::move(ranges));
  } else {
    return NoFrozenWeights{};
  }
}

}  // namespace addrop::models
