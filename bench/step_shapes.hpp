#pragma once
// The benchmark step shared by bench_step, bench_addrop and cuda_step (and mirrored by
// bench/pytorch_step.py): BERT sequence classifier, sequence length 128, dropout 0 (the
// PyTorch side runs with dropout 0 too), full-length deterministic token ids.
#include <cstdint>

#include <addrop/models/batch.hpp>
#include <addrop/models/config.hpp>

namespace addrop::bench {

struct StepShape {
  const char* name;
  int64_t layers, hidden, heads, intermediate, batch;
};

inline constexpr StepShape kSmall{"small", 4, 256, 4, 1024, 16};
inline constexpr StepShape kBase{"base", 12, 768, 12, 3072, 8};
inline constexpr int64_t kSeqLen = 128, kVocab = 30522, kLabels = 2;

inline models::ModelConfig make_config(const StepShape& s) {
  models::ModelConfig c;
  c.vocab_size = kVocab;
  c.hidden_size = s.hidden;
  c.num_hidden_layers = s.layers;
  c.num_attention_heads = s.heads;
  c.intermediate_size = s.intermediate;
  c.num_labels = kLabels;
  c.hidden_dropout_prob = 0.0f;
  c.attention_probs_dropout_prob = 0.0f;
  return c;
}

inline models::Batch make_batch(int64_t B) {
  models::Batch batch;
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

/// 3 x the forward's matrix-product FLOPs (2mnk per product), as pytorch_step.py counts them.
inline double step_flops(const StepShape& s) {
  const double T = static_cast<double>(s.batch * kSeqLen), D = static_cast<double>(s.hidden),
               I = static_cast<double>(s.intermediate), L = static_cast<double>(kSeqLen);
  const double per_layer = 2 * T * D * D * 4 + 2 * T * D * I * 2 + 2 * T * L * D * 2;
  const double head = 2.0 * static_cast<double>(s.batch) * D * D + 2.0 * static_cast<double>(s.batch) * D * kLabels;
  return 3.0 * (per_layer * static_cast<double>(s.layers) + head);
}

}  // namespace addrop::bench
