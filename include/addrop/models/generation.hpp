#pragma once
// Greedy and beam-search decoding of an encoder-decoder with Hugging Face generate()'s
// semantics for MarianMTModel (its vectorised beam search, transformers >= 4.50; the length
// penalty as in 4.38 and later):
//   - every row starts with decoder_start_token_id; max_length counts it
//     (max_new_tokens n means max_length n + 1);
//   - bad words (OPUS-MT: the pad id) get -inf, and with forced_eos_token_id every token but
//     eos gets -inf (eos 0) at the last allowed position;
//   - greedy: argmax of the logits; a finished row continues with pads; stop when every row
//     has its eos or at max_length;
//   - beam (K beams): log-softmax + processors + running score, the best 2K candidates per
//     source over (beam, token). A candidate "hits" when it ends in eos or reaches
//     max_length; the next running beams are the best K candidates with the hits pushed
//     down by 1e9. Hits among the first K are offered to the source's list of K finished
//     hypotheses, scored sum_logprobs / g^length_penalty (g: generated tokens, eos
//     included), unless the list is full and early_stopping is true, or the list can no
//     longer improve: that is decided after each step, when it has no empty slot and the
//     best running score / g^length_penalty (g so far; the longest allowed with "never")
//     does not beat its worst entry (for good). Decoding stops when no list can improve,
//     when every list is full with early_stopping true, or at max_length;
//   - output: the best finished hypothesis per source, start token first, padded to the
//     longest; its score (generate's sequences_scores).
// The encoder runs once; self-attention keys/values are cached and reordered with the beams,
// cross-attention keys/values computed once per source (MarianModel::DecoderCache).
// tests/golden/marian/README.md has the reference's account, version differences included.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <Eigen/Core>

#include "../backend/cpu.hpp"
#include "frozen_weights.hpp"
#include "marian_config.hpp"
#include "seq2seq_batch.hpp"

namespace addrop::models {

struct GenerationOptions {
  int64_t num_beams = 1;
  int64_t max_length = 0;      ///< with the start token; 0: max_new_tokens + 1, else the config's
  int64_t max_new_tokens = 0;  ///< 0: from max_length
  double length_penalty = 1.0;
  EarlyStopping early_stopping = EarlyStopping::True;

  /// The checkpoint's defaults (OPUS-MT: 4 beams, max_length 512, early stopping).
  template <class Config>
  static GenerationOptions from_config(const Config& c) {
    return {.num_beams = c.num_beams, .max_length = c.max_length, .max_new_tokens = 0,
            .length_penalty = c.length_penalty, .early_stopping = c.early_stopping};
  }
};

/// One output per source: the tokens as generate() returns them and, for beam search, the
/// best hypothesis's score (generate's sequences_scores); greedy scores are 0.
struct GenerationResult {
  std::vector<std::vector<int32_t>> sequences;
  std::vector<double> scores;

  /// The generated tokens of source i without the start token, eos and pads.
  std::vector<int32_t> tokens(std::size_t i, int32_t start, int32_t eos, int32_t pad) const {
    std::vector<int32_t> out;
    const auto& s = sequences.at(i);
    for (std::size_t j = s.empty() || s[0] != start ? 0 : 1; j < s.size(); ++j) {
      if (s[j] == eos) break;
      if (s[j] != pad) out.push_back(s[j]);
    }
    return out;
  }
};

namespace generation_detail {

/// Logit processing of one row (in place): bad words, then the forced eos at the last position.
template <class T>
void process_row(std::span<T> row, std::span<const int64_t> bad_words, int64_t forced_eos, bool last_position) {
  const T minus_inf = -std::numeric_limits<T>::infinity();
  for (int64_t b : bad_words) row[static_cast<std::size_t>(b)] = minus_inf;
  if (last_position && forced_eos >= 0) {
    for (auto& v : row) v = minus_inf;
    row[static_cast<std::size_t>(forced_eos)] = T(0);
  }
}

/// Threads for the host-side work of a step (log-softmax, top-k): the CPU context's, else the machine's.
template <class Context>
int host_threads(const Context& ctx) {
  if constexpr (requires { ctx.num_threads(); }) return std::max(1, ctx.num_threads());
  else return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

/// log sum_v exp(row[v]) in the row's precision (torch computes log_softmax in the logits'
/// dtype), with vectorised exp: log_softmax(row)[v] = row[v] - this.
template <class T>
T log_normalizer(std::span<const T> row) {
  const Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>> z(row.data(), static_cast<Eigen::Index>(row.size()));
  const T mx = z.maxCoeff();
  return mx + std::log((z - mx).exp().sum());
}

/// The best `n` of candidates given in increasing index order: value descending, the lower
/// index first on ties (what a stable sort by value gives). One pass, no buffer of all of them.
struct TopCandidates {
  std::vector<double> value;
  std::vector<int64_t> index;
  int64_t n = 0, count = 0;
  explicit TopCandidates(int64_t keep) : value(static_cast<std::size_t>(keep)), index(static_cast<std::size_t>(keep)), n(keep) {}
  void offer(double v, int64_t i) {
    if (count == n && !(v > value[n - 1])) return;
    int64_t pos = count < n ? count++ : n - 1;
    while (pos > 0 && v > value[pos - 1]) {
      value[pos] = value[pos - 1];
      index[pos] = index[pos - 1];
      --pos;
    }
    value[pos] = v;
    index[pos] = i;
  }
};

inline constexpr double kImpossible = -1e9;  // Hugging Face's offset for excluded candidates

/// One slot of a source's list of finished beam hypotheses.
struct Finished {
  double score = kImpossible;
  bool used = false;
  std::vector<int32_t> tokens;
};

}  // namespace generation_detail

/// Translates the sources of `batch` (its targets are ignored). Model: MarianModel or any
/// model with config(), start_decoding, decode_step and reorder_cache of the same form.
template <class Model>
GenerationResult generate(Model& model, const Seq2SeqBatch& batch, const GenerationOptions& options) {
  using T = typename Model::value_type;
  using Backend = typename Model::backend_type;
  const auto& c = model.config();
  const int64_t K = options.num_beams;
  if (K < 1) throw std::invalid_argument("generate: num_beams must be >= 1, got " + std::to_string(K));
  const auto frozen = frozen_weights(model);  // bf16: round the weights once, not per step
  const int64_t max_length = options.max_new_tokens > 0 ? options.max_new_tokens + 1
                             : options.max_length > 0   ? options.max_length
                                                        : c.max_length;
  if (max_length < 2) throw std::invalid_argument("generate: max_length must be >= 2 (start token + one token)");
  const int64_t B = batch.size, V = c.target_vocab_size(), rows = B * K;
  const auto start = static_cast<int32_t>(c.decoder_start_token_id), eos = static_cast<int32_t>(c.eos_token_id),
             pad = static_cast<int32_t>(c.pad_token_id);
  const std::span<const int64_t> bad(c.bad_words_ids);

  typename Model::DecoderCache cache;
  model.start_decoding(batch, K, max_length - 1, cache);
  std::vector<std::vector<int32_t>> seqs(static_cast<std::size_t>(rows), std::vector<int32_t>{start});
  std::vector<int32_t> tokens(static_cast<std::size_t>(rows), start);
  // The logits of a step on the host: the backend's own buffer on the CPU, a copy otherwise.
  constexpr bool host_backend = std::is_same_v<Backend, backend::Cpu>;
  std::vector<T> host_logits(host_backend ? 0 : static_cast<std::size_t>(rows * V));
  auto step_logits = [&](const auto& dev) -> T* {
    if constexpr (host_backend) {
      return const_cast<T*>(dev.data());  // the cache's logits, rewritten by the next step
    } else {
      Backend::to_host(model.context(), rows * V, dev.data(), host_logits.data());
      return host_logits.data();
    }
  };
  GenerationResult result;
  result.sequences.resize(static_cast<std::size_t>(B));
  result.scores.assign(static_cast<std::size_t>(B), 0.0);

  const int threads = generation_detail::host_threads(model.context());
  if (K == 1) {  // greedy
    std::vector<bool> finished(static_cast<std::size_t>(B), false);
    for (int64_t len = 1; len < max_length; ++len) {
      T* logits = step_logits(model.decode_step(tokens, cache));
      std::vector<int32_t> best(static_cast<std::size_t>(B));
#pragma omp parallel for num_threads(threads) schedule(static)
      for (int64_t b = 0; b < B; ++b) {
        std::span<T> row(logits + b * V, static_cast<std::size_t>(V));
        generation_detail::process_row(row, bad, c.forced_eos_token_id, len == max_length - 1);
        best[b] = static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
      }
      bool all = true;
      for (int64_t b = 0; b < B; ++b) {
        int32_t next = best[b];
        if (finished[b]) next = pad;
        else if (next == eos) finished[b] = true;
        seqs[b].push_back(next);
        tokens[b] = next;
        all = all && finished[b];
      }
      if (all) break;
    }
    for (int64_t b = 0; b < B; ++b) result.sequences[b] = std::move(seqs[b]);
    return result;
  }

  // beam search: per source, the running beams and a list of the K best finished hypotheses
  using generation_detail::Finished;
  using generation_detail::kImpossible;
  std::vector<double> beam_scores(static_cast<std::size_t>(rows), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    if (r % K != 0) beam_scores[r] = kImpossible;  // the first step expands beam 0 only
  std::vector<std::vector<Finished>> finished(static_cast<std::size_t>(B), std::vector<Finished>(static_cast<std::size_t>(K)));
  std::vector<char> improvable(static_cast<std::size_t>(B), 1);  // char: written by one thread per source
  const int64_t top = std::min<int64_t>(2 * K, K * V);
  std::vector<int32_t> origin(static_cast<std::size_t>(rows));
  std::vector<double> next_scores(static_cast<std::size_t>(rows));
  std::vector<std::vector<int32_t>> next_seqs(static_cast<std::size_t>(rows));
  for (int64_t len = 1;; ++len) {
    T* logits = step_logits(model.decode_step(tokens, cache));
    const bool last = len + 1 >= max_length;  // every candidate of this step reaches max_length
    // log-softmax in the model's precision, then the processors, per row
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      if (!improvable[r / K]) continue;
      const std::span<T> z(logits + r * V, static_cast<std::size_t>(V));
      const T log_z = generation_detail::log_normalizer<T>(z);
      for (T& v : z) v -= log_z;
      generation_detail::process_row(z, bad, c.forced_eos_token_id, len == max_length - 1);
    }
    // Each source on its own: its candidates, finished list and next rows.
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; ++b) {
      if (!improvable[b]) {  // its list can no longer change: keep its rows where they are
        for (int64_t k = 0; k < K; ++k) {
          const int64_t r = b * K + k;
          origin[r] = static_cast<int32_t>(r);
          next_scores[r] = beam_scores[r];
          next_seqs[r] = seqs[r];
          next_seqs[r].push_back(pad);
          tokens[r] = pad;
        }
        continue;
      }
      // The best 2K of (beam, token) by processed log-prob + the beam's running score.
      generation_detail::TopCandidates best(top);
      for (int64_t k = 0; k < K; ++k) {
        const T* z = logits + (b * K + k) * V;
        const double running = beam_scores[b * K + k];
        for (int64_t v = 0; v < V; ++v) best.offer(static_cast<double>(z[v]) + running, k * V + v);
      }
      const std::vector<int64_t>& order = best.index;
      const std::vector<double>& candidate_score = best.value;
      // A candidate hits when it ends in eos or reaches max_length. The next running beams are
      // the best K candidates with the hits pushed down by kImpossible.
      std::vector<double> masked(static_cast<std::size_t>(top));
      for (int64_t i = 0; i < top; ++i) {
        const bool hit = order[i] % V == eos || last;
        masked[i] = candidate_score[i] + (hit ? kImpossible : 0.0);
      }
      std::vector<int64_t> pick(static_cast<std::size_t>(top));
      std::iota(pick.begin(), pick.end(), int64_t{0});
      std::partial_sort(pick.begin(), pick.begin() + K, pick.end(),
                        [&](int64_t x, int64_t y) { return masked[x] > masked[y] || (masked[x] == masked[y] && x < y); });
      // The hits among the first K candidates are offered to the finished list, scored by
      // their generated length (eos included): len tokens.
      auto& list = finished[b];
      const bool list_full = std::all_of(list.begin(), list.end(), [](const Finished& f) { return f.used; });
      if (!(list_full && options.early_stopping == EarlyStopping::True)) {
        for (int64_t i = 0; i < K && i < top; ++i) {
          const int64_t index = order[i];
          if (!(index % V == eos || last)) continue;
          const double score = candidate_score[i] / std::pow(static_cast<double>(len), options.length_penalty);
          auto worst = std::min_element(list.begin(), list.end(),
                                        [](const Finished& x, const Finished& y) { return x.score < y.score; });
          if (score <= worst->score) continue;
          *worst = {score, true, seqs[b * K + index / V]};
          worst->tokens.push_back(static_cast<int32_t>(index % V));
        }
      }
      for (int64_t k = 0; k < K; ++k) {
        const int64_t r = b * K + k, index = order[pick[k]];
        const int64_t from = b * K + index / V;
        origin[r] = static_cast<int32_t>(from);
        next_scores[r] = masked[pick[k]];
        next_seqs[r] = seqs[from];
        next_seqs[r].push_back(static_cast<int32_t>(index % V));
        tokens[r] = static_cast<int32_t>(index % V);
      }
      // Can the list still improve? The best running beam, at the length it would have
      // (with "never": the longest allowed), against the worst finished hypothesis.
      const double g = options.early_stopping == EarlyStopping::Never && options.length_penalty > 0
                           ? static_cast<double>(max_length - 1)
                           : static_cast<double>(len);
      const double best_possible = next_scores[b * K] / std::pow(g, options.length_penalty);
      double worst_finished = std::numeric_limits<double>::infinity();
      bool empty_slot = false;
      for (const auto& f : list) {
        empty_slot = empty_slot || !f.used;
        worst_finished = std::min(worst_finished, f.score);
      }
      improvable[b] = empty_slot || best_possible > worst_finished;
    }
    seqs.swap(next_seqs);
    beam_scores = next_scores;
    const bool any_improvable = std::find(improvable.begin(), improvable.end(), 1) != improvable.end();
    bool all_full = true;
    for (const auto& list : finished)
      for (const auto& f : list) all_full = all_full && f.used;
    if (!any_improvable || (all_full && options.early_stopping == EarlyStopping::True) || last) break;
    model.reorder_cache(origin, cache);
  }
  int64_t width = 0;
  std::vector<const Finished*> best(static_cast<std::size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    best[b] = &*std::max_element(finished[b].begin(), finished[b].end(),
                                 [](const Finished& x, const Finished& y) { return x.score < y.score; });
    if (!best[b]->used) throw std::logic_error("generate: a source ended without a finished hypothesis");
    width = std::max<int64_t>(width, static_cast<int64_t>(best[b]->tokens.size()));
  }
  for (int64_t b = 0; b < B; ++b) {
    std::vector<int32_t> out = best[b]->tokens;
    out.resize(static_cast<std::size_t>(width), pad);
    result.sequences[b] = std::move(out);
    result.scores[b] = best[b]->score;
  }
  return result;
}

}  // namespace addrop::models
