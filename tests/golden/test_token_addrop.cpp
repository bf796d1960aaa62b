// Golden tests of one token-level AD-DROP step (NER) against PyTorch autograd
// (tests/reference/make_token_addrop_fixture.py): the pseudo label per token, F = -CE_mean
// over attended positions, GA on ALL layers (the reference's CoNLL-2003 setting p 0.8,
// q 0.1), GA on one layer (low side), IGA and AA on all layers, BERT and ELECTRA token
// classifiers. Attributions, the second pass and every parameter gradient agree to 1e-9
// (double) / 1e-4 (float) relative; candidates and keep masks agree exactly (float:
// except rows whose threshold gap, from the stored attribution, is below 1e-5; counted).
// Also: the attributions of several target layers from ONE backward equal each layer's
// own backward, bit for bit; data::TokenBatches gives the same step as a hand-made batch.
#define BOOST_TEST_MODULE golden_token_addrop
#include <boost/mpl/list.hpp>
#include <boost/test/unit_test.hpp>

#include <addrop/addrop.hpp>
#include <addrop/data/token_alignment.hpp>
#include <addrop/train/evaluate_tokens.hpp>
#include <cmath>
#include <filesystem>
#include <limits>
#include <sstream>

#include "support/addrop_golden.hpp"
#include "support/compare.hpp"
#include "support/helpers.hpp"
#include "support/fixture_policies.hpp"

namespace fs = std::filesystem;
using namespace addrop;
using backend::Cpu;

namespace {

template <class T> constexpr double tolerance() { return testing::golden_tolerance<T>(); }
using testing::parse_layers;
using testing::values;

const fs::path kFixtures = fs::path(ADDROP_FIXTURE_DIR);
const fs::path kAddrop = kFixtures.parent_path() / "addrop";

template <class T, class Attr, class Sel = selection::TopP>
void run_variant(const fs::path& file, const std::string& layout) {
  const auto expected = io::SafeTensors::load(file);
  const auto& meta = expected.metadata();
  BOOST_REQUIRE(meta.at("objective") == "token");
  const double tol = tolerance<T>();
  const auto config = io::load_hf_config(kFixtures / layout);
  BOOST_REQUIRE(config.task == models::Task::TokenClassification);
  models::EncoderModel<T> model(config, {.threads = 2});
  io::load_weights(model, io::SafeTensors::load(kFixtures / layout / "model.safetensors"), true);
  const auto batch = testing::read_fixture_batch(io::SafeTensors::load(kFixtures / layout / "batch.safetensors"), config);
  BOOST_REQUIRE_EQUAL(batch.labels.size(), static_cast<std::size_t>(batch.tokens()));
  const auto layers = parse_layers(meta.at("layers"));
  const int64_t H = config.num_attention_heads;

  const auto& logits = model.forward(batch);  // [B*L, C] = the fixture's [B, L, C]
  ADDROP_CHECK_CLOSE_TENSOR("logits", values(logits), expected.values<double>("logits"), tol);

  AdDropOptions options;
  options.p = std::stod(meta.at("p"));
  options.q = std::stod(meta.at("q"));
  options.layers = layers;
  AdDrop<Attr, Sel, schedule::Always> reg(options, testing::attribution_for<Attr>(meta), testing::selection_for<Sel>(meta));
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
    const auto want_attr = expected.values<double>("attribution" + s);
    ADDROP_CHECK_CLOSE_TENSOR("attribution" + s, values(*r.attributions[i]), want_attr, tol);
    // Padded query rows: exactly zero for GA and IGA.
    if (meta.at("attribution") != "aa") {
      const auto got = values(*r.attributions[i]);
      int64_t nonzero = 0;
      for (int64_t b = 0; b < batch.size; ++b)
        for (int64_t h = 0; h < H; ++h)
          for (int64_t q = batch.key_length(b); q < batch.length; ++q)
            for (int64_t j = 0; j < batch.length; ++j)
              nonzero += got[((b * H + h) * batch.length + q) * batch.length + j] != T(0);
      BOOST_TEST(nonzero == 0, "attribution" << s << ": " << nonzero << " non-zero entries in padded query rows");
    }
    // Masks: exact, row by row; float skips rows whose decision is a near tie.
    testing::check_masks(expected, s, model.attention_site(layers[i], batch), *r.candidates[i], *r.keep[i], options.p, high);
  }
  ADDROP_CHECK_CLOSE_TENSOR("masked_logits", values(*r.logits), expected.values<double>("masked_logits"), tol);
  const double want_loss = expected.values<double>("loss").at(0);
  BOOST_TEST(std::abs(r.loss - want_loss) <= tol * std::abs(want_loss), "loss " << r.loss << " want " << want_loss);
  testing::check_parameter_gradients(model, expected, tol, "attention.self.key.bias");
}

template <class T>
void run_layout(const std::string& layout) {
  std::vector<fs::path> paths;
  for (const auto& e : fs::directory_iterator(kAddrop / layout))
    if (e.path().extension() == ".safetensors" && e.path().filename().string().starts_with("token_")) paths.push_back(e.path());
  std::sort(paths.begin(), paths.end());
  BOOST_TEST(paths.size() >= 4u, "token fixtures found for " << layout);
  for (const auto& path : paths) {
    BOOST_TEST_CONTEXT(layout << "/" << path.filename().string() << " in " << (sizeof(T) == 8 ? "double" : "float")) {
      const auto kind = io::SafeTensors::load(path).metadata().at("attribution");
      if (kind == "ga") run_variant<T, attribution::Gradient>(path, layout);
      else if (kind == "iga") run_variant<T, attribution::IntegratedGradients>(path, layout);
      else if (kind == "aa") run_variant<T, attribution::Attention>(path, layout);
      else BOOST_FAIL("unknown attribution " << kind);
    }
  }
}

using Scalars = boost::mpl::list<double, float>;

}  // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(bert_token_classification, T, Scalars) { run_layout<T>("bert_token"); }
BOOST_AUTO_TEST_CASE_TEMPLATE(electra_token_classification, T, Scalars) { run_layout<T>("electra_token"); }

// GA reads every target layer's dF/dA_l from one input-gradient backward that stops at the
// lowest target layer: the same values, bit for bit, as one backward per layer.
BOOST_AUTO_TEST_CASE(one_backward_serves_all_target_layers) {
  const auto config = io::load_hf_config(kFixtures / "bert_token");
  models::EncoderModel<double> model(config, {.threads = 1});
  io::load_weights(model, io::SafeTensors::load(kFixtures / "bert_token" / "model.safetensors"), true);
  const auto batch = testing::read_fixture_batch(io::SafeTensors::load(kFixtures / "bert_token" / "batch.safetensors"), config);
  auto attributions = [&](std::vector<int> layers) {
    AdDrop<attribution::Gradient, selection::TopP, schedule::Always> reg({.p = 0.8, .q = 0.1, .layers = layers});
    model.zero_grad();
    const auto r = reg.step_addrop(model, batch, nullptr, false);
    std::vector<std::vector<double>> out;
    for (const auto* t : r.attributions) out.push_back(values(*t));
    return out;
  };
  const auto joint = attributions({0, 1});
  const auto only0 = attributions({0}), only1 = attributions({1});
  BOOST_REQUIRE_EQUAL(joint.size(), 2u);
  BOOST_TEST(joint[0] == only0[0]);
  BOOST_TEST(joint[1] == only1[0]);
}

// data::TokenBatches: the trainer's batch (token labels [B, L]) is the hand-made one, and
// so is the step on it.
BOOST_AUTO_TEST_CASE(token_batches_match_a_hand_made_batch) {
  const auto config = io::load_hf_config(kFixtures / "bert_token");
  const auto batch = testing::read_fixture_batch(io::SafeTensors::load(kFixtures / "bert_token" / "batch.safetensors"), config);
  data::TokenFeatures data;
  for (int64_t b = 0; b < batch.size; ++b) {
    const int64_t n = batch.key_length(b);
    data::Feature f;
    f.ids.assign(batch.input_ids.begin() + b * batch.length, batch.input_ids.begin() + b * batch.length + n);
    f.type_ids.assign(batch.token_type_ids.begin() + b * batch.length, batch.token_type_ids.begin() + b * batch.length + n);
    f.index = b;
    data.features.push_back(f);
    data.labels.emplace_back(batch.labels.begin() + b * batch.length, batch.labels.begin() + b * batch.length + n);
  }
  const auto made = data::make_token_batch(data, {0, 1, 2}, static_cast<int32_t>(config.pad_token_id));
  BOOST_TEST(made.labels == batch.labels);
  BOOST_TEST(made.input_ids == batch.input_ids);
  const data::TokenBatches source(data, {.batch_size = 3, .shuffle = false}, static_cast<int32_t>(config.pad_token_id));
  BOOST_REQUIRE_EQUAL(source.num_batches(0), 1);

  auto step = [&](bool from_source) {
    models::EncoderModel<double> model(config, {.threads = 1});
    io::load_weights(model, io::SafeTensors::load(kFixtures / "bert_token" / "model.safetensors"), true);
    AdDrop<attribution::Gradient, selection::TopP, schedule::Always> reg({.p = 0.8, .q = 0.1, .layers = {0, 1}});
    model.zero_grad();
    if (from_source) {
      for (const models::Batch& b : source.batches(0)) {
        BOOST_TEST(b.labels == batch.labels);
        return reg.step(model, b, 0).loss;
      }
    }
    return reg.step(model, batch, 0).loss;
  };
  BOOST_TEST(step(true) == step(false));
}
