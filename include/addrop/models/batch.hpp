#pragma once
// A mini-batch on the host: token ids, masks and labels, row-major [B, L].
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "concepts.hpp"
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

/// The attribution target of the library's heads on a batch (docs/algorithm.md step 2):
/// one row per example for sequence classification and regression, one per token (attended
/// ones counted) for token classification.
inline AttributionTarget attribution_target(const ModelConfig& c, const Batch& batch) {
  AttributionTarget t;
  t.classes = c.num_labels;
  switch (c.task) {
    case Task::TokenClassification:
      t.kind = AttributionTarget::Kind::TokenClasses;
      t.rows = batch.tokens();
      t.row_mask = batch.attention_mask;
      break;
    case Task::Regression:
      t.kind = AttributionTarget::Kind::Regression;
      t.rows = batch.size;
      t.gold = batch.targets;
      break;
    default:
      t.kind = AttributionTarget::Kind::SequenceClasses;
      t.rows = batch.size;
  }
  return t;
}

/// `copies` copies of batch's inputs one after another along the batch axis (labels are
/// not copied: the stacked passes of integrated gradients do not read them).
inline void stack_batch(const Batch& batch, int64_t copies, Batch& out) {
  out.size = batch.size * copies;
  out.length = batch.length;
  auto repeat = [&](const std::vector<int32_t>& from, std::vector<int32_t>& to) {
    to.resize(from.size() * static_cast<std::size_t>(copies));
    for (int64_t k = 0; k < copies; ++k)
      std::copy(from.begin(), from.end(), to.begin() + k * static_cast<int64_t>(from.size()));
  };
  repeat(batch.input_ids, out.input_ids);
  repeat(batch.attention_mask, out.attention_mask);
  repeat(batch.token_type_ids, out.token_type_ids);
}

}  // namespace addrop::models
