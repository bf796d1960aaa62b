// One AD-DROP training step (gradients only, no optimizer update) of the BERT sequence
// classifier of bench_step.cpp (same shapes, float, sequence length 128, dropout
// probabilities 0, 2 threads), for each variant: plain (schedule::Never), GA, IGA (m = 20),
// AA and RD, target layer {0}, p = q = 0.3 — the cases bench/pytorch_addrop_step.py times
// in PyTorch — each in both precisions of the backend context, the last component of the
// name: AdDropStep/<shape>/<case>/f32 (float32) and .../bf16 (Precision::Bf16Mixed:
// every matrix product reads bf16-rounded inputs and accumulates in float32, as
// torch.autocast("cpu", dtype=torch.bfloat16); the context stanza's bf16_matmul_engine says
// what computes those products). ADDROP_BENCH_PRECISIONS=f32 (or bf16, or "f32,bf16", the
// default) registers only those; --benchmark_filter='/bf16/' selects likewise. Counters:
// seconds_per_step (mean), seconds_median, seconds_min (ratios to plain and to PyTorch:
// bench/compare_addrop.sh), other_cores, and the case's memory: peak_rss_mb, the highest
// resident set of the process while the case ran (model construction included), and
// start_rss_mb, the resident set when it began, both in MiB (2^20 bytes). The peak is the
// kernel's high-water mark VmHWM (/proc/self/status), reset to the current resident set at
// the start of the case by writing "5" to /proc/self/clear_refs (Linux >= 4.0; where that
// fails, a warning is printed, the counter peak_rss_reset = 0 is added and peak_rss_mb is
// the process's peak so far). Several cases in one process: memory an earlier case left
// with the allocator is in start_rss_mb and may hide under the peak, so for per-case peaks
// run one case per process (compare_addrop.sh does, and checks the counter against GNU
// time's maximum resident set size of that process).
//
// AdDropPhases/<shape>/phases/<precision> times the pieces of a step one by one with
// std::chrono (median over a few repeats) for the cost breakdown in docs/benchmarks.md: a
// forward, loss + full backward, the masked second forward, GA's attribution (pseudo labels +
// input-gradient-only backward stopping at layer 0), IG's attribution (m = 20 passes of
// layers 0..top, one α per pass: the library's default), the same IG with the α passes
// stacked under a 2 GiB cap (small only unless ADDROP_BENCH_IG_STACKED=1), and the selections as the training step runs them (one
// fused pass: threshold, q-sampling draws, additive mask; RD's rule likewise) and the fused
// top-p pass that also writes the 0/1 candidates and keep masks (as step_addrop does).
// (The unfused composition the step used before, uniform + top_p_candidates + q_sample +
// keep_to_additive, is no longer timed: those passes left the backends and live on only as
// the test reference, tests/support/selection_reference.hpp; docs/benchmarks.md keeps the
// numbers measured with them.) ADDROP_BENCH_NO_IG=1 leaves out the IG phases (minutes);
// ADDROP_BENCH_THREADS sets the threads of every case (default 2).
//
// Iterations are fixed (one untimed warm-up step first, so workspaces are allocated):
// small: 12 plain, 8 GA/AA/RD, 3 IGA; base: 3 each, IGA 2 (ADDROP_BENCH_IGA_BASE_ITERS
// overrides; ADDROP_BENCH_ITERS=N sets every case's to N, and the phases' repeats to N at
// most, for quick checks). Base takes about 4-5 minutes on 2 cores per precision (float32;
// bf16 is faster where the CPU has AVX512-BF16), IGA being ~45 forward passes.
#include <benchmark/benchmark.h>

#include <time.h>
#include <unistd.h>

#include <cstdio>

#include <algorithm>
#include <type_traits>
#include <utility>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include <addrop/addrop.hpp>

#include "bench_env.hpp"
#include "peak_rss.hpp"  // PeakRss
#include "step_shapes.hpp"

namespace {

using Model = addrop::models::EncoderModel<float>;
using addrop::Precision;
using Backend = Model::backend_type;
namespace attribution = addrop::attribution;
namespace schedule = addrop::schedule;
namespace selection = addrop::selection;

using namespace addrop::bench;  // StepShape, kSmall, kBase, make_config, make_batch; PeakRss; bench_env.hpp

constexpr int kIgSteps = 20;


addrop::AdDropOptions options() { return {.p = 0.3, .q = 0.3, .layers = {0}, .seed = 42}; }
// The library's default (one α per pass), or the α passes stacked under a memory cap.
attribution::IntegratedGradients ig_policy(std::size_t memory_cap_bytes = 0) {
  return attribution::IntegratedGradients({.steps = kIgSteps, .memory_cap_bytes = memory_cap_bytes});
}

void set_seconds_per_step(benchmark::State& state) {
  state.counters["seconds_per_step"] = benchmark::Counter(static_cast<double>(state.iterations()),
                                                          benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// How many cores other processes kept busy while a case ran: (busy time of the machine
// from /proc/stat - this process's CPU time) / wall time. The machine is shared, and a
// competing process slows the OpenMP-parallel step far more than its share of the cores,
// so every case reports this (counter other_cores; < 0.05 means undisturbed).
class OtherLoad {
 public:
  OtherLoad() : busy0_(machine_busy()), own0_(own_cpu()), t0_(std::chrono::steady_clock::now()) {}
  double cores() const {
    const double wall = seconds_since(t0_);
    if (busy0_ < 0 || wall <= 0) return -1;
    return std::max(0.0, (machine_busy() - busy0_) - (own_cpu() - own0_)) / wall;
  }

 private:
  static double machine_busy() {  // seconds, all cores: everything but idle and iowait
    std::ifstream f("/proc/stat");
    std::string cpu;
    double v[10] = {};
    if (!(f >> cpu) || cpu != "cpu") return -1;
    for (double& x : v) f >> x;
    const double ticks = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];  // user nice system irq softirq steal
    return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
  }
  static double own_cpu() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
  }
  double busy0_, own0_;
  std::chrono::steady_clock::time_point t0_;
};

// One AdDrop<...>::step per iteration, after model.zero_grad(), like bench_step.
template <class Reg>
void BM_AdDropStep(benchmark::State& state, StepShape s, Precision precision) {
  const PeakRss rss;  // before the model: its memory counts
  Model model(make_config(s), {.threads = bench_threads(), .precision = precision});
  addrop::models::init_weights(model, 1);
  const auto batch = make_batch(s.batch);
  Reg reg = [] {
    if constexpr (std::is_same_v<typename Reg::AttributionPolicy, attribution::IntegratedGradients>)
      return Reg(options(), attribution::IntegratedGradients({.steps = kIgSteps}));
    else
      return Reg(options());
  }();
  model.zero_grad();
  benchmark::DoNotOptimize(reg.step(model, batch, 0).loss);  // warm-up: workspaces
  std::vector<double> times;
  times.reserve(static_cast<std::size_t>(state.max_iterations));
  const OtherLoad load;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    model.zero_grad();
    auto out = reg.step(model, batch, 0);
    benchmark::DoNotOptimize(out.loss);
    times.push_back(seconds_since(t0));
  }
  set_seconds_per_step(state);
  // The median (what pytorch_addrop_step.py reports) and the minimum are robust to
  // another process taking a core for part of the run.
  state.counters["seconds_median"] = median(times);
  state.counters["seconds_min"] = *std::min_element(times.begin(), times.end());
  state.counters["other_cores"] = load.cores();
  rss.report(state);
}

using Plain = addrop::AdDrop<attribution::Gradient, selection::TopP, schedule::Never>;
using GA = addrop::AdDrop<attribution::Gradient, selection::TopP, schedule::Always>;
using IGA = addrop::AdDrop<attribution::IntegratedGradients, selection::TopP, schedule::Always>;
using AA = addrop::AdDrop<attribution::Attention, selection::TopP, schedule::Always>;
using RD = addrop::AdDrop<attribution::None, selection::Random, schedule::Always>;

// The phases of a step, each timed alone (median of `repeats`, after one untimed run).
void BM_AdDropPhases(benchmark::State& state, StepShape s, Precision precision, int repeats, bool ig_stacked) {
  const PeakRss rss;
  const auto cfg = make_config(s);
  Model model(cfg, {.threads = bench_threads(), .precision = precision});
  addrop::models::init_weights(model, 1);
  const auto batch = make_batch(s.batch);
  const auto& cx = model.context();
  const int64_t B = s.batch, H = s.heads, L = kSeqLen;
  const addrop::Shape probs{B, H, L, L};
  const addrop::models::PassOptions train{.train = true, .seed = 42, .step = 0};

  attribution::AttributionContext<Model, addrop::models::Batch> actx;
  actx.layers = {0};
  actx.sites = {model.attention_site(0, batch)};
  actx.scores.resize(1);
  actx.scores[0].resize(probs);
  addrop::Tensor<float, Backend> candidates, keep, additive;
  addrop::Tensor<int32_t, Backend> key_mask;
  addrop::Tensor<int64_t, Backend> threshold_indices;
  for (auto* t : {&candidates, &keep, &additive}) t->resize(probs);
  key_mask.resize({B * L});
  Backend::to_device(cx, B * L, batch.attention_mask.data(), key_mask.data());
  threshold_indices.resize({B});
  std::vector<int64_t> key_lengths(static_cast<std::size_t>(B));
  for (int64_t b = 0; b < B; ++b) key_lengths[b] = batch.key_length(b);
  selection::SelectionArgs<float> args;
  args.batch = B;
  args.heads = H;
  args.queries = L;
  args.keys = L;
  args.attribution = actx.scores[0].data();
  args.key_mask = key_mask.data();
  args.key_lengths = key_lengths;
  args.threshold_indices = threshold_indices.data();
  args.p = 0.3;
  args.q = 0.3;
  args.seed = 42;
  args.stream = 1;
  args.stream2 = 2;
  args.additive = additive.data();  // the training step: generated draws, additive mask only
  selection::SelectionArgs<float> with_masks = args;  // step_addrop: the 0/1 masks too
  with_masks.candidates = candidates.data();
  with_masks.keep = keep.data();
  const selection::TopP topp;
  const selection::Random random_rule;
  const bool with_ig = !env_flag("ADDROP_BENCH_NO_IG");
  attribution::Gradient ga;
  const attribution::IntegratedGradients ig = ig_policy();
  const attribution::IntegratedGradients ig_stacked_policy = ig_policy(std::size_t{2} << 30);  // stacked, 2 GiB cap

  struct Phase {
    const char* name;
    std::function<void()> setup;  // untimed
    std::function<void()> body;   // timed
    bool enabled = true;
  };
  auto fwd = [&] { model.use_workspace(0); model.reset_attention_sites(); model.forward(batch, train); };
  std::vector<Phase> phases = {
      {"forward_s", [] {}, fwd},
      {"loss_full_backward_s", [&] { model.zero_grad(); fwd(); },
       [&] { benchmark::DoNotOptimize(model.loss(batch)); model.backward(); }},
      {"ga_attribution_s", fwd, [&] { ga.attribute(model, batch, actx); }},
      {"select_topp_s", [] {}, [&] { topp.select<Backend>(cx, args); }},
      {"select_topp_masks_s", [] {}, [&] { topp.select<Backend>(cx, with_masks); }},
      {"masked_forward_s", [&] { model.reset_attention_sites(); model.set_attention_mask(0, &additive); },
       [&] { model.use_workspace(0); model.forward(batch, train); }},
      {"ig_attribution_s", fwd, [&] { ig.attribute(model, batch, actx); }, with_ig},
      {"ig_stacked_attribution_s", fwd, [&] { ig_stacked_policy.attribute(model, batch, actx); }, with_ig && ig_stacked},
      {"select_random_s", [] {}, [&] { random_rule.select<Backend>(cx, args); }},
  };
  std::vector<std::vector<double>> times(phases.size());
  const OtherLoad load;
  for (auto _ : state) {
    for (std::size_t i = 0; i < phases.size(); ++i) {
      if (!phases[i].enabled) continue;
      for (int r = 0; r <= repeats; ++r) {  // r = 0: warm-up
        phases[i].setup();
        const auto t0 = std::chrono::steady_clock::now();
        phases[i].body();
        const double t = seconds_since(t0);
        if (r > 0) times[i].push_back(t);
      }
    }
    model.reset_attention_sites();
  }
  const double f = median(times[0]);
  for (std::size_t i = 0; i < phases.size(); ++i) {
    if (times[i].empty()) continue;
    const double t = median(times[i]);
    state.counters[phases[i].name] = t;
    std::string rel = phases[i].name;
    rel = rel.substr(0, rel.size() - 2) + "_per_forward";
    state.counters[rel] = t / f;
  }
  state.counters["repeats"] = repeats;
  state.counters["other_cores"] = load.cores();
  rss.report(state);
}

template <class Reg>
void add_step(const StepShape& s, const char* variant, Precision precision, int iterations) {
  const std::string name =
      std::string("AdDropStep/") + s.name + "/" + variant + "/" + std::string(addrop::precision_name(precision));
  benchmark::RegisterBenchmark(name.c_str(), [s, precision](benchmark::State& st) { BM_AdDropStep<Reg>(st, s, precision); })
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime()
      ->Iterations(iterations);
}


}  // namespace

int main(int argc, char** argv) {
  const int iga_base = std::max(1, env_int("ADDROP_BENCH_IGA_BASE_ITERS", 2));
  const bool stacked_base = env_flag("ADDROP_BENCH_IG_STACKED");
  struct PerShape {
    StepShape shape;
    int plain, other, iga, phase_repeats;
    bool ig_stacked;
  };
  const int iters = env_int("ADDROP_BENCH_ITERS", 0);  // quick runs: every case's iterations (and phase repeats at most)
  auto quick = [iters](PerShape p) {
    if (iters > 0) p.plain = p.other = p.iga = iters, p.phase_repeats = std::min(p.phase_repeats, iters);
    return p;
  };
  std::vector<Precision> precisions;
  try {
    precisions = bench_precisions();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_addrop: %s\n", e.what());
    return 2;
  }
  for (const PerShape& p : {quick({kSmall, 12, 8, 3, 3, true}), quick({kBase, 3, 3, iga_base, 1, stacked_base})}) {
    for (const Precision prec : precisions) {
      add_step<Plain>(p.shape, "plain", prec, p.plain);
      add_step<GA>(p.shape, "ga", prec, p.other);
      add_step<IGA>(p.shape, "iga", prec, p.iga);
      add_step<AA>(p.shape, "aa", prec, p.other);
      add_step<RD>(p.shape, "rd", prec, p.other);
    }
    for (const Precision prec : precisions)
      benchmark::RegisterBenchmark(
          (std::string("AdDropPhases/") + p.shape.name + "/phases/" + std::string(addrop::precision_name(prec))).c_str(),
          [p, prec](benchmark::State& st) { BM_AdDropPhases(st, p.shape, prec, p.phase_repeats, p.ig_stacked); })
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime()
          ->Iterations(1);
  }
  return run_benchmarks(argc, argv);
}
