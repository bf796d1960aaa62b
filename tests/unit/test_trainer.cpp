// The Trainer loop on a tiny model and a synthetic task: a NaN loss stops the run with a
// message and leaves the best checkpoint as it was; early stopping with patience; the
// evaluation count and the history; the checkpoint written is loadable.
#define BOOST_TEST_MODULE trainer
#include <boost/test/unit_test.hpp>

#include <addrop/addrop.hpp>
#include <addrop/train/evaluate.hpp>
#include <addrop/train/trainer.hpp>

#include <cmath>
#include <filesystem>
#include <limits>
#include <vector>

#include "support/helpers.hpp"

namespace fs = std::filesystem;
using namespace addrop;

namespace {

models::ModelConfig tiny_config() {
  models::ModelConfig c;
  c.vocab_size = 32;
  c.hidden_size = 16;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.intermediate_size = 32;
  c.max_position_embeddings = 16;
  c.num_labels = 2;
  return c;
}

// Label 1 iff token 7 occurs (every other example).
std::vector<data::Feature> make_features(int n, uint64_t seed) {
  std::vector<data::Feature> out;
  for (int i = 0; i < n; ++i) {
    data::Feature f;
    const int len = 4 + static_cast<int>(random::uniform(seed, 1, 3 * i) * 8);
    f.ids.push_back(2);
    const bool positive = i % 2 == 0;  // balanced classes
    for (int j = 0; j < len; ++j) {
      int t = 3 + static_cast<int>(random::uniform(seed, 2, 100 * i + j) * 28);
      if (t == 7) t = 8;
      f.ids.push_back(t);
    }
    if (positive) f.ids[1 + static_cast<int>(random::uniform(seed, 3, i) * len)] = 7;
    f.type_ids.assign(f.ids.size(), 0);
    f.label = positive ? 1 : 0;
    f.index = i;
    out.push_back(f);
  }
  return out;
}

// A regulariser that behaves like AdDrop's plain step and reports a NaN loss from step `nan_at` on.
struct NanAfter {
  AdDrop<attribution::Gradient, selection::TopP, schedule::Never> inner;
  int64_t nan_at;
  template <class Model>
  auto step(Model& model, const models::Batch& batch, int epoch) {
    auto out = inner.step(model, batch, epoch);
    if (inner.step_count() > nan_at) out.loss = std::numeric_limits<double>::quiet_NaN();
    return out;
  }
  int64_t step_count() const { return inner.step_count(); }
  void set_step_count(int64_t n) { inner.set_step_count(n); }
};

train::EvalResult accuracy_of(models::EncoderModel<float>& model, const std::vector<data::Feature>& dev) {
  const auto pred = train::predict(model, dev, 32, 0);
  int correct = 0;
  for (std::size_t i = 0; i < dev.size(); ++i) correct += pred.labels[i] == dev[i].label;
  train::EvalResult r;
  r.loss = pred.loss;
  r.main = static_cast<double>(correct) / static_cast<double>(dev.size());
  r.metrics["accuracy"] = r.main;
  return r;
}

}  // namespace

BOOST_AUTO_TEST_CASE(nan_loss_stops_and_keeps_the_best_checkpoint) {
  testing::TempDir tmp("trainer");
  models::EncoderModel<float> model(tiny_config(), {.threads = 1});
  models::init_weights(model, 3);
  const auto train = make_features(64, 1), dev = make_features(32, 2);
  NanAfter reg{AdDrop<attribution::Gradient, selection::TopP, schedule::Never>(AdDropOptions{}), 5};  // 4 steps per epoch
  train::TrainerOptions opt;
  opt.epochs = 4;
  opt.optimizer.lr = 1e-3;
  opt.sampler.batch_size = 16;
  opt.output = tmp.dir;
  opt.progress = false;
  train::Trainer trainer(model, reg, opt);
  const auto result = trainer.fit(train, [&](auto& m) { return accuracy_of(m, dev); }, 0);
  BOOST_TEST(result.stopped_early);
  BOOST_TEST(result.stop_reason.find("NaN") != std::string::npos, result.stop_reason);
  BOOST_TEST(result.stop_reason.find("epoch 1, step 6") != std::string::npos, result.stop_reason);
  BOOST_REQUIRE_EQUAL(result.history.size(), 1u);  // epoch 0 was evaluated, epoch 1 never finished
  BOOST_TEST(result.best_index == 0);
  BOOST_TEST(fs::exists(tmp.dir / "best" / "model.safetensors"));
  // The best checkpoint holds epoch 0's weights: loading it reproduces epoch 0's accuracy.
  models::EncoderModel<float> reloaded(tiny_config(), {.threads = 1});
  io::load_weights(reloaded, io::SafeTensors::load(tmp.dir / "best" / "model.safetensors"), true);
  BOOST_TEST(accuracy_of(reloaded, dev).main == result.history[0].dev.main);
}

BOOST_AUTO_TEST_CASE(patience_stops_after_evaluations_without_improvement) {
  models::EncoderModel<float> model(tiny_config(), {.threads = 1});
  models::init_weights(model, 4);
  const auto train = make_features(32, 5), dev = make_features(16, 6);
  AdDrop<attribution::Gradient, selection::TopP, schedule::Never> reg(AdDropOptions{});
  train::TrainerOptions opt;
  opt.epochs = 10;
  opt.patience = 2;
  opt.optimizer.lr = 0.0;  // nothing changes, so nothing improves after the first evaluation
  opt.max_grad_norm = 0;
  opt.progress = false;
  train::Trainer trainer(model, reg, opt);
  const auto result = trainer.fit(train, [&](auto& m) { return accuracy_of(m, dev); }, 0);
  BOOST_TEST(result.stopped_early);
  BOOST_TEST(result.history.size() == 3u);  // the first, then two without improvement
  BOOST_TEST(result.best_index == 0);
}

BOOST_AUTO_TEST_CASE(learns_and_evaluates_every_n_steps) {
  models::EncoderModel<float> model(tiny_config(), {.threads = 1});
  models::init_weights(model, 7);
  const auto train = make_features(256, 8), dev = make_features(64, 9);
  AdDrop<> reg({.p = 0.3, .q = 0.3, .layers = {0}, .seed = 1});
  train::TrainerOptions opt;
  opt.epochs = 6;
  opt.eval_every = 8;  // 16 batches per epoch: two evaluations per epoch
  opt.optimizer.lr = 3e-3;
  opt.sampler.batch_size = 16;
  opt.progress = false;
  train::Trainer trainer(model, reg, opt);
  const auto before = accuracy_of(model, dev).main;
  const auto result = trainer.fit(train, [&](auto& m) { return accuracy_of(m, dev); }, 0);
  BOOST_TEST(result.history.size() == 12u);
  BOOST_TEST(result.steps == 96);
  BOOST_TEST(result.history.back().addrop);            // epoch 5 is odd: AD-DROP ran
  BOOST_TEST(!result.history.front().addrop);          // epoch 0: plain
  BOOST_TEST(result.best()->dev.main > before);
  BOOST_TEST(result.best()->dev.main >= 0.8);
}
