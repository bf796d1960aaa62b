// Entity-level metrics (conlleval / seqeval default mode) on hand-built sequences. Every
// expected count below was derived by hand and agrees with both re-implementations in
// tests/reference/entity_counts.py (a port of conlleval.pl's counting loop and of seqeval's
// get_entities); run that script without arguments to re-check them.
#define BOOST_TEST_MODULE entity_metrics
#include <boost/test/unit_test.hpp>

#include <addrop/metrics/entity.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "support/helpers.hpp"

using namespace addrop::metrics;
using addrop::testing::has;
using Tags = std::vector<std::string>;

namespace {

Tags tags(const std::string& s) {
  std::istringstream in(s);
  Tags out;
  for (std::string t; in >> t;) out.push_back(t);
  return out;
}

std::string show(const std::vector<Chunk>& cs) {
  std::string out;
  for (const auto& c : cs) out += c.type + "[" + std::to_string(c.begin) + "," + std::to_string(c.end) + ") ";
  return out;
}

void check_chunks(const std::string& seq, const std::vector<Chunk>& expected) {
  const auto got = extract_chunks(tags(seq));
  BOOST_CHECK_MESSAGE(got == expected, "\"" << seq << "\": got " << show(got) << ", expected " << show(expected));
}

struct Expected {
  int64_t gold, predicted, correct, tokens, correct_tokens;
};

void check_counts(const EntityCounts& c, Expected e) {
  BOOST_TEST(c.total().gold == e.gold);
  BOOST_TEST(c.total().predicted == e.predicted);
  BOOST_TEST(c.total().correct == e.correct);
  BOOST_TEST(c.tokens() == e.tokens);
  BOOST_TEST(c.correct_tokens() == e.correct_tokens);
}

void check_type(const EntityCounts& c, const std::string& type, ChunkCounts e) {
  const auto got = c.of(type);
  BOOST_CHECK_MESSAGE(got == e, type << ": got gold " << got.gold << " predicted " << got.predicted << " correct "
                                     << got.correct << ", expected " << e.gold << " " << e.predicted << " "
                                     << e.correct);
}

EntityCounts one(const std::string& gold, const std::string& pred) {
  EntityCounts c;
  c.add(tags(gold), tags(pred));
  return c;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(chunks)

BOOST_AUTO_TEST_CASE(basic_spans) {
  check_chunks("B-PER I-PER O B-LOC", {{"PER", 0, 2}, {"LOC", 3, 4}});
  check_chunks("O O B-ORG I-ORG", {{"ORG", 2, 4}});          // span at the end of the sentence
  check_chunks("B-MISC", {{"MISC", 0, 1}});
}

BOOST_AUTO_TEST_CASE(i_after_o_starts_a_chunk) {
  check_chunks("O I-PER I-PER", {{"PER", 1, 3}});
  check_chunks("I-PER O I-PER", {{"PER", 0, 1}, {"PER", 2, 3}});
}

BOOST_AUTO_TEST_CASE(type_change_splits) {
  check_chunks("I-PER I-LOC", {{"PER", 0, 1}, {"LOC", 1, 2}});
  check_chunks("B-PER I-LOC I-LOC", {{"PER", 0, 1}, {"LOC", 1, 3}});
}

BOOST_AUTO_TEST_CASE(b_after_i_of_same_type_starts_a_new_chunk) {
  check_chunks("B-PER I-PER B-PER", {{"PER", 0, 2}, {"PER", 2, 3}});
  check_chunks("B-PER B-PER", {{"PER", 0, 1}, {"PER", 1, 2}});
}

BOOST_AUTO_TEST_CASE(adjacent_entities) { check_chunks("B-PER B-LOC I-LOC", {{"PER", 0, 1}, {"LOC", 1, 3}}); }

BOOST_AUTO_TEST_CASE(all_o_and_empty) {
  check_chunks("O O O", {});
  check_chunks("", {});
}

BOOST_AUTO_TEST_CASE(iob1) { check_chunks("I-PER I-PER B-PER O I-LOC", {{"PER", 0, 2}, {"PER", 2, 3}, {"LOC", 4, 5}}); }

BOOST_AUTO_TEST_CASE(type_with_a_dash) { check_chunks("B-SOME-THING I-SOME-THING", {{"SOME-THING", 0, 2}}); }

BOOST_AUTO_TEST_CASE(iobes_as_seqeval) {
  // seqeval default mode: [('PER',0,0), ('LOC',1,2), ('LOC',3,3), ('ORG',4,5), ('ORG',6,6)] (inclusive ends).
  check_chunks("S-PER B-LOC E-LOC E-LOC I-ORG E-ORG S-ORG",
               {{"PER", 0, 1}, {"LOC", 1, 3}, {"LOC", 3, 4}, {"ORG", 4, 6}, {"ORG", 6, 7}});
  check_chunks("B-PER E-PER S-PER", {{"PER", 0, 2}, {"PER", 2, 3}});
}

BOOST_AUTO_TEST_CASE(bad_tags_rejected) {
  for (const char* bad : {"X-PER", "B-", "PER", "", "b-PER", "BPER", "O-PER"}) {
    BOOST_CHECK_EXCEPTION(extract_chunks({"O", bad}), std::invalid_argument,
                          has({"token 1", "bad tag \"" + std::string(bad) + "\""}));
  }
  EntityCounts c;
  c.add(tags("O"), tags("O"));
  BOOST_CHECK_EXCEPTION(c.add(tags("O B-PER"), tags("O X-PER")), std::invalid_argument,
                        has({"sentence 1", "predicted token 1", "X-PER"}));
  BOOST_CHECK_EXCEPTION(c.add(tags("B- O"), tags("O O")), std::invalid_argument, has({"sentence 1", "gold token 0"}));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(counts)

BOOST_AUTO_TEST_CASE(basic) {
  const auto c = one("B-PER I-PER O B-LOC O B-ORG I-ORG I-ORG", "B-PER I-PER O B-LOC O B-ORG I-ORG O");
  check_counts(c, {3, 3, 2, 8, 7});
  check_type(c, "PER", {1, 1, 1});
  check_type(c, "LOC", {1, 1, 1});
  check_type(c, "ORG", {1, 1, 0});  // ends one token early: wrong
  BOOST_TEST(c.precision() == 2.0 / 3.0, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(c.recall() == 2.0 / 3.0, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(c.f1() == 2.0 / 3.0, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(c.accuracy() == 7.0 / 8.0, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(c.of("ORG").f1() == 0.0);
  BOOST_TEST(c.of("NONE").gold == 0);
  BOOST_TEST(c.per_type().size() == 3u);
}

BOOST_AUTO_TEST_CASE(i_after_o_in_the_prediction_still_matches) {
  // The predicted I-PER I-PER is the chunk PER[0,2), equal to gold; only token accuracy drops.
  const auto c = one("B-PER I-PER", "I-PER I-PER");
  check_counts(c, {1, 1, 1, 2, 1});
  BOOST_TEST(c.f1() == 1.0);
  BOOST_TEST(c.accuracy() == 0.5);
}

BOOST_AUTO_TEST_CASE(type_change_inside_a_span) {
  const auto c = one("B-PER I-PER I-PER", "B-PER I-PER I-LOC");
  check_counts(c, {1, 2, 0, 3, 2});
  check_type(c, "PER", {1, 1, 0});
  check_type(c, "LOC", {0, 1, 0});
}

BOOST_AUTO_TEST_CASE(b_after_i_of_same_type) {
  const auto c = one("B-PER I-PER I-PER I-PER", "B-PER I-PER B-PER I-PER");
  check_counts(c, {1, 2, 0, 4, 3});
  check_type(c, "PER", {1, 2, 0});
}

BOOST_AUTO_TEST_CASE(adjacent_entities) {
  const auto c = one("B-PER B-PER B-LOC I-LOC", "B-PER I-PER B-LOC I-LOC");
  check_counts(c, {3, 2, 1, 4, 3});
  check_type(c, "PER", {2, 1, 0});
  check_type(c, "LOC", {1, 1, 1});
}

BOOST_AUTO_TEST_CASE(span_at_the_end_of_a_sentence) {
  const auto c = one("O O B-ORG I-ORG", "O O B-ORG I-ORG");
  check_counts(c, {1, 1, 1, 4, 4});
  BOOST_TEST(c.f1() == 1.0);
}

BOOST_AUTO_TEST_CASE(all_o_and_zero_denominators) {
  const auto c = one("O O O", "O O O");
  check_counts(c, {0, 0, 0, 3, 3});
  BOOST_TEST(c.precision() == 0.0);
  BOOST_TEST(c.recall() == 0.0);
  BOOST_TEST(c.f1() == 0.0);
  BOOST_TEST(c.accuracy() == 1.0);
  BOOST_TEST(c.per_type().empty());

  const auto s = one("O O O", "O I-MISC O");  // a spurious chunk; no gold chunk
  check_counts(s, {0, 1, 0, 3, 2});
  check_type(s, "MISC", {0, 1, 0});
  BOOST_TEST(s.precision() == 0.0);
  BOOST_TEST(s.recall() == 0.0);
  BOOST_TEST(s.f1() == 0.0);
}

BOOST_AUTO_TEST_CASE(empty) {
  const auto c = evaluate_entities({}, {});
  check_counts(c, {0, 0, 0, 0, 0});
  BOOST_TEST(c.accuracy() == 0.0);
  BOOST_TEST(c.f1() == 0.0);
  BOOST_TEST(c.report() == "processed 0 tokens with 0 phrases; found: 0 phrases; correct: 0.\n");
  const auto e = one("", "");
  check_counts(e, {0, 0, 0, 0, 0});
  BOOST_TEST(e.sentences() == 1);
}

BOOST_AUTO_TEST_CASE(iob1_gold_against_iob2_prediction) {
  // Same chunks in two schemes: every chunk correct, two tags differ.
  const auto c = one("I-PER I-PER B-PER O I-LOC I-LOC", "B-PER I-PER B-PER O B-LOC I-LOC");
  check_counts(c, {3, 3, 3, 6, 4});
  check_type(c, "PER", {2, 2, 2});
  check_type(c, "LOC", {1, 1, 1});
  BOOST_TEST(c.f1() == 1.0);
}

BOOST_AUTO_TEST_CASE(chunks_do_not_cross_sentences) {
  const auto c = evaluate_entities({tags("O B-PER"), tags("I-PER O")}, {tags("O B-PER"), tags("B-PER O")});
  check_counts(c, {2, 2, 2, 4, 3});
  check_type(c, "PER", {2, 2, 2});
}

BOOST_AUTO_TEST_CASE(multi_sentence_micro_average) {
  const std::vector<Tags> gold{tags("B-PER I-PER O B-LOC O B-ORG I-ORG I-ORG"), tags("B-PER I-PER I-PER"),
                               tags("B-PER B-PER B-LOC I-LOC")};
  const std::vector<Tags> pred{tags("B-PER I-PER O B-LOC O B-ORG I-ORG O"), tags("B-PER I-PER I-LOC"),
                               tags("B-PER I-PER B-LOC I-LOC")};
  const auto c = evaluate_entities(gold, pred);
  check_counts(c, {7, 7, 3, 15, 12});
  check_type(c, "PER", {4, 3, 1});
  check_type(c, "LOC", {2, 3, 2});
  check_type(c, "ORG", {1, 1, 0});
  BOOST_TEST(c.sentences() == 3);
  BOOST_TEST(c.precision() == 3.0 / 7.0, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(c.recall() == 3.0 / 7.0, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(c.f1() == 3.0 / 7.0, boost::test_tools::tolerance(1e-12));  // micro, not the mean of per-type F1
  BOOST_TEST(c.of("PER").f1() == 2.0 / 7.0, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(c.of("LOC").f1() == 0.8, boost::test_tools::tolerance(1e-12));

  // Accumulating in two parts and merging gives the same counts.
  EntityCounts a, b;
  a.add(gold[0], pred[0]);
  b.add(gold[1], pred[1]);
  b.add(gold[2], pred[2]);
  a += b;
  BOOST_TEST(a.report() == c.report());
  BOOST_TEST(a.sentences() == 3);

  BOOST_TEST(c.report() ==
             "processed 15 tokens with 7 phrases; found: 7 phrases; correct: 3.\n"
             "accuracy:  80.00%; precision:  42.86%; recall:  42.86%; FB1:  42.86\n"
             "              LOC: precision:  66.67%; recall: 100.00%; FB1:  80.00  3\n"
             "              ORG: precision:   0.00%; recall:   0.00%; FB1:   0.00  1\n"
             "              PER: precision:  33.33%; recall:  25.00%; FB1:  28.57  3\n");
}

BOOST_AUTO_TEST_CASE(length_mismatch) {
  BOOST_CHECK_EXCEPTION(evaluate_entities({tags("O"), tags("O O")}, {tags("O"), tags("O")}), std::invalid_argument,
                        has({"sentence 1", "2 gold tags but 1 predicted"}));
  BOOST_CHECK_EXCEPTION(evaluate_entities({tags("O")}, {}), std::invalid_argument, has({"1 gold sentences"}));
}

BOOST_AUTO_TEST_SUITE_END()
