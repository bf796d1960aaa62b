// Finite-difference gradient checks of a whole 2-layer EncoderModel<double>: BERT sequence
// classification, BERT regression, RoBERTa sequence classification and ELECTRA token
// classification with embedding_size != hidden_size.
//
// Every check compares what a backward produces with central differences of
// model.forward + model.loss:
//   - parameters: up to 12 deterministic elements of every parameter (padding rows of the
//     embedding tables included: analytic and numeric gradient both exactly 0);
//   - input_grad(): d(loss)/d(encoder input), through the embedding LayerNorm (and ELECTRA's
//     projection) to the word-embedding rows of tokens whose id occurs once;
//   - the attention sites: d(loss)/d(alpha_l) = sum(A_l ⊙ dA_l) / alpha_l, and d(loss)/d(mask_l)
//     = the softmax backward of dA_l, with dA_l = attention_probs_grad(l);
//   - BackwardOptions: stop_at_layer and weight_grads = false;
//   - dropout: the same (seed, step) gives the same pass, and the checks above also hold in
//     train mode, where (seed, step) fixes every mask.
#define BOOST_TEST_MODULE gradcheck_model
#include <boost/test/unit_test.hpp>

#include <addrop/addrop.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "support/compare.hpp"

using namespace addrop;
using models::Family;
using models::Task;
using Cpu = backend::Cpu;
using Model = models::EncoderModel<double>;
using TensorD = Tensor<double, Cpu>;
using Vec = std::vector<double>;

namespace {

// Central-difference step: 2^-20 ~ 1e-6, a power of two so that a perturbed mask entry
// (0 + h, -10000 + h) is exact; the divisor is always the difference of the stored values.
constexpr double kStep = 0x1p-20;
// Norm-wise relative error allowed: the loss is O(1), so central differences carry about
// 1e-16 / 1e-6 = 1e-10 of round-off, on gradients of order 1e-3 .. 1.
constexpr double kTol = 1e-6;

struct Worst {
  double error = 0;
  std::string name;
  int checks = 0;
};
Worst& worst() {
  static Worst w;
  return w;
}
struct PrintSummary {
  ~PrintSummary() {
    std::cout << "gradcheck_model: " << worst().checks << " gradient checks, max relative error " << worst().error
              << " (" << worst().name << ")\n";
  }
};
BOOST_TEST_GLOBAL_FIXTURE(PrintSummary);

void record(const std::string& name, double error) {
  auto& w = worst();
  ++w.checks;
  if (!(error <= w.error)) {
    w.error = error;
    w.name = name;
  }
}

/// Compares analytic with numeric (norm-wise relative), reports the worst element by its label.
void check_close(const std::string& name, const Vec& analytic, const Vec& numeric,
                 const std::vector<std::string>& labels, double tol = kTol) {
  BOOST_REQUIRE_EQUAL(analytic.size(), numeric.size());
  const auto cmp = testing::compare(name, analytic.data(), numeric.data(), static_cast<int64_t>(analytic.size()), tol);
  std::ostringstream where;
  if (cmp.worst >= 0)
    where << " -- worst: " << (labels.empty() ? std::to_string(cmp.worst) : labels[cmp.worst]) << " analytic "
          << analytic[cmp.worst] << " numeric " << numeric[cmp.worst];
  BOOST_CHECK_MESSAGE(cmp.relative() <= tol, cmp.report << where.str());
  BOOST_TEST_MESSAGE(name << ": " << analytic.size() << " values, max |numeric| " << cmp.max_abs_want
                          << ", max relative error " << cmp.relative());
  record(name, cmp.relative());
}

// ---------------------------------------------------------------- the tiny models
models::ModelConfig tiny_config(Family family, Task task) {
  models::ModelConfig c;
  c.family = family;
  c.task = task;
  c.vocab_size = 20;
  c.hidden_size = 8;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.intermediate_size = 16;
  c.max_position_embeddings = 16;
  c.type_vocab_size = 2;
  c.pad_token_id = 0;
  c.num_labels = task == Task::Regression ? 1 : 3;
  c.hidden_dropout_prob = 0.1f;
  c.attention_probs_dropout_prob = 0.1f;
  c.hidden_act = "gelu";
  if (family == Family::Roberta) {
    c.pad_token_id = 1;
    c.type_vocab_size = 1;
  }
  if (family == Family::Electra) c.embedding_size = 6;
  return c;
}

/// B = 2, L = 5; example 1 has two pads. No real token repeats an id or uses the pad id.
models::Batch tiny_batch(const models::ModelConfig& c) {
  models::Batch b;
  b.size = 2;
  b.length = 5;
  const auto pad = static_cast<int32_t>(c.pad_token_id);
  b.input_ids = {2, 5, 7, 9, 11, 3, 13, 17, pad, pad};
  b.attention_mask = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
  if (c.type_vocab_size > 1) b.token_type_ids = {0, 0, 0, 1, 1, 0, 1, 1, 0, 0};
  if (c.task == Task::Regression) b.targets = {0.7, -1.3};
  else if (c.task == Task::TokenClassification) b.labels = {0, 2, 1, -100, 1, 1, 0, 2, -100, -100};
  else b.labels = {2, 0};
  return b;
}

/// init_weights with std 0.5 (so gradients are not tiny), then biases and LayerNorm
/// parameters moved off their special values 0 and 1.
void randomize(Model& model, uint64_t seed) {
  models::init_weights(model, seed, 0.5);
  uint64_t stream = 1000;
  for (auto* p : model.parameters()) {
    const bool bias = p->name.ends_with(".bias");
    const bool ln = p->name.find("LayerNorm") != std::string::npos;
    ++stream;
    if (!bias && !ln) continue;
    for (int64_t i = 0; i < p->value.numel(); ++i)
      p->value.data()[i] += 0.2 * models::normal_draw(seed, stream, static_cast<uint64_t>(i));
  }
}

struct Case {
  std::string name;
  models::ModelConfig config;
};
std::vector<Case> cases() {
  return {{"bert_seqcls", tiny_config(Family::Bert, Task::SequenceClassification)},
          {"bert_regression", tiny_config(Family::Bert, Task::Regression)},
          {"roberta_seqcls", tiny_config(Family::Roberta, Task::SequenceClassification)},
          {"electra_token_E6", tiny_config(Family::Electra, Task::TokenClassification)}};
}

double loss_at(Model& m, const models::Batch& b, const models::PassOptions& pass) {
  m.forward(b, pass);
  return m.loss(b);
}

/// Forward, loss, zero_grad, full backward: parameter gradients and every layer's dA.
void full_backward(Model& m, const models::Batch& b, const models::PassOptions& pass) {
  m.forward(b, pass);
  m.loss(b);
  m.zero_grad();
  m.backward();
}

/// Central difference of the loss with respect to *x (restored afterwards).
double numeric(Model& m, const models::Batch& b, const models::PassOptions& pass, double* x, double h = kStep) {
  const double x0 = *x, xp = x0 + h, xm = x0 - h;
  *x = xp;
  const double fp = loss_at(m, b, pass);
  *x = xm;
  const double fm = loss_at(m, b, pass);
  *x = x0;
  return (fp - fm) / (xp - xm);
}

Vec copy_of(const TensorD& t) { return Vec(t.data(), t.data() + t.numel()); }

/// RoBERTa-style or absolute positions of the batch, as the model computes them.
std::vector<int32_t> positions_of(const models::ModelConfig& c, const models::Batch& b) {
  std::vector<int32_t> pos(static_cast<std::size_t>(b.tokens()));
  const auto pad = static_cast<int32_t>(c.pad_token_id);
  for (int64_t i = 0; i < b.size; ++i) {
    int32_t running = 0;
    for (int64_t j = 0; j < b.length; ++j) {
      const int64_t t = i * b.length + j;
      if (c.family == Family::Roberta) {
        const bool real = b.input_ids[t] != pad;
        running += real;
        pos[t] = real ? running + pad : pad;
      } else {
        pos[t] = static_cast<int32_t>(j);
      }
    }
  }
  return pos;
}

/// Up to `count` elements of parameter p, deterministic. Embedding tables: elements of
/// rows the batch uses, plus two of the padding row (when the table has one).
std::vector<int64_t> pick_elements(const nn::Parameter<double, Cpu>& p, const models::ModelConfig& c,
                                   const models::Batch& b, int64_t count, int64_t* padding_row) {
  const std::string prefix = c.prefix() + ".embeddings.";
  const int64_t n = p.value.numel();
  std::vector<int64_t> rows;
  *padding_row = -1;
  if (p.name == prefix + "word_embeddings.weight") {
    for (int64_t t = 0; t < b.tokens(); ++t)
      if (b.attention_mask[t]) rows.push_back(b.input_ids[t]);
    *padding_row = c.pad_token_id;
  } else if (p.name == prefix + "position_embeddings.weight") {
    for (int32_t v : positions_of(c, b)) rows.push_back(v);
    if (c.family == Family::Roberta) *padding_row = c.pad_token_id;
  }
  std::vector<int64_t> idx;
  if (!rows.empty()) {
    std::sort(rows.begin(), rows.end());
    rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
    rows.erase(std::remove(rows.begin(), rows.end(), *padding_row), rows.end());
    const int64_t dim = p.value.dim(1);
    if (*padding_row >= 0) {
      idx.push_back(*padding_row * dim);
      idx.push_back(*padding_row * dim + dim - 1);
    }
    for (std::size_t k = 0; static_cast<int64_t>(idx.size()) < count && k < 4 * rows.size(); ++k) {
      const int64_t e = rows[k % rows.size()] * dim + static_cast<int64_t>((3 * k + k / rows.size()) % dim);
      if (std::find(idx.begin(), idx.end(), e) == idx.end()) idx.push_back(e);
    }
    return idx;
  }
  if (n <= count) {
    for (int64_t i = 0; i < n; ++i) idx.push_back(i);
    return idx;
  }
  uint64_t salt = 0;
  for (char ch : p.name) salt = salt * 131 + static_cast<unsigned char>(ch);
  for (uint64_t k = 0; static_cast<int64_t>(idx.size()) < count; ++k) {
    const auto i = static_cast<int64_t>(random::uniform(salt, 5, k) * static_cast<float>(n)) % n;
    if (std::find(idx.begin(), idx.end(), i) == idx.end()) idx.push_back(i);
  }
  std::sort(idx.begin(), idx.end());
  return idx;
}

/// The gradient of every parameter at up to `per_param` elements against central differences.
void check_parameters(const std::string& name, Model& m, const models::Batch& b, const models::PassOptions& pass,
                      int64_t per_param) {
  full_backward(m, b, pass);
  std::map<std::string, Vec> grads;
  for (auto* p : m.parameters()) grads[p->name] = copy_of(p->grad);
  // Largest gradient of the model, the scale for parameters whose gradient is
  // mathematically zero (the attention key bias: softmax ignores a per-row constant).
  double scale = 0;
  for (const auto& [pn, g] : grads)
    for (double v : g) scale = std::max(scale, std::abs(v));

  for (auto* p : m.parameters()) {
    int64_t padding_row = -1;
    const auto idx = pick_elements(*p, m.config(), b, per_param, &padding_row);
    Vec a, n;
    std::vector<std::string> labels;
    for (int64_t i : idx) {
      a.push_back(grads[p->name][i]);
      n.push_back(numeric(m, b, pass, p->value.data() + i));
      labels.push_back(p->name + "[" + std::to_string(i) + "]");
      if (padding_row >= 0 && i / p->value.dim(1) == padding_row) {
        // torch's padding_idx: the row is looked up but gets no gradient; only pads use it,
        // and their keys are masked out (exp(-10000) == 0), so the loss ignores it exactly.
        BOOST_TEST(a.back() == 0.0, name << ": " << labels.back() << " analytic gradient of the padding row");
        BOOST_TEST(std::abs(n.back()) <= 1e-12, name << ": " << labels.back() << " numeric gradient " << n.back());
      }
    }
    const std::string what = name + " d/d " + p->name;
    if (p->name.ends_with("attention.self.key.bias")) {
      double err = 0;
      for (std::size_t k = 0; k < a.size(); ++k) err = std::max(err, std::abs(a[k] - n[k]));
      BOOST_CHECK_MESSAGE(err <= kTol * scale, what << ": max abs error " << err << " vs model gradient scale "
                                                     << scale << " (the gradient is mathematically 0)");
      BOOST_TEST_MESSAGE(what << ": max abs error " << err << " (gradient scale " << scale << ")");
      record(what + " (vs model scale)", err / scale);
    } else {
      check_close(what, a, n, labels);
    }
  }
}

/// d(loss)/d(alpha_l) = sum(A_l ⊙ dA_l) / alpha_l for every layer, at alpha = 0.7 everywhere.
void check_attention_scales(const std::string& name, Model& m, const models::Batch& b,
                            const models::PassOptions& pass) {
  const double alpha = 0.7;
  for (int l = 0; l < m.num_layers(); ++l) m.set_attention_scale(l, alpha);
  full_backward(m, b, pass);
  Vec a, n;
  std::vector<std::string> labels;
  for (int l = 0; l < m.num_layers(); ++l) {
    const TensorD& A = m.attention_probs(l);
    const TensorD& dA = m.attention_probs_grad(l);
    double s = 0;
    for (int64_t i = 0; i < A.numel(); ++i) s += A.data()[i] * dA.data()[i];
    a.push_back(s / alpha);
    labels.push_back("alpha_" + std::to_string(l));
  }
  for (int l = 0; l < m.num_layers(); ++l) {
    const double ap = alpha + kStep, am = alpha - kStep;
    m.set_attention_scale(l, ap);
    const double fp = loss_at(m, b, pass);
    m.set_attention_scale(l, am);
    const double fm = loss_at(m, b, pass);
    m.set_attention_scale(l, alpha);
    n.push_back((fp - fm) / (ap - am));
  }
  check_close(name + " d/d alpha_l", a, n, labels);
  m.reset_attention_sites();
}

struct Entry {
  int64_t b, h, i, j;
};

/// d(loss)/d(mask_l[b,h,i,j]) = A (dA - sum_k A dA) for a few entries of every layer, at a base
/// mask that is zero or holds a few -10000 (AD-DROP's dropped positions).
void check_attention_masks(const std::string& name, Model& m, const models::Batch& b, bool dropped_base) {
  const int64_t B = b.size, L = b.length, H = m.config().num_attention_heads;
  const std::vector<Entry> entries{{0, 0, 0, 1}, {0, 1, 2, 4}, {0, 1, 4, 0}, {1, 0, 0, 2},
                                   {1, 1, 1, 0}, {1, 0, 2, 1}, {1, 0, 0, 3},  // key 3 of example 1 is a pad: 0
                                   {1, 1, 4, 1}};                             // a pad query
  auto at = [&](const Entry& e) { return ((e.b * H + e.h) * L + e.i) * L + e.j; };
  for (int l = 0; l < m.num_layers(); ++l) {
    TensorD mask({B, H, L, L});
    std::fill(mask.data(), mask.data() + mask.numel(), 0.0);
    if (dropped_base) {
      mask.data()[at({0, 0, 0, 3})] = -10000.0;
      mask.data()[at({1, 1, 1, 2})] = -10000.0;
      mask.data()[at({0, 1, 2, 4})] = -10000.0;  // also perturbed below: a dropped entry, gradient ~0
    }
    m.set_attention_mask(l, &mask);
    full_backward(m, b, {});
    const Vec A = copy_of(m.attention_probs(l)), dA = copy_of(m.attention_probs_grad(l));
    Vec a, n;
    std::vector<std::string> labels;
    for (const Entry& e : entries) {
      const int64_t row = at({e.b, e.h, e.i, 0});
      double dot = 0;
      for (int64_t k = 0; k < L; ++k) dot += A[row + k] * dA[row + k];
      a.push_back(A[at(e)] * (dA[at(e)] - dot));
      n.push_back(numeric(m, b, {}, mask.data() + at(e)));
      std::ostringstream lab;
      lab << "mask_" << l << "[" << e.b << "," << e.h << "," << e.i << "," << e.j << "]";
      labels.push_back(lab.str());
    }
    // The pad key gets nothing either way.
    BOOST_TEST(a[6] == 0.0);
    BOOST_TEST(n[6] == 0.0);
    check_close(name + " d/d mask_" + std::to_string(l) + (dropped_base ? " (base with -10000 entries)" : ""), a, n,
                labels);
    m.set_attention_mask(l, nullptr);
  }
}

/// input_grad() is d(loss)/d(encoder input) [B*L, D]. Without a hook on the encoder input, it is
/// carried down to the word-embedding rows: for a token whose id occurs once (eval mode),
/// d/d word_row = LN_emb backward (ELECTRA: of W_proj^T input_grad_t), checked against the row's
/// gradient (itself checked against central differences above) and central differences.
void check_input_grad(const std::string& name, Model& m, const models::Batch& b) {
  const auto& c = m.config();
  full_backward(m, b, {});
  const int64_t N = b.tokens(), D = c.hidden_size, E = c.embedding_dim();
  BOOST_REQUIRE(m.input_grad() != nullptr);
  const Vec dx(m.input_grad(), m.input_grad() + N * D);
  const std::string p = c.prefix() + ".embeddings.";
  auto* word = m.find_parameter(p + "word_embeddings.weight");
  auto* position = m.find_parameter(p + "position_embeddings.weight");
  auto* type = m.find_parameter(p + "token_type_embeddings.weight");
  auto* gamma = m.find_parameter(p + "LayerNorm.weight");
  auto* project = m.find_parameter(c.prefix() + ".embeddings_project.weight");  // [D, E], ELECTRA only
  BOOST_REQUIRE(word && position && type && gamma);
  const Vec word_grad = copy_of(word->grad);
  const auto positions = positions_of(c, b);

  Vec a, via_rows;
  std::vector<std::string> labels;
  for (int64_t t = 0; t < N; ++t) {
    if (!b.attention_mask[t]) continue;
    const int64_t id = b.input_ids[t];
    const int64_t ty = b.token_type_ids.empty() ? 0 : b.token_type_ids[t];
    // The LayerNorm input of token t and the gradient reaching the LayerNorm output.
    Vec sum(E), dnormed(E, 0.0), dsum(E), y(E);
    for (int64_t e = 0; e < E; ++e)
      sum[e] = word->value.data()[id * E + e] + position->value.data()[positions[t] * E + e] +
               type->value.data()[ty * E + e];
    for (int64_t e = 0; e < E; ++e) {
      if (project) {
        for (int64_t d = 0; d < D; ++d) dnormed[e] += dx[t * D + d] * project->value.data()[d * E + e];
      } else {
        dnormed[e] = dx[t * D + e];
      }
    }
    double mean = 0, rstd = 0;
    auto* beta = m.find_parameter(p + "LayerNorm.bias");
    Cpu::layer_norm_forward(m.context(), 1, E, static_cast<double>(c.layer_norm_eps), sum.data(), gamma->value.data(),
                            beta->value.data(), y.data(), &mean, &rstd);
    Cpu::layer_norm_backward<double>(m.context(), 1, E, dnormed.data(), sum.data(), &mean, &rstd,
                                     gamma->value.data(), dsum.data(), false, nullptr, nullptr);
    for (int64_t e = 0; e < E; ++e) {
      a.push_back(dsum[e]);
      via_rows.push_back(word_grad[id * E + e]);
      labels.push_back("token " + std::to_string(t) + " (id " + std::to_string(id) + "), column " + std::to_string(e));
    }
  }
  check_close(name + " input_grad() carried to the word rows vs their gradients", a, via_rows, labels, 1e-12);
  // And against central differences directly, on a few of them.
  Vec a_few, n_few;
  std::vector<std::string> few_labels;
  for (std::size_t k = 0; k < a.size(); k += 5) {
    const int64_t t = [&] {
      int64_t seen = -1;
      for (int64_t u = 0; u < N; ++u)
        if (b.attention_mask[u] && ++seen == static_cast<int64_t>(k) / E) return u;
      return int64_t{-1};
    }();
    const int64_t e = static_cast<int64_t>(k) % E;
    a_few.push_back(a[k]);
    n_few.push_back(numeric(m, b, {}, word->value.data() + b.input_ids[t] * E + e));
    few_labels.push_back(labels[k]);
  }
  check_close(name + " input_grad() carried to the word rows vs central differences", a_few, n_few, few_labels);
}

}  // namespace

// ============================================================================ test cases
BOOST_AUTO_TEST_CASE(parameters_eval) {
  for (const auto& k : cases()) {
    Model m(k.config, {.threads = 1});
    randomize(m, 42);
    const auto b = tiny_batch(k.config);
    check_parameters(k.name + " eval", m, b, {}, 12);
  }
}

BOOST_AUTO_TEST_CASE(input_grad_is_the_encoder_input_gradient) {
  for (const auto& k : cases()) {
    Model m(k.config, {.threads = 1});
    randomize(m, 43);
    check_input_grad(k.name, m, tiny_batch(k.config));
  }
}

BOOST_AUTO_TEST_CASE(attention_scale_gradient) {
  for (const auto& k : cases()) {
    Model m(k.config, {.threads = 1});
    randomize(m, 44);
    check_attention_scales(k.name + " eval", m, tiny_batch(k.config), {});
  }
}

BOOST_AUTO_TEST_CASE(attention_mask_gradient) {
  for (const auto& k : cases()) {
    Model m(k.config, {.threads = 1});
    randomize(m, 45);
    const auto b = tiny_batch(k.config);
    check_attention_masks(k.name, m, b, false);
    check_attention_masks(k.name, m, b, true);
  }
}

BOOST_AUTO_TEST_CASE(backward_options) {
  for (const auto& k : cases()) {
    BOOST_TEST_CONTEXT(k.name) {
      Model m(k.config, {.threads = 1});
      randomize(m, 46);
      const auto b = tiny_batch(k.config);
      full_backward(m, b, {});
      const Vec dA0 = copy_of(m.attention_probs_grad(0)), dA1 = copy_of(m.attention_probs_grad(1));
      double grad_norm = 0;
      for (auto* p : m.parameters())
        for (int64_t i = 0; i < p->grad.numel(); ++i) grad_norm += std::abs(p->grad.data()[i]);
      BOOST_TEST(grad_norm > 0.0);

      // stop_at_layer = 1, no weight gradients: the top layer's dA only, no parameter touched.
      m.forward(b);
      m.loss(b);
      m.zero_grad();
      m.backward({.stop_at_layer = 1, .weight_grads = false});
      BOOST_TEST(copy_of(m.attention_probs_grad(1)) == dA1, boost::test_tools::per_element());
      BOOST_CHECK_THROW(m.attention_probs_grad(0), std::logic_error);  // no backward reached layer 0
      for (auto* p : m.parameters())
        for (int64_t i = 0; i < p->grad.numel(); ++i)
          BOOST_TEST_REQUIRE(p->grad.data()[i] == 0.0, p->name << " touched by a weight_grads=false backward");

      // stop_at_layer = 0: both layers' dA, as the full backward.
      m.forward(b);
      m.loss(b);
      m.backward({.stop_at_layer = 0, .weight_grads = false});
      BOOST_TEST(copy_of(m.attention_probs_grad(0)) == dA0, boost::test_tools::per_element());
      BOOST_TEST(copy_of(m.attention_probs_grad(1)) == dA1, boost::test_tools::per_element());
      for (auto* p : m.parameters())
        for (int64_t i = 0; i < p->grad.numel(); ++i)
          BOOST_TEST_REQUIRE(p->grad.data()[i] == 0.0, p->name << " touched by a weight_grads=false backward");

      // A full backward with weight_grads = false gives the same dA and no gradients either.
      m.forward(b);
      m.loss(b);
      m.backward({.stop_at_layer = -1, .weight_grads = false});
      BOOST_TEST(copy_of(m.attention_probs_grad(0)) == dA0, boost::test_tools::per_element());
      for (auto* p : m.parameters())
        for (int64_t i = 0; i < p->grad.numel(); ++i)
          BOOST_TEST_REQUIRE(p->grad.data()[i] == 0.0, p->name << " touched by a weight_grads=false backward");
      BOOST_CHECK_THROW(m.backward({.stop_at_layer = 2}), std::invalid_argument);
    }
  }
}

BOOST_AUTO_TEST_CASE(dropout_is_a_function_of_seed_and_step) {
  for (const auto& k : cases()) {
    BOOST_TEST_CONTEXT(k.name) {
      Model m(k.config, {.threads = 1});
      randomize(m, 47);
      const auto b = tiny_batch(k.config);
      const Vec eval = copy_of(m.forward(b));
      const Vec a = copy_of(m.forward(b, {.train = true, .seed = 7, .step = 3}));
      const Vec again = copy_of(m.forward(b, {.train = true, .seed = 7, .step = 3}));
      const Vec next = copy_of(m.forward(b, {.train = true, .seed = 7, .step = 4}));
      const Vec other_seed = copy_of(m.forward(b, {.train = true, .seed = 8, .step = 3}));
      BOOST_TEST(a == again, boost::test_tools::per_element());
      // Double parentheses: std::vector's operator!= (some element differs), not Boost's per-element one.
      BOOST_TEST((a != next), "step 4 must draw other masks");
      BOOST_TEST((a != other_seed), "seed 8 must draw other masks");
      BOOST_TEST((a != eval), "train mode must drop something");
      // Threads do not change the masks: a 2-thread model gives the same logits.
      Model m2(k.config, {.threads = 2});
      randomize(m2, 47);
      const Vec a2 = copy_of(m2.forward(b, {.train = true, .seed = 7, .step = 3}));
      const auto cmp = testing::compare("train logits threads=2 vs 1", a2, a, 1e-13);
      BOOST_CHECK_MESSAGE(cmp.relative() <= 1e-13, cmp.report);
    }
  }
}

BOOST_AUTO_TEST_CASE(gradients_in_train_mode) {
  // Dropout p = 0.1 everywhere (hidden, attention, head); (seed, step) fixes the masks, so the
  // loss is a smooth function of the parameters and the backward is its gradient.
  const models::PassOptions pass{.train = true, .seed = 7, .step = 3};
  for (const auto& k : cases()) {
    Model m(k.config, {.threads = 1});
    randomize(m, 48);
    const auto b = tiny_batch(k.config);
    check_parameters(k.name + " train", m, b, pass, 4);
    check_attention_scales(k.name + " train", m, b, pass);
  }
}
