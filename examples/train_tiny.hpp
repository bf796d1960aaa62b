// addrop-train-tiny's training, written once for every backend: train_tiny_device.cpp
// instantiates it for the CPU and, in a CUDA build, for the GPU (--device cuda).
#pragma once

#include <addrop/addrop.hpp>
#include <addrop/backend/device.hpp>

#include <cstdio>
#include <string>
#include <vector>

namespace addrop_train_tiny {

struct Options {
  int steps = 60, batch = 32, threads = 2, epoch_steps = 10;
  double lr = 1e-3, p = 0.3, q = 0.3;
  std::string attribution = "ga";
  uint64_t seed = 42;
  std::string output;
  std::string device = "cpu";
  std::string precision = "f32";
};

constexpr int kVocab = 64, kLength = 16, kTrigger = 7, kPad = 0;

// Batch number `index` of the synthetic stream: tokens 1..63 drawn from (seed, index),
// about half of the examples contain the trigger token.
inline addrop::models::Batch make_batch(uint64_t seed, uint64_t index, int size) {
  using addrop::random::uniform;
  addrop::models::Batch b;
  b.size = size;
  b.length = kLength;
  b.input_ids.assign(static_cast<std::size_t>(size * kLength), kPad);
  b.attention_mask.assign(b.input_ids.size(), 0);
  uint64_t draw = 0;
  auto next = [&] { return uniform(seed, 1000 + index, draw++); };
  for (int e = 0; e < size; ++e) {
    const int len = 8 + static_cast<int>(next() * (kLength - 8 + 1));
    const bool positive = next() < 0.5f;
    for (int j = 0; j < len; ++j) {
      int token = 1 + static_cast<int>(next() * (kVocab - 1));
      if (token == kTrigger) token = kTrigger + 1;
      b.input_ids[e * kLength + j] = token;
      b.attention_mask[e * kLength + j] = 1;
    }
    if (positive) b.input_ids[e * kLength + static_cast<int>(next() * len)] = kTrigger;
    b.labels.push_back(positive ? 1 : 0);
  }
  return b;
}

template <class Model>
double accuracy(Model& model, uint64_t seed) {
  int correct = 0, total = 0;
  for (uint64_t i = 0; i < 8; ++i) {
    const auto batch = make_batch(seed, 1u << 30 | i, 64);  // held-out stream
    const auto& device_logits = model.forward(batch);
    std::vector<typename Model::value_type> logits(static_cast<std::size_t>(device_logits.numel()));
    Model::backend_type::to_host(model.context(), device_logits.numel(), device_logits.data(), logits.data());
    for (int64_t b = 0; b < batch.size; ++b) {
      const int pred = logits[2 * b + 1] > logits[2 * b] ? 1 : 0;
      correct += pred == batch.labels[b];
      ++total;
    }
  }
  return static_cast<double>(correct) / total;
}

template <class Reg, class Model, class Optimizer>
void run_training(Reg& reg, Model& model, Optimizer& optimizer, const Options& opt) {
  double first = 0, last = 0, window = 0;
  for (int step = 0; step < opt.steps; ++step) {
    const auto batch = make_batch(opt.seed, static_cast<uint64_t>(step), opt.batch);
    model.zero_grad();
    const auto result = reg.step(model, batch, step / opt.epoch_steps);
    optimizer.step();
    if (step == 0) first = result.loss;
    last = result.loss;
    window += result.loss;
    std::printf("epoch %d step %3d  loss %.4f%s\n", step / opt.epoch_steps, step + 1, result.loss,
                result.used_addrop ? "  (AD-DROP)" : "");
  }
  std::printf("loss: first step %.4f, last step %.4f, mean %.4f\n", first, last, window / opt.steps);
}

/// Builds the classifier, trains it and reports; saves it to opt.output when given.
template <class Backend>
void train_and_report(const Options& opt, const typename Backend::Context& context) {
  addrop::models::ModelConfig config;
  config.vocab_size = kVocab;
  config.hidden_size = 64;
  config.num_hidden_layers = 2;
  config.num_attention_heads = 4;
  config.intermediate_size = 128;
  config.max_position_embeddings = kLength;
  config.num_labels = 2;
  addrop::models::EncoderModel<float, Backend> model(config, context);
  addrop::models::init_weights(model, opt.seed);
  addrop::train::AdamW<float, Backend> optimizer(model.parameters(), {.lr = opt.lr}, model.context());

  std::printf("BERT classifier: %lld layers, hidden %lld, %zu parameter tensors; %d steps of %d examples; "
              "AD-DROP: %s (p %.2f, q %.2f, layer 0, cross-tuning); device %s\n",
              static_cast<long long>(config.num_hidden_layers), static_cast<long long>(config.hidden_size),
              model.parameters().size(), opt.steps, opt.batch, opt.attribution.c_str(), opt.p, opt.q, opt.device.c_str());
  std::printf("held-out accuracy before training: %.3f\n", accuracy(model, opt.seed));
  addrop::AdDropOptions ad;
  ad.p = opt.p;
  ad.q = opt.q;
  ad.layers = {0};
  ad.seed = opt.seed;
  using namespace addrop;
  with_regulariser({.attribution = opt.attribution, .schedule = "cross"}, ad,
                   [&](auto& reg) { run_training(reg, model, optimizer, opt); });
  std::printf("held-out accuracy after training: %.3f\n", accuracy(model, opt.seed));
  if (!opt.output.empty()) {
    addrop::io::save_pretrained(model, opt.output);
    std::printf("saved to %s\n", opt.output.c_str());
  }
}

/// The training per device (train_tiny_device.cpp, compiled once per backend: device.hpp).
void train(addrop::OnCpu device, const Options& opt);
void train(addrop::OnCuda device, const Options& opt);

}  // namespace addrop_train_tiny
