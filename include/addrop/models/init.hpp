#pragma once
// Hugging Face's initialisation (BertPreTrainedModel._init_weights): weights of linear
// and embedding layers ~ N(0, initializer_range), biases 0, LayerNorm (1, 0), padding
// rows 0. Draws come from the counter-based generator, so a seed gives the same model
// on every backend and thread count.
#include <cmath>
#include <string>
#include <vector>

#include "../backend/philox.hpp"
#include "../nn/parameter.hpp"
#include "config.hpp"

namespace addrop::models {

/// Standard normal number `index` of stream (seed, stream), by Box-Muller on two uniforms.
inline double normal_draw(uint64_t seed, uint64_t stream, uint64_t index) {
  const double u1 = 1.0 - random::uniform(seed, stream, 2 * index);  // (0, 1]
  const double u2 = random::uniform(seed, stream, 2 * index + 1);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

/// Initialises one parameter by its Hugging Face name; `stream` keeps parameters independent.
template <class T, class Backend>
void init_parameter(nn::Parameter<T, Backend>& p, const typename Backend::Context& ctx, uint64_t seed,
                    uint64_t stream, double initializer_range = 0.02, int64_t padding_row = -1) {
  std::vector<T> host(static_cast<std::size_t>(p.value.numel()));
  const bool layer_norm = p.name.find("LayerNorm") != std::string::npos || p.name.find("layer_norm") != std::string::npos;
  const bool is_bias = p.name.size() >= 5 && p.name.compare(p.name.size() - 5, 5, ".bias") == 0;
  if (layer_norm && !is_bias) {
    std::fill(host.begin(), host.end(), T(1));
  } else if (!is_bias) {
    for (std::size_t i = 0; i < host.size(); ++i)
      host[i] = static_cast<T>(initializer_range * normal_draw(seed, stream, i));
    if (padding_row >= 0 && p.value.rank() == 2) {
      const int64_t dim = p.value.dim(1);
      std::fill(host.begin() + padding_row * dim, host.begin() + (padding_row + 1) * dim, T(0));
    }
  }
  Backend::to_device(ctx, p.value.numel(), host.data(), p.value.data());
}

/// Initialises every parameter of a model the way Hugging Face does for a fresh model.
template <class Model>
void init_weights(Model& model, uint64_t seed, double initializer_range = 0.02) {
  const auto& c = model.config();
  const std::string word = c.prefix() + ".embeddings.word_embeddings.weight";
  const std::string position = c.prefix() + ".embeddings.position_embeddings.weight";
  uint64_t stream = 0;
  for (auto* p : model.parameters()) {
    int64_t pad = -1;
    if (p->name == word || (p->name == position && c.family == Family::Roberta)) pad = c.pad_token_id;
    init_parameter(*p, model.context(), seed, stream++, initializer_range, pad);
  }
}

}  // namespace addrop::models
