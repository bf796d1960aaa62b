// The Trainer loop on a tiny model and a synthetic task: a NaN loss stops the run with a
// message (StopReason::NonFiniteLoss) and leaves the best checkpoint as it was; early
// stopping with patience (StopReason::NoImprovement); the evaluation count and the
// history; the checkpoint written is loadable; resuming continues bit for bit. Then the
// API around fit(): a batch source of the test's own (own batch type, model and
// regulariser), callbacks with any subset of the hooks and what they are told, the
// concepts that refuse a callback without hooks, and the library's messages.
#define BOOST_TEST_MODULE trainer
#include <boost/test/unit_test.hpp>

#include <addrop/addrop.hpp>
#include <addrop/data/token_alignment.hpp>
#include <addrop/train/evaluate.hpp>
#include <addrop/train/trainer.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <type_traits>
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
  opt.output = tmp.dir;
  opt.progress = false;
  train::Trainer trainer(model, reg, opt);
  const data::SequenceBatches source(train, {.batch_size = 16}, 0, false);
  const auto result = trainer.fit(source, [&](auto& m) { return accuracy_of(m, dev); });
  BOOST_TEST(result.stopped_early());
  BOOST_TEST((result.stop_reason == train::StopReason::NonFiniteLoss));
  BOOST_TEST(result.stop_message.find("NaN") != std::string::npos, result.stop_message);
  BOOST_TEST(result.stop_message.find("epoch 1, step 6") != std::string::npos, result.stop_message);
  BOOST_TEST(result.stop_message.find("--") == std::string::npos, result.stop_message);  // no example's flags
  BOOST_REQUIRE_EQUAL(result.history.size(), 1u);  // epoch 0 was evaluated, epoch 1 never finished
  BOOST_TEST(result.best_index == 0);
  BOOST_TEST(fs::exists(tmp.dir / "best" / "model.safetensors"));
  // The best checkpoint holds epoch 0's weights: loading it reproduces epoch 0's accuracy.
  models::EncoderModel<float> reloaded(tiny_config(), {.threads = 1});
  io::load_weights(reloaded, io::SafeTensors::load(tmp.dir / "best" / "model.safetensors"), true);
  BOOST_TEST(accuracy_of(reloaded, dev).main == result.history[0].dev.main);
}

// A run that cannot improve after its first evaluation (lr 0): patience 2 stops it.
struct NoImprovementRun {
  models::EncoderModel<float> model{tiny_config(), {.threads = 1}};
  std::vector<data::Feature> train = make_features(32, 5), dev = make_features(16, 6);
  AdDrop<attribution::Gradient, selection::TopP, schedule::Never> reg{AdDropOptions{}};
  train::TrainerOptions opt;
  NoImprovementRun() {
    models::init_weights(model, 4);
    opt.epochs = 10;
    opt.patience = 2;
    opt.optimizer.lr = 0.0;  // nothing changes, so nothing improves after the first evaluation
    opt.progress = false;
  }
  template <class... Callbacks>
  train::TrainResult fit(Callbacks&... callbacks) {
    train::Trainer trainer(model, reg, opt);
    const data::SequenceBatches source(train, {}, 0, false);
    return trainer.fit(source, [&](auto& m) { return accuracy_of(m, dev); }, callbacks...);
  }
};

BOOST_AUTO_TEST_CASE(patience_stops_after_evaluations_without_improvement) {
  NoImprovementRun run;
  run.opt.max_grad_norm = 0;
  const auto result = run.fit();
  BOOST_TEST(result.stopped_early());
  BOOST_TEST((result.stop_reason == train::StopReason::NoImprovement));
  BOOST_TEST(result.stop_message.find("2 evaluations") != std::string::npos, result.stop_message);
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
  opt.progress = false;
  train::Trainer trainer(model, reg, opt);
  const auto before = accuracy_of(model, dev).main;
  const data::SequenceBatches source(train, {.batch_size = 16}, 0, false);
  const auto result = trainer.fit(source, [&](auto& m) { return accuracy_of(m, dev); });
  BOOST_TEST((result.stop_reason == train::StopReason::Completed));
  BOOST_TEST(result.stop_message.empty());
  BOOST_TEST(result.history.size() == 12u);
  BOOST_TEST(result.steps == 96);
  BOOST_TEST(result.history.back().addrop);            // epoch 5 is odd: AD-DROP ran
  BOOST_TEST(!result.history.front().addrop);          // epoch 0: plain
  BOOST_TEST(result.best()->dev.main > before);
  BOOST_TEST(result.best()->dev.main >= 0.8);
}

namespace {

// ---- A batch source of the test's own: its batch type, model and regulariser are not
// the library's. The task: fit y = 3x with one weight.
struct Points {
  std::vector<double> x, y;
};

struct OneWeight {
  using value_type = double;
  using backend_type = backend::Cpu;
  nn::Parameter<double, backend::Cpu> w;
  OneWeight() {
    w.allocate("w", {1});
    w.value.data()[0] = 0;
    w.grad.data()[0] = 0;
  }
  nn::ParameterList<double, backend::Cpu> parameters() { return {&w}; }
  backend::Cpu::Context context() const { return {.threads = 1}; }
  void zero_grad() { w.grad.data()[0] = 0; }
  double weight() const { return w.value.data()[0]; }
};

// Mean squared error and its gradient; "AD-DROP" in odd epochs, as cross-tuning says.
struct SquaredError {
  struct Out {
    double loss = 0;
    bool used_addrop = false;
  };
  int64_t steps = 0;
  Out step(OneWeight& m, const Points& b, int epoch) {
    ++steps;
    double loss = 0, grad = 0;
    for (std::size_t i = 0; i < b.x.size(); ++i) {
      const double r = m.weight() * b.x[i] - b.y[i];
      loss += r * r;
      grad += 2 * r * b.x[i];
    }
    m.w.grad.data()[0] = grad / static_cast<double>(b.x.size());
    return {loss / static_cast<double>(b.x.size()), epoch % 2 == 1};
  }
  int64_t step_count() const { return steps; }
  void set_step_count(int64_t n) { steps = n; }
};

// Eager: a vector of batches per epoch (a different set of points each epoch).
struct PointSource {
  int64_t per_epoch = 4;
  int64_t claimed = 4;  ///< what num_batches says (a broken source says something else)
  int64_t num_batches(int) const { return claimed; }
  std::vector<Points> batches(int epoch) const {
    std::vector<Points> out(static_cast<std::size_t>(per_epoch));
    for (std::size_t b = 0; b < out.size(); ++b)
      for (int i = 0; i < 8; ++i) {
        const double x = 0.1 * (i + 1) + 0.01 * static_cast<double>(b) + 0.001 * epoch;
        out[b].x.push_back(x);
        out[b].y.push_back(3 * x);
      }
    return out;
  }
};

train::EvalResult distance_to_three(OneWeight& m) {
  train::EvalResult r;
  r.loss = (m.weight() - 3) * (m.weight() - 3);
  r.main = -std::abs(m.weight() - 3);
  return r;
}

// ---- Callbacks with different subsets of the hooks.
struct StepLog {
  std::vector<train::StepInfo> steps;
  void on_step(const train::StepInfo& s) { steps.push_back(s); }
};

struct EvalAndEpochLog {
  std::vector<train::EvalRecord> records;
  std::vector<int> indices;
  std::vector<bool> improved, stopping;
  std::vector<train::EpochEndInfo> epochs;
  void on_evaluate(const train::EvaluateInfo& e) {
    records.push_back(e.record);
    indices.push_back(e.index);
    improved.push_back(e.improved);
    stopping.push_back(e.stopping);
  }
  void on_epoch_end(const train::EpochEndInfo& e) { epochs.push_back(e); }
};

struct CheckpointLog {
  std::vector<train::CheckpointInfo> saved;
  std::vector<bool> complete;  ///< the folder was there when the hook ran
  void on_checkpoint(const train::CheckpointInfo& c) {
    saved.push_back(c);
    complete.push_back(fs::exists(c.path / "model.safetensors"));
  }
};

// Every hook: the order of events.
struct Journal {
  std::vector<std::string> events;
  void on_step(const train::StepInfo&) { events.push_back("step"); }
  void on_evaluate(const train::EvaluateInfo&) { events.push_back("evaluate"); }
  void on_epoch_end(const train::EpochEndInfo&) { events.push_back("epoch_end"); }
  void on_checkpoint(const train::CheckpointInfo& c) {
    events.push_back(c.kind == train::CheckpointKind::Best ? "best" : "last");
  }
};

struct ConstHook {
  int* calls;
  void on_step(const train::StepInfo&) const { ++*calls; }
};
struct NoHooks {
  void on_batch(const train::StepInfo&) {}  // not a hook name
};
struct WrongArgument {
  void on_step(int) {}  // not the hook's argument
};

}  // namespace

// A callback with no hook does not compile (fit() static_asserts TrainerCallback).
static_assert(!train::TrainerCallback<NoHooks>);
static_assert(!train::TrainerCallback<WrongArgument>);
static_assert(train::TrainerCallback<StepLog>);
static_assert(train::TrainerCallback<CheckpointLog>);
static_assert(!train::TrainerCallback<const StepLog>);  // a const callback needs const hooks
static_assert(train::TrainerCallback<const ConstHook>);
static_assert(train::HasOnEvaluate<EvalAndEpochLog> && train::HasOnEpochEnd<EvalAndEpochLog> &&
              !train::HasOnStep<EvalAndEpochLog> && !train::HasOnCheckpoint<EvalAndEpochLog>);
// Batch sources: the library's two and the test's own; a plain vector of features is none.
static_assert(train::BatchSource<const data::SequenceBatches>);
static_assert(train::BatchSource<const data::TokenBatches>);
static_assert(train::BatchSource<PointSource>);
static_assert(!train::BatchSource<std::vector<data::Feature>>);
static_assert(std::is_same_v<train::batch_t<const data::SequenceBatches>, models::Batch>);
static_assert(std::is_same_v<train::batch_t<const data::TokenBatches>, models::Batch>);
static_assert(std::is_same_v<train::batch_t<PointSource>, Points>);
static_assert(train::RegulariserFor<SquaredError, OneWeight, Points>);
static_assert(!train::RegulariserFor<SquaredError, OneWeight, models::Batch>);

BOOST_AUTO_TEST_CASE(a_source_of_its_own_trains_a_model_of_its_own) {
  OneWeight model;
  SquaredError reg;
  train::TrainerOptions opt;
  opt.epochs = 5;
  opt.optimizer.lr = 0.2;
  opt.optimizer.weight_decay = 0;
  opt.max_grad_norm = 0;
  opt.progress = false;
  train::Trainer trainer(model, reg, opt);
  StepLog log;
  int const_calls = 0;
  const ConstHook counter{&const_calls};
  const auto result = trainer.fit(PointSource{}, distance_to_three, log, counter);
  BOOST_TEST((result.stop_reason == train::StopReason::Completed));
  BOOST_TEST(result.steps == 20);
  BOOST_TEST(reg.step_count() == 20);
  BOOST_TEST(result.history.size() == 5u);
  BOOST_TEST(std::abs(model.weight() - 3) < 0.5, model.weight());  // from 0
  BOOST_TEST(result.history.back().dev.main == -std::abs(model.weight() - 3));  // evaluated after the last step
  BOOST_TEST(const_calls == 20);
  BOOST_REQUIRE_EQUAL(log.steps.size(), 20u);
  double epoch_sum = 0;
  for (std::size_t i = 0; i < log.steps.size(); ++i) {
    const auto& s = log.steps[i];
    BOOST_TEST(s.epoch == static_cast<int>(i / 4));
    BOOST_TEST(s.step == static_cast<int64_t>(i + 1));
    BOOST_TEST(s.batch == static_cast<int64_t>(i % 4));
    BOOST_TEST(s.batches == 4);
    BOOST_TEST(s.used_addrop == (s.epoch % 2 == 1));
    BOOST_TEST(s.lr == 0.2);  // constant schedule
    BOOST_TEST(std::isfinite(s.loss));
    epoch_sum += s.loss;
    if (i % 4 == 3) {  // the record of the epoch's evaluation: the mean loss of its steps
      BOOST_TEST(result.history[i / 4].train_loss == epoch_sum / 4, boost::test_tools::tolerance(1e-12));
      BOOST_TEST(result.history[i / 4].addrop == (s.epoch % 2 == 1));
      epoch_sum = 0;
    }
  }
  BOOST_TEST(log.steps.back().loss < log.steps.front().loss);
}

BOOST_AUTO_TEST_CASE(a_source_must_give_the_batches_it_counts) {
  OneWeight model;
  SquaredError reg;
  train::TrainerOptions opt;
  opt.epochs = 2;
  opt.progress = false;
  train::Trainer trainer(model, reg, opt);
  BOOST_CHECK_EXCEPTION(trainer.fit(PointSource{.per_epoch = 4, .claimed = 5}, distance_to_three), std::logic_error,
                        testing::has({"gave 4 batches in epoch 0", "num_batches said 5"}));
  BOOST_CHECK_EXCEPTION(trainer.fit(PointSource{.per_epoch = 0, .claimed = 0}, distance_to_three),
                        std::invalid_argument, testing::has({"no batches in epoch 0"}));
}

BOOST_AUTO_TEST_CASE(callbacks_see_every_step_evaluation_epoch_and_checkpoint) {
  testing::TempDir tmp("trainer_callbacks");
  models::EncoderModel<float> model(tiny_config(), {.threads = 1});
  models::init_weights(model, 11);
  const auto train = make_features(64, 12), dev = make_features(32, 13);
  AdDrop<> reg({.p = 0.3, .q = 0.3, .layers = {0}, .seed = 2});
  train::TrainerOptions opt;
  opt.epochs = 3;
  opt.optimizer.lr = 3e-3;
  opt.output = tmp.dir;
  opt.progress = false;
  train::Trainer trainer(model, reg, opt);
  const data::SequenceBatches source(train, {.batch_size = 16, .seed = 5}, 0, false);  // 4 batches per epoch
  StepLog steps;
  EvalAndEpochLog evals;
  CheckpointLog checkpoints;
  Journal journal;
  const auto result =
      trainer.fit(source, [&](auto& m) { return accuracy_of(m, dev); }, steps, evals, checkpoints, journal);
  BOOST_REQUIRE_EQUAL(result.history.size(), 3u);

  BOOST_TEST(steps.steps.size() == 12u);
  BOOST_TEST(steps.steps.back().step == 12);
  BOOST_TEST(steps.steps.back().epoch == 2);

  BOOST_REQUIRE_EQUAL(evals.records.size(), 3u);
  int best = -1;
  for (int i = 0; i < 3; ++i) {
    const auto& r = evals.records[static_cast<std::size_t>(i)];
    BOOST_TEST(evals.indices[static_cast<std::size_t>(i)] == i);
    BOOST_TEST(r.epoch == i);
    BOOST_TEST(r.step == 4 * (i + 1));
    BOOST_TEST(r.dev.main == result.history[static_cast<std::size_t>(i)].dev.main);
    BOOST_TEST(r.train_loss == result.history[static_cast<std::size_t>(i)].train_loss);
    BOOST_TEST(!evals.stopping[static_cast<std::size_t>(i)]);
    if (evals.improved[static_cast<std::size_t>(i)]) best = i;
  }
  BOOST_TEST(best == result.best_index);

  BOOST_REQUIRE_EQUAL(evals.epochs.size(), 3u);
  for (int e = 0; e < 3; ++e) {
    const auto& info = evals.epochs[static_cast<std::size_t>(e)];
    BOOST_TEST(info.epoch == e);
    BOOST_TEST(info.step == 4 * (e + 1));
    BOOST_TEST(info.train_loss == result.history[static_cast<std::size_t>(e)].train_loss);  // one evaluation per epoch
    BOOST_TEST(info.addrop == (e % 2 == 1));
    BOOST_TEST(info.seconds >= result.history[static_cast<std::size_t>(e)].seconds);
  }

  // output/last after every epoch; output/best after every improvement, complete when told
  int lasts = 0, bests = 0;
  for (std::size_t i = 0; i < checkpoints.saved.size(); ++i) {
    const auto& c = checkpoints.saved[i];
    BOOST_TEST(checkpoints.complete[i]);
    if (c.kind == train::CheckpointKind::Last) {
      BOOST_TEST(c.path == tmp.dir / "last");
      BOOST_TEST(c.epoch == lasts);
      BOOST_TEST(c.step == 4 * (lasts + 1));
      ++lasts;
    } else {
      BOOST_TEST(c.path == tmp.dir / "best");
      BOOST_TEST(evals.improved[static_cast<std::size_t>(c.epoch)]);
      ++bests;
    }
  }
  BOOST_TEST(lasts == 3);
  BOOST_TEST(bests == static_cast<int>(std::count(evals.improved.begin(), evals.improved.end(), true)));

  // the order within an epoch: its steps, its best checkpoint, its evaluation, its saved state, its end
  const std::vector<std::string> epoch0(journal.events.begin(), journal.events.begin() + 8);
  BOOST_TEST(epoch0 == (std::vector<std::string>{"step", "step", "step", "step", "best", "evaluate", "last",
                                                 "epoch_end"}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(callbacks_hear_of_early_stopping) {
  NoImprovementRun run;
  run.opt.eval_every = 1;  // 1 batch per epoch: an evaluation after every step
  EvalAndEpochLog log;
  const auto result = run.fit(log);
  BOOST_TEST((result.stop_reason == train::StopReason::NoImprovement));
  BOOST_TEST(log.stopping == (std::vector<bool>{false, false, true}), boost::test_tools::per_element());
  BOOST_TEST(log.epochs.size() == 3u);  // the last epoch ran all its batches too
}

BOOST_AUTO_TEST_CASE(resuming_continues_bit_for_bit) {
  testing::TempDir tmp("trainer_resume");
  const auto train = make_features(64, 21), dev = make_features(32, 22);
  auto run = [&](const fs::path& out, int epochs, bool resume, std::vector<float>* weights) {
    models::EncoderModel<float> model(tiny_config(), {.threads = 1});
    models::init_weights(model, 23);
    AdDrop<> reg({.p = 0.3, .q = 0.3, .layers = {0}, .seed = 3});
    train::TrainerOptions opt;
    opt.epochs = epochs;
    opt.optimizer.lr = 3e-3;
    fs::create_directories(out);
    opt.output = out;
    opt.resume = resume;
    opt.progress = false;
    train::Trainer trainer(model, reg, opt);
    const data::SequenceBatches source(train, {.batch_size = 16, .bucket_by_length = true, .bucket_window = 2}, 0, false);
    const auto result = trainer.fit(source, [&](auto& m) { return accuracy_of(m, dev); });
    if (weights) {
      weights->clear();
      for (const auto* p : model.parameters())
        weights->insert(weights->end(), p->value.data(), p->value.data() + p->value.numel());
    }
    return result;
  };
  std::vector<float> straight_w, split_w;
  const auto straight = run(tmp.dir / "straight", 3, false, &straight_w);
  run(tmp.dir / "split", 2, false, nullptr);
  const auto resumed = run(tmp.dir / "split", 3, true, &split_w);
  BOOST_REQUIRE_EQUAL(resumed.history.size(), 3u);
  for (std::size_t e = 0; e < 3; ++e) {
    BOOST_TEST(resumed.history[e].train_loss == straight.history[e].train_loss);
    BOOST_TEST(resumed.history[e].dev.main == straight.history[e].dev.main);
  }
  BOOST_TEST(resumed.steps == straight.steps);
  BOOST_TEST(split_w == straight_w);  // bit for bit
  // nothing left to do: the saved state is returned as it is
  const auto again = run(tmp.dir / "split", 3, true, nullptr);
  BOOST_TEST(again.history.size() == 3u);
  BOOST_TEST((again.stop_reason == train::StopReason::Completed));
}

BOOST_AUTO_TEST_CASE(messages_name_the_library_options) {
  testing::TempDir tmp("trainer_messages");
  models::EncoderModel<float> model(tiny_config(), {.threads = 1});
  const auto train = make_features(16, 1);
  AdDrop<attribution::Gradient, selection::TopP, schedule::Never> reg(AdDropOptions{});
  train::TrainerOptions opt;
  opt.resume = true;
  opt.output = tmp.dir;
  opt.progress = false;
  train::Trainer trainer(model, reg, opt);
  const data::SequenceBatches source(train, {}, 0, false);
  BOOST_CHECK_EXCEPTION(trainer.fit(source, [&](auto& m) { return accuracy_of(m, train); }), std::runtime_error,
                        testing::has({"TrainerOptions::resume", (tmp.dir / "last").string(), "no saved state"}));
  opt.epochs = 0;
  BOOST_CHECK_EXCEPTION(train::Trainer(model, reg, opt), std::invalid_argument,
                        testing::has({"TrainerOptions::epochs"}));
  for (auto r : {train::StopReason::Completed, train::StopReason::NoImprovement, train::StopReason::NonFiniteLoss})
    BOOST_TEST((train::stop_reason_from_string(train::to_string(r)) == r));
  BOOST_CHECK_THROW(train::stop_reason_from_string("became"), std::invalid_argument);
}
