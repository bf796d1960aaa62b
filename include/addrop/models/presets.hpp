#pragma once
// Named model shapes for training from random initialisation (no checkpoint can be
// downloaded on every machine): BERT layouts whose vocabulary comes from a tokenizer.
//   tiny  2 layers, hidden 128, 2 heads   (BERT-tiny's shape)
//   mini  4 layers, hidden 256, 4 heads   (BERT-mini)
//   small 4 layers, hidden 512, 8 heads   (BERT-small)
// The feed-forward width is 4 x hidden, as in every BERT.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

#include "config.hpp"

namespace addrop::models {

struct Preset {
  std::string_view name;
  int64_t layers, hidden, heads;
};

inline constexpr Preset kPresets[] = {{"tiny", 2, 128, 2}, {"mini", 4, 256, 4}, {"small", 4, 512, 8}};

/// The config of preset `name` (tiny, mini, small) for a vocabulary of `vocab_size` tokens.
/// `family` Roberta shifts positions past the padding index as Hugging Face does.
inline ModelConfig preset_config(std::string_view name, int64_t vocab_size, int64_t pad_token_id = 0,
                                 Family family = Family::Bert, int64_t max_length = 512) {
  for (const auto& p : kPresets) {
    if (p.name != name) continue;
    ModelConfig c;
    c.family = family;
    c.vocab_size = vocab_size;
    c.hidden_size = p.hidden;
    c.num_hidden_layers = p.layers;
    c.num_attention_heads = p.heads;
    c.intermediate_size = 4 * p.hidden;
    c.pad_token_id = pad_token_id;
    c.max_position_embeddings = max_length + (family == Family::Roberta ? pad_token_id + 1 : 0);
    c.type_vocab_size = family == Family::Roberta ? 1 : 2;
    if (family == Family::Roberta) c.layer_norm_eps = 1e-5;
    return c;
  }
  throw std::invalid_argument("unknown model preset \"" + std::string(name) + "\" (tiny, mini or small)");
}

}  // namespace addrop::models
