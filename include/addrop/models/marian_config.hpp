#pragma once
// MarianConfig: the fields of Hugging Face's MarianConfig (config.json of an OPUS-MT
// checkpoint, model_type "marian") that MarianModel and generation use, read and written
// in that form. Unknown fields of a loaded config.json are kept and written back, so a
// saved folder carries everything the original said.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace addrop::models {

/// generate()'s early_stopping: true (stop a source once it holds num_beams hypotheses),
/// false (stop once no running beam can beat the worst of them), "never" (as false, but
/// judging a running beam at the longest length it could reach).
enum class EarlyStopping { False, True, Never };

inline EarlyStopping early_stopping_from_json(const nlohmann::json& v) {
  if (v.is_boolean()) return v.get<bool>() ? EarlyStopping::True : EarlyStopping::False;
  if (v.is_string() && v.get<std::string>() == "never") return EarlyStopping::Never;
  throw std::invalid_argument("early_stopping must be true, false or \"never\", got " + v.dump());
}
inline nlohmann::json to_json(EarlyStopping e) {
  if (e == EarlyStopping::Never) return "never";
  return e == EarlyStopping::True;
}

struct MarianConfig {
  int64_t vocab_size = 59543;
  int64_t decoder_vocab_size = -1;  ///< -1: vocab_size (only differs without shared embeddings)
  int64_t d_model = 512;
  int64_t encoder_layers = 6, decoder_layers = 6;
  int64_t encoder_attention_heads = 8, decoder_attention_heads = 8;
  int64_t encoder_ffn_dim = 2048, decoder_ffn_dim = 2048;
  int64_t max_position_embeddings = 512;
  std::string activation_function = "swish";
  float dropout = 0.1f, attention_dropout = 0.0f, activation_dropout = 0.0f;
  double init_std = 0.02;
  bool scale_embedding = true;                   ///< token embeddings times sqrt(d_model)
  bool share_encoder_decoder_embeddings = true;  ///< one table for source and target tokens
  bool tie_word_embeddings = true;               ///< lm_head is the decoder's embedding table
  int64_t pad_token_id = 59542, eos_token_id = 0, decoder_start_token_id = 59542;
  int64_t forced_eos_token_id = 0;  ///< -1: none; else forced at the last allowed step
  // Generation defaults (Hugging Face keeps them in config.json for these checkpoints).
  int64_t num_beams = 4, max_length = 512;
  double length_penalty = 1.0;
  EarlyStopping early_stopping = EarlyStopping::False;  ///< Hugging Face's default
  std::vector<int64_t> bad_words_ids;  ///< single-token bans; OPUS-MT: [pad]
  nlohmann::json extra = nlohmann::json::object();  ///< fields this library does not read

  static constexpr double layer_norm_eps = 1e-5;  ///< torch.nn.LayerNorm's default, as Marian uses
  std::string prefix() const { return "model"; }
  std::string architecture() const { return "MarianMTModel"; }
  int64_t target_vocab_size() const { return decoder_vocab_size > 0 ? decoder_vocab_size : vocab_size; }

  /// Throws std::invalid_argument naming the first inconsistent field.
  void validate() const {
    auto need = [](bool ok, const std::string& what) {
      if (!ok) throw std::invalid_argument("MarianConfig: " + what);
    };
    need(vocab_size > 1, "vocab_size must be > 1, got " + std::to_string(vocab_size));
    need(d_model > 0, "d_model must be positive");
    need(encoder_layers > 0 && decoder_layers > 0, "encoder_layers and decoder_layers must be positive");
    need(encoder_attention_heads > 0 && d_model % encoder_attention_heads == 0,
         "d_model " + std::to_string(d_model) + " is not a multiple of encoder_attention_heads " +
             std::to_string(encoder_attention_heads));
    need(decoder_attention_heads > 0 && d_model % decoder_attention_heads == 0,
         "d_model " + std::to_string(d_model) + " is not a multiple of decoder_attention_heads " +
             std::to_string(decoder_attention_heads));
    need(encoder_ffn_dim > 0 && decoder_ffn_dim > 0, "encoder_ffn_dim and decoder_ffn_dim must be positive");
    need(max_position_embeddings > 0, "max_position_embeddings must be positive");
    need(d_model % 2 == 0, "d_model must be even (sinusoidal positions: sines, then cosines)");
    need(share_encoder_decoder_embeddings || tie_word_embeddings ? target_vocab_size() == vocab_size : true,
         "decoder_vocab_size must equal vocab_size when the embeddings are shared or tied");
    const int64_t V = target_vocab_size();
    for (auto [value, name] : {std::pair<int64_t, const char*>{pad_token_id, "pad_token_id"},
                               {eos_token_id, "eos_token_id"},
                               {decoder_start_token_id, "decoder_start_token_id"}})
      need(value >= 0 && value < V && value < vocab_size,
           std::string(name) + " " + std::to_string(value) + " is not a token id (vocabulary of " +
               std::to_string(V) + ")");
    need(forced_eos_token_id < V, "forced_eos_token_id " + std::to_string(forced_eos_token_id) + " is not a token id");
    for (int64_t b : bad_words_ids) need(b >= 0 && b < V, "bad_words_ids holds " + std::to_string(b) + ", not a token id");
    need(dropout >= 0 && dropout < 1 && attention_dropout >= 0 && attention_dropout < 1 && activation_dropout >= 0 &&
             activation_dropout < 1,
         "dropout probabilities must lie in [0, 1)");
    need(num_beams >= 1, "num_beams must be >= 1");
    need(max_length >= 2, "max_length must be >= 2 (the start token and one generated token)");
    need(vocab_size <= std::numeric_limits<int32_t>::max(), "vocab_size exceeds int32 token ids");
  }
};

/// Parses the text of a Marian config.json; `where` names the file in error messages.
inline MarianConfig parse_marian_config(const std::string& text, const std::string& where = "config.json") {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw std::runtime_error(where + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw std::runtime_error(where + ": the top level is not a JSON object");
  auto field_error = [&](const std::string& key, const std::string& why) {
    return std::runtime_error(where + ": field \"" + key + "\" " + why);
  };
  const auto type = j.find("model_type");
  if (type == j.end() || !type->is_string() || type->get<std::string>() != "marian")
    throw field_error("model_type", type == j.end() ? "is missing (expected \"marian\")"
                                                    : "is " + type->dump() + "; expected \"marian\"");
  MarianConfig c;
  nlohmann::json rest = j;
  auto take = [&](const char* key) -> const nlohmann::json* {
    rest.erase(key);
    const auto it = j.find(key);
    return it == j.end() || it->is_null() ? nullptr : &*it;
  };
  auto get_int = [&](const char* key, int64_t& out, bool required) {
    const auto* v = take(key);
    if (!v) {
      if (required) throw field_error(key, "is missing");
      return;
    }
    if (!v->is_number_integer()) throw field_error(key, "must be an integer, got " + v->dump());
    out = v->get<int64_t>();
  };
  auto get_num = [&](const char* key, auto& out) {
    const auto* v = take(key);
    if (!v) return;
    if (!v->is_number()) throw field_error(key, "must be a number, got " + v->dump());
    out = static_cast<std::remove_reference_t<decltype(out)>>(v->get<double>());
  };
  auto get_bool = [&](const char* key, bool& out) {
    const auto* v = take(key);
    if (!v) return;
    if (!v->is_boolean()) throw field_error(key, "must be true or false, got " + v->dump());
    out = v->get<bool>();
  };
  rest.erase("model_type");
  get_int("vocab_size", c.vocab_size, true);
  get_int("decoder_vocab_size", c.decoder_vocab_size, false);
  get_int("d_model", c.d_model, true);
  get_int("encoder_layers", c.encoder_layers, true);
  get_int("decoder_layers", c.decoder_layers, true);
  get_int("encoder_attention_heads", c.encoder_attention_heads, true);
  get_int("decoder_attention_heads", c.decoder_attention_heads, true);
  get_int("encoder_ffn_dim", c.encoder_ffn_dim, true);
  get_int("decoder_ffn_dim", c.decoder_ffn_dim, true);
  get_int("max_position_embeddings", c.max_position_embeddings, false);
  if (const auto* v = take("activation_function")) {
    if (!v->is_string()) throw field_error("activation_function", "must be a string, got " + v->dump());
    c.activation_function = v->get<std::string>();
    if (c.activation_function != "swish" && c.activation_function != "silu" && c.activation_function != "gelu" &&
        c.activation_function != "relu")
      throw field_error("activation_function", "is \"" + c.activation_function + "\"; supported: swish, silu, gelu, relu");
  }
  get_num("dropout", c.dropout);
  get_num("attention_dropout", c.attention_dropout);
  get_num("activation_dropout", c.activation_dropout);
  get_num("init_std", c.init_std);
  get_bool("scale_embedding", c.scale_embedding);
  get_bool("share_encoder_decoder_embeddings", c.share_encoder_decoder_embeddings);
  get_bool("tie_word_embeddings", c.tie_word_embeddings);
  get_int("pad_token_id", c.pad_token_id, false);
  get_int("eos_token_id", c.eos_token_id, false);
  c.decoder_start_token_id = c.pad_token_id;
  get_int("decoder_start_token_id", c.decoder_start_token_id, false);
  c.forced_eos_token_id = -1;
  get_int("forced_eos_token_id", c.forced_eos_token_id, false);
  get_int("num_beams", c.num_beams, false);
  get_int("max_length", c.max_length, false);
  get_num("length_penalty", c.length_penalty);
  if (const auto* v = take("early_stopping")) {
    try {
      c.early_stopping = early_stopping_from_json(*v);
    } catch (const std::invalid_argument& e) {
      throw field_error("early_stopping", e.what());
    }
  }
  if (const auto* v = take("bad_words_ids")) {
    if (!v->is_array()) throw field_error("bad_words_ids", "must be a list of token-id lists, got " + v->dump());
    for (const auto& word : *v) {
      if (!word.is_array() || word.size() != 1 || !word[0].is_number_integer())
        throw field_error("bad_words_ids", "holds " + word.dump() + "; only single-token bans ([[id], ...]) are supported");
      c.bad_words_ids.push_back(word[0].get<int64_t>());
    }
  }
  // Written back by to_hf_json from the fields above.
  for (const char* derived : {"architectures", "transformers_version", "static_position_embeddings", "is_encoder_decoder"})
    rest.erase(derived);
  c.extra = rest;
  try {
    c.validate();
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(where + ": " + e.what());
  }
  return c;
}

inline MarianConfig load_marian_config(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error(file.string() + ": cannot open");
  std::stringstream text;
  text << in.rdbuf();
  return parse_marian_config(text.str(), file.string());
}

/// Hugging Face's form of a MarianConfig (what save_pretrained writes as config.json).
inline nlohmann::json to_hf_json(const MarianConfig& c) {
  nlohmann::json j = c.extra;
  j["model_type"] = "marian";
  j["architectures"] = {"MarianMTModel"};
  j["is_encoder_decoder"] = true;
  j["static_position_embeddings"] = true;
  j["vocab_size"] = c.vocab_size;
  j["decoder_vocab_size"] = c.target_vocab_size();
  j["d_model"] = c.d_model;
  j["encoder_layers"] = c.encoder_layers;
  j["decoder_layers"] = c.decoder_layers;
  j["encoder_attention_heads"] = c.encoder_attention_heads;
  j["decoder_attention_heads"] = c.decoder_attention_heads;
  j["encoder_ffn_dim"] = c.encoder_ffn_dim;
  j["decoder_ffn_dim"] = c.decoder_ffn_dim;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["activation_function"] = c.activation_function;
  j["dropout"] = c.dropout;
  j["attention_dropout"] = c.attention_dropout;
  j["activation_dropout"] = c.activation_dropout;
  j["init_std"] = c.init_std;
  j["scale_embedding"] = c.scale_embedding;
  j["share_encoder_decoder_embeddings"] = c.share_encoder_decoder_embeddings;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["pad_token_id"] = c.pad_token_id;
  j["eos_token_id"] = c.eos_token_id;
  j["decoder_start_token_id"] = c.decoder_start_token_id;
  j["forced_eos_token_id"] = c.forced_eos_token_id >= 0 ? nlohmann::json(c.forced_eos_token_id) : nlohmann::json(nullptr);
  j["num_beams"] = c.num_beams;
  j["max_length"] = c.max_length;
  j["length_penalty"] = c.length_penalty;
  j["early_stopping"] = to_json(c.early_stopping);
  nlohmann::json bad = nlohmann::json::array();
  for (int64_t b : c.bad_words_ids) bad.push_back({b});
  j["bad_words_ids"] = bad;
  return j;
}

/// A fresh Marian for training from scratch over a vocabulary of `vocab` ids whose pad is
/// the last id (the layout of OPUS-MT vocab.json and of text::train_marian_tokenizer).
/// Shapes: "tiny" (2+2 layers, d 64), "mini" (3+3, d 256), "small" (6+6, d 512: OPUS-MT's).
inline MarianConfig marian_preset(const std::string& name, int64_t vocab, int64_t pad, int64_t eos) {
  MarianConfig c;
  c.vocab_size = vocab;
  c.decoder_vocab_size = vocab;
  c.pad_token_id = pad;
  c.decoder_start_token_id = pad;
  c.eos_token_id = eos;
  c.forced_eos_token_id = eos;
  c.bad_words_ids = {pad};
  c.max_length = 256;
  if (name == "tiny") {
    c.d_model = 64, c.encoder_layers = c.decoder_layers = 2, c.encoder_attention_heads = c.decoder_attention_heads = 4;
    c.encoder_ffn_dim = c.decoder_ffn_dim = 256;
  } else if (name == "mini") {
    c.d_model = 256, c.encoder_layers = c.decoder_layers = 3, c.encoder_attention_heads = c.decoder_attention_heads = 4;
    c.encoder_ffn_dim = c.decoder_ffn_dim = 1024;
  } else if (name == "small") {
    // OPUS-MT's shape (6+6 layers, d_model 512, 8 heads, FFN 2048)
  } else {
    throw std::invalid_argument("unknown Marian preset \"" + name + "\" (tiny, mini, small)");
  }
  c.validate();
  return c;
}

}  // namespace addrop::models
