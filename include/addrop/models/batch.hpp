#pragma once
// A mini-batch on the host: token ids, masks and labels, row-major [B, L].
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "batch_shard.hpp"
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
  BatchShard shard;                     ///< where these rows sit in a batch split across processes

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
      t.denominator = batch.shard.objective_count;
      break;
    case Task::Regression:
      t.kind = AttributionTarget::Kind::Regression;
      t.rows = batch.size;
      t.gold = batch.targets;
      t.denominator = batch.shard.objective_count;
      break;
    default:
      t.kind = AttributionTarget::Kind::SequenceClasses;
      t.rows = batch.size;
  }
  return t;
}

/// Rows [begin, end) of `whole`, as one of several processes trains on them: the same
/// padded length, and the shard facts (models/batch_shard.hpp) that make its dropout, its
/// AD-DROP draws and its share of the mean loss those of `whole`.
inline Batch shard_rows(const Batch& whole, int64_t begin, int64_t end) {
  if (begin < 0 || end > whole.size || begin >= end)
    throw std::invalid_argument("shard_rows: rows [" + std::to_string(begin) + ", " + std::to_string(end) +
                                ") of a batch of " + std::to_string(whole.size));
  const int64_t L = whole.length;
  auto rows = [&](const std::vector<int32_t>& v, int64_t per_row) {
    if (v.empty()) return std::vector<int32_t>{};
    return std::vector<int32_t>(v.begin() + begin * per_row, v.begin() + end * per_row);
  };
  const bool token_labels = L > 1 && static_cast<int64_t>(whole.labels.size()) == whole.size * L;
  Batch out;
  out.size = end - begin;
  out.length = L;
  out.input_ids = rows(whole.input_ids, L);
  out.attention_mask = rows(whole.attention_mask, L);
  out.token_type_ids = rows(whole.token_type_ids, L);
  out.labels = rows(whole.labels, token_labels ? L : 1);
  if (!whole.targets.empty()) out.targets.assign(whole.targets.begin() + begin, whole.targets.begin() + end);
  out.shard.first_example = whole.shard.first_example + begin;
  if (!whole.targets.empty()) {
    out.shard.loss_count = whole.size;
  } else {
    out.shard.loss_count = 0;
    for (int32_t l : whole.labels) out.shard.loss_count += l != -100;
  }
  if (token_labels) {
    out.shard.objective_count = 0;
    for (int32_t m : whole.attention_mask) out.shard.objective_count += m != 0;
  } else {
    out.shard.objective_count = whole.size;
  }
  // A shard of a shard keeps the counts of the outermost batch.
  if (whole.shard.loss_count) out.shard.loss_count = whole.shard.loss_count;
  if (whole.shard.objective_count) out.shard.objective_count = whole.shard.objective_count;
  return out;
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
  out.shard = batch.shard;
}

}  // namespace addrop::models
