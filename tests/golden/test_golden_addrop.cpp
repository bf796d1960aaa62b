// Golden tests of one AD-DROP step against PyTorch autograd
// (tests/reference/make_addrop_fixtures.py): GA, IGA (fixed and per-step targets), AA and
// RD, one or several target layers, High and Low, given uniforms. Attributions, the
// second pass and every parameter gradient agree to 1e-9 (double) / 1e-4 (float)
// relative; candidates and keep masks agree exactly.
#define BOOST_TEST_MODULE golden_addrop
#include <boost/mpl/list.hpp>
#include <boost/test/unit_test.hpp>

#include <addrop/addrop.hpp>
#include <filesystem>
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

const fs::path kFixtures = fs::path(ADDROP_FIXTURE_DIR);
const fs::path kAddrop = kFixtures.parent_path() / "addrop";


template <class T, class Attr, class Sel = selection::TopP>
void run_variant(const fs::path& file, const std::string& layout) {
  const auto expected = io::SafeTensors::load(file);
  const auto& meta = expected.metadata();
  const double tol = tolerance<T>();
  const auto config = io::load_hf_config(kFixtures / layout);
  models::EncoderModel<T> model(config, {.threads = 2});
  io::load_weights(model, io::SafeTensors::load(kFixtures / layout / "model.safetensors"), true);
  const auto batch = testing::read_fixture_batch(io::SafeTensors::load(kFixtures / layout / "batch.safetensors"), config);
  const auto layers = parse_layers(meta.at("layers"));

  // The first forward (eval mode) as the fixture records it.
  const auto& logits = model.forward(batch);
  ADDROP_CHECK_CLOSE_TENSOR("logits", std::vector<T>(logits.data(), logits.data() + logits.numel()),
                            expected.values<double>("logits"), tol);
  for (int l = 0; l < model.num_layers(); ++l) {
    const auto& a = model.attention_probs(l);
    ADDROP_CHECK_CLOSE_TENSOR("attention_probs.layer" + std::to_string(l),
                              std::vector<T>(a.data(), a.data() + a.numel()),
                              expected.values<double>("attention_probs.layer" + std::to_string(l)), tol);
  }

  AdDropOptions options;
  options.p = std::stod(meta.at("p"));
  options.q = std::stod(meta.at("q"));
  options.layers = layers;
  AdDrop<Attr, Sel, schedule::Always> reg(options, testing::attribution_for<Attr>(meta), testing::selection_for<Sel>(meta));

  std::vector<std::vector<float>> draws, draws2;
  ExternalUniforms ext;
  for (int l : layers) {
    draws.push_back(expected.values<float>("uniforms.layer" + std::to_string(l)));
    if (!attribution::gives_scores<Attr>) draws2.push_back(expected.values<float>("uniforms2.layer" + std::to_string(l)));
  }
  for (auto& d : draws) ext.draws.emplace_back(d);
  for (auto& d : draws2) ext.second_draws.emplace_back(d);

  model.zero_grad();
  const auto r = reg.step_addrop(model, batch, &ext, /*train=*/false);
  BOOST_TEST(r.used_addrop);
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const std::string s = ".layer" + std::to_string(layers[i]);
    auto as_vector = [](const Tensor<T, Cpu>* t) { return std::vector<T>(t->data(), t->data() + t->numel()); };
    if (attribution::gives_scores<Attr>) {
      ADDROP_CHECK_CLOSE_TENSOR("attribution" + s, as_vector(r.attributions[i]),
                                expected.values<double>("attribution" + s), tol);
      const auto cand = as_vector(r.candidates[i]);
      const auto want_cand = expected.values<double>("candidates" + s);
      int64_t differ = 0;
      for (std::size_t j = 0; j < cand.size(); ++j) differ += static_cast<double>(cand[j]) != want_cand[j];
      BOOST_TEST(differ == 0, "candidates" << s << ": " << differ << " of " << cand.size() << " differ");
    }
    const auto keep = as_vector(r.keep[i]);
    const auto want_keep = expected.values<double>("keep_mask" + s);
    int64_t differ = 0;
    for (std::size_t j = 0; j < keep.size(); ++j) differ += static_cast<double>(keep[j]) != want_keep[j];
    BOOST_TEST(differ == 0, "keep_mask" << s << ": " << differ << " of " << keep.size() << " differ");
  }
  ADDROP_CHECK_CLOSE_TENSOR("masked_logits", std::vector<T>(r.logits->data(), r.logits->data() + r.logits->numel()),
                            expected.values<double>("masked_logits"), tol);
  const double want_loss = expected.values<double>("loss").at(0);
  BOOST_TEST(std::abs(r.loss - want_loss) <= tol * std::abs(want_loss), "loss " << r.loss << " want " << want_loss);
  for (const auto* p : model.parameters()) {
    const std::string name = "grad." + p->name;
    const auto want = expected.values<double>(name);
    if (p->name.ends_with("attention.self.key.bias")) {  // exactly zero in exact arithmetic: see golden_models
      double scale = 0;
      for (double w : expected.values<double>(name.substr(0, name.size() - 4) + "weight")) scale = std::max(scale, std::abs(w));
      const auto cmp = testing::compare(name, p->grad.data(), want.data(), p->grad.numel(), tol);
      BOOST_CHECK_MESSAGE(cmp.max_abs_error <= tol * scale, cmp.report);
    } else {
      ADDROP_CHECK_CLOSE_TENSOR(name, p->grad.data(), want.data(), p->grad.numel(), tol);
    }
  }
}

template <class T>
void run_layout(const std::string& layout) {
  int files = 0;
  std::vector<fs::path> paths;
  for (const auto& e : fs::directory_iterator(kAddrop / layout))
    if (e.path().extension() == ".safetensors") paths.push_back(e.path());
  std::sort(paths.begin(), paths.end());
  for (const auto& path : paths) {
    BOOST_TEST_CONTEXT(layout << "/" << path.filename().string() << " in " << (sizeof(T) == 8 ? "double" : "float")) {
      const auto kind = io::SafeTensors::load(path).metadata().at("attribution");
      if (kind == "ga") run_variant<T, attribution::Gradient>(path, layout);
      else if (kind == "iga") run_variant<T, attribution::IntegratedGradients>(path, layout);
      else if (kind == "aa") run_variant<T, attribution::Attention>(path, layout);
      else if (kind == "rd") run_variant<T, attribution::None, selection::Random>(path, layout);
      else BOOST_FAIL("unknown attribution " << kind);
      ++files;
    }
  }
  BOOST_TEST(files >= 3, "fixtures found for " << layout);
}

using Scalars = boost::mpl::list<double, float>;

}  // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(bert_sequence_classification, T, Scalars) { run_layout<T>("bert_seqcls"); }
BOOST_AUTO_TEST_CASE_TEMPLATE(roberta_sequence_classification, T, Scalars) { run_layout<T>("roberta_seqcls"); }
BOOST_AUTO_TEST_CASE_TEMPLATE(bert_regression, T, Scalars) { run_layout<T>("bert_regression"); }
