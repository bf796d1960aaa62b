// AdDrop over a model that is not EncoderModel (tests/support/toy_model.hpp: its own batch
// struct, one cross-attention site [B, H, Lq, L] with Lq != L), through the model
// contracts alone: GA, IGA, AA and RD give the attributions their closed forms predict and
// the masks an independent top-p / q-sampling computation predicts, and the masked second
// pass is the model's forward under exactly those masks. Also the regression test for an
// attribution that needs no first forward (it must still run).
#define BOOST_TEST_MODULE custom_model
#include <boost/test/unit_test.hpp>

#include <addrop/ad_drop.hpp>
#include <addrop/models/batch.hpp>
#include <algorithm>
#include <cmath>
#include <random>

#include "support/toy_model.hpp"

using namespace addrop;
using testing::ToyBatch;
using testing::ToyCrossAttention;

static_assert(models::IntegratedGradientsModel<ToyCrossAttention, ToyBatch>);
static_assert(!models::AttentionSiteModel<ToyCrossAttention, models::Batch>);  // its own batch type only
static_assert(!models::AttentionSiteModel<int, ToyBatch>);

namespace {

constexpr int64_t kHeads = 2, kSlots = 3, kClasses = 3, kDim = 6;

ToyCrossAttention make_model() { return ToyCrossAttention(20, kDim, kHeads, kSlots, kClasses, 7); }

ToyBatch make_batch() {
  ToyBatch b;
  b.size = 3;
  b.length = 7;
  const int lengths[] = {7, 5, 3};
  for (int e = 0; e < 3; ++e)
    for (int j = 0; j < 7; ++j) {
      b.tokens.push_back(j < lengths[e] ? 1 + (e * 5 + j * 3) % 19 : 0);
      b.mask.push_back(j < lengths[e] ? 1 : 0);
    }
  b.labels = {0, 2, 1};
  return b;
}

std::vector<double> host(const Tensor<double, backend::Cpu>& t) { return {t.data(), t.data() + t.numel()}; }

std::vector<float> draws(std::size_t n, unsigned seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = u(g);
  return v;
}

// The expected masks of docs/algorithm.md steps 4-5, written out independently:
// per row, the k-th smallest non-pad score is the threshold (High: scores >= it are
// candidates; k >= n: none); a candidate is kept iff its draw < 1 - q.
struct Expected {
  std::vector<double> candidates, keep;
};
Expected top_p_masks(const ToyBatch& batch, const std::vector<double>& scores, double p, double q,
                     const std::vector<float>& u) {
  const int64_t L = batch.length, rows_per_example = kHeads * kSlots;
  Expected e;
  e.candidates.assign(scores.size(), 0);
  e.keep.assign(scores.size(), 1);
  for (int64_t row = 0; row < batch.size * rows_per_example; ++row) {
    const int64_t b = row / rows_per_example;
    std::vector<double> real;
    for (int64_t j = 0; j < L; ++j)
      if (batch.mask[b * L + j]) real.push_back(scores[row * L + j]);
    const auto n = static_cast<int64_t>(real.size());
    const int64_t k = selection::threshold_index(Side::High, p, n);
    if (k >= n) continue;
    std::sort(real.begin(), real.end());
    const double t = real[static_cast<std::size_t>(k)];
    for (int64_t j = 0; j < L; ++j) {
      const int64_t i = row * L + j;
      if (batch.mask[b * L + j] && scores[i] >= t) {
        e.candidates[i] = 1;
        e.keep[i] = u[i] < static_cast<float>(1.0 - q) ? 1 : 0;
      }
    }
  }
  return e;
}

// The logits of a forward with the additive mask a keep mask implies.
std::vector<double> masked_logits(ToyCrossAttention& model, const ToyBatch& batch, const std::vector<double>& keep) {
  Tensor<double, backend::Cpu> additive({batch.size, kHeads, kSlots, batch.length});
  for (std::size_t i = 0; i < keep.size(); ++i) additive.data()[i] = keep[i] == 1 ? 0.0 : -10000.0;
  model.set_attention_mask(0, &additive);
  const auto z = host(model.forward(batch));
  model.reset_attention_sites();
  return z;
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  BOOST_REQUIRE_EQUAL(a.size(), b.size());
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

// GA's closed form for the toy model: B[b,h,i,j] = Σ_d W[c_b,h,i,d] x[b,j,d], c_b the argmax.
std::vector<double> gradient_closed_form(ToyCrossAttention& model, const ToyBatch& batch) {
  const auto z = host(model.forward(batch));
  const int64_t L = batch.length, HQ = kHeads * kSlots;
  std::vector<double> out(static_cast<std::size_t>(batch.size * HQ * L));
  for (int64_t b = 0; b < batch.size; ++b) {
    const int64_t c = std::max_element(z.begin() + b * kClasses, z.begin() + (b + 1) * kClasses) - (z.begin() + b * kClasses);
    for (int64_t hi = 0; hi < HQ; ++hi)
      for (int64_t j = 0; j < L; ++j) {
        double s = 0;
        for (int64_t d = 0; d < kDim; ++d)
          s += model.W()[(c * HQ + hi) * kDim + d] * model.embedding()[batch.tokens[b * L + j] * kDim + d];
        out[(b * HQ + hi) * L + j] = s;
      }
  }
  return out;
}

template <class Reg>
void check_top_p_step(Reg& reg, ToyCrossAttention& model, const ToyBatch& batch, const std::vector<double>& want_scores,
                      double p, double q) {
  const Shape shape{batch.size, kHeads, kSlots, batch.length};
  const auto u = draws(static_cast<std::size_t>(shape.numel()), 5);
  ExternalUniforms ext;
  ext.draws.emplace_back(u);
  const auto r = reg.step_addrop(model, batch, &ext, false);
  BOOST_TEST_REQUIRE(r.used_addrop);
  BOOST_TEST((r.keep[0]->shape() == shape), "the masks have the site's shape " << r.keep[0]->shape().str());
  const auto scores = host(*r.attributions[0]);
  BOOST_TEST(max_abs_diff(scores, want_scores) < 1e-12);
  const Expected e = top_p_masks(batch, want_scores, p, q, u);
  BOOST_TEST((host(*r.candidates[0]) == e.candidates));
  BOOST_TEST((host(*r.keep[0]) == e.keep));
  int64_t dropped = 0;
  for (double k : e.keep) dropped += k == 0;
  BOOST_TEST(dropped > 0, "the case drops something");
  BOOST_TEST(max_abs_diff(host(*r.logits), masked_logits(model, batch, e.keep)) < 1e-12);
}

}  // namespace

BOOST_AUTO_TEST_CASE(gradient_attribution_on_a_cross_attention_site) {
  auto model = make_model();
  const auto batch = make_batch();
  AdDrop<attribution::Gradient, selection::TopP, schedule::Always> reg({.p = 0.4, .q = 0.5, .layers = {0}});
  check_top_p_step(reg, model, batch, gradient_closed_form(model, batch), 0.4, 0.5);
}

BOOST_AUTO_TEST_CASE(integrated_gradients_on_a_cross_attention_site) {
  // F is linear in A: d F(α A)/d A = α GA, so IGA = A ⊙ GA · (1/m) Σ_k k/m = A ⊙ GA (m+1)/(2m).
  auto model = make_model();
  const auto batch = make_batch();
  const int m = 4;
  const auto ga = gradient_closed_form(model, batch);
  model.forward(batch);
  const auto a = host(model.attention_probs(0));
  std::vector<double> want(ga.size());
  for (std::size_t i = 0; i < ga.size(); ++i) want[i] = a[i] * ga[i] * (m + 1) / (2.0 * m);
  using IG = attribution::IntegratedGradients;
  AdDrop<IG, selection::TopP, schedule::Always> whole({.p = 0.4, .q = 0.5, .layers = {0}}, IG({.steps = m}));
  check_top_p_step(whole, model, batch, want, 0.4, 0.5);
  // Stacked in chunks of one α: the same attribution.
  AdDrop<IG, selection::TopP, schedule::Always> chunked({.p = 0.4, .q = 0.5, .layers = {0}},
                                                        IG({.steps = m, .memory_cap_bytes = 1}));
  BOOST_TEST(chunked.attribution_policy().chunk_steps(model, batch, 0) == 1);
  check_top_p_step(chunked, model, batch, want, 0.4, 0.5);
}

BOOST_AUTO_TEST_CASE(attention_attribution_on_a_cross_attention_site) {
  auto model = make_model();
  const auto batch = make_batch();
  model.forward(batch);
  const auto a = host(model.attention_probs(0));
  AdDrop<attribution::Attention, selection::TopP, schedule::Always> reg({.p = 0.5, .q = 0.7, .layers = {0}});
  check_top_p_step(reg, model, batch, a, 0.5, 0.7);
}

BOOST_AUTO_TEST_CASE(random_dropping_on_a_cross_attention_site) {
  // RD: every non-pad key is a candidate, kept iff u1 < 1 - p or u2 < 1 - q; no first forward.
  auto model = make_model();
  const auto batch = make_batch();
  const Shape shape{batch.size, kHeads, kSlots, batch.length};
  const auto u1 = draws(static_cast<std::size_t>(shape.numel()), 8), u2 = draws(static_cast<std::size_t>(shape.numel()), 9);
  ExternalUniforms ext;
  ext.draws.emplace_back(u1);
  ext.second_draws.emplace_back(u2);
  AdDrop<attribution::None, selection::Random, schedule::Always> reg({.p = 0.4, .q = 0.6, .layers = {0}});
  model.forward_calls = 0;
  const auto r = reg.step_addrop(model, batch, &ext, false);
  BOOST_TEST(model.forward_calls == 1, "RD runs the masked forward only");
  BOOST_TEST(r.attributions.empty());
  std::vector<double> cand(u1.size()), keep(u1.size());
  for (std::size_t i = 0; i < u1.size(); ++i) {
    const bool real = batch.mask[(i / static_cast<std::size_t>(kHeads * kSlots * batch.length)) * batch.length +
                                 i % static_cast<std::size_t>(batch.length)] != 0;
    cand[i] = real;
    keep[i] = !real || u1[i] < 0.6f || u2[i] < 0.4f;
  }
  BOOST_TEST((host(*r.candidates[0]) == cand));
  BOOST_TEST((host(*r.keep[0]) == keep));
  BOOST_TEST(max_abs_diff(host(*r.logits), masked_logits(model, batch, keep)) < 1e-12);
}

namespace {
// A user's attribution that runs no forward of its own and needs none from AdDrop: the
// score of key j is j, so the candidate region is the last keys of every row.
struct LaterKeysScoreHigher {
  static constexpr bool needs_first_forward = false;
  int* calls = nullptr;
  template <class Model, class Batch>
  void attribute(Model&, const Batch&, attribution::AttributionContext<Model, Batch>& ctx) const {
    ++*calls;
    for (std::size_t i = 0; i < ctx.layers.size(); ++i) {
      const auto& site = ctx.sites[i];
      auto* s = ctx.scores[i].data();
      for (int64_t e = 0; e < site.shape().numel(); ++e) s[e] = static_cast<double>(e % site.keys);
    }
  }
};
}  // namespace

BOOST_AUTO_TEST_CASE(an_attribution_without_a_first_forward_still_runs) {
  // Regression: AdDrop called attribute() only when needs_first_forward was set, so this
  // method never ran and the selection read scores nobody wrote.
  auto model = make_model();
  const auto batch = make_batch();
  int calls = 0;
  AdDrop<LaterKeysScoreHigher, selection::TopP, schedule::Always> reg({.p = 0.5, .q = 1.0, .layers = {0}, .record_masks = true},
                                                                      LaterKeysScoreHigher{&calls});
  model.forward_calls = 0;
  const auto r = reg.step(model, batch, 0);
  BOOST_TEST(calls == 1);
  BOOST_TEST(model.forward_calls == 1, "no first forward: only the masked pass");
  // k = int(0.5f * n): candidates are the keys j >= k of each row (q = 1 drops them all).
  const auto cand = host(*r.candidates[0]);
  const int64_t L = batch.length;
  for (int64_t row = 0; row < batch.size * kHeads * kSlots; ++row) {
    const int64_t b = row / (kHeads * kSlots), n = std::count(batch.mask.begin() + b * L, batch.mask.begin() + (b + 1) * L, 1);
    const int64_t k = selection::threshold_index(Side::High, 0.5, n);
    for (int64_t j = 0; j < L; ++j)
      BOOST_TEST_REQUIRE(cand[row * L + j] == (j >= k && j < n ? 1.0 : 0.0), "row " << row << " key " << j);
  }
}

BOOST_AUTO_TEST_CASE(a_selection_that_reads_attributions_needs_an_attribution_that_gives_them) {
  static_assert(selection::reads_attributions<selection::TopP>);
  static_assert(!selection::reads_attributions<selection::Random>);
  static_assert(!attribution::gives_scores<attribution::None>);
  static_assert(attribution::gives_scores<attribution::Gradient>);
  static_assert(attribution::gives_scores<LaterKeysScoreHigher>);
  BOOST_TEST(true);
}
