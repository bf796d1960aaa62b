#pragma once
// Evaluation of an encoder-decoder on sentence pairs: the teacher-forced loss (plain
// cross-entropy, eval mode) and the translations generate() makes, scored against the
// reference text with corpus BLEU and chrF2 exactly as sacreBLEU 2.x does by default.
// Sources are decoded in batches of similar length (less padding); the output keeps the
// files' order.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "../data/translation_batches.hpp"
#include "../metrics/bleu.hpp"
#include "../metrics/chrf.hpp"
#include "../models/generation.hpp"
#include "eval_record.hpp"
#include "sharded_eval.hpp"

namespace addrop::train {

struct TranslationEvaluation {
  double loss = std::numeric_limits<double>::quiet_NaN();  ///< teacher-forced CE per target token
  metrics::BleuScore bleu;
  metrics::ChrfScore chrf;
  std::vector<std::string> hypotheses;  ///< detokenized, in the pairs' order
  double seconds = 0;                   ///< generation time
  /// Metrics as the trainer records them (BLEU is the main one).
  EvalResult result() const {
    EvalResult r;
    r.loss = loss;
    r.main = bleu.score;
    r.metrics = {{"bleu", bleu.score}, {"chrf", chrf.score}, {"bleu_bp", bleu.bp}, {"translate_seconds", seconds}};
    return r;
  }
};

struct TranslationEvalOptions {
  models::GenerationOptions generation;
  int64_t batch_size = 64;  ///< sentences per decoding batch
  bool loss = true;         ///< also the teacher-forced loss (needs targets)
};

/// Translations of `pairs` (their sources), detokenized by `detokenize(ids)`, in order.
template <class Model, class Comm = dist::Local>
std::vector<std::string> translate_pairs(Model& model, const std::vector<data::TranslationPair>& pairs,
                                         const TranslationEvalOptions& options,
                                         const std::function<std::string(const std::vector<int32_t>&)>& detokenize,
                                         Comm&& comm = Comm{}) {
  const auto& c = model.config();
  const auto pad = static_cast<int32_t>(c.pad_token_id), start = static_cast<int32_t>(c.decoder_start_token_id),
             eos = static_cast<int32_t>(c.eos_token_id);
  std::vector<int64_t> order(pairs.size());
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return pairs[a].source.size() < pairs[b].source.size(); });
  std::vector<std::string> out(pairs.size());
  const auto bs = static_cast<std::size_t>(std::max<int64_t>(1, options.batch_size));
  std::vector<int64_t> mine;
  // bf16: the weights are rounded once for all the batches, not once per generate() call.
  const auto frozen = models::frozen_weights(model);
  for (std::size_t first = 0; first < order.size(); first += bs) {
    if (!runs_batch(comm, static_cast<int64_t>(first / bs))) continue;
    const std::span<const int64_t> chunk(order.data() + first, std::min(bs, order.size() - first));
    mine.insert(mine.end(), chunk.begin(), chunk.end());
    const auto batch = data::make_translation_batch(pairs, chunk, pad, start, false);
    const auto generated = models::generate(model, batch, options.generation);
    for (std::size_t k = 0; k < chunk.size(); ++k)
      out[static_cast<std::size_t>(chunk[k])] = detokenize(generated.tokens(k, start, eos, pad));
  }
  share_items(comm, out, mine);
  return out;
}

/// Loss, translations and their BLEU / chrF against `references` (one per pair).
template <class Model, class Comm = dist::Local>
TranslationEvaluation evaluate_translation(Model& model, const std::vector<data::TranslationPair>& pairs,
                                           const std::vector<std::string>& references,
                                           const TranslationEvalOptions& options,
                                           const std::function<std::string(const std::vector<int32_t>&)>& detokenize,
                                           Comm&& comm = Comm{}) {
  if (references.size() != pairs.size())
    throw std::invalid_argument("evaluate_translation: " + std::to_string(references.size()) + " references for " +
                                std::to_string(pairs.size()) + " sentence pairs");
  TranslationEvaluation e;
  const auto& c = model.config();
  const auto frozen = models::frozen_weights(model);  // bf16: weights rounded once for the whole evaluation
  if (options.loss && !pairs.empty()) {
    const double smoothing = model.label_smoothing();
    model.set_label_smoothing(0);
    double total = 0;
    int64_t tokens = 0;
    const auto bs = static_cast<std::size_t>(std::max<int64_t>(1, options.batch_size));
    std::vector<int64_t> idx;
    for (std::size_t first = 0; first < pairs.size(); first += bs) {
      if (!runs_batch(comm, static_cast<int64_t>(first / bs))) continue;
      idx.resize(std::min(bs, pairs.size() - first));
      std::iota(idx.begin(), idx.end(), static_cast<int64_t>(first));
      const auto batch = data::make_translation_batch(pairs, idx, static_cast<int32_t>(c.pad_token_id),
                                                      static_cast<int32_t>(c.decoder_start_token_id));
      model.forward(batch, {});
      int64_t n = 0;
      for (int32_t m : batch.target_mask) n += m;
      total += model.loss(batch) * static_cast<double>(n);
      tokens += n;
    }
    model.set_label_smoothing(smoothing);
    double sums[2] = {total, static_cast<double>(tokens)};
    sum_over_ranks(comm, sums);
    total = sums[0];
    tokens = static_cast<int64_t>(sums[1]);
    e.loss = tokens ? total / static_cast<double>(tokens) : 0.0;
  }
  const auto t0 = std::chrono::steady_clock::now();
  e.hypotheses = translate_pairs(model, pairs, options, detokenize, comm);
  e.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::vector<std::vector<std::string>> streams{references};
  e.bleu = metrics::corpus_bleu(e.hypotheses, streams);
  e.chrf = metrics::corpus_chrf(e.hypotheses, streams);
  return e;
}

}  // namespace addrop::train
