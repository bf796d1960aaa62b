#pragma once
// What a BERT-family model is: the fields of Hugging Face's config.json that the
// library uses, in one struct. io/hf_config.hpp reads and writes it.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

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

/// This machine's physical memory in bytes (sysconf), 0 where it cannot be read.
inline double physical_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? static_cast<double>(pages) * static_cast<double>(page) : 0.0;
}

/// "1.3 TiB", "23.4 GiB": a byte count for messages.
inline std::string bytes_text(double bytes) {
  const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int u = 0;
  while (bytes >= 1024 && u < 6) {
    bytes /= 1024;
    ++u;
  }
  char buf[48];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
  return buf;
}

/// "110 M", "1.2 G": a parameter count for messages.
inline std::string parameters_text(double n) {
  char buf[48];
  if (n >= 1e9) std::snprintf(buf, sizeof buf, "%.1f G", n / 1e9);
  else std::snprintf(buf, sizeof buf, "%.1f M", n / 1e6);
  return buf;
}

/// Parameters of the model a config builds, by part. Counted in double so that absurd
/// sizes give a huge number instead of an overflow.
struct ParameterCounts {
  double word_embeddings = 0, position_embeddings = 0, other_embeddings = 0;  ///< other: token types, LayerNorm, ELECTRA's projection
  double attention_per_layer = 0, feed_forward_per_layer = 0, layers = 0;     ///< layers: num_hidden_layers x (attention + feed-forward)
  double head = 0;
  double total() const { return word_embeddings + position_embeddings + other_embeddings + layers + head; }
};

/// A model's memory need beyond what a machine has: MemoryDriver says which quantity
/// drives it (so a program can name its own flag or file), `quantity` names it as the
/// library sees it ("num_hidden_layers 100000", "sequence length 100000", "batch size 32"),
/// `reason` gives the numbers. what() is "quantity: reason".
enum class MemoryDriver { Model, SequenceLength, BatchSize, EvalBatchSize };

struct MemoryError : std::invalid_argument {
  MemoryDriver driver;
  std::string quantity, reason;
  int64_t value;  ///< the driving value (the field's, the length or the batch size)
  MemoryError(MemoryDriver d, std::string what_quantity, std::string why, int64_t v)
      : std::invalid_argument(what_quantity + ": " + why), driver(d), quantity(std::move(what_quantity)),
        reason(std::move(why)), value(v) {}
};

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

  /// Parameter counts of the model this config builds (Hugging Face's layout).
  ParameterCounts parameter_counts() const {
    const double D = static_cast<double>(hidden_size), E = static_cast<double>(embedding_dim()),
                 I = static_cast<double>(intermediate_size), C = static_cast<double>(num_labels);
    ParameterCounts p;
    p.word_embeddings = static_cast<double>(vocab_size) * E;
    p.position_embeddings = static_cast<double>(max_position_embeddings) * E;
    p.other_embeddings = static_cast<double>(type_vocab_size) * E + 2 * E + (E != D ? E * D + D : 0);
    p.attention_per_layer = 4 * (D * D + D) + 2 * D;  // Q, K, V, output; LayerNorm
    p.feed_forward_per_layer = D * I + I + I * D + D + 2 * D;
    p.layers = static_cast<double>(num_hidden_layers) * (p.attention_per_layer + p.feed_forward_per_layer);
    p.head = (task == Task::TokenClassification ? 0 : D * D + D) + D * C + C;
    return p;
  }

  /// The field that makes the model this big: the largest part of parameter_counts(),
  /// and within the encoder the per-layer width when one layer alone holds more than
  /// `layer_limit` parameters, else the layer count.
  std::pair<std::string, int64_t> largest_field(double layer_limit) const {
    const ParameterCounts p = parameter_counts();
    if (p.word_embeddings >= p.layers && p.word_embeddings >= p.position_embeddings) return {"vocab_size", vocab_size};
    if (p.position_embeddings >= p.layers) return {"max_position_embeddings", max_position_embeddings};
    if (p.attention_per_layer + p.feed_forward_per_layer > layer_limit)
      return intermediate_size > hidden_size ? std::pair<std::string, int64_t>{"intermediate_size", intermediate_size}
                                             : std::pair<std::string, int64_t>{"hidden_size", hidden_size};
    return {"num_hidden_layers", num_hidden_layers};
  }

  /// Throws std::invalid_argument naming the first field that makes no sense. Beyond
  /// the fields' own ranges, it refuses a model whose weights and gradients (what building
  /// it allocates, in float) exceed this machine's physical memory, so that an absurd
  /// config.json (num_hidden_layers 100000) is refused before anything is allocated.
  void validate() const {
    auto need = [](bool ok, const std::string& what) {
      if (!ok) throw std::invalid_argument("model config: " + what);
    };
    // Token ids, positions, token types and labels are int32 in batches.
    constexpr int64_t kIdLimit = std::numeric_limits<int32_t>::max();
    auto id_range = [&](int64_t v, const char* name) {
      need(v <= kIdLimit, std::string(name) + " " + std::to_string(v) + " exceeds the int32 ids of a batch (" +
                              std::to_string(kIdLimit) + ")");
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
    id_range(vocab_size, "vocab_size");
    id_range(max_position_embeddings, "max_position_embeddings");
    id_range(type_vocab_size, "type_vocab_size");
    id_range(num_labels, "num_labels");
    const double machine = physical_memory_bytes();
    const double parameters = parameter_counts().total();
    const double bytes = 2 * parameters * sizeof(float);  // weights and their gradients
    if (machine > 0 && bytes > machine) {
      const auto [field, value] = largest_field(machine / (2 * sizeof(float)));
      throw MemoryError(MemoryDriver::Model, field + " " + std::to_string(value),
                        "the model's weights and gradients alone need " + bytes_text(bytes) + " (" +
                            parameters_text(parameters) + " parameters); this machine has " + bytes_text(machine),
                        value);
    }
  }
};

}  // namespace addrop::models
