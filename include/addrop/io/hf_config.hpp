#pragma once
// Hugging Face config.json <-> models::ModelConfig.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "../models/config.hpp"
#include "safetensors.hpp"

namespace addrop::io {

namespace hf_detail {
inline const nlohmann::json* find(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}
}  // namespace hf_detail

/// Parses the text of a config.json; `where` names the file in error messages.
inline models::ModelConfig parse_hf_config(const std::string& text, const std::string& where = "config.json") {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(where + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw Error(where + ": the top level is not a JSON object");
  auto field_error = [&](const char* key, const std::string& why) { return Error(where + ": field \"" + key + "\" " + why); };
  auto get_int = [&](const char* key, int64_t fallback, bool required) -> int64_t {
    const auto* v = hf_detail::find(j, key);
    if (!v) {
      if (required) throw field_error(key, "is missing");
      return fallback;
    }
    if (!v->is_number_integer()) throw field_error(key, "must be an integer, got " + v->dump());
    return v->get<int64_t>();
  };
  auto get_num = [&](const char* key, double fallback) -> double {
    const auto* v = hf_detail::find(j, key);
    if (!v) return fallback;
    if (!v->is_number()) throw field_error(key, "must be a number, got " + v->dump());
    return v->get<double>();
  };

  models::ModelConfig c;
  const auto* type = hf_detail::find(j, "model_type");
  if (!type || !type->is_string()) throw field_error("model_type", "is missing (expected \"bert\", \"roberta\" or \"electra\")");
  const std::string model_type = type->get<std::string>();
  if (model_type == "bert") c.family = models::Family::Bert;
  else if (model_type == "roberta") c.family = models::Family::Roberta;
  else if (model_type == "electra") c.family = models::Family::Electra;
  else throw field_error("model_type", "is \"" + model_type + "\"; supported: bert, roberta, electra");

  c.vocab_size = get_int("vocab_size", 0, true);
  c.hidden_size = get_int("hidden_size", 0, true);
  c.num_hidden_layers = get_int("num_hidden_layers", 0, true);
  c.num_attention_heads = get_int("num_attention_heads", 0, true);
  c.intermediate_size = get_int("intermediate_size", 0, true);
  c.max_position_embeddings = get_int("max_position_embeddings", 512, false);
  c.type_vocab_size = get_int("type_vocab_size", 2, false);
  c.pad_token_id = get_int("pad_token_id", c.family == models::Family::Roberta ? 1 : 0, false);
  c.embedding_size = c.family == models::Family::Electra ? get_int("embedding_size", c.hidden_size, false) : -1;
  c.layer_norm_eps = get_num("layer_norm_eps", 1e-12);
  c.hidden_dropout_prob = static_cast<float>(get_num("hidden_dropout_prob", 0.1));
  c.attention_probs_dropout_prob = static_cast<float>(get_num("attention_probs_dropout_prob", 0.1));
  c.classifier_dropout = static_cast<float>(get_num("classifier_dropout", -1.0));
  if (const auto* act = hf_detail::find(j, "hidden_act")) {
    if (!act->is_string()) throw field_error("hidden_act", "must be a string");
    c.hidden_act = act->get<std::string>();
    if (c.hidden_act != "gelu" && c.hidden_act != "tanh")
      throw field_error("hidden_act", "is \"" + c.hidden_act + "\"; supported: gelu (exact erf), tanh");
  }

  // num_labels: explicit, else the size of id2label (Hugging Face writes the latter), else 2.
  c.num_labels = 2;
  if (const auto* id2label = hf_detail::find(j, "id2label")) {
    if (!id2label->is_object() || id2label->empty()) throw field_error("id2label", "must be a non-empty object");
    c.num_labels = static_cast<int64_t>(id2label->size());
  }
  c.num_labels = get_int("num_labels", c.num_labels, false);

  bool token = false;
  if (const auto* arch = hf_detail::find(j, "architectures")) {
    if (!arch->is_array()) throw field_error("architectures", "must be an array of strings");
    for (const auto& a : *arch)
      if (a.is_string() && a.get<std::string>().find("ForTokenClassification") != std::string::npos) token = true;
  }
  std::string problem;
  if (const auto* pt = hf_detail::find(j, "problem_type")) problem = pt->is_string() ? pt->get<std::string>() : "";
  if (token) c.task = models::Task::TokenClassification;
  else if (problem == "regression" || (problem.empty() && c.num_labels == 1)) c.task = models::Task::Regression;
  else c.task = models::Task::SequenceClassification;

  try {
    c.validate();
  } catch (const std::invalid_argument& e) {
    throw Error(where + ": " + e.what());
  }
  return c;
}

/// Reads <dir>/config.json (or the file itself when given a file).
inline models::ModelConfig load_hf_config(const std::filesystem::path& path) {
  const auto file = std::filesystem::is_directory(path) ? path / "config.json" : path;
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error(file.string() + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_hf_config(ss.str(), file.string());
}

/// The config.json Hugging Face writes for this model (loadable by transformers).
inline nlohmann::json to_hf_json(const models::ModelConfig& c) {
  nlohmann::json j;
  j["model_type"] = c.prefix();
  j["architectures"] = {c.architecture()};
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  if (c.family == models::Family::Electra) j["embedding_size"] = c.embedding_dim();
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["intermediate_size"] = c.intermediate_size;
  j["hidden_act"] = c.hidden_act;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["type_vocab_size"] = c.type_vocab_size;
  j["pad_token_id"] = c.pad_token_id;
  j["layer_norm_eps"] = c.layer_norm_eps;
  j["hidden_dropout_prob"] = c.hidden_dropout_prob;
  j["attention_probs_dropout_prob"] = c.attention_probs_dropout_prob;
  if (c.classifier_dropout >= 0) j["classifier_dropout"] = c.classifier_dropout;
  j["initializer_range"] = 0.02;
  nlohmann::json id2label = nlohmann::json::object(), label2id = nlohmann::json::object();
  for (int64_t i = 0; i < c.num_labels; ++i) {
    id2label[std::to_string(i)] = "LABEL_" + std::to_string(i);
    label2id["LABEL_" + std::to_string(i)] = i;
  }
  j["id2label"] = id2label;
  j["label2id"] = label2id;
  if (c.task == models::Task::Regression) j["problem_type"] = "regression";
  else if (c.task == models::Task::SequenceClassification) j["problem_type"] = "single_label_classification";
  return j;
}

}  // namespace addrop::io
