// Golden tests: MarianModel against the PyTorch re-implementation of Hugging Face's
// MarianMTModel and generate() (tests/reference/marian_model.py, fixtures made by
// tests/reference/make_marian_fixtures.py; tests/golden/marian/README.md describes them):
// logits, loss, label-smoothed loss, embeddings, every layer's output, the attention
// probabilities of every site and their gradients, every parameter's gradient, the same
// with AD-DROP masks and scales on encoder sites, config.json and model.safetensors in
// Hugging Face's layout (save and load back), and greedy / beam-search outputs and scores.
#define BOOST_TEST_MODULE golden_marian
#include <boost/test/unit_test.hpp>

#include <addrop/io/checkpoint.hpp>
#include <addrop/io/safetensors.hpp>
#include <addrop/models/generation.hpp>
#include <addrop/models/marian.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "support/compare.hpp"
#include "support/marian_fixture.hpp"

namespace fs = std::filesystem;
using namespace addrop;

namespace {

template <class T> constexpr double tolerance();
template <> constexpr double tolerance<double>() { return 1e-9; }
template <> constexpr double tolerance<float>() { return 1e-4; }

std::string read_text(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

fs::path case_dir(const std::string& name) { return testing::marian_case_dir(name); }
models::Seq2SeqBatch read_batch(const io::SafeTensors& file) { return testing::read_seq2seq_batch(file); }

template <class T>
models::MarianModel<T> load_model(const fs::path& dir) {
  models::MarianModel<T> model(models::load_marian_config(dir / "config.json"), {.threads = 2});
  const auto report = io::load_weights(model, io::SafeTensors::load(dir / "model.safetensors"), /*strict=*/true);
  BOOST_TEST(report.unused.empty(), report.summary());
  return model;
}

template <class T>
void check_case(const std::string& name) {
  const fs::path dir = case_dir(name);
  BOOST_TEST_CONTEXT("fixture " << name << " in " << (sizeof(T) == 8 ? "double" : "float")) {
    auto model = load_model<T>(dir);
    using Model = models::MarianModel<T>;
    using Kind = typename Model::SiteKind;
    const auto batch_file = io::SafeTensors::load(dir / "batch.safetensors");
    const auto expected = io::SafeTensors::load(dir / "expected.safetensors");
    const auto batch = read_batch(batch_file);
    const double tol = tolerance<T>();
    auto check = [&](const std::string& what, const Tensor<T, backend::Cpu>& got) {
      const auto want = expected.values<double>(what);
      BOOST_TEST_REQUIRE(got.numel() == static_cast<int64_t>(want.size()), what << " size");
      ADDROP_CHECK_CLOSE_TENSOR(what, got.data(), want.data(), got.numel(), tol);
    };
    auto site_name = [&](int site) {
      const auto ref = model.site_ref(site);
      const std::string l = ".layer" + std::to_string(ref.layer);
      return ref.kind == Kind::EncoderSelf ? "encoder" + l : ref.kind == Kind::DecoderSelf ? "decoder" + l : "cross" + l;
    };

    // The sinusoid table, bit for bit (float32 values).
    const auto positions = expected.values<T>("embed_positions");
    const auto* table = model.find_parameter("model.encoder.embed_positions.weight");
    BOOST_TEST_REQUIRE(table->value.numel() == static_cast<int64_t>(positions.size()));
    for (std::size_t i = 0; i < positions.size(); ++i) BOOST_TEST(table->value.data()[i] == positions[i]);

    // Plain run: forward, losses, backward.
    check("logits", model.forward(batch));
    const double want_loss = expected.values<double>("loss").at(0);
    model.set_label_smoothing(0.1);
    const double smoothed = model.loss(batch);
    const double want_smoothed = expected.values<double>("loss_label_smoothed").at(0);
    BOOST_TEST(std::abs(smoothed - want_smoothed) <= tol * std::abs(want_smoothed));
    model.set_label_smoothing(0);
    const double loss = model.loss(batch);
    BOOST_TEST(std::abs(loss - want_loss) <= tol * std::abs(want_loss), "loss " << loss << " want " << want_loss);
    model.zero_grad();
    model.backward();
    check("encoder_embedding_output", model.encoder_embedding_output());
    check("decoder_embedding_output", model.decoder_embedding_output());
    for (int l = 0; l < model.num_encoder_layers(); ++l)
      check("encoder_hidden_states.layer" + std::to_string(l), model.encoder_hidden_states(l));
    for (int l = 0; l < model.num_decoder_layers(); ++l)
      check("decoder_hidden_states.layer" + std::to_string(l), model.decoder_hidden_states(l));
    for (int s = 0; s < model.num_attention_sites(); ++s) {
      check("attention_probs." + site_name(s), model.attention_probs(s));
      check("attention_probs_grad." + site_name(s), model.attention_probs_grad(s));
    }
    int checked = 0;
    for (const auto* p : model.parameters()) {
      const std::string what = "grad." + p->name;
      if (p->name.ends_with("k_proj.bias")) {
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
    int gradients = 0;
    for (const auto& n : expected.names()) gradients += n.rfind("grad.", 0) == 0;
    BOOST_TEST(checked == gradients, "every parameter's gradient, and no other");

    // Masked run: AD-DROP's additive masks and IG's scales on encoder sites.
    const int64_t B = batch.size, Ls = batch.source_length, H = model.config().encoder_attention_heads;
    std::vector<Tensor<T, backend::Cpu>> masks(static_cast<std::size_t>(model.num_encoder_layers()));
    for (int l = 0; l < model.num_encoder_layers(); ++l) {
      const std::string mask_name = "extra_mask.encoder.layer" + std::to_string(l);
      if (batch_file.contains(mask_name)) {
        const auto v = batch_file.values<T>(mask_name, {B, H, Ls, Ls});
        masks[l].resize({B, H, Ls, Ls});
        std::copy(v.begin(), v.end(), masks[l].data());
        model.set_attention_mask(l, &masks[l]);
      }
      const std::string alpha_name = "alpha.encoder.layer" + std::to_string(l);
      if (batch_file.contains(alpha_name)) model.set_attention_scale(l, batch_file.values<T>(alpha_name).at(0));
    }
    check("masked.logits", model.forward(batch));
    const double masked_loss = model.loss(batch), want_masked = expected.values<double>("masked.loss").at(0);
    BOOST_TEST(std::abs(masked_loss - want_masked) <= tol * std::abs(want_masked));
    model.backward({.stop_at_layer = 0, .weight_grads = false});
    for (int s = 0; s < model.num_attention_sites(); ++s) check("masked.attention_probs." + site_name(s), model.attention_probs(s));
    for (int l = 0; l < model.num_encoder_layers(); ++l)
      check("masked.attention_probs_grad.encoder.layer" + std::to_string(l), model.attention_probs_grad(l));
    model.reset_attention_sites();

    // Generation: every setting of the fixture, sequences exact, scores to the tolerance.
    for (const auto& [key, value] : expected.metadata()) {
      if (key.rfind("generation.", 0) != 0) continue;
      const std::string setting = key.substr(11);
      BOOST_TEST_CONTEXT("generation " << setting) {
        const nlohmann::json j = nlohmann::json::parse(value);
        models::GenerationOptions g;
        g.num_beams = j.at("num_beams").get<int64_t>();
        if (!j.at("max_length").is_null()) g.max_length = j.at("max_length").get<int64_t>();
        if (!j.at("max_new_tokens").is_null()) g.max_new_tokens = j.at("max_new_tokens").get<int64_t>();
        g.length_penalty = j.at("length_penalty").get<double>();
        g.early_stopping = models::early_stopping_from_json(j.at("early_stopping"));
        const auto got = models::generate(model, batch, g);
        const auto& rec = expected.at(setting + ".sequences");
        const auto want = expected.values<int64_t>(setting + ".sequences");
        const int64_t width = rec.shape.at(1);
        for (int64_t b = 0; b < B; ++b) {
          std::vector<int64_t> row(got.sequences[b].begin(), got.sequences[b].end());
          const std::vector<int64_t> want_row(want.begin() + b * width, want.begin() + (b + 1) * width);
          BOOST_TEST(row == want_row, "source " << b);
        }
        if (expected.contains(setting + ".sequences_scores")) {
          const auto scores = expected.values<double>(setting + ".sequences_scores");
          for (int64_t b = 0; b < B; ++b)
            BOOST_TEST(std::abs(got.scores[b] - scores[b]) <= tol * std::max(1.0, std::abs(scores[b])), "score of source " << b);
        }
      }
    }
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(marian_tied_double) { check_case<double>("marian_tied"); }
BOOST_AUTO_TEST_CASE(marian_untied_double) { check_case<double>("marian_untied"); }
BOOST_AUTO_TEST_CASE(marian_tied_float) { check_case<float>("marian_tied"); }
BOOST_AUTO_TEST_CASE(marian_untied_float) { check_case<float>("marian_untied"); }

BOOST_AUTO_TEST_CASE(config_and_weights_round_trip_in_hugging_face_layout) {
  // What save_pretrained writes is what Hugging Face's writes: the same tensor names (tied
  // tables once, no sinusoid tables), the same config fields; loading it back is exact.
  for (const std::string name : {"marian_tied", "marian_untied"}) {
    const fs::path dir = case_dir(name);
    auto model = load_model<double>(dir);
    const fs::path out = fs::temp_directory_path() / ("addrop_marian_" + name);
    fs::remove_all(out);
    io::save_pretrained(model, out, io::DType::F64);
    const auto theirs = io::SafeTensors::load(dir / "model.safetensors");
    const auto ours = io::SafeTensors::load(out / "model.safetensors");
    auto sorted = [](std::vector<std::string> v) {
      std::sort(v.begin(), v.end());
      return v;
    };
    BOOST_TEST(sorted(ours.names()) == sorted(theirs.names()), name);
    for (const auto& t : theirs.names()) BOOST_TEST(ours.values<double>(t) == theirs.values<double>(t), t);
    const auto want = nlohmann::json::parse(read_text(dir / "config.json"));
    const auto got = nlohmann::json::parse(read_text(out / "config.json"));
    for (const auto& [key, value] : want.items())
      if (key != "transformers_version") BOOST_TEST(got.contains(key), name << " config.json lacks " << key);
    for (const char* key : {"vocab_size", "d_model", "encoder_layers", "decoder_layers", "pad_token_id", "eos_token_id",
                            "decoder_start_token_id", "forced_eos_token_id", "share_encoder_decoder_embeddings",
                            "tie_word_embeddings", "scale_embedding", "activation_function", "bad_words_ids", "num_beams",
                            "max_length", "early_stopping"})
      BOOST_TEST(got.value(key, nlohmann::json()) == want.value(key, nlohmann::json()), name << " " << key);
    fs::remove_all(out);
  }
}

BOOST_AUTO_TEST_CASE(bad_configs_name_the_field) {
  const std::string base = R"({"model_type": "marian", "vocab_size": 10, "d_model": 8, "encoder_layers": 1,
    "decoder_layers": 1, "encoder_attention_heads": 2, "decoder_attention_heads": 2, "encoder_ffn_dim": 4,
    "decoder_ffn_dim": 4, "pad_token_id": 9, "eos_token_id": 0)";
  BOOST_CHECK_NO_THROW(models::parse_marian_config(base + "}", "c.json"));
  auto message = [&](const std::string& tail) {
    try {
      models::parse_marian_config(base + tail, "c.json");
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  BOOST_TEST(message(R"(, "activation_function": "mish"})").find("\"activation_function\"") != std::string::npos);
  BOOST_TEST(message(R"(, "early_stopping": "sometimes"})").find("\"early_stopping\"") != std::string::npos);
  BOOST_TEST(message(R"(, "bad_words_ids": [[1, 2]]})").find("\"bad_words_ids\"") != std::string::npos);
  BOOST_TEST(message(R"(, "decoder_attention_heads": 3})").find("decoder_attention_heads") != std::string::npos);
  BOOST_TEST(message(R"(, "pad_token_id": 12})").find("pad_token_id 12") != std::string::npos);
  BOOST_TEST(message(R"(, "d_model": "8"})").find("\"d_model\" must be an integer") != std::string::npos);
}
