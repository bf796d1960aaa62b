#pragma once
// What a BERT-family model is: the fields of Hugging Face's config.json that the
// library uses, in one struct. io/hf_config.hpp reads and writes it.
#include <cstdint>
#include <stdexcept>
#include <string>

namespace addrop::models {

enum class Family { Bert, Roberta, Electra };
enum class Task { SequenceClassification, Regression, TokenClassification };

inline const char* family_prefix(Family f) {
  switch (f) {
    case Family::Bert: return "bert";
    case Family::Roberta: return "roberta";
    case Family::Electra: return "electra";
  }
  return "";
}

struct ModelConfig {
  Family family = Family::Bert;
  Task task = Task::SequenceClassification;
  int64_t vocab_size = 30522;
  int64_t hidden_size = 768;
  int64_t embedding_size = -1;  ///< ELECTRA's; -1 means hidden_size
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 12;
  int64_t intermediate_size = 3072;
  int64_t max_position_embeddings = 512;
  int64_t type_vocab_size = 2;
  int64_t pad_token_id = 0;
  int64_t num_labels = 2;
  double layer_norm_eps = 1e-12;
  float hidden_dropout_prob = 0.1f;
  float attention_probs_dropout_prob = 0.1f;
  float classifier_dropout = -1.0f;  ///< -1: hidden_dropout_prob, as Hugging Face
  std::string hidden_act = "gelu";

  int64_t embedding_dim() const { return embedding_size > 0 ? embedding_size : hidden_size; }
  float head_dropout() const { return classifier_dropout >= 0.0f ? classifier_dropout : hidden_dropout_prob; }
  std::string prefix() const { return family_prefix(family); }
  /// Hugging Face's class name, e.g. "RobertaForSequenceClassification".
  std::string architecture() const {
    std::string f = family == Family::Bert ? "Bert" : family == Family::Roberta ? "Roberta" : "Electra";
    return f + (task == Task::TokenClassification ? "ForTokenClassification" : "ForSequenceClassification");
  }

  /// Throws std::invalid_argument naming the first field that makes no sense.
  void validate() const {
    auto need = [](bool ok, const std::string& what) {
      if (!ok) throw std::invalid_argument("model config: " + what);
    };
    need(vocab_size > 0, "vocab_size must be positive");
    need(hidden_size > 0, "hidden_size must be positive");
    need(num_hidden_layers > 0, "num_hidden_layers must be positive");
    need(num_attention_heads > 0 && hidden_size % num_attention_heads == 0,
         "hidden_size (" + std::to_string(hidden_size) + ") must be a multiple of num_attention_heads (" +
             std::to_string(num_attention_heads) + ")");
    need(intermediate_size > 0, "intermediate_size must be positive");
    need(max_position_embeddings > 0, "max_position_embeddings must be positive");
    need(type_vocab_size > 0, "type_vocab_size must be positive");
    need(pad_token_id >= 0 && pad_token_id < vocab_size, "pad_token_id must be a row of the vocabulary");
    need(num_labels > 0, "num_labels must be positive");
    need(task != Task::Regression || num_labels == 1, "regression needs num_labels = 1");
    need(hidden_dropout_prob >= 0 && hidden_dropout_prob < 1, "hidden_dropout_prob must be in [0, 1)");
    need(attention_probs_dropout_prob >= 0 && attention_probs_dropout_prob < 1,
         "attention_probs_dropout_prob must be in [0, 1)");
    need(family == Family::Electra || embedding_size <= 0 || embedding_size == hidden_size,
         "embedding_size differs from hidden_size, which only ELECTRA supports");
  }
};

}  // namespace addrop::models
