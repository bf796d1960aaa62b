// Finite-difference checks of MarianModel<double> (shared + tied, and separate tables with
// an untied lm_head), and the agreement of its two decoders:
//   - every parameter: up to 8 deterministic elements, d(loss)/d(theta) against central
//     differences of forward + loss (plain and label-smoothed CE, eval and train mode);
//   - the attention sites: d(loss)/d(alpha_s) = sum(A_s ⊙ dA_s) / alpha_s for an encoder
//     self-attention, a decoder self-attention and a cross-attention;
//   - stop_at_layer: a backward that stops at an encoder site gives the same d/dA there;
//   - the KV-cache decoder: decode_step's logits equal teacher forcing's, position by
//     position, with a beam reorder in between.
#define BOOST_TEST_MODULE gradcheck_marian
#include <boost/test/unit_test.hpp>

#include <addrop/backend/cpu.hpp>
#include <addrop/models/marian.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

using namespace addrop;
using Model = models::MarianModel<double>;
using models::MarianConfig;
using models::Seq2SeqBatch;

namespace {

constexpr double kStep = 0x1p-20;
constexpr double kTol = 1e-6;

MarianConfig tiny_config(bool shared) {
  MarianConfig c;
  c.vocab_size = 23;
  c.decoder_vocab_size = 23;
  c.d_model = 8;
  c.encoder_layers = 2;
  c.decoder_layers = 2;
  c.encoder_attention_heads = 2;
  c.decoder_attention_heads = shared ? 2 : 4;
  c.encoder_ffn_dim = 12;
  c.decoder_ffn_dim = shared ? 12 : 10;
  c.max_position_embeddings = 16;
  c.pad_token_id = 22;
  c.decoder_start_token_id = 22;
  c.eos_token_id = 0;
  c.forced_eos_token_id = 0;
  c.bad_words_ids = {22};
  c.share_encoder_decoder_embeddings = shared;
  c.tie_word_embeddings = shared;
  c.activation_function = shared ? "swish" : "relu";
  c.scale_embedding = shared;
  c.dropout = 0.2f;
  c.attention_dropout = 0.1f;
  c.activation_dropout = shared ? 0.0f : 0.15f;
  return c;
}

Seq2SeqBatch tiny_batch() {
  const std::vector<std::vector<int32_t>> src{{3, 4, 5, 6, 0}, {7, 8, 0}, {9, 10, 11, 0}};
  const std::vector<std::vector<int32_t>> tgt{{12, 13, 0}, {14, 15, 16, 17, 0}, {18, 0}};
  return models::make_seq2seq_batch(src, tgt, 22, 22);
}

void randomize(Model& m, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> normal(0.0, 0.4);
  auto fill = [&](auto* p, double mean) {
    std::vector<double> v(static_cast<std::size_t>(p->value.numel()));
    for (auto& x : v) x = mean + normal(gen);
    backend::Cpu::to_device(m.context(), p->value.numel(), v.data(), p->value.data());
  };
  for (auto* p : m.parameters()) fill(p, p->name.find("layer_norm.weight") != std::string::npos ? 1.0 : 0.0);
  fill(m.find_parameter("final_logits_bias"), 0.0);
}

double run_loss(Model& m, const Seq2SeqBatch& batch, const models::PassOptions& pass) {
  m.forward(batch, pass);
  return m.loss(batch);
}

void check_parameters(Model& m, const Seq2SeqBatch& batch, const models::PassOptions& pass, const std::string& what) {
  m.zero_grad();
  run_loss(m, batch, pass);
  m.backward();
  double worst = 0;
  for (auto* p : m.parameters()) {
    const int64_t n = p->value.numel();
    for (int k = 0; k < 8 && k < n; ++k) {
      const int64_t i = (k * 7919 + 13) % n;
      double* v = p->value.data() + i;
      const double saved = *v;
      *v = saved + kStep;
      const double up = run_loss(m, batch, pass);
      *v = saved - kStep;
      const double down = run_loss(m, batch, pass);
      *v = saved;
      const double numeric = (up - down) / (2 * kStep), analytic = p->grad.data()[i];
      const double err = std::abs(numeric - analytic) / std::max(1.0, std::abs(numeric));
      worst = std::max(worst, err);
      BOOST_TEST(err <= kTol, what << ": " << p->name << "[" << i << "] analytic " << analytic << " numeric " << numeric);
    }
  }
  BOOST_TEST_MESSAGE(what << ": worst parameter error " << worst);
}

}  // namespace

BOOST_AUTO_TEST_CASE(parameter_gradients_match_finite_differences) {
  for (bool shared : {true, false}) {
    Model m(tiny_config(shared));
    randomize(m, shared ? 1 : 2);
    const Seq2SeqBatch batch = tiny_batch();
    const std::string tag = shared ? "shared+tied" : "separate+untied";
    check_parameters(m, batch, {}, tag + " eval, CE");
    m.set_label_smoothing(0.1);
    check_parameters(m, batch, {.train = true, .seed = 5, .step = 3}, tag + " train, label-smoothed CE");
  }
}

BOOST_AUTO_TEST_CASE(attention_site_gradients) {
  Model m(tiny_config(true));
  randomize(m, 3);
  const Seq2SeqBatch batch = tiny_batch();
  using Kind = Model::SiteKind;
  for (int site : {m.site_of(Kind::EncoderSelf, 1), m.site_of(Kind::DecoderSelf, 0), m.site_of(Kind::DecoderCross, 1)}) {
    const double alpha = 0.75;
    m.reset_attention_sites();
    m.set_attention_scale(site, alpha);
    m.zero_grad();
    run_loss(m, batch, {});
    m.backward();
    const auto& A = m.attention_probs(site);
    const auto& dA = m.attention_probs_grad(site);
    double analytic = 0;
    for (int64_t i = 0; i < A.numel(); ++i) analytic += A.data()[i] * dA.data()[i];
    analytic /= alpha;
    m.set_attention_scale(site, alpha + kStep);
    const double up = run_loss(m, batch, {});
    m.set_attention_scale(site, alpha - kStep);
    const double down = run_loss(m, batch, {});
    const double numeric = (up - down) / (2 * kStep);
    BOOST_TEST(std::abs(numeric - analytic) <= kTol * std::max(1.0, std::abs(numeric)), "site " << site);
    // The same d/dA from a backward that stops at this site and skips weight gradients.
    m.set_attention_scale(site, alpha);
    run_loss(m, batch, {});
    m.backward();
    const std::vector<double> full(m.attention_probs_grad(site).data(),
                                   m.attention_probs_grad(site).data() + m.attention_probs_grad(site).numel());
    run_loss(m, batch, {});
    m.backward({.stop_at_layer = site, .weight_grads = false});
    for (int64_t i = 0; i < A.numel(); ++i)
      BOOST_TEST(m.attention_probs_grad(site).data()[i] == full[static_cast<std::size_t>(i)]);
  }
  BOOST_CHECK_THROW(m.attention_probs(m.num_attention_sites()), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(cached_decoding_equals_teacher_forcing) {
  for (bool shared : {true, false}) {
    Model m(tiny_config(shared));
    randomize(m, 4);
    const Seq2SeqBatch batch = tiny_batch();
    const auto& logits = m.forward(batch, {});
    const std::vector<double> forced(logits.data(), logits.data() + logits.numel());
    const int64_t V = m.config().target_vocab_size(), Lt = batch.target_length, B = batch.size;
    // Two rows per sentence ("beams"); row 2b+1 is fed garbage until a reorder copies row 2b into it.
    Model::DecoderCache cache;
    m.start_decoding(batch, 2, Lt, cache);
    for (int64_t t = 0; t < Lt; ++t) {
      std::vector<int32_t> tokens(static_cast<std::size_t>(2 * B));
      for (int64_t b = 0; b < B; ++b) {
        tokens[2 * b] = batch.decoder_input_ids[b * Lt + t];
        tokens[2 * b + 1] = t == 0 ? 5 : batch.decoder_input_ids[b * Lt + t];
      }
      if (t == 1) {  // row 2b+1 now continues from row 2b's cache
        std::vector<int32_t> origin(static_cast<std::size_t>(2 * B));
        for (int64_t b = 0; b < B; ++b) origin[2 * b] = origin[2 * b + 1] = static_cast<int32_t>(2 * b);
        m.reorder_cache(origin, cache);
      }
      const auto& step = m.decode_step(tokens, cache);
      for (int64_t b = 0; b < B; ++b) {
        for (int64_t v = 0; v < V; ++v) {
          const double want = forced[(b * Lt + t) * V + v];
          BOOST_TEST(std::abs(step.data()[(2 * b) * V + v] - want) <= 1e-12);
          if (t > 0) BOOST_TEST(std::abs(step.data()[(2 * b + 1) * V + v] - want) <= 1e-12);
        }
      }
    }
  }
}
