#pragma once
// A batch of sentence pairs for an encoder-decoder, as Hugging Face's DataCollatorForSeq2Seq
// hands it to MarianMTModel: source ids padded with pad (attention_mask 1 on tokens), labels
// padded with -100, decoder_input_ids = labels shifted right behind decoder_start_token_id
// (pads for -100).
#include <algorithm>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "batch_shard.hpp"

namespace addrop::models {

struct Seq2SeqBatch {
  int64_t size = 0, source_length = 0, target_length = 0;
  std::vector<int32_t> input_ids, attention_mask;  ///< [size, source_length]
  std::vector<int32_t> decoder_input_ids;          ///< [size, target_length]
  std::vector<int32_t> labels;                     ///< [size, target_length], -100 at pads (empty: no targets)
  std::vector<int32_t> target_mask;                ///< [size, target_length], 1 where labels are real
  BatchShard shard;                                ///< where these rows sit in a batch split across processes

  /// Throws std::invalid_argument naming the inconsistent field.
  void validate(int64_t vocab, int64_t target_vocab, bool needs_labels) const {
    auto need = [](bool ok, const std::string& what) {
      if (!ok) throw std::invalid_argument("Seq2SeqBatch: " + what);
    };
    const auto S = static_cast<std::size_t>(size * source_length), Tn = static_cast<std::size_t>(size * target_length);
    need(size > 0 && source_length > 0 && target_length > 0, "empty batch");
    need(input_ids.size() == S && attention_mask.size() == S, "input_ids / attention_mask are not [size, source_length]");
    need(decoder_input_ids.size() == Tn, "decoder_input_ids is not [size, target_length]");
    need(target_mask.size() == Tn, "target_mask is not [size, target_length]");
    for (int32_t id : input_ids) need(id >= 0 && id < vocab, "input_ids holds " + std::to_string(id) + ", not a source token id");
    for (int32_t id : decoder_input_ids)
      need(id >= 0 && id < target_vocab, "decoder_input_ids holds " + std::to_string(id) + ", not a target token id");
    if (needs_labels) {
      need(labels.size() == Tn, "labels are missing or not [size, target_length]");
      for (int32_t id : labels)
        need(id == -100 || (id >= 0 && id < target_vocab), "labels hold " + std::to_string(id) + ", not a target token id or -100");
    }
  }
};

/// Pads sources and targets (token ids, each already ending in </s>) into a batch.
inline Seq2SeqBatch make_seq2seq_batch(std::span<const std::vector<int32_t>> sources,
                                       std::span<const std::vector<int32_t>> targets, int32_t pad,
                                       int32_t decoder_start) {
  if (sources.empty()) throw std::invalid_argument("make_seq2seq_batch: no sentences");
  if (!targets.empty() && targets.size() != sources.size())
    throw std::invalid_argument("make_seq2seq_batch: " + std::to_string(sources.size()) + " sources but " +
                                std::to_string(targets.size()) + " targets");
  Seq2SeqBatch b;
  b.size = static_cast<int64_t>(sources.size());
  for (const auto& s : sources) b.source_length = std::max<int64_t>(b.source_length, static_cast<int64_t>(s.size()));
  b.target_length = 1;
  for (const auto& t : targets) b.target_length = std::max<int64_t>(b.target_length, static_cast<int64_t>(t.size()));
  b.input_ids.assign(static_cast<std::size_t>(b.size * b.source_length), pad);
  b.attention_mask.assign(b.input_ids.size(), 0);
  for (int64_t i = 0; i < b.size; ++i) {
    const auto& s = sources[static_cast<std::size_t>(i)];
    if (s.empty()) throw std::invalid_argument("make_seq2seq_batch: source " + std::to_string(i) + " has no tokens");
    for (std::size_t j = 0; j < s.size(); ++j) {
      b.input_ids[static_cast<std::size_t>(i * b.source_length) + j] = s[j];
      b.attention_mask[static_cast<std::size_t>(i * b.source_length) + j] = 1;
    }
  }
  const auto Tn = static_cast<std::size_t>(b.size * b.target_length);
  b.decoder_input_ids.assign(Tn, pad);
  b.target_mask.assign(Tn, 0);
  if (!targets.empty()) b.labels.assign(Tn, -100);
  for (int64_t i = 0; i < b.size; ++i) {
    const std::size_t row = static_cast<std::size_t>(i * b.target_length);
    b.decoder_input_ids[row] = decoder_start;
    if (targets.empty()) continue;
    const auto& t = targets[static_cast<std::size_t>(i)];
    for (std::size_t j = 0; j < t.size(); ++j) {
      b.labels[row + j] = t[j];
      b.target_mask[row + j] = 1;
      if (j + 1 < static_cast<std::size_t>(b.target_length)) b.decoder_input_ids[row + j + 1] = t[j];
    }
  }
  return b;
}

/// Rows [begin, end) of `whole` as one of several processes trains on them (the padded
/// lengths of `whole`; models/batch_shard.hpp).
inline Seq2SeqBatch shard_rows(const Seq2SeqBatch& whole, int64_t begin, int64_t end) {
  if (begin < 0 || end > whole.size || begin >= end)
    throw std::invalid_argument("shard_rows: rows [" + std::to_string(begin) + ", " + std::to_string(end) +
                                ") of a batch of " + std::to_string(whole.size));
  auto rows = [&](const std::vector<int32_t>& v, int64_t per_row) {
    if (v.empty()) return std::vector<int32_t>{};
    return std::vector<int32_t>(v.begin() + begin * per_row, v.begin() + end * per_row);
  };
  Seq2SeqBatch out;
  out.size = end - begin;
  out.source_length = whole.source_length;
  out.target_length = whole.target_length;
  out.input_ids = rows(whole.input_ids, whole.source_length);
  out.attention_mask = rows(whole.attention_mask, whole.source_length);
  out.decoder_input_ids = rows(whole.decoder_input_ids, whole.target_length);
  out.labels = rows(whole.labels, whole.target_length);
  out.target_mask = rows(whole.target_mask, whole.target_length);
  out.shard.first_example = whole.shard.first_example + begin;
  out.shard.loss_count = whole.shard.loss_count;
  if (!out.shard.loss_count)
    for (int32_t l : whole.labels) out.shard.loss_count += l != -100;
  out.shard.objective_count = whole.shard.objective_count;
  if (!out.shard.objective_count)
    for (int32_t m : whole.target_mask) out.shard.objective_count += m != 0;
  return out;
}

/// `copies` copies of a batch, one after the other (integrated gradients' stacked passes).
inline void stack_seq2seq_batch(const Seq2SeqBatch& batch, int64_t copies, Seq2SeqBatch& out) {
  auto repeat = [&](const std::vector<int32_t>& v, std::vector<int32_t>& o) {
    o.clear();
    o.reserve(v.size() * static_cast<std::size_t>(copies));
    for (int64_t k = 0; k < copies; ++k) o.insert(o.end(), v.begin(), v.end());
  };
  out.size = batch.size * copies;
  out.source_length = batch.source_length;
  out.target_length = batch.target_length;
  repeat(batch.input_ids, out.input_ids);
  repeat(batch.attention_mask, out.attention_mask);
  repeat(batch.decoder_input_ids, out.decoder_input_ids);
  repeat(batch.labels, out.labels);
  repeat(batch.target_mask, out.target_mask);
  out.shard = batch.shard;
}

}  // namespace addrop::models
