// The attribution targets F of docs/algorithm.md step 2, as d F / d logits, against finite
// differences of F written out independently: sequence (sum of the pseudo-label logits),
// token and sequence-to-sequence (-CE_mean over attended / target positions), regression (-MSE).
#define BOOST_TEST_MODULE objective
#include <boost/test/unit_test.hpp>

#include <addrop/addrop.hpp>
#include <cmath>

using namespace addrop;

namespace {

std::vector<double> random_logits(int64_t n, uint64_t seed) {
  std::vector<double> z(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) z[i] = 4.0 * random::uniform(seed, 0, i) - 2.0;
  return z;
}

// -CE_mean(z, pseudo) over rows with mask set.
double neg_ce(const std::vector<double>& z, int64_t rows, int64_t C, const std::vector<int32_t>& pseudo,
              const std::vector<int32_t>& mask) {
  double total = 0;
  int count = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (!mask[r]) continue;
    double mx = -INFINITY, s = 0;
    for (int64_t c = 0; c < C; ++c) mx = std::max(mx, z[r * C + c]);
    for (int64_t c = 0; c < C; ++c) s += std::exp(z[r * C + c] - mx);
    total += mx + std::log(s) - z[r * C + pseudo[r]];
    ++count;
  }
  return -total / count;
}

}  // namespace

BOOST_AUTO_TEST_CASE(token_and_seq2seq_objective_matches_finite_differences) {
  const int64_t rows = 11, C = 5;
  auto z = random_logits(rows * C, 3);
  const std::vector<int32_t> mask = {1, 1, 0, 1, 1, 1, 0, 0, 1, 1, 1};
  std::vector<int32_t> pseudo(rows);
  attribution::argmax_rows<double>(z, rows, C, pseudo);
  std::vector<double> grad(rows * C);
  attribution::pseudo_label_cross_entropy_grad<double>(z, rows, C, pseudo, mask, grad);
  const double h = 1e-6;
  for (int64_t i = 0; i < rows * C; ++i) {
    const double keep = z[i];
    z[i] = keep + h;
    const double up = neg_ce(z, rows, C, pseudo, mask);
    z[i] = keep - h;
    const double down = neg_ce(z, rows, C, pseudo, mask);
    z[i] = keep;
    BOOST_TEST_REQUIRE(std::abs((up - down) / (2 * h) - grad[i]) < 1e-8, "element " << i);
  }
  for (int64_t c = 0; c < C; ++c) BOOST_TEST(grad[2 * C + c] == 0.0);  // unattended row
}

BOOST_AUTO_TEST_CASE(objective_for_each_task_and_stacked_copies) {
  models::ModelConfig c;
  c.num_labels = 3;
  models::Batch batch;
  batch.size = 2;
  batch.length = 3;
  batch.attention_mask = {1, 1, 0, 1, 1, 1};
  batch.targets = {0.5, -1.0};
  const int64_t copies = 2;

  // Sequence classification: one-hot at the fixed pseudo label, per copy.
  {
    auto z = random_logits(copies * 2 * 3, 5);
    std::vector<int32_t> pseudo = {2, 0}, scratch(copies * 2);
    std::vector<double> d(z.size());
    attribution::objective_grad<double>(models::attribution_target(c, batch), z, copies, pseudo, scratch, d);
    for (int64_t k = 0; k < copies; ++k)
      for (int64_t r = 0; r < 2; ++r)
        for (int64_t j = 0; j < 3; ++j) BOOST_TEST(d[(k * 2 + r) * 3 + j] == (j == pseudo[r] ? 1.0 : 0.0));
    // per-step: each copy's own argmax
    attribution::objective_grad<double>(models::attribution_target(c, batch), z, copies, {}, scratch, d);
    for (int64_t row = 0; row < copies * 2; ++row) {
      const auto best = std::max_element(z.begin() + row * 3, z.begin() + row * 3 + 3) - (z.begin() + row * 3);
      BOOST_TEST(d[row * 3 + best] == 1.0);
    }
  }
  // Regression: F = -MSE(z, gold), so dF/dz = -2 (z - y) / B for every copy.
  {
    c.task = models::Task::Regression;
    c.num_labels = 1;
    std::vector<double> z = {0.1, 0.2, 0.7, -0.4}, d(4);
    std::vector<int32_t> scratch(4);
    attribution::objective_grad<double>(models::attribution_target(c, batch), z, copies, {}, scratch, d);
    const double want[] = {-2 * (0.1 - 0.5) / 2, -2 * (0.2 + 1.0) / 2, -2 * (0.7 - 0.5) / 2, -2 * (-0.4 + 1.0) / 2};
    for (int i = 0; i < 4; ++i) BOOST_TEST(std::abs(d[i] - want[i]) < 1e-15);
  }
  // Token classification: -CE over attended tokens of each copy.
  {
    c.task = models::Task::TokenClassification;
    c.num_labels = 3;
    auto z = random_logits(copies * 6 * 3, 9);
    std::vector<int32_t> scratch(copies * 6);
    std::vector<double> d(z.size()), one(6 * 3);
    attribution::objective_grad<double>(models::attribution_target(c, batch), z, copies, {}, scratch, d);
    std::vector<int32_t> pseudo(6);
    for (int64_t k = 0; k < copies; ++k) {
      std::span<const double> zk(z.data() + k * 18, 18);
      attribution::argmax_rows<double>(zk, 6, 3, pseudo);
      attribution::pseudo_label_cross_entropy_grad<double>(zk, 6, 3, pseudo, batch.attention_mask, one);
      for (int i = 0; i < 18; ++i) BOOST_TEST(d[k * 18 + i] == one[i]);
    }
    for (int j = 0; j < 3; ++j) BOOST_TEST(d[2 * 3 + j] == 0.0);  // the pad token of example 0
  }
}

namespace {
// What AttributionContext reads from a model, around a given logits tensor.
struct LogitsOnlyModel {
  using value_type = double;
  using backend_type = backend::Cpu;
  Tensor<double, backend::Cpu> logits_, logits_grad_;
  backend::Cpu::Context context_{};
  models::AttributionTarget target_;
  const Tensor<double, backend::Cpu>& logits() const { return logits_; }
  Tensor<double, backend::Cpu>& logits_grad() { return logits_grad_; }
  models::AttributionTarget attribution_target(const models::Batch&) const { return target_; }
  backend::Cpu::Context& context() { return context_; }
};
}  // namespace

// The training step computes the token objective on the backend (cross-entropy with the
// pseudo labels, negated); it must be the host definition above, for fixed and per-copy
// labels, stacked copies, unattended rows and a shard's denominator.
BOOST_AUTO_TEST_CASE(backend_token_objective_is_the_host_definition) {
  const int64_t rows = 7, C = 6, copies = 3;
  const std::vector<int32_t> mask = {1, 0, 1, 1, 0, 1, 1};
  for (const int64_t denominator : {int64_t{0}, int64_t{40}}) {
    for (const bool fixed : {true, false}) {
      LogitsOnlyModel model;
      model.target_ = {.kind = models::AttributionTarget::Kind::TokenClasses, .rows = rows, .classes = C,
                       .row_mask = mask, .gold = {}, .denominator = denominator};
      const auto z = random_logits(copies * rows * C, 21 + denominator);
      model.logits_.resize({copies * rows, C});
      model.logits_grad_.resize({copies * rows, C});
      std::copy(z.begin(), z.end(), model.logits_.data());
      attribution::AttributionContext<LogitsOnlyModel, models::Batch> ctx;
      const models::Batch batch;
      ctx.take_pseudo_labels(model, batch);  // copy 0's argmax
      ctx.set_objective(model, batch, copies, fixed);

      std::vector<int32_t> scratch(copies * rows);
      std::vector<double> want(z.size());
      attribution::objective_grad<double>(model.target_, z, copies,
                                          fixed ? std::span<const int32_t>(ctx.pseudo) : std::span<const int32_t>(),
                                          scratch, want);
      double worst = 0;
      for (std::size_t i = 0; i < z.size(); ++i)
        worst = std::max(worst, std::abs(model.logits_grad_.data()[i] - want[i]));
      BOOST_TEST(worst < 1e-15, "denominator " << denominator << (fixed ? " fixed" : " per copy") << ": " << worst);
      for (int64_t c = 0; c < C; ++c) BOOST_TEST(model.logits_grad_.data()[(2 * rows + 1) * C + c] == 0.0);
    }
  }
}
