// The Marian encoder-decoder (translation), two shapes, each case in both precisions of the
// backend context — the cases that bench/pytorch_marian.py times in PyTorch
// (bench/compare_marian.sh runs both):
//   small = marian_preset("small", 59543, 59542, 0): OPUS-MT en-ro's shape, 6+6 layers,
//           d_model 512, 8 heads, FFN 2048, vocabulary 59,543, tied embeddings, swish;
//   mini  = marian_preset("mini", 8000, 7999, 0): 3+3 layers, d 256, 4 heads, FFN 1024.
//
// Every name ends in the precision: MarianTrain/<shape>/<case>/f32 (float32) and .../bf16
// (Precision::Bf16Mixed: every matrix product reads bf16-rounded inputs and accumulates in
// float32, as torch.autocast("cpu", dtype=torch.bfloat16); weights, optimizer, softmax,
// layer norm, losses stay float32; the context stanza's bf16_matmul_engine says what computes
// those products). ADDROP_BENCH_PRECISIONS=f32 (or bf16, or "f32,bf16", the default)
// registers only those; --benchmark_filter='/bf16/' selects likewise. The decoding cases
// time generate() as train::translate_pairs runs it (addrop-translate's evaluate and
// translate, the dev evaluation): inside one models::frozen_weights scope for all its
// batches, so in bf16 the weights are rounded to bf16 once per model, not once per call. That
// one-off cost falls in the untimed warm-up call, whose time is reported as first_call_s
// (it also holds the first allocations and oneDNN's kernel generation).
//
// MarianTrain/<shape>/plain: one seq2seq training step, train mode (dropout 0.1 as the
//   config says), batch 16 pairs, source and target length 32, label-smoothed CE 0.1:
//   zero_grad, forward, loss, backward, AdamW update (torch.optim.AdamW's rule: lr 5e-5,
//   eps 1e-8, weight decay 0.01 except biases and layer norms).
// MarianTrain/<shape>/ga: the same with AD-DROP GA on every encoder self-attention site,
//   p = q = 0.2: AdDrop<Gradient, TopP, Always>::step (first forward, pseudo labels,
//   input-gradient backward to encoder site 0, top-p + q-sampling, masked second forward,
//   loss, backward) + the AdamW update.
// MarianDecode/<shape>/greedy, /beam4: models::generate on 32 sources of length 24,
//   max_new_tokens 32, greedy (1 beam) and beam search (4 beams, early_stopping true,
//   length_penalty 1.0). The config's forced_eos_token_id is set to -1 and a random model
//   (init_weights) practically never emits eos, so every run takes exactly 32 decoder steps,
//   as the PyTorch loop does (counter decoder_steps checks it).
//
// Counters: seconds_median, seconds_min, seconds_per_step (mean), other_cores (cores other
// processes kept busy during the case; < 0.05 undisturbed), sentences_per_s (decoding: 32 /
// median), the case's memory, peak_rss_mb and start_rss_mb (bench/peak_rss.hpp: the
// process's resident-set high-water mark, reset when the case starts, so model construction
// and the warm-up count; MiB), and the phases, medians in seconds: training forward_s,
// loss_s, backward_s (plain) or addrop_step_s (ga), adamw_s; decoding encode_s (start_decoding: encoder + cross keys and
// values), decoder_s (the decode_step calls), reorder_s (beam: reorder_cache) and search_s
// (the rest: generate()'s host-side logits copy, log-softmax, processors, top-k and
// hypothesis bookkeeping). The decoding phases come from a thin wrapper that forwards
// generate()'s model calls to MarianModel and times the four that compute.
//
// Iterations are fixed, after one untimed warm-up: mini 5 each (beam 3), small 3 each
// (beam 2); ADDROP_BENCH_MARIAN_ITERS (or ADDROP_BENCH_ITERS, as bench_addrop reads it)
// overrides all, e.g. 1 for quick checks. ADDROP_BENCH_THREADS sets the threads (default 2).
// Run one case per process for its peak memory (compare_marian.sh does: several cases in one
// process see memory an earlier one left with the allocator).
#include <benchmark/benchmark.h>

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <numeric>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include <addrop/addrop.hpp>

#include "bench_env.hpp"
#include "peak_rss.hpp"

namespace {

using Model = addrop::models::MarianModel<float>;
using Backend = Model::backend_type;
using addrop::Precision;
using namespace addrop::bench;  // PeakRss, env_int, bench_threads, bench_precisions, run_benchmarks
namespace models = addrop::models;
namespace attribution = addrop::attribution;
namespace schedule = addrop::schedule;
namespace selection = addrop::selection;
using Clock = std::chrono::steady_clock;

struct MarianShape {
  const char* name;
  const char* preset;
  int64_t vocab;
  int train_iters, decode_iters, beam_iters;
};
constexpr MarianShape kMini{"mini", "mini", 8000, 5, 5, 3};
constexpr MarianShape kSmall{"small", "small", 59543, 3, 3, 2};

constexpr int64_t kTrainBatch = 16, kSourceLength = 32, kTargetLength = 32;
constexpr int64_t kDecodeSources = 32, kDecodeLength = 24, kNewTokens = 32;
constexpr double kLabelSmoothing = 0.1, kP = 0.2, kQ = 0.2;
constexpr uint64_t kTrainSeed = 1, kDecodeSeed = 2;

int iterations(int fallback) {
  return std::max(1, env_int("ADDROP_BENCH_MARIAN_ITERS", env_int("ADDROP_BENCH_ITERS", fallback)));
}


double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Cores other processes kept busy while a case ran (as in bench_addrop.cpp).
class OtherLoad {
 public:
  OtherLoad() : busy0_(machine_busy()), own0_(own_cpu()), t0_(Clock::now()) {}
  double cores() const {
    const double wall = seconds_since(t0_);
    if (busy0_ < 0 || wall <= 0) return -1;
    return std::max(0.0, (machine_busy() - busy0_) - (own_cpu() - own0_)) / wall;
  }

 private:
  static double machine_busy() {
    std::ifstream f("/proc/stat");
    std::string cpu;
    double v[10] = {};
    if (!(f >> cpu) || cpu != "cpu") return -1;
    for (double& x : v) f >> x;
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / static_cast<double>(sysconf(_SC_CLK_TCK));
  }
  static double own_cpu() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
  }
  double busy0_, own0_;
  Clock::time_point t0_;
};

// Token ids from a 64-bit LCG (bench/pytorch_marian.py draws the same ones): every id in
// 1 .. vocab-2 (neither eos 0 nor pad vocab-1); each sentence ends with eos.
class Ids {
 public:
  explicit Ids(uint64_t seed) : x_(seed) {}
  std::vector<int32_t> sentence(int64_t length, int64_t vocab) {
    std::vector<int32_t> s(static_cast<std::size_t>(length));
    for (int64_t i = 0; i + 1 < length; ++i) {
      x_ = x_ * 6364136223846793005ULL + 1442695040888963407ULL;
      s[static_cast<std::size_t>(i)] = static_cast<int32_t>(1 + (x_ >> 33) % static_cast<uint64_t>(vocab - 2));
    }
    s.back() = 0;
    return s;
  }

 private:
  uint64_t x_;
};

models::MarianConfig make_config(const MarianShape& s) {
  models::MarianConfig c = models::marian_preset(s.preset, s.vocab, s.vocab - 1, 0);
  c.forced_eos_token_id = -1;  // no forced eos: exactly max_new_tokens steps (see the header)
  return c;
}

models::Seq2SeqBatch train_batch(const models::MarianConfig& c) {
  Ids ids(kTrainSeed);
  std::vector<std::vector<int32_t>> src, tgt;
  for (int64_t b = 0; b < kTrainBatch; ++b) src.push_back(ids.sentence(kSourceLength, c.vocab_size));
  for (int64_t b = 0; b < kTrainBatch; ++b) tgt.push_back(ids.sentence(kTargetLength, c.vocab_size));
  return models::make_seq2seq_batch(src, tgt, static_cast<int32_t>(c.pad_token_id),
                                    static_cast<int32_t>(c.decoder_start_token_id));
}

models::Seq2SeqBatch decode_batch(const models::MarianConfig& c) {
  Ids ids(kDecodeSeed);
  std::vector<std::vector<int32_t>> src;
  for (int64_t b = 0; b < kDecodeSources; ++b) src.push_back(ids.sentence(kDecodeLength, c.vocab_size));
  return models::make_seq2seq_batch(src, {}, static_cast<int32_t>(c.pad_token_id),
                                    static_cast<int32_t>(c.decoder_start_token_id));
}

addrop::train::AdamWOptions adamw_options() {
  return {.lr = 5e-5, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01,
          .variant = addrop::train::AdamWVariant::Torch};
}

void common_counters(benchmark::State& state, const std::vector<double>& times, const OtherLoad& load) {
  state.counters["seconds_per_step"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["seconds_median"] = median(times);
  state.counters["seconds_min"] = *std::min_element(times.begin(), times.end());
  state.counters["other_cores"] = load.cores();
  state.counters["threads"] = bench_threads();
}

// ------------------------------------------------------------------ training
void BM_Train(benchmark::State& state, MarianShape s, bool ga, Precision precision) {
  const PeakRss rss;  // before the model: its memory counts
  const models::MarianConfig c = make_config(s);
  Model model(c, {.threads = bench_threads(), .precision = precision});
  model.init_weights(1);
  model.set_label_smoothing(kLabelSmoothing);
  const auto batch = train_batch(c);
  addrop::train::AdamW<float, Backend> opt(model.parameters(), adamw_options(), model.context());
  std::vector<int> layers(static_cast<std::size_t>(c.encoder_layers));
  std::iota(layers.begin(), layers.end(), 0);
  addrop::AdDrop<attribution::Gradient, selection::TopP, schedule::Always> reg(
      {.p = kP, .q = kQ, .layers = layers, .seed = 42});

  std::vector<double> times, t_forward, t_loss, t_backward, t_step, t_adamw;
  double loss = 0;
  uint64_t step = 0;
  auto one_step = [&](bool record) {
    auto t0 = Clock::now();
    const auto start = t0;
    model.zero_grad();
    if (ga) {
      loss = reg.step(model, batch, 0).loss;
      if (record) t_step.push_back(seconds_since(t0));
    } else {
      model.forward(batch, {.train = true, .seed = 42, .step = step});
      if (record) t_forward.push_back(seconds_since(t0));
      t0 = Clock::now();
      loss = model.loss(batch);
      if (record) t_loss.push_back(seconds_since(t0));
      t0 = Clock::now();
      model.backward();
      if (record) t_backward.push_back(seconds_since(t0));
    }
    ++step;
    t0 = Clock::now();
    opt.step();
    if (record) {
      t_adamw.push_back(seconds_since(t0));
      times.push_back(seconds_since(start));
    }
  };
  one_step(false);  // warm-up: workspaces, optimizer moments touched
  const OtherLoad load;
  for (auto _ : state) {
    one_step(true);
    benchmark::DoNotOptimize(loss);
  }
  common_counters(state, times, load);
  if (ga) {
    state.counters["addrop_step_s"] = median(t_step);
  } else {
    state.counters["forward_s"] = median(t_forward);
    state.counters["loss_s"] = median(t_loss);
    state.counters["backward_s"] = median(t_backward);
  }
  state.counters["adamw_s"] = median(t_adamw);
  state.counters["loss"] = loss;
  rss.report(state);
}

// ------------------------------------------------------------------ decoding
// generate()'s view of the model: forwards the four calls to MarianModel and times them
// (config, context and parameters pass through, so generate() treats it as the model).
struct TimedMarian {
  using value_type = Model::value_type;
  using backend_type = Model::backend_type;
  using DecoderCache = Model::DecoderCache;

  Model& model;
  double encode_s = 0, decoder_s = 0, reorder_s = 0;
  int64_t decoder_steps = 0;

  const models::MarianConfig& config() const { return model.config(); }
  const Model::Context& context() const { return model.context(); }
  const auto& parameters() const { return model.parameters(); }  // generate()'s frozen_weights scope
  void start_decoding(const models::Seq2SeqBatch& sources, int64_t beams, int64_t capacity, DecoderCache& cache) {
    const auto t0 = Clock::now();
    model.start_decoding(sources, beams, capacity, cache);
    encode_s += seconds_since(t0);
  }
  const Model::TensorT& decode_step(std::span<const int32_t> tokens, DecoderCache& cache) {
    const auto t0 = Clock::now();
    const auto& logits = model.decode_step(tokens, cache);
    decoder_s += seconds_since(t0);
    ++decoder_steps;
    return logits;
  }
  void reorder_cache(std::span<const int32_t> origin, DecoderCache& cache) {
    const auto t0 = Clock::now();
    model.reorder_cache(origin, cache);
    reorder_s += seconds_since(t0);
  }
};

void BM_Decode(benchmark::State& state, MarianShape s, int64_t beams, Precision precision) {
  const PeakRss rss;  // before the model: its memory counts
  const models::MarianConfig c = make_config(s);
  Model model(c, {.threads = bench_threads(), .precision = precision});
  model.init_weights(1);
  const auto batch = decode_batch(c);
  const models::GenerationOptions options{.num_beams = beams, .max_length = 0, .max_new_tokens = kNewTokens,
                                          .length_penalty = 1.0, .early_stopping = models::EarlyStopping::True};
  // As translate_pairs: one scope for every generate() call (bf16: weights rounded once).
  const auto frozen = models::frozen_weights(model);
  double warm_s = 0;
  {
    TimedMarian warm{model};
    const auto t0 = Clock::now();
    benchmark::DoNotOptimize(models::generate(warm, batch, options).sequences.data());  // warm-up
    warm_s = seconds_since(t0);
  }
  std::vector<double> times, t_encode, t_decoder, t_reorder, t_search, steps;
  int64_t width = 0;
  const OtherLoad load;
  for (auto _ : state) {
    TimedMarian timed{model};
    const auto t0 = Clock::now();
    const auto result = models::generate(timed, batch, options);
    const double t = seconds_since(t0);
    benchmark::DoNotOptimize(result.sequences.data());
    times.push_back(t);
    t_encode.push_back(timed.encode_s);
    t_decoder.push_back(timed.decoder_s);
    t_reorder.push_back(timed.reorder_s);
    t_search.push_back(t - timed.encode_s - timed.decoder_s - timed.reorder_s);
    steps.push_back(static_cast<double>(timed.decoder_steps));
    width = static_cast<int64_t>(result.sequences[0].size());
  }
  common_counters(state, times, load);
  state.counters["sentences_per_s"] = static_cast<double>(kDecodeSources) / median(times);
  state.counters["encode_s"] = median(t_encode);
  state.counters["decoder_s"] = median(t_decoder);
  state.counters["reorder_s"] = median(t_reorder);
  state.counters["search_s"] = median(t_search);
  state.counters["decoder_steps"] = *std::min_element(steps.begin(), steps.end());
  state.counters["first_call_s"] = warm_s;
  state.counters["output_length"] = static_cast<double>(width);  // start token included
  rss.report(state);
  if (*std::min_element(steps.begin(), steps.end()) != kNewTokens)
    state.SkipWithError("a run stopped before max_new_tokens decoder steps (eos emitted)");
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<Precision> precisions;
  try {
    precisions = bench_precisions();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_marian: %s\n", e.what());
    return 2;
  }
  for (const MarianShape& s : {kMini, kSmall}) {
    const std::string shape = s.name;
    for (const Precision prec : precisions) {
      const std::string suffix = "/" + std::string(addrop::precision_name(prec));
      for (bool ga : {false, true})
        benchmark::RegisterBenchmark(("MarianTrain/" + shape + (ga ? "/ga" : "/plain") + suffix).c_str(),
                                     [s, ga, prec](benchmark::State& st) { BM_Train(st, s, ga, prec); })
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime()
            ->Iterations(iterations(s.train_iters));
      for (int64_t beams : {int64_t{1}, int64_t{4}})
        benchmark::RegisterBenchmark(("MarianDecode/" + shape + (beams == 1 ? "/greedy" : "/beam4") + suffix).c_str(),
                                     [s, beams, prec](benchmark::State& st) { BM_Decode(st, s, beams, prec); })
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime()
            ->Iterations(iterations(beams == 1 ? s.decode_iters : s.beam_iters));
    }
  }
  return run_benchmarks(argc, argv);
}
