#pragma once
// A mini-batch on the host: token ids, masks and labels, row-major [B, L].
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "config.hpp"

namespace addrop::models {

struct Batch {
  int64_t size = 0;    ///< B
  int64_t length = 0;  ///< L (padded)
  std::vector<int32_t> input_ids;       ///< [B, L]
  std::vector<int32_t> attention_mask;  ///< [B, L], 1 = token, 0 = pad
  std::vector<int32_t> token_type_ids;  ///< [B, L]; empty = all zeros
  std::vector<int32_t> labels;          ///< [B] (sequence) or [B, L] (token, -100 = ignored)
  std::vector<double> targets;          ///< [B] regression scores

  int64_t tokens() const { return size * length; }
  /// Non-pad tokens of example b (n_b in docs/algorithm.md).
  int64_t key_length(int64_t b) const {
    int64_t n = 0;
    for (int64_t j = 0; j < length; ++j) n += attention_mask[b * length + j] != 0;
    return n;
  }

  /// Throws std::invalid_argument naming the field and the position at fault.
  void validate(const ModelConfig& c, bool need_labels) const {
    auto fail = [](const std::string& what) { throw std::invalid_argument("batch: " + what); };
    if (size <= 0 || length <= 0) fail("empty batch");
    const auto n = static_cast<std::size_t>(size * length);
    if (input_ids.size() != n) fail("input_ids has " + std::to_string(input_ids.size()) + " entries, expected B*L = " + std::to_string(n));
    if (attention_mask.size() != n) fail("attention_mask has " + std::to_string(attention_mask.size()) + " entries, expected " + std::to_string(n));
    if (!token_type_ids.empty() && token_type_ids.size() != n) fail("token_type_ids has " + std::to_string(token_type_ids.size()) + " entries, expected " + std::to_string(n));
    int64_t max_pos = length + (c.family == Family::Roberta ? c.pad_token_id + 1 : 0);
    if (max_pos > c.max_position_embeddings)
      fail("length " + std::to_string(length) + " exceeds max_position_embeddings " + std::to_string(c.max_position_embeddings));
    for (std::size_t i = 0; i < n; ++i) {
      if (input_ids[i] < 0 || input_ids[i] >= c.vocab_size)
        fail("input_ids[" + std::to_string(i / length) + "][" + std::to_string(i % length) + "] = " +
             std::to_string(input_ids[i]) + " is outside the vocabulary (size " + std::to_string(c.vocab_size) + ")");
      if (!token_type_ids.empty() && (token_type_ids[i] < 0 || token_type_ids[i] >= c.type_vocab_size))
        fail("token_type_ids[" + std::to_string(i / length) + "][" + std::to_string(i % length) + "] = " +
             std::to_string(token_type_ids[i]) + " is outside type_vocab_size " + std::to_string(c.type_vocab_size));
    }
    if (!need_labels) return;
    if (c.task == Task::Regression) {
      if (targets.size() != static_cast<std::size_t>(size)) fail("regression targets need one score per example");
      return;
    }
    const std::size_t want = c.task == Task::TokenClassification ? n : static_cast<std::size_t>(size);
    if (labels.size() != want) fail("labels has " + std::to_string(labels.size()) + " entries, expected " + std::to_string(want));
    for (std::size_t i = 0; i < want; ++i)
      if (labels[i] != -100 && (labels[i] < 0 || labels[i] >= c.num_labels))
        fail("labels[" + std::to_string(i) + "] = " + std::to_string(labels[i]) + " is not in [0, " + std::to_string(c.num_labels) + ")");
  }
};

}  // namespace addrop::models
