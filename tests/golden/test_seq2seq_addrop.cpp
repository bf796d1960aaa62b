// Golden tests of one sequence-to-sequence AD-DROP step (translation) on a small random
// Marian against PyTorch autograd (tests/reference/make_seq2seq_addrop_fixture.py,
// tests/golden/addrop/marian_tied/README.md): pseudo labels = argmax of the teacher-forced
// decoder logits, F = -CE_mean(pseudo) over the non-pad target positions, attributions on
// the encoder's self-attention sites; GA on all encoder layers with the paper's WMT16
// setting (p 0.2, q 0.2), GA on one layer (low side), IGA (m = 20) and AA on all layers.
// Attributions, the second pass and every parameter gradient agree to 1e-9 (double) /
// 1e-4 (float) relative; candidates and keep masks agree exactly (float: except rows
// whose threshold gap, from the stored attribution, is below 1e-5; counted).
#define BOOST_TEST_MODULE golden_seq2seq_addrop
#include <boost/mpl/list.hpp>
#include <boost/test/unit_test.hpp>

#include <addrop/addrop.hpp>
#include <addrop/models/marian.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "support/addrop_golden.hpp"
#include "support/compare.hpp"
#include "support/fixture_policies.hpp"
#include "support/marian_fixture.hpp"

namespace fs = std::filesystem;
using namespace addrop;
using backend::Cpu;

namespace {

template <class T> constexpr double tolerance() { return testing::golden_tolerance<T>(); }
using testing::parse_layers;
using testing::values;

const fs::path kAddrop = fs::path(ADDROP_FIXTURE_DIR).parent_path() / "addrop" / "marian_tied";

template <class T, class Attr>
void run_variant(const fs::path& file) {
  const auto expected = io::SafeTensors::load(file);
  const auto& meta = expected.metadata();
  BOOST_REQUIRE(meta.at("objective") == "seq2seq");
  BOOST_REQUIRE(meta.at("sites") == "encoder");
  const double tol = tolerance<T>();
  const fs::path dir = testing::marian_case_dir("marian_tied");
  models::MarianModel<T> model(models::load_marian_config(dir / "config.json"), {.threads = 2});
  io::load_weights(model, io::SafeTensors::load(dir / "model.safetensors"), true);
  const auto batch = testing::read_seq2seq_batch(io::SafeTensors::load(dir / "batch.safetensors"));
  const auto layers = parse_layers(meta.at("layers"));

  ADDROP_CHECK_CLOSE_TENSOR("logits", values(model.forward(batch)), expected.values<double>("logits"), tol);

  AdDropOptions options;
  options.p = std::stod(meta.at("p"));
  options.q = std::stod(meta.at("q"));
  options.layers = layers;
  AdDrop<Attr, selection::TopP, schedule::Always> reg(options, testing::attribution_for<Attr>(meta),
                                                      testing::selection_for<selection::TopP>(meta));
  const bool high = meta.at("side") != "low";
  std::vector<std::vector<float>> draws;
  ExternalUniforms ext;
  for (int l : layers) draws.push_back(expected.values<float>("uniforms.layer" + std::to_string(l)));
  for (auto& d : draws) ext.draws.emplace_back(d);

  model.zero_grad();
  const auto r = reg.step_addrop(model, batch, &ext, /*train=*/false);
  BOOST_TEST(r.used_addrop);
  BOOST_REQUIRE_EQUAL(r.keep.size(), layers.size());
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const std::string s = ".layer" + std::to_string(layers[i]);
    const auto site = model.attention_site(layers[i], batch);
    ADDROP_CHECK_CLOSE_TENSOR("attribution" + s, values(*r.attributions[i]), expected.values<double>("attribution" + s), tol);
    testing::check_masks(expected, s, site, *r.candidates[i], *r.keep[i], options.p, high);
  }
  ADDROP_CHECK_CLOSE_TENSOR("masked_logits", values(*r.logits), expected.values<double>("masked_logits"), tol);
  const double want_loss = expected.values<double>("loss").at(0);
  BOOST_TEST(std::abs(r.loss - want_loss) <= tol * std::abs(want_loss), "loss " << r.loss << " want " << want_loss);
  testing::check_parameter_gradients(model, expected, tol, "k_proj.bias");
}

}  // namespace

using Scalars = boost::mpl::list<double, float>;

BOOST_AUTO_TEST_CASE_TEMPLATE(marian_encoder_sites, T, Scalars) {
  std::vector<fs::path> paths;
  for (const auto& e : fs::directory_iterator(kAddrop))
    if (e.path().extension() == ".safetensors") paths.push_back(e.path());
  std::sort(paths.begin(), paths.end());
  BOOST_TEST(paths.size() == 4u, "seq2seq fixtures found");
  for (const auto& path : paths) {
    BOOST_TEST_CONTEXT(path.filename().string() << " in " << (sizeof(T) == 8 ? "double" : "float")) {
      const auto kind = io::SafeTensors::load(path).metadata().at("attribution");
      if (kind == "ga") run_variant<T, attribution::Gradient>(path);
      else if (kind == "iga") run_variant<T, attribution::IntegratedGradients>(path);
      else if (kind == "aa") run_variant<T, attribution::Attention>(path);
      else BOOST_FAIL("unknown attribution " << kind);
    }
  }
}

// The trainer's way: data::TranslationBatches pads the same pairs into the same batch, and
// AdDrop::step (cross-tuning, generated draws) runs on it with the model's own contract.
BOOST_AUTO_TEST_CASE(translation_batches_make_the_fixture_batch) {
  const fs::path dir = testing::marian_case_dir("marian_tied");
  const auto batch = testing::read_seq2seq_batch(io::SafeTensors::load(dir / "batch.safetensors"));
  std::vector<data::TranslationPair> pairs(static_cast<std::size_t>(batch.size));
  for (int64_t b = 0; b < batch.size; ++b) {
    for (int64_t j = 0; j < batch.source_length; ++j)
      if (batch.attention_mask[b * batch.source_length + j]) pairs[b].source.push_back(batch.input_ids[b * batch.source_length + j]);
    for (int64_t j = 0; j < batch.target_length; ++j)
      if (batch.labels[b * batch.target_length + j] != -100) pairs[b].target.push_back(batch.labels[b * batch.target_length + j]);
  }
  const data::TranslationBatches source(pairs, {.batch_size = 3, .shuffle = false}, 39, 39);
  BOOST_TEST(source.num_batches(0) == 1);
  for (const auto& made : source.batches(0)) {
    BOOST_TEST(made.input_ids == batch.input_ids);
    BOOST_TEST(made.attention_mask == batch.attention_mask);
    BOOST_TEST(made.labels == batch.labels);
    BOOST_TEST(made.decoder_input_ids == batch.decoder_input_ids);
    models::MarianModel<double> model(models::load_marian_config(dir / "config.json"));
    io::load_weights(model, io::SafeTensors::load(dir / "model.safetensors"), true);
    AdDrop<attribution::Gradient, selection::TopP, schedule::CrossTuning> reg({.p = 0.2, .q = 0.2, .layers = {0, 1}, .seed = 3});
    model.zero_grad();
    const auto plain = reg.step(model, made, 0);  // epoch 0: cross-tuning trains plainly
    BOOST_TEST(!plain.used_addrop);
    model.zero_grad();
    const auto with = reg.step(model, made, 1);
    BOOST_TEST(with.used_addrop);
    BOOST_TEST(std::isfinite(with.loss));
  }
}
