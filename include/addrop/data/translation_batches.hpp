#pragma once
// Tokenized sentence pairs and their batch source (train::BatchSource) for an
// encoder-decoder: the epoch plan of batching.hpp (shuffle, length buckets by the longer
// side), each batch padded by models::make_seq2seq_batch (labels -100 at pads,
// decoder inputs shifted right behind the start token).
#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "../models/seq2seq_batch.hpp"
#include "batching.hpp"

namespace addrop::data {

struct TranslationPair {
  std::vector<int32_t> source, target;  ///< token ids, each ending in </s>
  int64_t index = 0;                    ///< the pair's line in its files (0-based)
};

/// Pads pairs[indices] into one batch (targets too when `with_targets`).
inline models::Seq2SeqBatch make_translation_batch(const std::vector<TranslationPair>& pairs,
                                                   std::span<const int64_t> indices, int32_t pad,
                                                   int32_t decoder_start, bool with_targets = true) {
  std::vector<std::vector<int32_t>> sources, targets;
  sources.reserve(indices.size());
  for (int64_t i : indices) {
    const auto& p = pairs.at(static_cast<std::size_t>(i));
    sources.push_back(p.source);
    if (with_targets) targets.push_back(p.target);
  }
  return models::make_seq2seq_batch(sources, targets, pad, decoder_start);
}

/// The training batches of sentence pairs. Keeps a reference: `pairs` must outlive it
/// and the ranges batches() returns.
class TranslationBatches {
 public:
  TranslationBatches(const std::vector<TranslationPair>& pairs, SamplerOptions sampler, int32_t pad,
                     int32_t decoder_start)
      : pairs_(&pairs), sampler_(sampler), pad_(pad), start_(decoder_start) {
    batching_detail::check_sampler(sampler_);
    lengths_.reserve(pairs.size());
    for (const auto& p : pairs) lengths_.push_back(static_cast<int64_t>(std::max(p.source.size(), p.target.size())));
  }
  int64_t num_batches(int /*epoch*/) const { return batches_per_epoch(static_cast<int64_t>(pairs_->size()), sampler_); }
  auto batches(int epoch) const {
    return LazyBatches(epoch_batches(std::span<const int64_t>(lengths_), sampler_, epoch),
                       [pairs = pairs_, pad = pad_, start = start_](const std::vector<int64_t>& indices) {
                         return make_translation_batch(*pairs, indices, pad, start);
                       });
  }

 private:
  const std::vector<TranslationPair>* pairs_;
  SamplerOptions sampler_;
  int32_t pad_, start_;
  std::vector<int64_t> lengths_;
};

}  // namespace addrop::data
