// Golden tests: BERT, RoBERTa and ELECTRA forward and backward against tensors computed
// by PyTorch autograd (tests/reference/make_fixtures.py): logits, loss, embedding output,
// every layer's hidden states, attention probabilities and their gradients, and every
// parameter's gradient, with per-layer AD-DROP masks and attention scales in the batch.
#define BOOST_TEST_MODULE golden_models
#include <boost/mpl/list.hpp>
#include <boost/test/unit_test.hpp>

#include <addrop/addrop.hpp>
#include <filesystem>

#include "support/compare.hpp"
#include "support/helpers.hpp"

namespace fs = std::filesystem;
using namespace addrop;

namespace {

template <class T> constexpr double tolerance();
template <> constexpr double tolerance<double>() { return 1e-9; }
template <> constexpr double tolerance<float>() { return 1e-4; }


template <class T>
void check_case(const std::string& name) {
  const fs::path dir = fs::path(ADDROP_FIXTURE_DIR) / name;
  BOOST_TEST_CONTEXT("fixture " << name << " in " << (sizeof(T) == 8 ? "double" : "float")) {
    const auto config = io::load_hf_config(dir);
    models::EncoderModel<T> model(config, {.threads = 2});
    const auto weights = io::SafeTensors::load(dir / "model.safetensors");
    const auto report = io::load_weights(model, weights, /*strict=*/true);
    BOOST_TEST(report.unused.empty(), report.summary());
    const auto batch_file = io::SafeTensors::load(dir / "batch.safetensors");
    const auto expected = io::SafeTensors::load(dir / "expected.safetensors");
    const auto batch = testing::read_fixture_batch(batch_file, config);
    const int64_t B = batch.size, L = batch.length, H = config.num_attention_heads;

    std::vector<Tensor<T, backend::Cpu>> masks(static_cast<std::size_t>(model.num_layers()));
    for (int l = 0; l < model.num_layers(); ++l) {
      const std::string mask_name = "extra_mask.layer" + std::to_string(l);
      if (batch_file.contains(mask_name)) {
        const auto v = batch_file.values<T>(mask_name, {B, H, L, L});
        masks[l].resize({B, H, L, L});
        std::copy(v.begin(), v.end(), masks[l].data());
        model.set_attention_mask(l, &masks[l]);
      }
      const std::string alpha_name = "alpha.layer" + std::to_string(l);
      if (batch_file.contains(alpha_name)) model.set_attention_scale(l, batch_file.values<T>(alpha_name).at(0));
    }

    const auto& logits = model.forward(batch);
    const double tol = tolerance<T>();
    const auto want_logits = expected.values<double>("logits");
    ADDROP_CHECK_CLOSE_TENSOR("logits", logits.data(), want_logits.data(), logits.numel(), tol);
    BOOST_TEST(logits.numel() == static_cast<int64_t>(want_logits.size()));
    const double loss = model.loss(batch);
    const double want_loss = expected.values<double>("loss").at(0);
    BOOST_TEST(std::abs(loss - want_loss) <= tol * std::abs(want_loss), "loss " << loss << " want " << want_loss);
    model.zero_grad();
    model.backward();

    auto check = [&](const std::string& what, const Tensor<T, backend::Cpu>& got) {
      const auto want = expected.values<double>(what);
      BOOST_TEST_REQUIRE(got.numel() == static_cast<int64_t>(want.size()), what << " size");
      ADDROP_CHECK_CLOSE_TENSOR(what, got.data(), want.data(), got.numel(), tol);
    };
    check("embedding_output", model.embedding_output());
    for (int l = 0; l < model.num_layers(); ++l) {
      const std::string s = ".layer" + std::to_string(l);
      check("hidden_states" + s, model.hidden_states(l));
      check("attention_probs" + s, model.attention_probs(l));
      check("attention_probs_grad" + s, model.attention_probs_grad(l));
    }
    int checked = 0;
    const std::string key_bias = "attention.self.key.bias";
    for (const auto* p : model.parameters()) {
      const std::string what = "grad." + p->name;
      if (p->name.ends_with(key_bias)) {
        // Mathematically zero (softmax ignores a per-row constant): both sides are round-off,
        // so the error is measured against the key weight's gradient scale instead.
        const auto want = expected.values<double>(what);
        const auto weight = expected.values<double>(what.substr(0, what.size() - 4) + "weight");
        double scale = 0;
        for (double w : weight) scale = std::max(scale, std::abs(w));
        const auto cmp = testing::compare(what, p->grad.data(), want.data(), p->grad.numel(), tol);
        BOOST_CHECK_MESSAGE(cmp.max_abs_error <= tol * scale, cmp.report << " (scale " << scale << ")");
      } else {
        check(what, p->grad);
      }
      ++checked;
    }
    // Besides the gradients the fixture holds logits, loss, embedding_output and three tensors per layer.
    BOOST_TEST(checked == static_cast<int>(expected.names().size()) - 3 - 3 * model.num_layers(),
               "every parameter gradient in the fixture is checked");
  }
}

using Scalars = boost::mpl::list<double, float>;

}  // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(bert_sequence_classification, T, Scalars) { check_case<T>("bert_seqcls"); }
BOOST_AUTO_TEST_CASE_TEMPLATE(bert_regression, T, Scalars) { check_case<T>("bert_regression"); }
BOOST_AUTO_TEST_CASE_TEMPLATE(bert_token_classification, T, Scalars) { check_case<T>("bert_token"); }
BOOST_AUTO_TEST_CASE_TEMPLATE(roberta_sequence_classification, T, Scalars) { check_case<T>("roberta_seqcls"); }
BOOST_AUTO_TEST_CASE_TEMPLATE(electra_sequence_classification, T, Scalars) { check_case<T>("electra_seqcls"); }
BOOST_AUTO_TEST_CASE_TEMPLATE(electra_token_classification, T, Scalars) { check_case<T>("electra_token"); }
