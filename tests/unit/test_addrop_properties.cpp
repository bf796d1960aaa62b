// Properties of AD-DROP's selection, schedules and step (docs/algorithm.md steps 4-7), on raw
// tensors and through AdDrop with a small model; a user-defined attribution policy plugs in.
#define BOOST_TEST_MODULE addrop_properties
#include <boost/mpl/list.hpp>
#include <boost/test/unit_test.hpp>

#include <addrop/addrop.hpp>
#include <cmath>
#include <set>

#include "support/helpers.hpp"
#include "support/selection_reference.hpp"

using namespace addrop;
using backend::Cpu;

namespace {

const Cpu::Context kCtx{.threads = 2};

struct RawRows {
  int64_t B, H, L;
  std::vector<int32_t> mask;      // [B,L]
  std::vector<int64_t> lengths;   // [B]
  std::vector<double> scores;     // [B,H,L,L], distinct values
  std::vector<float> u, u2;
};

// Pads at the end of each example with random lengths; distinct scores so counts are exact.
RawRows make_rows(int64_t B, int64_t H, int64_t L, uint64_t seed) {
  RawRows r{B, H, L, {}, {}, {}, {}, {}};
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = 1 + static_cast<int64_t>(random::uniform(seed, 1, b) * static_cast<float>(L));
    r.lengths.push_back(n);
    for (int64_t j = 0; j < L; ++j) r.mask.push_back(j < n ? 1 : 0);
  }
  const int64_t size = B * H * L * L;
  for (int64_t i = 0; i < size; ++i) r.scores.push_back(random::uniform(seed, 2, i) * 2.0 - 1.0 + 1e-9 * i);
  r.u.resize(size);
  r.u2.resize(size);
  Cpu::uniform(kCtx, size, seed, 3, r.u.data());
  Cpu::uniform(kCtx, size, seed, 4, r.u2.data());
  return r;
}

struct Masks {
  std::vector<double> candidates, keep;
};

Masks select(const RawRows& r, Side side, double p, double q, bool random_rule = false) {
  Masks m;
  const int64_t size = r.B * r.H * r.L * r.L;
  m.candidates.assign(size, -1);
  m.keep.assign(size, -1);
  std::vector<int64_t> k(r.B);
  selection::SelectionArgs<double> a;
  a.batch = r.B;
  a.heads = r.H;
  a.queries = r.L;
  a.keys = r.L;
  a.attribution = r.scores.data();
  a.key_mask = r.mask.data();
  a.key_lengths = r.lengths;
  a.threshold_indices = k.data();
  a.p = p;
  a.q = q;
  a.uniforms = r.u.data();
  a.uniforms2 = r.u2.data();
  a.candidates = m.candidates.data();
  a.keep = m.keep.data();
  if (random_rule) selection::Random().select<Cpu>(kCtx, a);
  else selection::TopP(side).select<Cpu>(kCtx, a);
  return m;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(threshold)

BOOST_AUTO_TEST_CASE(index_is_the_float32_product_truncated) {
  BOOST_TEST(selection::threshold_index(Side::High, 0.3, 90) == 63);  // a double floor gives 62
  BOOST_TEST(std::floor((1.0 - 0.3) * 90) == 62.0);
  BOOST_TEST(selection::threshold_index(Side::Low, 0.3, 10) == 3);
  BOOST_TEST(selection::threshold_index(Side::High, 0.0, 17) == 17);
  BOOST_TEST(selection::threshold_index(Side::Low, 1.0, 17) == 17);
  for (int n = 1; n < 300; ++n)
    for (int pi = 0; pi <= 10; ++pi) {
      const double p = pi / 10.0;
      const auto want = static_cast<int64_t>(static_cast<float>(static_cast<float>(1.0 - p) * static_cast<float>(n)));
      BOOST_TEST_REQUIRE(selection::threshold_index(Side::High, p, n) == want);
    }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(selection_on_raw_tensors)

BOOST_AUTO_TEST_CASE(exact_candidate_counts_per_row) {
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    const RawRows r = make_rows(5, 3, 23, seed);
    for (double p : {0.05, 0.1, 0.3, 0.5, 0.77, 0.9, 1.0}) {
      for (Side side : {Side::High, Side::Low}) {
        const Masks m = select(r, side, p, 0.5);
        for (int64_t row = 0; row < r.B * r.H * r.L; ++row) {
          const int64_t b = row / (r.H * r.L), n = r.lengths[b];
          const int64_t k = selection::threshold_index(side, p, n);
          int64_t count = 0;
          for (int64_t j = 0; j < r.L; ++j) count += m.candidates[row * r.L + j] == 1.0;
          const int64_t want = side == Side::High ? (k >= n ? 0 : n - k) : std::min(k, n);
          BOOST_TEST_REQUIRE(count == want, "seed " << seed << " p " << p << " row " << row << " n " << n);
          // the candidates are the top (bottom) ones: every candidate beats every non-candidate
          double lo = INFINITY, hi = -INFINITY;
          for (int64_t j = 0; j < n; ++j) {
            const double v = r.scores[row * r.L + j];
            const bool c = m.candidates[row * r.L + j] == 1.0;
            if (c == (side == Side::High)) lo = std::min(lo, v); else hi = std::max(hi, v);
          }
          BOOST_TEST_REQUIRE((lo > hi || lo == INFINITY || hi == -INFINITY));
        }
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(pad_keys_never_candidates_and_never_dropped) {
  const RawRows r = make_rows(6, 2, 19, 11);
  for (bool rd : {false, true})
    for (double p : {0.3, 1.0})
      for (Side side : {Side::High, Side::Low}) {
        const Masks m = select(r, side, p, 1.0, rd);
        for (int64_t i = 0; i < static_cast<int64_t>(m.keep.size()); ++i) {
          const int64_t b = i / (r.H * r.L * r.L), j = i % r.L;
          if (r.mask[b * r.L + j]) continue;
          BOOST_TEST_REQUIRE(m.candidates[i] == 0.0);
          BOOST_TEST_REQUIRE(m.keep[i] == 1.0);
        }
      }
}

BOOST_AUTO_TEST_CASE(p_or_q_zero_keeps_everything_and_q_one_drops_every_candidate) {
  const RawRows r = make_rows(4, 2, 17, 5);
  for (Side side : {Side::High, Side::Low}) {
    for (const auto& [p, q] : std::vector<std::pair<double, double>>{{0.0, 0.7}, {0.6, 0.0}}) {
      const Masks m = select(r, side, p, q);
      for (double k : m.keep) BOOST_TEST_REQUIRE(k == 1.0);
    }
    const Masks all = select(r, side, 0.4, 1.0);
    int64_t candidates = 0;
    for (std::size_t i = 0; i < all.keep.size(); ++i) {
      BOOST_TEST_REQUIRE(all.keep[i] == (all.candidates[i] == 1.0 ? 0.0 : 1.0));
      candidates += all.candidates[i] == 1.0;
    }
    BOOST_TEST(candidates > 0);
  }
  const Masks rd0 = select(r, Side::High, 0.0, 0.9, true);
  for (double k : rd0.keep) BOOST_TEST_REQUIRE(k == 1.0);
}

BOOST_AUTO_TEST_CASE(q_sampling_drops_a_candidate_iff_its_draw_is_not_below_one_minus_q) {
  const RawRows r = make_rows(3, 2, 13, 8);
  const double q = 0.35;
  const Masks m = select(r, Side::High, 0.5, q);
  for (std::size_t i = 0; i < m.keep.size(); ++i)
    if (m.candidates[i] == 1.0) BOOST_TEST_REQUIRE(m.keep[i] == (r.u[i] < static_cast<float>(1.0 - q) ? 1.0 : 0.0));
}

BOOST_AUTO_TEST_CASE(random_rule_drops_p_times_q_of_the_keys) {
  // 8*4*64*64 = 131072 draws; the drop rate of non-pad keys must be p*q within 5 sigma.
  RawRows r = make_rows(8, 4, 64, 21);
  std::fill(r.mask.begin(), r.mask.end(), 1);
  std::fill(r.lengths.begin(), r.lengths.end(), r.L);
  for (const auto& [p, q] : std::vector<std::pair<double, double>>{{0.3, 0.3}, {0.5, 0.8}, {0.9, 0.1}}) {
    const Masks m = select(r, Side::High, p, q, true);
    double dropped = 0;
    for (double k : m.keep) dropped += k == 0.0;
    const double n = static_cast<double>(m.keep.size()), rate = dropped / n, want = p * q;
    const double sigma = std::sqrt(want * (1 - want) / n);
    BOOST_TEST(std::abs(rate - want) < 5 * sigma, "p " << p << " q " << q << " rate " << rate);
  }
}

// The fused pass AdDrop runs (Cpu::select_top_p, Cpu::select_random) gives exactly the
// passes it replaces: uniform, top_p_candidates, q_sample, keep_to_additive (and
// random_keep for RD), as the host loops of tests/support/selection_reference.hpp, with
// generated or given draws, any subset of outputs, square and non-square sites.
using Real = boost::mpl::list<float, double>;
namespace ref = testing::reference;

template <class T>
int64_t differences(const std::vector<T>& a, const std::vector<T>& b) {
  int64_t d = 0;
  for (std::size_t i = 0; i < a.size(); ++i) d += a[i] != b[i];
  return d;
}

BOOST_AUTO_TEST_CASE_TEMPLATE(fused_top_p_selection_equals_the_four_passes, T, Real) {
  struct Case { int64_t B, H, Lq, Lk; bool ties; };
  // Lk = 9 and 23: rows that do not start on a block of four draws; Lk = 1100: the heap
  // scratch; Lq != Lk: cross-attention sites.
  for (const Case cs : {Case{3, 2, 9, 9, false}, Case{2, 3, 23, 23, true}, Case{2, 2, 64, 64, false},
                        Case{4, 1, 37, 37, true}, Case{1, 1, 1100, 1100, false}, Case{4, 2, 5, 13, true},
                        Case{3, 3, 17, 6, false}, Case{4, 1, 1, 1025, false}}) {
    const auto [B, H, Lq, Lk, ties] = cs;
    const int64_t n = B * H * Lq * Lk;
    std::vector<int32_t> mask(B * Lk, 0);
    std::vector<int64_t> lengths(B, 0);
    for (int64_t b = 0; b < B; ++b) {
      const int64_t len = b == 2 ? 0 : Lk - b * (Lk / 4);  // example 2 has no key at all
      for (int64_t j = 0; j < len; ++j) mask[b * Lk + j] = 1;
      if (b == 3)  // a gap inside
        for (int64_t j = 0; j < Lk; j += 3) mask[b * Lk + j] = 0;
      for (int64_t j = 0; j < Lk; ++j) lengths[b] += mask[b * Lk + j];
    }
    std::vector<T> scores(n);
    for (int64_t i = 0; i < n; ++i) {
      T v = static_cast<T>(random::uniform(17, 5, i)) * T(2) - T(1);
      if (ties) v = std::round(v * T(3)) / T(3);  // 7 levels, +0 and -0 among them
      if (i % 11 == 0) v = i % 2 ? T(0) : -T(0);
      scores[i] = v;
    }
    const std::vector<float> u = ref::uniforms(n, 9, 77);
    for (double p : {0.0, 0.1, 0.3, 0.77, 1.0})
      for (Side side : {Side::High, Side::Low}) {
        const bool high = side == Side::High;
        std::vector<int64_t> k(B);
        for (int64_t b = 0; b < B; ++b) k[b] = selection::threshold_index(side, p, lengths[b]);
        const auto want = ref::select_top_p<T>(B, H, Lq, Lk, scores.data(), mask.data(), k.data(), high, u.data(), 9,
                                               77, 0.6f, T(-10000));
        for (bool given : {false, true}) {
          BOOST_TEST_CONTEXT("B,H,Lq,Lk " << B << "," << H << "," << Lq << "," << Lk << " p " << p
                                          << (high ? " high" : " low")
                                          << (given ? " given draws" : " generated draws")) {
            std::vector<T> c(n, T(5)), kp(n, T(5)), a(n, T(5));
            Cpu::select_top_p(kCtx, B, H, Lq, Lk, scores.data(), mask.data(), k.data(), high,
                              given ? u.data() : nullptr, 9, 77, 0.6f, T(-10000), a.data(), c.data(), kp.data());
            BOOST_TEST(differences(c, want.candidates) == 0);
            BOOST_TEST(differences(kp, want.keep) == 0);
            BOOST_TEST(differences(a, want.additive) == 0);
            std::vector<T> alone(n, T(5));  // the training step's call: the additive mask alone
            Cpu::select_top_p(kCtx, B, H, Lq, Lk, scores.data(), mask.data(), k.data(), high,
                              given ? u.data() : nullptr, 9, 77, 0.6f, T(-10000), alone.data(),
                              static_cast<T*>(nullptr), static_cast<T*>(nullptr));
            BOOST_TEST(differences(alone, want.additive) == 0);
          }
        }
      }
  }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(fused_random_rule_equals_its_passes, T, Real) {
  const RawRows r = make_rows(5, 3, 21, 31);
  const int64_t B = r.B, H = r.H, L = r.L, n = B * H * L * L;
  const auto want = ref::select_random<T>(B, H, L, L, r.mask.data(), r.u.data(), 0, 0, 0.6f, r.u2.data(), 0, 0.75f,
                                          T(-10000));
  for (bool given : {false, true}) {
    std::vector<T> c(n), kp(n), a(n);
    // make_rows drew u from (seed 31, stream 3) and u2 from (31, 4)
    Cpu::select_random(kCtx, B, H, L, L, r.mask.data(), given ? r.u.data() : nullptr, 31, 3, 0.6f,
                       given ? r.u2.data() : nullptr, 4, 0.75f, T(-10000), a.data(), c.data(), kp.data());
    BOOST_TEST(differences(c, want.candidates) == 0);
    BOOST_TEST(differences(kp, want.keep) == 0);
    BOOST_TEST(differences(a, want.additive) == 0);
  }
  // A cross-attention site (Lq != Lk) with pads, generated draws against the reference's.
  const int64_t Lq = 7, Lk = 12, m = B * H * Lq * Lk;
  std::vector<int32_t> mask(B * Lk, 1);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = Lk - 2 * b; j < Lk; ++j) mask[b * Lk + j] = 0;
  const auto cross = ref::select_random<T>(B, H, Lq, Lk, mask.data(), nullptr, 8, 1, 0.6f, nullptr, 2, 0.75f,
                                           T(-10000));
  std::vector<T> c(m), kp(m), a(m);
  Cpu::select_random(kCtx, B, H, Lq, Lk, mask.data(), nullptr, 8, 1, 0.6f, nullptr, 2, 0.75f, T(-10000), a.data(),
                     c.data(), kp.data());
  BOOST_TEST(differences(c, cross.candidates) == 0);
  BOOST_TEST(differences(kp, cross.keep) == 0);
  BOOST_TEST(differences(a, cross.additive) == 0);
}

BOOST_AUTO_TEST_CASE(the_selection_policy_writes_only_the_outputs_asked_for) {
  const RawRows r = make_rows(3, 2, 13, 12);
  const Masks m = select(r, Side::High, 0.4, 0.5);  // candidates and keep, given draws
  const int64_t size = r.B * r.H * r.L * r.L;
  std::vector<double> additive(size, 5.0);
  std::vector<int64_t> k(r.B);
  selection::SelectionArgs<double> a;
  a.batch = r.B;
  a.heads = r.H;
  a.queries = r.L;
  a.keys = r.L;
  a.attribution = r.scores.data();
  a.key_mask = r.mask.data();
  a.key_lengths = r.lengths;
  a.threshold_indices = k.data();
  a.p = 0.4;
  a.q = 0.5;
  a.uniforms = r.u.data();
  a.additive = additive.data();
  selection::TopP sel;
  sel.select<Cpu>(kCtx, a);
  for (int64_t i = 0; i < size; ++i) BOOST_TEST_REQUIRE(additive[i] == (m.keep[i] == 1.0 ? 0.0 : -10000.0));
  // generated draws: make_rows' u came from (seed 12, stream 3)
  a.uniforms = nullptr;
  a.seed = 12;
  a.stream = 3;
  std::fill(additive.begin(), additive.end(), 5.0);
  sel.select<Cpu>(kCtx, a);
  for (int64_t i = 0; i < size; ++i) BOOST_TEST_REQUIRE(additive[i] == (m.keep[i] == 1.0 ? 0.0 : -10000.0));
  a.additive = nullptr;
  BOOST_CHECK_THROW(sel.select<Cpu>(kCtx, a), std::invalid_argument);  // nothing to write
}

BOOST_AUTO_TEST_SUITE_END()

// --------------------------------------------------------------------- with a model
namespace {

using testing::small_batch;
using testing::small_config;

template <class T>
std::vector<T> host(const Tensor<T, Cpu>& t) {
  return std::vector<T>(t.data(), t.data() + t.numel());
}

// A user's own attribution policy, defined here and plugged in unchanged: |A ⊙ dF/dA|.
struct AbsAttentionTimesGradient {
  static constexpr bool needs_first_forward = true;
  template <class Model, class Batch>
  void attribute(Model& model, const Batch& batch, attribution::AttributionContext<Model, Batch>& ctx) const {
    ctx.take_pseudo_labels(model, batch);
    ctx.set_objective(model, batch, 1, true);
    model.backward({.stop_at_layer = ctx.lowest_layer(), .weight_grads = false});
    for (std::size_t i = 0; i < ctx.layers.size(); ++i) {
      const auto& a = model.attention_probs(ctx.layers[i]);
      const auto& g = model.attention_probs_grad(ctx.layers[i]);
      auto* out = ctx.scores[i].data();
      for (int64_t k = 0; k < a.numel(); ++k) out[k] = std::abs(a.data()[k] * g.data()[k]);
    }
  }
};

// And a schedule of its own: AD-DROP on every third step.
struct EveryThirdStep {
  bool active(int, int64_t step) const { return step % 3 == 2; }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(addrop_step)

BOOST_AUTO_TEST_CASE(cross_tuning_runs_addrop_exactly_in_epochs_1_and_3) {
  models::EncoderModel<float> model(small_config(), {.threads = 1});
  models::init_weights(model, 2);
  const auto batch = small_batch();
  AdDrop<> reg({.p = 0.3, .q = 0.3, .layers = {0}});
  for (int epoch = 0; epoch < 4; ++epoch)
    for (int step = 0; step < 2; ++step) {
      const auto r = reg.step(model, batch, epoch);
      BOOST_TEST(r.used_addrop == (epoch == 1 || epoch == 3), "epoch " << epoch);
      BOOST_TEST(std::isfinite(r.loss));
    }
  AdDrop<attribution::Gradient, selection::TopP, schedule::Always> always;
  AdDrop<attribution::Gradient, selection::TopP, schedule::Never> never;
  for (int epoch = 0; epoch < 4; ++epoch) {
    BOOST_TEST(always.step(model, batch, epoch).used_addrop);
    BOOST_TEST(!never.step(model, batch, epoch).used_addrop);
  }
  AdDrop<attribution::Gradient, selection::TopP, EveryThirdStep> custom;
  for (int s = 0; s < 6; ++s) BOOST_TEST(custom.step(model, batch, 0).used_addrop == (s % 3 == 2));
}

BOOST_AUTO_TEST_CASE(masks_repeat_for_the_same_seed_and_step_and_differ_across_steps) {
  models::EncoderModel<double> model(small_config(), {.threads = 1});
  models::init_weights(model, 4, 0.3);
  const auto batch = small_batch();
  using GA = AdDrop<attribution::Gradient, selection::TopP, schedule::Always>;
  GA a({.p = 0.5, .q = 0.5, .layers = {0, 2}, .seed = 9, .record_masks = true});
  GA b({.p = 0.5, .q = 0.5, .layers = {0, 2}, .seed = 9, .record_masks = true});
  GA c({.p = 0.5, .q = 0.5, .layers = {0, 2}, .seed = 10, .record_masks = true});
  const auto ka0 = host(*a.step(model, batch, 1).keep[1]);
  const auto kb0 = host(*b.step(model, batch, 1).keep[1]);
  const auto kc0 = host(*c.step(model, batch, 1).keep[1]);
  const auto ka1 = host(*a.step(model, batch, 1).keep[1]);
  BOOST_TEST(ka0 == kb0);
  BOOST_TEST(ka0 != kc0);
  BOOST_TEST(ka0 != ka1);
}

BOOST_AUTO_TEST_CASE(the_training_step_records_the_masks_only_when_asked) {
  // Without record_masks the step writes the additive mask alone (the same draws: the
  // logits agree with a recording step's); step_addrop always returns the masks.
  models::EncoderModel<double> model(small_config(), {.threads = 1});
  models::init_weights(model, 4, 0.3);
  const auto batch = small_batch();
  using GA = AdDrop<attribution::Gradient, selection::TopP, schedule::Always>;
  GA lean({.p = 0.5, .q = 0.5, .layers = {0, 2}, .seed = 9});
  GA recording({.p = 0.5, .q = 0.5, .layers = {0, 2}, .seed = 9, .record_masks = true});
  const auto r0 = lean.step(model, batch, 1);
  BOOST_TEST(r0.candidates.empty());
  BOOST_TEST(r0.keep.empty());
  const auto logits0 = host(*r0.logits);
  const auto r1 = recording.step(model, batch, 1);
  BOOST_TEST(r1.candidates.size() == 2u);
  BOOST_TEST(r1.keep.size() == 2u);
  BOOST_TEST(host(*r1.logits) == logits0);
  int64_t dropped = 0;
  for (double k : host(*r1.keep[0])) dropped += k == 0.0;
  BOOST_TEST(dropped > 0);
  BOOST_TEST(lean.step_addrop(model, batch, nullptr, false).keep.size() == 2u);
}

BOOST_AUTO_TEST_CASE(the_side_is_the_selection_policy_s_own_setting) {
  AdDrop<> high;
  BOOST_TEST((high.selection_policy().side() == Side::High));
  AdDrop<> low({}, {}, selection::TopP(Side::Low));
  BOOST_TEST((low.selection_policy().side() == Side::Low));
}

BOOST_AUTO_TEST_CASE(the_second_pass_uses_the_masks) {
  // q = 1 with the masks applied changes the loss; p = 0 reproduces the plain eval loss.
  models::EncoderModel<double> model(small_config(), {.threads = 1});
  models::init_weights(model, 5, 0.3);
  const auto batch = small_batch();
  model.forward(batch);
  const double plain = model.loss(batch);
  AdDrop<> none({.p = 0.0, .q = 1.0, .layers = {0, 1, 2}});
  BOOST_TEST(std::abs(none.step_addrop(model, batch, nullptr, false).loss - plain) < 1e-12);
  AdDrop<> all({.p = 0.5, .q = 1.0, .layers = {0, 1, 2}});
  const auto r = all.step_addrop(model, batch, nullptr, false);
  BOOST_TEST(std::abs(r.loss - plain) > 1e-6);
  // keep = 1 - candidates everywhere when q = 1
  for (std::size_t i = 0; i < r.keep.size(); ++i) {
    const auto k = host(*r.keep[i]), c = host(*r.candidates[i]);
    for (std::size_t j = 0; j < k.size(); ++j) BOOST_TEST_REQUIRE(k[j] == 1.0 - c[j]);
  }
}

BOOST_AUTO_TEST_CASE(a_user_defined_attribution_plugs_in) {
  models::EncoderModel<double> model(small_config(), {.threads = 1});
  models::init_weights(model, 6, 0.3);
  const auto batch = small_batch();
  AdDrop<AbsAttentionTimesGradient, selection::TopP, schedule::Always> reg({.p = 0.4, .q = 0.5, .layers = {1}});
  const auto r = reg.step(model, batch, 0);
  BOOST_TEST(r.used_addrop);
  const auto scores = host(*r.attributions[0]);
  BOOST_TEST(*std::min_element(scores.begin(), scores.end()) >= 0.0);
  BOOST_TEST(*std::max_element(scores.begin(), scores.end()) > 0.0);
  static_assert(attribution::AttributionMethod<AbsAttentionTimesGradient, models::EncoderModel<double>, models::Batch>);
  static_assert(!attribution::AttributionMethod<int, models::EncoderModel<double>, models::Batch>);
  static_assert(schedule::Schedule<EveryThirdStep>);
}

BOOST_AUTO_TEST_CASE(integrated_gradients_chunks_give_the_same_attribution) {
  // The memory cap only changes how the m passes are batched, not the result.
  models::EncoderModel<double> model(small_config(), {.threads = 1});
  models::init_weights(model, 7, 0.3);
  const auto batch = small_batch();
  using IG = attribution::IntegratedGradients;
  AdDrop<IG, selection::TopP, schedule::Always> whole({.layers = {1}},
                                                      IG({.steps = 7, .memory_cap_bytes = std::size_t{2} << 30}));
  AdDrop<IG, selection::TopP, schedule::Always> pieces({.layers = {1}}, IG({.steps = 7}));  // the default: one α at a time
  BOOST_TEST(pieces.attribution_policy().chunk_steps(model, batch, 1) == 1);
  BOOST_TEST(whole.attribution_policy().chunk_steps(model, batch, 1) == 7);
  const auto a = host(*whole.step_addrop(model, batch, nullptr, false).attributions[0]);
  const auto b = host(*pieces.step_addrop(model, batch, nullptr, false).attributions[0]);
  BOOST_TEST_REQUIRE(a.size() == b.size());
  double err = 0, scale = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    err = std::max(err, std::abs(a[i] - b[i]));
    scale = std::max(scale, std::abs(a[i]));
  }
  BOOST_TEST(scale > 0);
  BOOST_TEST(err <= 1e-12 * scale);
}

BOOST_AUTO_TEST_CASE(padded_query_rows_have_exactly_zero_gradient_attribution) {
  models::EncoderModel<double> model(small_config(), {.threads = 1});
  models::init_weights(model, 8, 0.3);
  const auto batch = small_batch();
  AdDrop<> reg({.p = 0.3, .q = 0.3, .layers = {0}});
  const auto r = reg.step_addrop(model, batch, nullptr, false);
  const auto s = host(*r.attributions[0]), c = host(*r.candidates[0]);
  const int64_t H = 4, L = 9;
  for (int64_t b = 0; b < 3; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < L; ++i) {
        if (batch.attention_mask[b * L + i]) continue;
        for (int64_t j = 0; j < L; ++j) {
          const int64_t at = ((b * H + h) * L + i) * L + j;
          BOOST_TEST_REQUIRE(s[at] == 0.0);
          // high mode: every non-pad key of such a row is a candidate (0 >= t = 0)
          BOOST_TEST_REQUIRE(c[at] == (batch.attention_mask[b * L + j] ? 1.0 : 0.0));
        }
      }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_CASE(policies_by_name_build_the_named_types) {
  // with_regulariser (policies.hpp): each name gives its policy types and settings; an
  // unknown name is refused naming the PolicyNames field.
  auto describe = [](const PolicyNames& names) {
    return with_regulariser(names, AdDropOptions{.layers = {1}}, [](auto& reg) {
      using Reg = std::decay_t<decltype(reg)>;
      std::string d;
      using A = typename Reg::AttributionPolicy;
      using S = typename Reg::SelectionPolicy;
      using C = typename Reg::SchedulePolicy;
      if constexpr (std::is_same_v<A, attribution::Gradient>) d += "ga";
      if constexpr (std::is_same_v<A, attribution::Attention>) d += "aa";
      if constexpr (std::is_same_v<A, attribution::None>) d += "none";
      if constexpr (std::is_same_v<A, attribution::IntegratedGradients>)
        d += "iga" + std::to_string(reg.attribution_policy().options().steps) +
             (reg.attribution_policy().options().per_step_argmax ? "/per-step" : "");
      if constexpr (std::is_same_v<S, selection::TopP>) d += reg.selection_policy().side() == Side::High ? "+high" : "+low";
      if constexpr (std::is_same_v<S, selection::Random>) d += "+random";
      if constexpr (std::is_same_v<C, schedule::CrossTuning>) d += "+cross";
      if constexpr (std::is_same_v<C, schedule::Always>) d += "+always";
      if constexpr (std::is_same_v<C, schedule::Never>) d += "+never";
      return d + "@" + std::to_string(reg.options().layers.at(0));
    });
  };
  BOOST_TEST(describe({}) == "ga+high+cross@1");
  BOOST_TEST(describe({.attribution = "none", .schedule = "always"}) == "ga+high+never@1");
  BOOST_TEST(describe({.attribution = "rd"}) == "none+random+cross@1");
  BOOST_TEST(describe({.attribution = "aa", .side = "low", .schedule = "always"}) == "aa+low+always@1");
  BOOST_TEST(describe({.attribution = "iga", .integrated_gradients = {.steps = 7, .per_step_argmax = true}}) ==
             "iga7/per-step+high+cross@1");
  BOOST_CHECK_EXCEPTION(describe({.attribution = "ig"}), std::invalid_argument, [](const std::invalid_argument& e) {
    return std::string(e.what()).find("PolicyNames::attribution: \"ig\" is not one of none, ga, iga, aa, rd") !=
           std::string::npos;
  });
  BOOST_CHECK_THROW(describe({.side = "middle"}), std::invalid_argument);
  BOOST_CHECK_THROW(describe({.schedule = "sometimes"}), std::invalid_argument);
}
