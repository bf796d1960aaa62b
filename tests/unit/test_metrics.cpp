// Metrics against scikit-learn / SciPy: accuracy, binary F1, Matthews (binary and
// multi-class), Pearson, Spearman (with ties), on hand-picked and pseudo-random vectors
// whose expected values come from tests/reference/make_metric_values.py (pasted below;
// the pseudo-random vectors are rebuilt here with the script's LCG). Also the degenerate
// cases (empty, constant), GLUE per-task metric sets, and the HANS breakdown.
#define BOOST_TEST_MODULE metrics
#include <boost/test/unit_test.hpp>

#include <addrop/metrics/metrics.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "support/helpers.hpp"

using namespace addrop;
using addrop::testing::has;

namespace {

// ---- the script's LCG and input recipes ------------------------------------------------
std::vector<uint64_t> lcg(uint64_t seed, std::size_t n) {
  std::vector<uint64_t> out;
  uint64_t state = seed;
  for (std::size_t i = 0; i < n; ++i) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    out.push_back(state >> 33);
  }
  return out;
}
std::vector<int32_t> random_labels(uint64_t seed, std::size_t n, int32_t k) {
  std::vector<int32_t> v;
  for (auto x : lcg(seed, n)) v.push_back(static_cast<int32_t>(x % static_cast<uint64_t>(k)));
  return v;
}
std::vector<double> random_reals(uint64_t seed, std::size_t n) {
  std::vector<double> v;
  for (auto x : lcg(seed, n)) v.push_back(static_cast<double>(x % 5000) / 1000.0);
  return v;
}
std::vector<double> random_scores_with_ties(uint64_t seed, std::size_t n) {
  std::vector<double> v;
  for (auto x : lcg(seed, n)) v.push_back(static_cast<double>(x % 26) / 5.0);
  return v;
}

struct ClassCase {
  std::vector<int32_t> pred, gold;
};
ClassCase class_case(const std::string& name) {
  if (name == "hand_binary") return {{1, 0, 1, 1, 0, 1, 0, 0, 1, 1}, {1, 0, 0, 1, 0, 1, 1, 0, 1, 0}};
  if (name == "hand_multiclass") return {{0, 1, 2, 2, 1, 0, 2, 1, 0, 2, 1, 1}, {0, 1, 2, 1, 1, 0, 0, 1, 2, 2, 2, 1}};
  if (name == "all_wrong_binary") return {{1, 0, 1, 0}, {0, 1, 0, 1}};
  if (name == "labels_not_from_zero") return {{3, 7, 7, 3, 9, 9, 3}, {3, 7, 3, 3, 9, 7, 9}};
  if (name == "random_binary_200") return {random_labels(11, 200, 2), random_labels(12, 200, 2)};
  if (name == "random_3class_500") return {random_labels(21, 500, 3), random_labels(22, 500, 3)};
  if (name == "random_5class_1000") return {random_labels(31, 1000, 5), random_labels(32, 1000, 5)};
  throw std::logic_error("no case " + name);
}
struct RegCase {
  std::vector<double> x, y;
};
RegCase reg_case(const std::string& name) {
  if (name == "hand") return {{0.1, 0.4, 0.35, 0.8, 2.0, 1.5}, {0.0, 0.5, 0.3, 1.0, 1.8, 1.7}};
  if (name == "ties") return {{1, 2, 2, 3, 3, 3, 4, 1}, {2, 2, 1, 5, 4, 4, 4.5, 0.5}};
  if (name == "negative") return {{1, 2, 3, 4, 5}, {5, 3, 4, 1, 2}};
  if (name == "random_reals_300") return {random_reals(41, 300), random_reals(42, 300)};
  if (name == "random_ties_400") return {random_scores_with_ties(51, 400), random_scores_with_ties(52, 400)};
  throw std::logic_error("no case " + name);
}

constexpr double kNoF1 = std::numeric_limits<double>::quiet_NaN();
struct ClassExpected {
  const char* name;
  double accuracy, f1, mcc;
};
struct RegExpected {
  const char* name;
  double pearson, spearman;
};

// ---- pasted from make_metric_values.py (numpy 1.24.2, scipy 1.10.1, scikit-learn 1.2.1) ----
const ClassExpected kClass[] = {
    {"hand_binary", 0.7, 0.7272727272727272, 0.408248290463863},
    {"hand_multiclass", 0.6666666666666666, kNoF1, 0.48936170212765956},
    {"all_wrong_binary", 0.0, 0.0, -1.0},
    {"labels_not_from_zero", 0.5714285714285714, kNoF1, 0.34375},
    {"random_binary_200", 0.525, 0.5622119815668203, 0.04437576744267111},
    {"random_3class_500", 0.336, kNoF1, 0.004046145381553434},
    {"random_5class_1000", 0.191, kNoF1, -0.012143340526520016},
};
const RegExpected kReg[] = {
    {"hand", 0.9750127808449708, 1.0},
    {"ties", 0.8585294073051384, 0.8502657495766042},
    {"negative", -0.8, -0.7999999999999999},
    {"random_reals_300", -0.027711703499825116, -0.031695863534200515},
    {"random_ties_400", -0.18884806345009053, -0.18551045830698523},
};
// -----------------------------------------------------------------------------------------

constexpr double kTol = 1e-12;

void check_close(double got, double want, const std::string& what) {
  BOOST_CHECK_MESSAGE(std::abs(got - want) <= kTol * std::max(1.0, std::abs(want)),
                      what << ": got " << got << ", sklearn/scipy " << want << " (abs error "
                           << std::abs(got - want) << ")");
}

}  // namespace

BOOST_AUTO_TEST_CASE(lcg_matches_the_reference_script) {
  const auto v = lcg(11, 3);
  BOOST_TEST(v[0] == 1875213496u);
  BOOST_TEST(v[1] == 1259486851u);
  BOOST_TEST(v[2] == 169050143u);
}

BOOST_AUTO_TEST_CASE(classification_metrics_match_sklearn) {
  for (const auto& e : kClass) {
    const auto c = class_case(e.name);
    check_close(metrics::accuracy(c.pred, c.gold), e.accuracy, std::string(e.name) + " accuracy");
    if (!std::isnan(e.f1)) check_close(metrics::f1_binary(c.pred, c.gold), e.f1, std::string(e.name) + " f1");
    check_close(metrics::matthews_corrcoef(c.pred, c.gold), e.mcc, std::string(e.name) + " mcc");
  }
}

BOOST_AUTO_TEST_CASE(correlations_match_scipy) {
  for (const auto& e : kReg) {
    const auto c = reg_case(e.name);
    check_close(metrics::pearson(c.x, c.y), e.pearson, std::string(e.name) + " pearson");
    check_close(metrics::spearman(c.x, c.y), e.spearman, std::string(e.name) + " spearman");
  }
}

BOOST_AUTO_TEST_CASE(ties_get_average_ranks) {
  const std::vector<double> x = {1, 2, 2, 3, 3, 3, 4, 1};
  const std::vector<double> want = {1.5, 3.5, 3.5, 6.0, 6.0, 6.0, 8.0, 1.5};  // scipy rankdata
  const auto got = metrics::average_ranks(x);
  BOOST_TEST(got == want, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(properties) {
  const std::vector<double> x = {0.3, 1.7, 2.2, 4.9, 3.1};
  std::vector<double> y;
  for (double v : x) y.push_back(std::exp(v));  // monotone: spearman 1, pearson < 1
  BOOST_TEST(metrics::spearman(x, y) == 1.0, boost::test_tools::tolerance(1e-15));
  BOOST_TEST(metrics::pearson(x, y) < 1.0);
  BOOST_TEST(metrics::pearson(x, x) == 1.0, boost::test_tools::tolerance(1e-15));
  const std::vector<int32_t> g = {0, 1, 2, 1, 0};
  BOOST_TEST(metrics::matthews_corrcoef(g, g) == 1.0, boost::test_tools::tolerance(1e-15));
  BOOST_TEST(metrics::accuracy(g, g) == 1.0);
}

BOOST_AUTO_TEST_CASE(degenerate_inputs_give_zero) {
  const std::vector<int32_t> none;
  BOOST_TEST(metrics::accuracy(none, none) == 0.0);
  BOOST_TEST(metrics::f1_binary(none, none) == 0.0);
  BOOST_TEST(metrics::matthews_corrcoef(none, none) == 0.0);
  // no positive predicted or true: sklearn zero_division -> 0
  const std::vector<int32_t> zeros = {0, 0, 0};
  BOOST_TEST(metrics::f1_binary(zeros, zeros) == 0.0);
  // constant predictions: sklearn gives MCC 0
  const std::vector<int32_t> gold = {0, 1, 1, 0};
  const std::vector<int32_t> ones = {1, 1, 1, 1};
  BOOST_TEST(metrics::matthews_corrcoef(ones, gold) == 0.0);
  BOOST_TEST(metrics::matthews_corrcoef(gold, ones) == 0.0);
  // constant vectors and fewer than 2 points: 0 (SciPy: NaN with a warning)
  const std::vector<double> c = {2, 2, 2}, v = {1, 2, 3}, one = {1}, empty;
  BOOST_TEST(metrics::pearson(c, v) == 0.0);
  BOOST_TEST(metrics::pearson(v, c) == 0.0);
  BOOST_TEST(metrics::spearman(c, v) == 0.0);
  BOOST_TEST(metrics::pearson(one, one) == 0.0);
  BOOST_TEST(metrics::spearman(empty, empty) == 0.0);
}

BOOST_AUTO_TEST_CASE(bad_inputs_throw) {
  const std::vector<int32_t> a = {0, 1}, b = {0};
  BOOST_CHECK_EXCEPTION(metrics::accuracy(a, b), std::invalid_argument, has({"2 predictions", "1 gold"}));
  BOOST_CHECK_THROW(metrics::matthews_corrcoef(a, b), std::invalid_argument);
  const std::vector<double> x = {0, 1}, y = {0, std::numeric_limits<double>::quiet_NaN()};
  BOOST_CHECK_EXCEPTION(metrics::pearson(x, y), std::invalid_argument, has({"not finite"}));
}

BOOST_AUTO_TEST_CASE(glue_metric_sets) {
  using data::GlueTask;
  const auto c = class_case("hand_binary");
  for (auto t : {GlueTask::SST2, GlueTask::QNLI, GlueTask::RTE}) {
    const auto m = metrics::glue_metrics(t, c.pred, c.gold);
    BOOST_TEST(m.main == "accuracy");
    BOOST_TEST(m.values.size() == 1u);
    check_close(m.main_value(), 0.7, "accuracy");
  }
  for (auto t : {GlueTask::MRPC, GlueTask::QQP}) {
    const auto m = metrics::glue_metrics(t, c.pred, c.gold);
    BOOST_TEST(m.main == "f1");
    check_close(m.main_value(), 0.7272727272727272, "f1");
    check_close(m.at("accuracy"), 0.7, "accuracy");
    check_close(m.at("combined"), 0.5 * (0.7 + 0.7272727272727272), "combined");
    BOOST_TEST(m.values.front().first == "f1");
  }
  const auto cola = metrics::glue_metrics(GlueTask::CoLA, c.pred, c.gold);
  BOOST_TEST(cola.main == "mcc");
  check_close(cola.main_value(), 0.408248290463863, "mcc");
  const auto mc = class_case("hand_multiclass");
  const auto mnli = metrics::glue_metrics(GlueTask::MNLI, mc.pred, mc.gold);
  check_close(mnli.main_value(), 0.6666666666666666, "mnli accuracy");
  const auto r = reg_case("ties");
  const auto stsb = metrics::glue_metrics(GlueTask::STSB, r.x, r.y);
  BOOST_TEST(stsb.main == "pearson");
  check_close(stsb.main_value(), 0.8585294073051384, "pearson");
  check_close(stsb.at("spearman"), 0.8502657495766042, "spearman");
  BOOST_TEST(stsb.to_string(3) == "pearson=0.859 spearman=0.850 combined=0.854");
  BOOST_CHECK_EXCEPTION(stsb.at("f1"), std::out_of_range, has({"f1", "pearson, spearman"}));
  // each task reports exactly what its TaskInfo lists
  for (const auto& info : data::all_tasks()) {
    const auto m = info.regression ? metrics::glue_metrics(info.task, r.x, r.y)
                                   : metrics::glue_metrics(info.task, c.pred, c.gold);
    BOOST_TEST(m.main == info.main_metric);
    BOOST_REQUIRE(m.values.size() == info.metrics.size());
    for (std::size_t i = 0; i < m.values.size(); ++i) BOOST_TEST(m.values[i].first == info.metrics[i]);
  }
}

BOOST_AUTO_TEST_CASE(glue_metrics_reject_wrong_inputs) {
  using data::GlueTask;
  const std::vector<int32_t> pred = {0, 1}, unlabelled = {-1, -1}, three = {0, 2};
  BOOST_CHECK_EXCEPTION(metrics::glue_metrics(GlueTask::SST2, pred, unlabelled), std::invalid_argument,
                        has({"gold label -1", "position 0", "test split"}));
  BOOST_CHECK_EXCEPTION(metrics::glue_metrics(GlueTask::SST2, three, pred), std::invalid_argument,
                        has({"prediction 2", "position 1"}));
  BOOST_CHECK_NO_THROW(metrics::glue_metrics(GlueTask::MNLI, three, pred));
  BOOST_CHECK_EXCEPTION(metrics::glue_metrics(GlueTask::STSB, pred, pred), std::invalid_argument,
                        has({"stsb", "regression"}));
  const std::vector<double> s = {1.0, 2.0};
  BOOST_CHECK_EXCEPTION(metrics::glue_metrics(GlueTask::CoLA, s, s), std::invalid_argument,
                        has({"cola", "classification"}));
}

BOOST_AUTO_TEST_CASE(hans_breakdown_with_mnli_predictions) {
  // MNLI indices: 0 contradiction, 1 entailment, 2 neutral.
  BOOST_TEST(metrics::mnli_to_hans(1) == 0);
  BOOST_TEST(metrics::mnli_to_hans(0) == 1);
  BOOST_TEST(metrics::mnli_to_hans(2) == 1);
  BOOST_CHECK_THROW(metrics::mnli_to_hans(3), std::invalid_argument);
  const std::vector<std::string> heur = {"lexical_overlap", "lexical_overlap", "lexical_overlap", "lexical_overlap",
                                         "subsequence",     "subsequence",     "constituent",     "constituent"};
  const std::vector<int32_t> gold = {0, 0, 1, 1, 0, 1, 0, 1};
  const std::vector<int32_t> pred = {1, 2, 0, 2, 1, 1, 0, 2};  // ok, wrong, ok, ok, ok, wrong, wrong, ok
  const auto m = metrics::hans_metrics(pred, gold, heur);
  BOOST_TEST(m.overall.correct == 5);
  BOOST_TEST(m.overall.total == 8);
  BOOST_TEST(m.accuracy("lexical_overlap", 0) == 0.5);
  BOOST_TEST(m.accuracy("lexical_overlap", 1) == 1.0);
  BOOST_TEST(m.accuracy("lexical_overlap") == 0.75);
  BOOST_TEST(m.accuracy("subsequence", 0) == 1.0);
  BOOST_TEST(m.accuracy("subsequence", 1) == 0.0);
  BOOST_TEST(m.accuracy("constituent", 0) == 0.0);
  BOOST_TEST(m.accuracy("constituent", 1) == 1.0);
  BOOST_TEST(m.by_label[0].accuracy() == 0.5);   // 2 of 4 entailment right
  BOOST_TEST(m.by_label[1].accuracy() == 0.75);  // 3 of 4 non-entailment right
  BOOST_REQUIRE(m.by_heuristic.size() == 3u);
  BOOST_TEST(m.by_heuristic[0].name == "lexical_overlap");
  BOOST_TEST(m.to_string().find("overall") != std::string::npos);
  BOOST_CHECK_EXCEPTION(m.accuracy("nonsense"), std::out_of_range, has({"nonsense"}));
  // the same predictions already mapped to HANS labels give the same numbers
  std::vector<int32_t> hans_pred;
  for (auto p : pred) hans_pred.push_back(metrics::mnli_to_hans(p));
  const auto m2 = metrics::hans_metrics(hans_pred, gold, heur, metrics::HansPredictions::Hans);
  BOOST_TEST(m2.overall.correct == 5);
  // from examples
  std::vector<data::Example> ex(gold.size());
  for (std::size_t i = 0; i < ex.size(); ++i) {
    ex[i].label = gold[i];
    ex[i].heuristic = heur[i];
  }
  BOOST_TEST(metrics::hans_metrics(ex, pred).accuracy("constituent") == 0.5);
  // empty input: every accuracy 0
  const auto e = metrics::hans_metrics(std::vector<int32_t>{}, std::vector<int32_t>{}, std::vector<std::string>{});
  BOOST_TEST(e.overall.accuracy() == 0.0);
  BOOST_CHECK_EXCEPTION(metrics::hans_metrics(std::vector<int32_t>{3}, std::vector<int32_t>{0},
                                              std::vector<std::string>{"subsequence"}),
                        std::invalid_argument, has({"prediction 3", "MNLI"}));
}
