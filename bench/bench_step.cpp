// One training step (forward + loss + backward, all parameter gradients; no optimizer
// update) of the BERT sequence classifier, float, sequence length 128 — the same step
// bench/pytorch_step.py times in PyTorch. Counters: seconds per step and GFLOP/s, with
// FLOPs = 3 x the forward's matrix-product FLOPs (the formula of pytorch_step.py).
#include <benchmark/benchmark.h>

#include <addrop/addrop.hpp>

#include "step_shapes.hpp"

namespace {

using namespace addrop::bench;  // StepShape, kSmall, kBase, make_config, make_batch, step_flops

void BM_TrainingStep(benchmark::State& state, StepShape s) {
  const addrop::models::ModelConfig c = make_config(s);
  addrop::models::EncoderModel<float> model(c, {.threads = 2});
  addrop::models::init_weights(model, 1);
  const auto batch = make_batch(s.batch);
  for (auto _ : state) {
    model.forward(batch, {.train = true, .seed = 1, .step = 0});
    benchmark::DoNotOptimize(model.loss(batch));
    model.zero_grad();
    model.backward();
  }
  const double flops = step_flops(s);
  state.counters["seconds_per_step"] = benchmark::Counter(static_cast<double>(state.iterations()),
                                                          benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["GFLOP_per_step"] = flops / 1e9;
  state.counters["GFLOPs"] = benchmark::Counter(flops * static_cast<double>(state.iterations()) / 1e9,
                                                benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK_CAPTURE(BM_TrainingStep, small, kSmall)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(3.0);
BENCHMARK_CAPTURE(BM_TrainingStep, base, kBase)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(10.0);

BENCHMARK_MAIN();
