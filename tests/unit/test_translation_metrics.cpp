// Corpus BLEU and chrF against sacreBLEU 2.x. The outside truth is sacreBLEU's own
// published values: the examples in its README and the cases of its test suite
// (github.com/mjpost/sacrebleu, test/test_bleu.py and test/test_chrf.py, Apache-2.0),
// whose inputs are copied here with the scores sacreBLEU gives. The remaining cases
// (tokenizer edge cases, smoothing, a hypothesis longer than its reference) are worked out
// by hand from sacreBLEU's documented algorithm; the arithmetic is in the comments.
#define BOOST_TEST_MODULE translation_metrics
#include <boost/test/unit_test.hpp>

#include <addrop/metrics/bleu.hpp>
#include <addrop/metrics/chrf.hpp>
#include <cmath>

#include "support/helpers.hpp"

using namespace addrop;
using Words = std::vector<std::string>;

namespace {

// sacreBLEU's README: two reference streams, three segments.
const std::vector<std::string> kSystem = {"The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."};
const std::vector<std::vector<std::string>> kReferences = {
    {"The dog bit the man.", "It was not unexpected.", "The man bit him first."},
    {"The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."}};

metrics::BleuScore bleu(const std::vector<std::string>& hyps, const std::vector<std::vector<std::string>>& refs) {
  return metrics::corpus_bleu(hyps, refs);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(corpus_bleu)

BOOST_AUTO_TEST_CASE(the_readme_example) {
  const auto s = bleu(kSystem, kReferences);
  BOOST_TEST(std::abs(s.score - 48.530827) < 1e-6);  // test_corpus_bleu_cases
  BOOST_TEST(s.str() == "BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)");
}

BOOST_AUTO_TEST_CASE(an_empty_reference_is_a_reference_of_no_words) {
  // README, "Variable Number of References": the first reference of segment 1 removed ('').
  auto refs = kReferences;
  refs[0][0] = "";
  BOOST_TEST(bleu(kSystem, refs).str() ==
             "BLEU = 29.44 82.4/42.9/27.3/12.5 (BP = 0.889 ratio = 0.895 hyp_len = 17 ref_len = 19)");
}

BOOST_AUTO_TEST_CASE(empty_hypotheses_score_zero) {
  const auto s = bleu({"", "", ""}, kReferences);  // test_corpus_bleu_cases: not removed, 0.0
  BOOST_TEST(s.score == 0.0);
  BOOST_TEST(s.bp == 0.0);
  BOOST_TEST(s.stats.hyp_len == 0);
  // each empty hypothesis takes its shorter reference: 6 + 5 + 6 words
  BOOST_TEST(s.str() == "BLEU = 0.00 0.0/0.0/0.0/0.0 (BP = 0.000 ratio = 0.000 hyp_len = 0 ref_len = 17)");
}

BOOST_AUTO_TEST_CASE(statistics_and_scoring_of_the_test_suite) {
  // test_case_statistics: counts [4, 2, 1, 0], totals [6, 5, 4, 3].
  const auto s = bleu({"am I am a character sequence"}, {{"I am a symbol string sequence a a"}});
  BOOST_TEST((s.stats.correct == std::array<int64_t, 4>{4, 2, 1, 0}));
  BOOST_TEST((s.stats.total == std::array<int64_t, 4>{6, 5, 4, 3}));
  // test_case_scoring: counts [9,7,5,3] of [10,8,6,4], lengths 11 and 11 -> 0.8375922397.
  metrics::BleuStatistics st;
  st.correct = {9, 7, 5, 3};
  st.total = {10, 8, 6, 4};
  st.hyp_len = st.ref_len = 11;
  BOOST_TEST(std::abs(metrics::bleu_from_statistics(st).score - 83.75922397) < 1e-6);
}

BOOST_AUTO_TEST_CASE(zero_matches_score_zero) {
  const auto s = bleu({"xyz uvw"}, {{"abc def"}});  // sacreBLEU returns 0 when nothing matches (#141)
  BOOST_TEST(s.score == 0.0);
  BOOST_TEST(s.precisions[0] == 0.0);
  BOOST_TEST(s.bp == 1.0);
}

BOOST_AUTO_TEST_CASE(a_hypothesis_longer_than_its_reference) {
  // 7 words against 6: BP 1, ratio 7/6; n-gram matches 6/7, 5/6, 4/5, 3/4, so
  // BLEU = 100 (6/7 · 5/6 · 4/5 · 3/4)^(1/4) = 100 (3/7)^(1/4).
  const auto s = bleu({"the cat sat on the mat today"}, {{"the cat sat on the mat"}});
  BOOST_TEST(std::abs(s.score - 100 * std::pow(3.0 / 7.0, 0.25)) < 1e-9);
  BOOST_TEST(s.str() == "BLEU = 80.91 85.7/83.3/80.0/75.0 (BP = 1.000 ratio = 1.167 hyp_len = 7 ref_len = 6)");
}

BOOST_AUTO_TEST_CASE(exp_smoothing_of_orders_without_a_match) {
  // "a b c d e" vs "a b x d e": 4/5 and 2/4 match; trigrams 0/3 -> 100 / (2·3), 4-grams
  // 0/2 -> 100 / (4·2), so BLEU = (80 · 50 · 16.67 · 12.5)^(1/4).
  const auto s = bleu({"a b c d e"}, {{"a b x d e"}});
  BOOST_TEST(std::abs(s.score - std::pow(80.0 * 50.0 * (100.0 / 6) * 12.5, 0.25)) < 1e-9);
  BOOST_TEST(s.str() == "BLEU = 30.21 80.0/50.0/16.7/12.5 (BP = 1.000 ratio = 1.000 hyp_len = 5 ref_len = 5)");
  // A hypothesis too short for trigrams: that order's precision is 0, so BLEU is 0.
  BOOST_TEST(bleu({"the cat"}, {{"the dog"}}).score == 0.0);
}

BOOST_AUTO_TEST_CASE(the_closest_reference_length_and_the_shorter_on_a_tie) {
  // 4 words against references of 3 and 5 words: both 1 away, the shorter (3) is used.
  const auto s = bleu({"a b c d"}, {{"a b c"}, {"a b c d e"}});
  BOOST_TEST(s.stats.ref_len == 3);
}

BOOST_AUTO_TEST_CASE(the_13a_tokenizer) {
  BOOST_TEST(metrics::tokenize_13a("Hello, world!") == (Words{"Hello", ",", "world", "!"}));
  // periods and commas between digits stay; a dash after a digit is split
  BOOST_TEST(metrics::tokenize_13a("3.14 and 1,000 in 2-3 e-mails.") ==
             (Words{"3.14", "and", "1,000", "in", "2", "-", "3", "e-mails", "."}));
  // entities are unescaped once, in order (&amp;lt; becomes &lt; then <)
  BOOST_TEST(metrics::tokenize_13a("&quot;a&quot; &amp;lt;b&gt;") == (Words{"\"", "a", "\"", "<", "b", ">"}));
  BOOST_TEST(metrics::tokenize_13a("x <skipped> y-\nz\nw") == (Words{"x", "yz", "w"}));  // "-\n" joins
  // Unicode punctuation is not split (the rules are ASCII); a period after it is
  BOOST_TEST(metrics::tokenize_13a("Ţară „frumoasă”.") == (Words{"Ţară", "„frumoasă”", "."}));
  // Python's whitespace splits: no-break space, ideographic space
  BOOST_TEST(metrics::tokenize_13a("a\u00a0b\u3000c") == (Words{"a", "b", "c"}));
  BOOST_TEST(metrics::tokenize_13a("").empty());
  BOOST_TEST(metrics::tokenize_13a("don't") == (Words{"don't"}));  // the apostrophe is not in the class
}

BOOST_AUTO_TEST_CASE(bad_input_names_the_segment_or_stream) {
  BOOST_CHECK_EXCEPTION(bleu({"ok", "bad \xff"}, {{"ok", "ok"}}), std::invalid_argument,
                        testing::has({"segment 2", "invalid UTF-8", "byte 4"}));
  BOOST_CHECK_EXCEPTION(bleu({"a", "b"}, {{"a"}}), std::invalid_argument,
                        testing::has({"reference stream 0", "1 segments for 2 hypotheses"}));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(corpus_chrf)

BOOST_AUTO_TEST_CASE(the_readme_example) {
  const auto s = metrics::corpus_chrf(kSystem, kReferences);
  BOOST_TEST(s.str() == "chrF2 = 59.73");
}

BOOST_AUTO_TEST_CASE(the_test_suite_with_eps_smoothing_and_without) {
  struct Case {
    std::vector<std::string> hyps, refs;
    double eps, effective;  // test_chrf (eps_smoothing) and test_chrf_eff_order, beta 3; -1: not listed
  };
  const std::vector<Case> cases = {
      {{"abcdefg"}, {"hijklmnop"}, 0.0, -1},
      {{"a"}, {"b"}, 0.0, -1},
      {{""}, {"b"}, 0.0, -1},
      {{""}, {"ref"}, 0.0, -1},
      {{""}, {"reference"}, 0.0, 0.0},
      {{"aa"}, {"ab"}, 8.3333, 25.0},
      {{"a", "b"}, {"a", "c"}, 8.3333, 50.0},
      {{"a"}, {"a"}, 16.6667, 100.0},
      {{"a b c"}, {"a b c"}, 50.0, 100.0},
      {{"a b c"}, {"abc"}, 50.0, 100.0},
      {{" risk assessment must be made of those who are qualified and expertise in the sector - these are the scientists ."},
       {"risk assessment has to be undertaken by those who are qualified and expert in that area - that is the scientists ."},
       63.361730, -1},
      {{" Die    Beziehung zwischen  Obama und Netanjahu ist nicht gerade  freundlich. "},
       {"Das Verhältnis zwischen Obama und Netanyahu ist nicht gerade freundschaftlich."}, 64.1302698, -1},
      {{"Niemand hat die Absicht, eine Mauer zu errichten"}, {"Niemand hat die Absicht, eine Mauer zu errichten"}, 100.0, -1},
      {{""}, {"c"}, -1, 0.0},
  };
  for (const auto& c : cases) {
    const std::vector<std::vector<std::string>> refs{c.refs};
    if (c.eps >= 0)
      BOOST_TEST(std::abs(metrics::corpus_chrf(c.hyps, refs, {.beta = 3, .eps_smoothing = true}).score - c.eps) < 1e-4,
                 c.hyps[0] << " / " << c.refs[0]);
    if (c.effective >= 0)
      BOOST_TEST(std::abs(metrics::corpus_chrf(c.hyps, refs, {.beta = 3}).score - c.effective) < 1e-4,
                 c.hyps[0] << " / " << c.refs[0]);
  }
}

BOOST_AUTO_TEST_CASE(keeping_whitespace) {
  // test_chrf_keep_whitespace (beta 3, remove_whitespace = False)
  const metrics::ChrfOptions o{.beta = 3, .whitespace = true};
  BOOST_TEST(std::abs(metrics::corpus_chrf(std::vector<std::string>{"Die Beziehung zwischen Obama und Netanjahu ist nicht gerade freundlich."},
                                           std::vector<std::vector<std::string>>{{"Das Verhältnis zwischen Obama und Netanyahu ist nicht gerade freundschaftlich."}}, o)
                          .score -
                      67.3481606) < 1e-4);
}

BOOST_AUTO_TEST_CASE(sentence_level_with_eps_smoothing) {
  // test_sentence_level_chrf: sentence_chrf(hypothesis, references, eps_smoothing=True), beta 2
  struct Case {
    std::string hyp, ref;
    double score;
  };
  const std::vector<Case> cases = {
      {"Co nás nejvíc trápí, protože lékaři si vybírají, kdo bude žít a kdo zemře.",
       "Nejvíce smutní jsme z toho, že musíme rozhodovat o tom, kdo bude žít a kdo zemře.", 39.14078509},
      {"Nebo prostě nemají vybavení, které by jim pomohlo, uvedli lékaři.",
       "A někdy nemáme ani potřebný materiál, abychom jim pomohli, popsali lékaři.", 31.22557079},
      {"Lapali po dechu, jejich životy skončily dřív, než skutečně začaly.",
       "Lapali po dechu a pak jejich život skončil - dřív, než skutečně mohl začít, připomněli.", 57.15704367},
  };
  for (const auto& c : cases) {
    const std::vector<std::vector<std::string>> refs{{c.ref}};
    BOOST_TEST(std::abs(metrics::corpus_chrf(std::vector<std::string>{c.hyp}, refs, {.eps_smoothing = true}).score - c.score) < 1e-4,
               c.hyp);
  }
}

BOOST_AUTO_TEST_SUITE_END()
