// Golden test: AdamW (transformers' and torch's variants) with the linear warmup/decay
// schedule and gradient-norm clipping, replayed against PyTorch
// (tests/reference/make_optimizer_fixture.py -> fixtures/optimizer.safetensors): learning
// rate and clip norm of every step, final parameters and moments after K steps; and the
// same run interrupted after 2 steps, saved, restored into a fresh optimizer and finished.
#define BOOST_TEST_MODULE golden_optimizer
#include <boost/mpl/list.hpp>
#include <boost/test/unit_test.hpp>

#include <addrop/backend/cpu.hpp>
#include <addrop/io/safetensors.hpp>
#include <addrop/train/adamw.hpp>
#include <addrop/train/grad_clip.hpp>
#include <addrop/train/lr_schedule.hpp>
#include <addrop/train/optimizer_state.hpp>
#include <filesystem>
#include <memory>
#include <sstream>

#include "support/compare.hpp"
#include "support/helpers.hpp"

namespace fs = std::filesystem;
using namespace addrop;

namespace {

template <class T> constexpr double tolerance();
template <> constexpr double tolerance<double>() { return 1e-12; }
template <> constexpr double tolerance<float>() { return 1e-5; }

using Cpu = backend::Cpu;

const io::SafeTensors& fixture() {
  static const io::SafeTensors st = io::SafeTensors::load(fs::path(ADDROP_FIXTURE_DIR) / "optimizer.safetensors");
  return st;
}
double meta_number(const std::string& key) { return std::stod(fixture().metadata().at(key)); }

std::vector<std::string> parameter_names() {
  std::vector<std::string> names;
  std::stringstream ss(fixture().metadata().at("parameters"));
  for (std::string n; std::getline(ss, n, ',');) names.push_back(n);
  return names;
}

/// Parameters of the fixture, owned, initialised from "init.<name>".
template <class T>
struct Params {
  std::vector<std::unique_ptr<nn::Parameter<T, Cpu>>> owned;
  nn::ParameterList<T, Cpu> list;
  Params() {
    for (const auto& name : parameter_names()) {
      const auto& rec = fixture().at("init." + name);
      auto p = std::make_unique<nn::Parameter<T, Cpu>>();
      Shape shape;
      for (auto d : rec.shape) shape.dims[shape.rank++] = d;
      p->allocate(name, shape);
      const auto v = fixture().values<T>("init." + name);
      std::copy(v.begin(), v.end(), p->value.data());
      list.push_back(p.get());
      owned.push_back(std::move(p));
    }
  }
  void set_grads(int k) {
    for (auto* p : list) {
      const auto v = fixture().values<T>("grad." + std::to_string(k) + "." + p->name);
      std::copy(v.begin(), v.end(), p->grad.data());
    }
  }
};

train::AdamWOptions options(const std::string& variant) {
  train::AdamWOptions o;
  o.lr = meta_number("lr");
  o.beta1 = meta_number("beta1");
  o.beta2 = meta_number("beta2");
  o.eps = meta_number("eps." + variant);
  o.weight_decay = meta_number("weight_decay");
  o.variant = variant == "hf" ? train::AdamWVariant::HuggingFace : train::AdamWVariant::Torch;
  return o;
}

train::LrSchedule schedule() {
  return train::LrSchedule::linear(meta_number("lr"), static_cast<int64_t>(meta_number("total")),
                                   train::Warmup::steps(static_cast<int64_t>(meta_number("warmup"))));
}

/// Steps [from, to) of the fixture's run: grads, clip, lr, update. Checks lr and clip norm.
template <class T>
void run_steps(Params<T>& params, train::AdamW<T, Cpu>& opt, train::LrScheduler& sched, const std::string& variant,
               int from, int to) {
  const double tol = tolerance<T>();
  const auto want_lr = fixture().values<double>(variant + ".lr");
  const auto want_norm = fixture().values<double>(variant + ".clip_norm");
  const double max_norm = meta_number("max_norm");
  for (int k = from; k < to; ++k) {
    params.set_grads(k);
    const auto clip = train::clip_grad_norm(params.list, max_norm, Cpu::Context{});
    BOOST_TEST(clip.finite);
    BOOST_TEST(std::abs(clip.total_norm - want_norm[k]) <= tol * want_norm[k],
               variant << " step " << k << ": clip norm " << clip.total_norm << " want " << want_norm[k]);
    BOOST_TEST(clip.clipped == (want_norm[k] + 1e-6 > max_norm), "step " << k);
    sched.apply(opt);
    BOOST_TEST(std::abs(opt.options().lr - want_lr[k]) <= 1e-15 * std::max(1.0, want_lr[k]),
               variant << " step " << k << ": lr " << opt.options().lr << " want " << want_lr[k]);
    opt.step();
    sched.step();
  }
}

template <class T>
void check_final(const Params<T>& params, const train::AdamW<T, Cpu>& opt, const std::string& variant) {
  const double tol = tolerance<T>();
  for (std::size_t i = 0; i < params.list.size(); ++i) {
    const auto* p = params.list[i];
    const auto want = fixture().values<double>(variant + ".final." + p->name);
    ADDROP_CHECK_CLOSE_TENSOR(variant + " final " + p->name, p->value.data(), want.data(), p->value.numel(), tol);
    // The update moved every parameter (the comparison is not vacuous).
    const auto init = fixture().values<double>("init." + p->name);
    const auto moved = testing::compare("moved", want.data(), init.data(), p->value.numel(), 0.0);
    BOOST_TEST(moved.max_abs_error > 1e-4, p->name << " barely moved: " << moved.max_abs_error);
    const auto m = fixture().values<double>(variant + ".exp_avg." + p->name);
    const auto v = fixture().values<double>(variant + ".exp_avg_sq." + p->name);
    ADDROP_CHECK_CLOSE_TENSOR(variant + " exp_avg " + p->name, opt.exp_avg(i).data(), m.data(), p->value.numel(), tol);
    ADDROP_CHECK_CLOSE_TENSOR(variant + " exp_avg_sq " + p->name, opt.exp_avg_sq(i).data(), v.data(),
                              p->value.numel(), tol);
  }
}

template <class T>
void full_run(const std::string& variant) {
  BOOST_TEST_CONTEXT(variant << " in " << (sizeof(T) == 8 ? "double" : "float")) {
    Params<T> params;
    train::AdamW<T, Cpu> opt(params.list, options(variant), {.threads = 1});
    train::LrScheduler sched(schedule());
    const int K = static_cast<int>(meta_number("steps"));
    run_steps(params, opt, sched, variant, 0, K);
    BOOST_TEST(opt.steps() == K);
    BOOST_TEST(sched.step_count() == K);
    check_final(params, opt, variant);
  }
}

template <class T>
void resumed_run(const std::string& variant) {
  BOOST_TEST_CONTEXT("resumed " << variant << " in " << (sizeof(T) == 8 ? "double" : "float")) {
    testing::TempDir tmp("optimizer");
    const int K = static_cast<int>(meta_number("steps"));
    const int split = 2;
    Params<T> first;
    {
      train::AdamW<T, Cpu> opt(first.list, options(variant), {.threads = 1});
      train::LrScheduler sched(schedule());
      run_steps(first, opt, sched, variant, 0, split);
      train::save_optimizer_state(opt, tmp.dir / "optimizer.safetensors", &sched);
    }
    // A fresh process would load the parameters from the checkpoint; copy them here.
    Params<T> second;
    for (std::size_t i = 0; i < second.list.size(); ++i)
      std::copy(first.list[i]->value.data(), first.list[i]->value.data() + first.list[i]->value.numel(),
                second.list[i]->value.data());
    train::AdamW<T, Cpu> opt(second.list, options(variant), {.threads = 1});
    train::LrScheduler sched(schedule());
    const auto info = train::load_optimizer_state(opt, tmp.dir / "optimizer.safetensors", &sched);
    BOOST_TEST(info.step == split);
    BOOST_TEST(info.schedule_step == split);
    BOOST_TEST(opt.steps() == split);
    BOOST_TEST(sched.step_count() == split);
    run_steps(second, opt, sched, variant, split, K);
    check_final(second, opt, variant);
  }
}

using Scalars = boost::mpl::list<double, float>;

}  // namespace

BOOST_AUTO_TEST_CASE(fixture_is_as_described) {
  BOOST_TEST(fixture().metadata().at("generator") == "tests/reference/make_optimizer_fixture.py");
  const auto names = parameter_names();
  BOOST_TEST(names.size() == 5u);
  BOOST_TEST((std::find(names.begin(), names.end(), "encoder.LayerNorm.weight") != names.end()));
  // Steps 1 and 3 are clipped, 0, 2 and 4 are not; the first update has lr 0 (warmup).
  const auto norms = fixture().values<double>("hf.clip_norm");
  BOOST_TEST((norms[0] < 1 && norms[1] > 1 && norms[2] < 1 && norms[3] > 1 && norms[4] < 1));
  BOOST_TEST(fixture().values<double>("hf.lr").at(0) == 0.0);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(hugging_face_adamw, T, Scalars) { full_run<T>("hf"); }
BOOST_AUTO_TEST_CASE_TEMPLATE(torch_adamw, T, Scalars) { full_run<T>("torch"); }
BOOST_AUTO_TEST_CASE_TEMPLATE(hugging_face_adamw_resumed, T, Scalars) { resumed_run<T>("hf"); }
BOOST_AUTO_TEST_CASE_TEMPLATE(torch_adamw_resumed, T, Scalars) { resumed_run<T>("torch"); }
