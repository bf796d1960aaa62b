// AD-DROP steps under Precision::Bf16Mixed: attribution passes in float32 under a bf16
// model (AdDropOptions::attribution_precision) reproduce the float32 model's attributions
// and masks exactly, the model's context comes back to bf16, and a bf16 step's decisions
// differ from float32's only near the candidate threshold (the fraction is reported).
// Uses the golden fixture bert_seqcls (real-shaped BERT weights and batch).
#define BOOST_TEST_MODULE bf16_addrop
#include <boost/test/unit_test.hpp>

#include <addrop/addrop.hpp>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "support/helpers.hpp"

namespace fs = std::filesystem;
using namespace addrop;
using Model = models::EncoderModel<float>;

namespace {

struct Fixture {
  models::ModelConfig config;
  io::SafeTensors weights, batch_file;
  models::Batch batch;
  Fixture() {
    const fs::path dir = fs::path(ADDROP_FIXTURE_DIR) / "bert_seqcls";
    config = io::load_hf_config(dir);
    weights = io::SafeTensors::load(dir / "model.safetensors");
    batch_file = io::SafeTensors::load(dir / "batch.safetensors");
    batch = testing::read_fixture_batch(batch_file, config);
  }
  Model model(Precision p) const {
    Model m(config, {.threads = 2, .precision = p});
    io::load_weights(m, weights, /*strict=*/true);
    return m;
  }
};

struct StepCopy {
  double loss;
  std::vector<std::vector<float>> attributions, candidates, keep;
  std::vector<float> grad;  // of the first parameter
};

template <class Attribution>
StepCopy addrop_step(Model& model, const models::Batch& batch, std::optional<Precision> attribution_precision) {
  AdDropOptions o{.p = 0.3, .q = 0.3, .layers = {0, 1}, .seed = 7, .attribution_precision = attribution_precision};
  AdDrop<Attribution> reg(o);
  model.zero_grad();
  const auto r = reg.step_addrop(model, batch, nullptr, /*train=*/false);
  StepCopy c{r.loss, {}, {}, {}, {}};
  auto host = [](const Tensor<float, backend::Cpu>& t) { return std::vector<float>(t.data(), t.data() + t.numel()); };
  for (const auto* t : r.attributions) c.attributions.push_back(host(*t));
  for (const auto* t : r.candidates) c.candidates.push_back(host(*t));
  for (const auto* t : r.keep) c.keep.push_back(host(*t));
  c.grad = host(model.parameters().front()->grad);
  return c;
}

double fraction_differing(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
  double differ = 0, n = 0;
  for (std::size_t l = 0; l < a.size(); ++l)
    for (std::size_t i = 0; i < a[l].size(); ++i) {
      differ += a[l][i] != b[l][i];
      n += 1;
    }
  return differ / n;
}

}  // namespace

BOOST_AUTO_TEST_CASE(float32_attribution_under_a_bf16_model_is_the_float32_attribution) {
  const Fixture f;
  Model f32 = f.model(Precision::F32), bf16 = f.model(Precision::Bf16Mixed);
  const StepCopy want = addrop_step<attribution::Gradient>(f32, f.batch, std::nullopt);
  const StepCopy got = addrop_step<attribution::Gradient>(bf16, f.batch, Precision::F32);
  BOOST_TEST((bf16.context().precision == Precision::Bf16Mixed));  // restored after the step
  BOOST_TEST_REQUIRE(got.attributions.size() == 2u);
  for (std::size_t l = 0; l < 2; ++l) {
    BOOST_TEST(got.attributions[l] == want.attributions[l], boost::test_tools::per_element());
    BOOST_TEST(got.candidates[l] == want.candidates[l], boost::test_tools::per_element());
    BOOST_TEST(got.keep[l] == want.keep[l], boost::test_tools::per_element());
  }
  // The masked second pass ran in bf16: close to float32's, not equal.
  BOOST_TEST(got.loss != want.loss);
  BOOST_TEST(got.loss == want.loss, boost::test_tools::tolerance(1e-2));
}

BOOST_AUTO_TEST_CASE(bf16_attribution_decisions_differ_only_near_the_threshold) {
  const Fixture f;
  Model f32 = f.model(Precision::F32), bf16 = f.model(Precision::Bf16Mixed);
  for (const bool iga : {false, true}) {
    const StepCopy a = iga ? addrop_step<attribution::IntegratedGradients>(f32, f.batch, std::nullopt)
                           : addrop_step<attribution::Gradient>(f32, f.batch, std::nullopt);
    const StepCopy b = iga ? addrop_step<attribution::IntegratedGradients>(bf16, f.batch, std::nullopt)
                           : addrop_step<attribution::Gradient>(bf16, f.batch, std::nullopt);
    const double candidates = fraction_differing(a.candidates, b.candidates);
    const double keep = fraction_differing(a.keep, b.keep);
    BOOST_TEST_MESSAGE((iga ? "IGA" : "GA") << " bf16 vs f32 on bert_seqcls: " << 100 * candidates
                                            << "% of candidate decisions differ, " << 100 * keep << "% of keep decisions");
    // A flip needs two attributions that bf16 rounding reorders across the row's p-quantile:
    // a few per cent at most, never a different mask altogether.
    BOOST_TEST(candidates < 0.05);
    BOOST_TEST(keep < 0.05);
    BOOST_TEST(b.loss == a.loss, boost::test_tools::tolerance(2e-2));
  }
}

BOOST_AUTO_TEST_CASE(bf16_needs_a_float_model_and_a_switchable_context) {
  const Fixture f;
  BOOST_CHECK_THROW((models::EncoderModel<double>(f.config, {.precision = Precision::Bf16Mixed})), std::invalid_argument);
  models::EncoderModel<double> exact(f.config);
  BOOST_CHECK_THROW(exact.set_context({.precision = Precision::Bf16Mixed}), std::invalid_argument);
  BOOST_TEST((parse_precision("bf16") == Precision::Bf16Mixed));
  BOOST_TEST((parse_precision("f32") == Precision::F32));
  BOOST_CHECK_THROW(parse_precision("fp16", "--precision"), std::invalid_argument);
}
