// One training step (forward + loss + backward, all parameter gradients; no optimizer
// update) of the BERT sequence classifier, float, sequence length 128 — the same step
// bench/pytorch_step.py times in PyTorch. Counters: seconds per step and GFLOP/s, with
// FLOPs = 3 x the forward's matrix-product FLOPs (the formula of pytorch_step.py).
#include <benchmark/benchmark.h>

#include <addrop/addrop.hpp>

namespace {

struct StepShape {
  int64_t layers, hidden, heads, intermediate, batch;
};

constexpr int64_t kSeqLen = 128, kVocab = 30522, kLabels = 2;

double step_flops(const StepShape& s) {
  const double T = static_cast<double>(s.batch * kSeqLen), D = static_cast<double>(s.hidden),
               I = static_cast<double>(s.intermediate), L = static_cast<double>(kSeqLen);
  const double per_layer = 2 * T * D * D * 4         // Q, K, V, output projections
                           + 2 * T * D * I * 2       // feed-forward
                           + 2 * T * L * D * 2;      // QK^T and AV
  const double head = 2.0 * s.batch * D * D + 2.0 * s.batch * D * kLabels;
  return 3.0 * (per_layer * static_cast<double>(s.layers) + head);
}

addrop::models::Batch make_batch(int64_t B) {
  addrop::models::Batch batch;
  batch.size = B;
  batch.length = kSeqLen;
  const auto n = static_cast<std::size_t>(B * kSeqLen);
  batch.input_ids.resize(n);
  batch.attention_mask.assign(n, 1);
  batch.token_type_ids.assign(n, 0);
  for (std::size_t i = 0; i < n; ++i) batch.input_ids[i] = static_cast<int32_t>(1000 + (i * 7919) % 20000);
  for (int64_t b = 0; b < B; ++b) batch.labels.push_back(static_cast<int32_t>(b % kLabels));
  return batch;
}

void BM_TrainingStep(benchmark::State& state, StepShape s) {
  addrop::models::ModelConfig c;
  c.vocab_size = kVocab;
  c.hidden_size = s.hidden;
  c.num_hidden_layers = s.layers;
  c.num_attention_heads = s.heads;
  c.intermediate_size = s.intermediate;
  c.num_labels = kLabels;
  c.hidden_dropout_prob = 0.0f;  // the PyTorch side runs with dropout 0 too
  c.attention_probs_dropout_prob = 0.0f;
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

BENCHMARK_CAPTURE(BM_TrainingStep, small, StepShape{4, 256, 4, 1024, 16})->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(3.0);
BENCHMARK_CAPTURE(BM_TrainingStep, base, StepShape{12, 768, 12, 3072, 8})->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(10.0);

BENCHMARK_MAIN();
