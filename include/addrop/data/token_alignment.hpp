#pragma once
// Word-level tags <-> sub-word tokens, for token classification (CoNLL-2003 NER).
//
// A sentence comes as pre-split words with one label per word. The tokenizer splits each
// word into sub-tokens (Tokenizer::encode_words, Hugging Face's is_split_into_words=True:
// byte-level BPE adds the prefix space per word) and adds the special tokens. Labels
// follow Hugging Face's run_ner.py (tokenize_and_align_labels):
//   - special tokens get -100 (ignored by the loss);
//   - the first sub-token of a word gets the word's label;
//   - the other sub-tokens of the word get -100, or with `label_all_tokens` a label too:
//     the word's label (Continuation::Same: run_ner.py of transformers <= 4.10) or its
//     I- counterpart when the word's label is B-X (Continuation::BToI: run_ner.py's
//     b_to_i_label since transformers 4.11, and the AD-DROP reference's convention).
// Truncation (max_length tokens, specials included) can cut the last words of a sentence;
// `TokenFeatures` counts them. Predictions go back to words through the first sub-token;
// a word with no token left (cut by truncation, or one the tokenizer maps to nothing) is
// predicted with a fill label ("O").
//
// Batches: make_token_batch pads the features like data::make_batch and puts the token
// labels [B, L] (-100 on pads) in Batch::labels; TokenBatches is the batch source
// (train::BatchSource) that feeds token features to train::Trainer with the shared
// sampler (data::epoch_batches), so its seeded orders are those of sequence features.
#include <algorithm>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "../models/batch.hpp"
#include "../text/tokenizer_base.hpp"
#include "batching.hpp"

namespace addrop::data {

inline constexpr int32_t kIgnoreLabel = -100;

/// What the continuation sub-tokens of a word are labelled with under label_all_tokens.
enum class Continuation {
  Same,  ///< the word's own label id (transformers <= 4.10)
  BToI,  ///< B-X becomes I-X, other labels unchanged (transformers >= 4.11, the AD-DROP reference)
};

struct TokenAlignOptions {
  int64_t max_length = 128;       ///< tokens per sentence, special tokens included; <= 0: no truncation
  bool label_all_tokens = false;  ///< label continuation sub-tokens too (else -100)
  Continuation continuation = Continuation::BToI;
};

/// For every label id, the label continuation sub-tokens get under Continuation::BToI:
/// the id of "I-X" for "B-X" (when "I-X" is in `labels`), else the id itself.
inline std::vector<int32_t> b_to_i_map(const std::vector<std::string>& labels) {
  std::vector<int32_t> out(labels.size());
  for (std::size_t i = 0; i < labels.size(); ++i) {
    out[i] = static_cast<int32_t>(i);
    if (labels[i].rfind("B-", 0) != 0) continue;
    const std::string inside = "I-" + labels[i].substr(2);
    for (std::size_t j = 0; j < labels.size(); ++j)
      if (labels[j] == inside) out[i] = static_cast<int32_t>(j);
  }
  return out;
}

/// Token labels from word labels. word_ids: per token, its word (-1 for special tokens),
/// as Encoding::word_ids; word_labels: a label id per word. continuation_label: label id
/// -> the id continuation sub-tokens get (empty: the same id); used only with
/// label_all_tokens. Throws std::invalid_argument for a word id outside word_labels.
inline std::vector<int32_t> align_labels(std::span<const int32_t> word_ids, std::span<const int32_t> word_labels,
                                         bool label_all_tokens, std::span<const int32_t> continuation_label = {}) {
  std::vector<int32_t> out(word_ids.size(), kIgnoreLabel);
  int32_t previous = -1;
  for (std::size_t t = 0; t < word_ids.size(); ++t) {
    const int32_t w = word_ids[t];
    if (w < 0) {
      previous = -1;
      continue;
    }
    if (static_cast<std::size_t>(w) >= word_labels.size())
      throw std::invalid_argument("align_labels: token " + std::to_string(t) + " belongs to word " + std::to_string(w) +
                                  " but there are " + std::to_string(word_labels.size()) + " word labels");
    const int32_t label = word_labels[static_cast<std::size_t>(w)];
    if (w != previous) out[t] = label;
    else if (label_all_tokens)
      out[t] = continuation_label.empty() || label < 0 ? label : continuation_label[static_cast<std::size_t>(label)];
    previous = w;
  }
  return out;
}

/// Word predictions from token predictions: each word takes its first sub-token's
/// prediction; a word with no token (truncated, or tokenized to nothing) gets `fill`.
inline std::vector<int32_t> word_predictions(std::span<const int32_t> word_ids, std::span<const int32_t> token_predictions,
                                             int64_t num_words, int32_t fill) {
  if (word_ids.size() != token_predictions.size())
    throw std::invalid_argument("word_predictions: " + std::to_string(word_ids.size()) + " word ids for " +
                                std::to_string(token_predictions.size()) + " token predictions");
  std::vector<int32_t> out(static_cast<std::size_t>(num_words), fill);
  std::vector<bool> seen(static_cast<std::size_t>(num_words), false);
  for (std::size_t t = 0; t < word_ids.size(); ++t) {
    const int32_t w = word_ids[t];
    if (w < 0) continue;
    if (w >= num_words)
      throw std::invalid_argument("word_predictions: token " + std::to_string(t) + " belongs to word " +
                                  std::to_string(w) + " of " + std::to_string(num_words));
    if (!seen[static_cast<std::size_t>(w)]) out[static_cast<std::size_t>(w)] = token_predictions[t];
    seen[static_cast<std::size_t>(w)] = true;
  }
  return out;
}

/// Tokenized sentences with their token labels and word alignment. `features` holds the
/// token ids (Feature::index = the position; Feature::label is unused); the other
/// vectors run parallel to it.
struct TokenFeatures {
  std::vector<Feature> features;
  std::vector<std::vector<int32_t>> labels;    ///< per token: label id, or -100 (specials, continuations, unlabelled)
  std::vector<std::vector<int32_t>> word_ids;  ///< per token: word index, -1 for special tokens
  std::vector<int64_t> num_words;              ///< words of each sentence
  int64_t truncated_sentences = 0;             ///< sentences truncation shortened
  int64_t truncated_words = 0;                 ///< words with no token left after truncation
  int64_t empty_words = 0;                     ///< words the tokenizer maps to no token at all

  std::size_t size() const { return features.size(); }
  bool empty() const { return features.empty(); }
};

/// Tokenizes sentences (pre-split words) and aligns their word labels. word_labels: one
/// label id per word for every sentence, or empty for unlabelled data (all token labels
/// -100). continuation_label as in align_labels (b_to_i_map for Continuation::BToI).
/// Runs over sentences in parallel (OpenMP) and keeps their order.
inline TokenFeatures encode_sentences(const text::Tokenizer& tok, const std::vector<std::vector<std::string>>& words,
                                      const std::vector<std::vector<int32_t>>& word_labels,
                                      const TokenAlignOptions& options,
                                      std::span<const int32_t> continuation_label = {}) {
  if (!word_labels.empty() && word_labels.size() != words.size())
    throw std::invalid_argument("encode_sentences: " + std::to_string(words.size()) + " sentences but " +
                                std::to_string(word_labels.size()) + " label sequences");
  const auto n = static_cast<int64_t>(words.size());
  TokenFeatures out;
  out.features.resize(words.size());
  out.labels.resize(words.size());
  out.word_ids.resize(words.size());
  out.num_words.resize(words.size());
  std::vector<int64_t> truncated(words.size(), 0), empty(words.size(), 0);
  std::vector<std::string> errors(words.size());
  const std::span<const int32_t> cont = options.continuation == Continuation::Same ? std::span<const int32_t>() : continuation_label;
#pragma omp parallel for schedule(dynamic, 64)
  for (int64_t s = 0; s < n; ++s) {
    try {
      const auto& w = words[static_cast<std::size_t>(s)];
      if (!word_labels.empty() && word_labels[static_cast<std::size_t>(s)].size() != w.size())
        throw std::invalid_argument("sentence " + std::to_string(s) + ": " + std::to_string(w.size()) + " words but " +
                                    std::to_string(word_labels[static_cast<std::size_t>(s)].size()) + " labels");
      text::Encoding enc = tok.encode_words(w, options.max_length);
      Feature& f = out.features[static_cast<std::size_t>(s)];
      f.ids = std::move(enc.ids);
      f.type_ids = std::move(enc.type_ids);
      f.index = s;
      if (word_labels.empty()) out.labels[static_cast<std::size_t>(s)].assign(enc.word_ids.size(), kIgnoreLabel);
      else out.labels[static_cast<std::size_t>(s)] = align_labels(enc.word_ids, word_labels[static_cast<std::size_t>(s)],
                                                                  options.label_all_tokens, cont);
      // Words without a token: cut by truncation (after the last surviving word) or empty.
      std::vector<bool> has(w.size(), false);
      int32_t last = -1;
      for (int32_t id : enc.word_ids)
        if (id >= 0) {
          has[static_cast<std::size_t>(id)] = true;
          last = std::max(last, id);
        }
      for (std::size_t i = 0; i < w.size(); ++i) {
        if (has[i]) continue;
        if (enc.truncated_tokens > 0 && static_cast<int32_t>(i) > last) ++truncated[static_cast<std::size_t>(s)];
        else ++empty[static_cast<std::size_t>(s)];
      }
      out.word_ids[static_cast<std::size_t>(s)] = std::move(enc.word_ids);
      out.num_words[static_cast<std::size_t>(s)] = static_cast<int64_t>(w.size());
    } catch (const std::exception& e) {
      errors[static_cast<std::size_t>(s)] = e.what();
    }
  }
  for (const auto& e : errors)
    if (!e.empty()) throw std::invalid_argument("encode_sentences: " + e);
  for (int64_t s = 0; s < n; ++s) {
    out.truncated_words += truncated[static_cast<std::size_t>(s)];
    out.truncated_sentences += truncated[static_cast<std::size_t>(s)] > 0;
    out.empty_words += empty[static_cast<std::size_t>(s)];
  }
  return out;
}

/// A padded batch of data.features[indices] (as make_batch) with the token labels
/// [B, L] of data.labels in Batch::labels, -100 on pads and ignored tokens.
inline models::Batch make_token_batch(const TokenFeatures& data, const std::vector<int64_t>& indices, int32_t pad_id,
                                      bool with_type_ids = true) {
  if (data.labels.size() != data.features.size())
    throw std::invalid_argument("make_token_batch: " + std::to_string(data.labels.size()) + " label rows for " +
                                std::to_string(data.features.size()) + " features");
  models::Batch batch = make_batch(data.features, indices, pad_id, false, with_type_ids);  // checks the indices
  batch.labels.assign(static_cast<std::size_t>(batch.size * batch.length), kIgnoreLabel);
  for (std::size_t b = 0; b < indices.size(); ++b) {
    const auto& l = data.labels[static_cast<std::size_t>(indices[b])];
    if (static_cast<int64_t>(l.size()) > batch.length)
      throw std::invalid_argument("make_token_batch: feature " + std::to_string(indices[b]) + " has " +
                                  std::to_string(l.size()) + " token labels, longer than the batch");
    std::copy(l.begin(), l.end(), batch.labels.begin() + static_cast<std::ptrdiff_t>(b) * batch.length);
  }
  return batch;
}

/// The batch source (train::BatchSource) of token classification: in epoch e, the
/// batches of epoch_batches(data.features, sampler, e), each made by make_token_batch.
/// Keeps a reference: `data` must outlive it and the ranges batches() returns.
///
///   data::TokenBatches source(train_features, {.batch_size = 32, .seed = 1}, pad_id);
///   trainer.fit(source, evaluate);
class TokenBatches {
 public:
  TokenBatches(const TokenFeatures& data, SamplerOptions sampler, int32_t pad_id)
      : data_(&data), sampler_(sampler), pad_id_(pad_id) {
    batching_detail::check_sampler(sampler_);
  }

  int64_t num_batches(int /*epoch*/) const { return batches_per_epoch(static_cast<int64_t>(data_->size()), sampler_); }
  auto batches(int epoch) const {
    return LazyBatches(epoch_batches(data_->features, sampler_, epoch),
                       [data = data_, pad_id = pad_id_](const std::vector<int64_t>& indices) {
                         return make_token_batch(*data, indices, pad_id);
                       });
  }
  const SamplerOptions& sampler() const { return sampler_; }

 private:
  const TokenFeatures* data_;
  SamplerOptions sampler_;
  int32_t pad_id_;
};

}  // namespace addrop::data
