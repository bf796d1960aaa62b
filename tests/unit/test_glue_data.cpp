// GLUE / HANS / PAWS-X readers on small files written here (headers, BOM, CRLF, no final
// newline, variant column layouts, test splits without labels, malformed rows with and
// without skip_bad_rows), the task table, split paths and the leaderboard writer; and the
// real files: with ADDROP_DATA_DIR naming the full sets, the official counts of every GLUE
// file there and of HANS; without it, the counts of the committed sample (examples/data,
// cut as its README says).
#define BOOST_TEST_MODULE glue_data
#include <boost/test/unit_test.hpp>

#include <addrop/data/data.hpp>

#include "support/data.hpp"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "support/helpers.hpp"

using namespace addrop;
using addrop::testing::has;
using addrop::testing::TempDir;
using data::GlueTask;
namespace fs = std::filesystem;

namespace {

fs::path write(const TempDir& t, const std::string& name, const std::string& bytes) {
  const auto p = t.dir / name;
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << bytes;
  return p;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

using addrop::testing::data_root;
using addrop::testing::full_data;

}  // namespace

// ---------------------------------------------------------------- task table
BOOST_AUTO_TEST_CASE(task_table_and_names) {
  BOOST_TEST(data::all_tasks().size() == 8u);
  for (const auto& info : data::all_tasks()) {
    BOOST_TEST((data::parse_task(info.name) == info.task));
    BOOST_TEST((data::parse_task(info.dir) == info.task));  // SST-2, STS-B, CoLA, ...
    BOOST_TEST(&data::task_info(info.task) == &info);
  }
  BOOST_TEST((data::parse_task("sst-2") == GlueTask::SST2));
  BOOST_TEST((data::parse_task("sts-b") == GlueTask::STSB));
  BOOST_CHECK_EXCEPTION(data::parse_task("squad"), std::invalid_argument,
                        has({"squad", "sst2", "mnli", "qnli", "qqp", "cola", "stsb", "mrpc", "rte"}));
  const auto& mnli = data::task_info(GlueTask::MNLI);
  BOOST_TEST(mnli.num_labels == 3);
  BOOST_TEST((mnli.label_names == std::vector<std::string>{"contradiction", "entailment", "neutral"}));
  BOOST_TEST(mnli.dev_file == "dev_matched.tsv");
  BOOST_TEST(mnli.dev_mismatched_file == "dev_mismatched.tsv");
  BOOST_TEST(mnli.test_file == "test_matched.tsv");
  BOOST_TEST(mnli.test_mismatched_file == "test_mismatched.tsv");
  const auto& stsb = data::task_info(GlueTask::STSB);
  BOOST_TEST(stsb.regression);
  BOOST_TEST(stsb.num_labels == 1);
  BOOST_TEST(stsb.main_metric == "pearson");
  BOOST_TEST(data::task_info(GlueTask::CoLA).main_metric == "mcc");
  BOOST_TEST(data::task_info(GlueTask::MRPC).main_metric == "f1");
  BOOST_TEST(data::task_info(GlueTask::QQP).main_metric == "f1");
  BOOST_TEST(data::task_info(GlueTask::RTE).main_metric == "accuracy");
  BOOST_TEST(!data::task_info(GlueTask::SST2).pair);
  BOOST_TEST(!data::task_info(GlueTask::CoLA).pair);
  BOOST_TEST(data::task_info(GlueTask::QNLI).pair);
  const std::map<GlueTask, std::string> board = {
      {GlueTask::SST2, "SST-2.tsv"}, {GlueTask::MNLI, "MNLI-m.tsv"}, {GlueTask::QNLI, "QNLI.tsv"},
      {GlueTask::QQP, "QQP.tsv"},    {GlueTask::CoLA, "CoLA.tsv"},   {GlueTask::STSB, "STS-B.tsv"},
      {GlueTask::MRPC, "MRPC.tsv"},  {GlueTask::RTE, "RTE.tsv"}};
  for (const auto& [t, name] : board) BOOST_TEST(data::leaderboard_file_name(t) == name);
  BOOST_TEST(data::leaderboard_file_name(GlueTask::MNLI, "test_mismatched") == "MNLI-mm.tsv");
  BOOST_TEST(data::leaderboard_file_name(GlueTask::MNLI, "ax") == "AX.tsv");
  BOOST_CHECK_THROW(data::leaderboard_file_name(GlueTask::RTE, "dev"), std::invalid_argument);
}

// ---------------------------------------------------------------- single-sentence tasks
BOOST_AUTO_TEST_CASE(sst2_train_crlf_no_final_newline) {
  TempDir t("glue");
  const auto f = write(t, "train.tsv", "sentence\tlabel\r\nit 's a charming journey . \t1\r\n\r\nbleak \"quoted\t0");
  data::ReadReport rep;
  const auto ex = data::read_glue(GlueTask::SST2, f, {}, &rep);
  BOOST_REQUIRE(ex.size() == 2u);
  BOOST_TEST(ex[0].text_a == "it 's a charming journey . ");  // text kept byte for byte
  BOOST_TEST(ex[0].label == 1);
  BOOST_TEST(!ex[0].has_pair);
  BOOST_TEST(ex[0].guid == "0");
  BOOST_TEST(ex[0].line == 2);
  BOOST_TEST(ex[1].text_a == "bleak \"quoted");  // quoting off: the quote is text
  BOOST_TEST(ex[1].label == 0);
  BOOST_TEST(ex[1].line == 4);  // the blank line 3 is ignored
  BOOST_TEST(std::isnan(ex[1].score));
  BOOST_TEST(rep.rows == 2);
  BOOST_TEST(rep.skipped == 0);
}

BOOST_AUTO_TEST_CASE(sst2_test_split_has_no_labels) {
  TempDir t("glue");
  const auto f = write(t, "test.tsv", "index\tsentence\n0\tuneasy mishmash .\n1\ta poor imitation .\n");
  const auto ex = data::read_glue(GlueTask::SST2, f);
  BOOST_REQUIRE(ex.size() == 2u);
  BOOST_TEST(ex[1].guid == "1");
  BOOST_TEST(ex[1].text_a == "a poor imitation .");
  BOOST_TEST(ex[0].label == -1);
  BOOST_TEST(ex[1].label == -1);
}

BOOST_AUTO_TEST_CASE(cola_without_and_with_header) {
  TempDir t("glue");
  const auto train = write(t, "train.tsv", "gj04\t1\t\tOur friends won't buy this.\ngj04\t0\t*\tThe more you eat.");
  const auto ex = data::read_glue(GlueTask::CoLA, train);
  BOOST_REQUIRE(ex.size() == 2u);
  BOOST_TEST(ex[0].text_a == "Our friends won't buy this.");
  BOOST_TEST(ex[0].label == 1);
  BOOST_TEST(ex[1].label == 0);
  BOOST_TEST(ex[0].line == 1);
  const auto test = write(t, "test.tsv", "index\tsentence\n0\tBill whistled past the house.\n");
  const auto tx = data::read_glue(GlueTask::CoLA, test);
  BOOST_REQUIRE(tx.size() == 1u);
  BOOST_TEST(tx[0].text_a == "Bill whistled past the house.");
  BOOST_TEST(tx[0].label == -1);
  // a row with 3 fields in a header-less file
  const auto bad = write(t, "bad.tsv", "gj04\t1\t\tfine.\ngj04\t1\tbroken\n");
  BOOST_CHECK_EXCEPTION(data::read_glue(GlueTask::CoLA, bad), std::runtime_error,
                        has({"bad.tsv:2:", "expected 4", "found 3"}));
}

// ---------------------------------------------------------------- pair tasks
BOOST_AUTO_TEST_CASE(mrpc_bom_header_and_test_layout) {
  TempDir t("glue");
  const auto train = write(t, "train.tsv",
                           "\xEF\xBB\xBFQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
                           "1\t702876\t702977\tAmrozi accused his brother.\tReferring to him, Amrozi accused.\n"
                           "0\t2108705\t2108831\tYucaipa owned Dominick's.\tYucaipa bought Dominick's.\n");
  const auto ex = data::read_glue(GlueTask::MRPC, train);
  BOOST_REQUIRE(ex.size() == 2u);
  BOOST_TEST(ex[0].label == 1);
  BOOST_TEST(ex[1].label == 0);
  BOOST_TEST(ex[0].has_pair);
  BOOST_TEST(ex[0].text_a == "Amrozi accused his brother.");
  BOOST_TEST(ex[0].text_b == "Referring to him, Amrozi accused.");
  const auto test = write(t, "test.tsv",
                          "index\t#1 ID\t#2 ID\t#1 String\t#2 String\n0\t1089874\t1089925\tPCCW's officer.\tCurrent officer.\n");
  const auto tx = data::read_glue(GlueTask::MRPC, test);
  BOOST_REQUIRE(tx.size() == 1u);
  BOOST_TEST(tx[0].guid == "0");
  BOOST_TEST(tx[0].text_b == "Current officer.");
  BOOST_TEST(tx[0].label == -1);
}

BOOST_AUTO_TEST_CASE(stsb_columns_by_name) {
  TempDir t("glue");
  const auto train = write(t, "train.tsv",
                           "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
                           "0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane is taking off.\tAn air plane "
                           "is taking off.\t5.000\n"
                           "1\tmain-captions\tMSRvid\t2012test\t0004\tnone\tnone\tA man plays.\tA man plays a flute.\t3.8\n");
  const auto ex = data::read_glue(GlueTask::STSB, train);
  BOOST_REQUIRE(ex.size() == 2u);
  BOOST_TEST(ex[0].score == 5.0);
  BOOST_TEST(ex[1].score == 3.8);
  BOOST_TEST(ex[1].label == -1);
  BOOST_TEST(ex[1].text_b == "A man plays a flute.");
  // another column order, label named "label"
  const auto variant = write(t, "variant.tsv", "score\tsentence2\tsentence1\n1.25\tB\tA\n");
  const auto vx = data::read_glue(GlueTask::STSB, variant);
  BOOST_REQUIRE(vx.size() == 1u);
  BOOST_TEST(vx[0].text_a == "A");
  BOOST_TEST(vx[0].text_b == "B");
  BOOST_TEST(vx[0].score == 1.25);
  // test: no score column
  const auto test = write(t, "test.tsv", "index\tgenre\tsentence1\tsentence2\n0\tnews\tA girl.\tA girl brushes.\n");
  const auto tx = data::read_glue(GlueTask::STSB, test);
  BOOST_REQUIRE(tx.size() == 1u);
  BOOST_TEST(std::isnan(tx[0].score));
  const auto bad = write(t, "bad.tsv", "sentence1\tsentence2\tscore\na\tb\t4.0\na\tb\tfive\n");
  BOOST_CHECK_EXCEPTION(data::read_glue(GlueTask::STSB, bad), std::runtime_error,
                        has({"bad.tsv:3:", "score", "five"}));
}

BOOST_AUTO_TEST_CASE(qqp_glue_and_converted_layouts) {
  TempDir t("glue");
  const auto glue = write(t, "dev.tsv",
                          "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n44685\t80172\t51488\tHave you?\tWhat?\t1\n");
  const auto ex = data::read_glue(GlueTask::QQP, glue);
  BOOST_REQUIRE(ex.size() == 1u);
  BOOST_TEST(ex[0].guid == "44685");
  BOOST_TEST(ex[0].text_a == "Have you?");
  BOOST_TEST(ex[0].label == 1);
  const auto pcp = write(t, "pcp.tsv", "index\tsentence1\tsentence2\tlabel\n0\tWho?\tWhom?\t0\n1\tIf?\tHow?\t1\n");
  const auto px = data::read_glue(GlueTask::QQP, pcp);
  BOOST_REQUIRE(px.size() == 2u);
  BOOST_TEST(px[0].label == 0);
  BOOST_TEST(px[1].label == 1);
  BOOST_TEST(px[1].text_b == "How?");
  const auto test = write(t, "test.tsv", "id\tquestion1\tquestion2\n0\tA?\tB?\n");
  BOOST_TEST(data::read_glue(GlueTask::QQP, test).at(0).label == -1);
}

BOOST_AUTO_TEST_CASE(mnli_layouts) {
  TempDir t("glue");
  // GLUE layout: 12 columns with label1 and gold_label (gold_label wins)
  const auto glue = write(t, "train.tsv",
                          "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
                          "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label\n"
                          "0\t31193\t31193n\tgovernment\t( ( x ) )\t( y )\t(ROOT x)\t(ROOT y)\tConceptually cream.\t"
                          "Product and geography.\tneutral\tneutral\n"
                          "1\t101457\t101457e\ttelephone\t(a)\t(b)\t(A)\t(B)\tyou know.\tYou lose.\tentailment\tentailment\n"
                          "2\t1\t1c\tfiction\t(a)\t(b)\t(A)\t(B)\tp.\th.\tneutral\tcontradiction\n");
  const auto ex = data::read_glue(GlueTask::MNLI, glue);
  BOOST_REQUIRE(ex.size() == 3u);
  BOOST_TEST(ex[0].label == 2);  // neutral
  BOOST_TEST(ex[1].label == 1);  // entailment
  BOOST_TEST(ex[2].label == 0);  // contradiction (gold_label, not label1)
  BOOST_TEST(ex[0].text_a == "Conceptually cream.");
  BOOST_TEST(ex[0].text_b == "Product and geography.");
  // the 5-column dev_matched.simple layout: premise / hypothesis
  const auto simple = write(t, "dev_matched.simple.tsv",
                            "index\tpremise\thypothesis\tgold_label\tnumber of correct responses (out of 100)\n"
                            "0\tThe new rights are nice enough\tEveryone likes \tneutral\t100\n");
  const auto sx = data::read_glue(GlueTask::MNLI, simple);
  BOOST_REQUIRE(sx.size() == 1u);
  BOOST_TEST(sx[0].text_a == "The new rights are nice enough");
  BOOST_TEST(sx[0].text_b == "Everyone likes ");
  BOOST_TEST(sx[0].label == 2);
  // converted layout with text labels
  const auto pcp = write(t, "pcp.tsv", "index\tsentence1\tsentence2\tlabel\n0\tSalt.\tSalt kept.\tentailment\n");
  BOOST_TEST(data::read_glue(GlueTask::MNLI, pcp).at(0).label == 1);
  // integer labels are ambiguous for MNLI
  const auto ints = write(t, "ints.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\t1\n");
  BOOST_CHECK_EXCEPTION(data::read_glue(GlueTask::MNLI, ints), std::runtime_error,
                        has({"ints.tsv:2:", "label \"1\"", "ambiguous"}));
  // test split: no gold_label column
  const auto test = write(t, "test_matched.tsv", "index\tpromptID\tpairID\tgenre\tsentence1\tsentence2\n0\t1\t1n\tslate\tp\th\n");
  const auto tx = data::read_glue(GlueTask::MNLI, test);
  BOOST_REQUIRE(tx.size() == 1u);
  BOOST_TEST(tx[0].label == -1);
  BOOST_TEST(tx[0].text_b == "h");
}

BOOST_AUTO_TEST_CASE(qnli_and_rte) {
  TempDir t("glue");
  const auto qnli = write(t, "qnli.tsv",
                          "index\tquestion\tsentence\tlabel\n0\tWhat came?\tThe constitution.\tentailment\n"
                          "1\tWhat city?\tThe Ill.\tnot_entailment\n");
  const auto qx = data::read_glue(GlueTask::QNLI, qnli);
  BOOST_REQUIRE(qx.size() == 2u);
  BOOST_TEST(qx[0].text_a == "What came?");
  BOOST_TEST(qx[0].text_b == "The constitution.");
  BOOST_TEST(qx[0].label == 0);
  BOOST_TEST(qx[1].label == 1);
  const auto pcp = write(t, "pcp.tsv", "index\tsentence1\tsentence2\tlabel\n0\tHow?\tOn 28 September.\tnot_entailment\n");
  const auto px = data::read_glue(GlueTask::QNLI, pcp);
  BOOST_TEST(px.at(0).text_b == "On 28 September.");
  BOOST_TEST(px.at(0).label == 1);
  const auto rte = write(t, "rte.tsv", "index\tsentence1\tsentence2\tlabel\n0\tNo weapons.\tWeapons found.\tnot_entailment\n"
                                       "1\tA place.\tPope.\t0\n");
  const auto rx = data::read_glue(GlueTask::RTE, rte);
  BOOST_TEST(rx.at(0).label == 1);
  BOOST_TEST(rx.at(1).label == 0);  // 0 = entailment in both the processor and the datasets order
  const auto rtest = write(t, "test.tsv", "index\tsentence1\tsentence2\n0\tMangla.\tShukla.\n");
  BOOST_TEST(data::read_glue(GlueTask::RTE, rtest).at(0).label == -1);
}

// ---------------------------------------------------------------- malformed input
BOOST_AUTO_TEST_CASE(bad_rows_fail_with_file_and_line) {
  TempDir t("glue");
  const auto f = write(t, "rte_bad.tsv",
                       "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\tmaybe\n2\ta\tb\n"
                       "3\ta\tb\tnot_entailment\n4\ta\tb\tc\tentailment\n");
  BOOST_CHECK_EXCEPTION(data::read_glue(GlueTask::RTE, f), std::runtime_error,
                        has({"rte_bad.tsv:3:", "maybe", "entailment, not_entailment"}));
  data::ReadReport rep;
  const auto ex = data::read_glue(GlueTask::RTE, f, {.skip_bad_rows = true}, &rep);
  BOOST_REQUIRE(ex.size() == 2u);
  BOOST_TEST(ex[0].guid == "0");
  BOOST_TEST(ex[1].guid == "3");
  BOOST_TEST(ex[1].line == 5);
  BOOST_TEST(rep.rows == 5);
  BOOST_TEST(rep.skipped == 3);
  BOOST_REQUIRE(rep.reasons.size() == 3u);
  BOOST_TEST(rep.reasons[0].find("rte_bad.tsv:3:") != std::string::npos);
  BOOST_TEST(rep.reasons[1].find("rte_bad.tsv:4: expected 4 tab-separated fields, found 3") != std::string::npos);
  BOOST_TEST(rep.reasons[2].find("rte_bad.tsv:6:") != std::string::npos);
  // many bad rows: all counted, the first few reasons kept
  std::string many = "sentence\tlabel\n";
  for (int i = 0; i < 25; ++i) many += "s\tx\n";
  many += "ok\t1\n";
  const auto m = write(t, "many.tsv", many);
  const auto mx = data::read_glue(GlueTask::SST2, m, {.skip_bad_rows = true}, &rep);
  BOOST_TEST(mx.size() == 1u);
  BOOST_TEST(rep.skipped == 25);
  BOOST_TEST(rep.reasons.size() == data::ReadReport::kMaxReasons);
}

BOOST_AUTO_TEST_CASE(missing_columns_and_files) {
  TempDir t("glue");
  const auto f = write(t, "qnli.tsv", "index\tquestion\ttext\tlabel\n0\ta\tb\tentailment\n");
  BOOST_CHECK_EXCEPTION(data::read_glue(GlueTask::QNLI, f), std::runtime_error,
                        has({"qnli.tsv:1:", "\"sentence\"", "header"}));
  BOOST_CHECK_EXCEPTION(data::read_glue(GlueTask::SST2, t.dir / "nope.tsv"), std::runtime_error,
                        has({"nope.tsv", "cannot open"}));
  const auto empty = write(t, "empty.tsv", "");
  BOOST_TEST(data::read_glue(GlueTask::SST2, empty).empty());
  const auto header_only = write(t, "header.tsv", "\xEF\xBB\xBFsentence\tlabel\r\n");
  BOOST_TEST(data::read_glue(GlueTask::SST2, header_only).empty());
}

BOOST_AUTO_TEST_CASE(split_paths) {
  TempDir t("glue");
  write(t, "MNLI/train.tsv", "x");
  write(t, "MNLI/dev_matched.tsv", "x");
  write(t, "MNLI/dev_mismatched.tsv", "x");
  write(t, "RTE/dev.tsv", "x");
  const auto mnli = t.dir / "MNLI";
  BOOST_TEST(data::glue_split_path(GlueTask::MNLI, mnli, "dev") == mnli / "dev_matched.tsv");
  BOOST_TEST(data::glue_split_path(GlueTask::MNLI, mnli, "dev_mismatched") == mnli / "dev_mismatched.tsv");
  BOOST_TEST(data::glue_split_path(GlueTask::MNLI, mnli, "train") == mnli / "train.tsv");
  // the GLUE root works too
  BOOST_TEST(data::glue_split_path(GlueTask::RTE, t.dir, "dev") == t.dir / "RTE" / "dev.tsv");
  BOOST_CHECK_EXCEPTION(data::glue_split_path(GlueTask::MNLI, mnli, "test_mismatched"), std::runtime_error,
                        has({"test_mismatched.tsv", "does not exist"}));
  BOOST_CHECK_EXCEPTION(data::glue_split_path(GlueTask::RTE, t.dir / "RTE", "dev_mismatched"), std::invalid_argument,
                        has({"rte", "dev_mismatched", "train, dev, test"}));
}

// ---------------------------------------------------------------- HANS and PAWS-X
BOOST_AUTO_TEST_CASE(hans_official_text_format) {
  TempDir t("hans");
  const auto f = write(t, "heuristics_evaluation_set.txt",
                       "gold_label\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\t"
                       "sentence1\tsentence2\tpairID\theuristic\tsubcase\ttemplate\n"
                       "non-entailment\t( ( The president ) advised )\t( x )\t(ROOT (S))\t(ROOT (S))\t"
                       "The president advised the doctor .\tThe doctor advised the president .\tex0\tlexical_overlap\t"
                       "ln_subject/object_swap\ttemp1\n"
                       "entailment\t(a)\t(b)\t(A)\t(B)\tThe judge by the actor stopped .\tThe judge stopped .\tex1\t"
                       "subsequence\tse_PP_on_subj\ttemp2\n");
  const auto ex = data::read_hans(f);
  BOOST_REQUIRE(ex.size() == 2u);
  BOOST_TEST(ex[0].label == 1);
  BOOST_TEST(ex[0].heuristic == "lexical_overlap");
  BOOST_TEST(ex[0].subcase == "ln_subject/object_swap");
  BOOST_TEST(ex[0].guid == "ex0");
  BOOST_TEST(ex[0].text_a == "The president advised the doctor .");
  BOOST_TEST(ex[0].text_b == "The doctor advised the president .");
  BOOST_TEST(ex[1].label == 0);
  BOOST_TEST(ex[1].heuristic == "subsequence");
  BOOST_TEST(data::hans_label_names()[1] == "non-entailment");
}

BOOST_AUTO_TEST_CASE(hans_tsv_export_and_bad_label) {
  TempDir t("hans");
  const auto f = write(t, "hans.tsv",
                       "gold_label\tsentence1\tsentence2\theuristic\r\nnon-entailment\tA b .\tB a .\tconstituent\r\n"
                       "entailment\tC .\tC .\tsubsequence\r\nunknown\tx\ty\tconstituent");
  BOOST_CHECK_EXCEPTION(data::read_hans(f), std::runtime_error, has({"hans.tsv:4:", "unknown"}));
  data::ReadReport rep;
  const auto ex = data::read_hans(f, {.skip_bad_rows = true}, &rep);
  BOOST_REQUIRE(ex.size() == 2u);
  BOOST_TEST(rep.skipped == 1);
  BOOST_TEST(ex[0].heuristic == "constituent");
  BOOST_TEST(ex[0].subcase.empty());
  BOOST_TEST(ex[0].label == 1);
  BOOST_TEST(ex[1].label == 0);
  BOOST_TEST(ex[1].guid == "1");
  const auto nohead = write(t, "nohead.tsv", "entailment\ta\tb\tconstituent\n");
  BOOST_CHECK_EXCEPTION(data::read_hans(nohead), std::runtime_error, has({"nohead.tsv:1:", "heuristic"}));
}

BOOST_AUTO_TEST_CASE(paws_x) {
  TempDir t("paws");
  const auto f = write(t, "train.tsv",
                       "id\tsentence1\tsentence2\tlabel\n1\tIn Paris , in October 1560 .\tIn October 1560 , in Paris .\t0\n"
                       "2\tThe NBA season .\t\t1\n3\ta\tb\t2\n");
  BOOST_CHECK_EXCEPTION(data::read_paws_x(f), std::runtime_error, has({"train.tsv:4:", "not 0 or 1"}));
  data::ReadReport rep;
  const auto ex = data::read_paws_x(f, {.skip_bad_rows = true}, &rep);
  BOOST_REQUIRE(ex.size() == 2u);
  BOOST_TEST(ex[0].guid == "1");
  BOOST_TEST(ex[0].label == 0);
  BOOST_TEST(ex[0].text_b == "In October 1560 , in Paris .");
  BOOST_TEST(ex[1].label == 1);
  BOOST_TEST(ex[1].text_b.empty());  // empty sentences are kept
  BOOST_TEST(rep.skipped == 1);
  const auto nolabel = write(t, "test.tsv", "id\tsentence1\tsentence2\n7\tx\ty");
  BOOST_TEST(data::read_paws_x(nolabel).at(0).label == -1);
}

// ---------------------------------------------------------------- leaderboard files
BOOST_AUTO_TEST_CASE(leaderboard_files) {
  TempDir t("board");
  const std::vector<int32_t> mnli = {0, 1, 2, 1};
  data::write_leaderboard(GlueTask::MNLI, t.dir / "MNLI-m.tsv", mnli);
  BOOST_TEST(slurp(t.dir / "MNLI-m.tsv") == "index\tprediction\n0\tcontradiction\n1\tentailment\n2\tneutral\n3\tentailment\n");
  const std::vector<int32_t> rte = {1, 0};
  data::write_leaderboard(GlueTask::RTE, t.dir / "RTE.tsv", rte);
  BOOST_TEST(slurp(t.dir / "RTE.tsv") == "index\tprediction\n0\tnot_entailment\n1\tentailment\n");
  const std::vector<int32_t> cola = {1, 0, 1};
  data::write_leaderboard(GlueTask::CoLA, t.dir / "CoLA.tsv", cola);
  BOOST_TEST(slurp(t.dir / "CoLA.tsv") == "index\tprediction\n0\t1\n1\t0\n2\t1\n");
  const std::vector<double> sts = {4.12345, 0.0, 5.0};
  data::write_leaderboard(GlueTask::STSB, t.dir / "STS-B.tsv", sts);
  BOOST_TEST(slurp(t.dir / "STS-B.tsv") == "index\tprediction\n0\t4.123\n1\t0.000\n2\t5.000\n");
  // overwrite in place, nothing temporary left behind
  data::write_leaderboard(GlueTask::CoLA, t.dir / "CoLA.tsv", rte);
  BOOST_TEST(slurp(t.dir / "CoLA.tsv") == "index\tprediction\n0\t1\n1\t0\n");
  BOOST_TEST((t.listing() == std::vector<std::string>{"CoLA.tsv", "MNLI-m.tsv", "RTE.tsv", "STS-B.tsv"}));
  const std::vector<int32_t> bad = {0, 3};
  BOOST_CHECK_EXCEPTION(data::write_leaderboard(GlueTask::QNLI, t.dir / "QNLI.tsv", bad), std::invalid_argument,
                        has({"prediction 1", "3"}));
  BOOST_CHECK_THROW(data::write_leaderboard(GlueTask::STSB, t.dir / "x.tsv", bad), std::invalid_argument);
  BOOST_CHECK_THROW(data::write_leaderboard(GlueTask::SST2, t.dir / "x.tsv", sts), std::invalid_argument);
  BOOST_CHECK_THROW(data::write_leaderboard(GlueTask::SST2, t.dir / "no" / "such" / "SST-2.tsv", cola),
                    std::runtime_error);
  BOOST_TEST(t.listing().size() == 4u);
}

// ---------------------------------------------------------------- the real data
namespace {
std::map<int32_t, int64_t> label_counts(const std::vector<data::Example>& ex) {
  std::map<int32_t, int64_t> c;
  for (const auto& e : ex) ++c[e.label];
  return c;
}
}  // namespace

BOOST_AUTO_TEST_CASE(real_glue_counts) {
  BOOST_TEST_MESSAGE("data: " << addrop::testing::data_root_description());
  const fs::path glue = data_root() / "glue";
  struct Want {
    GlueTask task;
    const char* split;
    std::size_t count;
    bool labelled;
  };
  const Want wants[] = {
      {GlueTask::SST2, "train", 67349, true}, {GlueTask::SST2, "dev", 872, true},   {GlueTask::SST2, "test", 1821, false},
      {GlueTask::CoLA, "train", 8551, true},  {GlueTask::CoLA, "dev", 1043, true},  {GlueTask::CoLA, "test", 1063, false},
      {GlueTask::MRPC, "train", 3668, true},  {GlueTask::MRPC, "dev", 408, true},   {GlueTask::MRPC, "test", 1725, false},
      {GlueTask::RTE, "train", 2490, true},   {GlueTask::RTE, "dev", 277, true},    {GlueTask::RTE, "test", 3000, false},
      {GlueTask::STSB, "train", 5749, true},  {GlueTask::STSB, "dev", 1500, true},  {GlueTask::STSB, "test", 1379, false},
      {GlueTask::QNLI, "dev", 5463, true},    {GlueTask::QNLI, "test", 5463, false},
  };
  // The sample: the first 10,000 SST-2 training sentences and the whole dev set.
  const Want sample_wants[] = {{GlueTask::SST2, "train", 10000, true}, {GlueTask::SST2, "dev", 872, true}};
  for (const auto& w : full_data() ? std::span<const Want>(wants) : std::span<const Want>(sample_wants)) {
    const auto& info = data::task_info(w.task);
    const auto path = data::glue_split_path(w.task, glue / info.dir, w.split);
    data::ReadReport rep;
    const auto ex = data::read_glue(w.task, path, {}, &rep);
    BOOST_TEST(ex.size() == w.count, info.name << " " << w.split << ": " << ex.size() << " examples, official "
                                               << w.count);
    BOOST_TEST(rep.skipped == 0);
    std::size_t labelled = 0;
    for (const auto& e : ex)
      labelled += info.regression ? !std::isnan(e.score) : e.label >= 0;
    BOOST_TEST(labelled == (w.labelled ? w.count : 0u), info.name << " " << w.split << " labelled " << labelled);
    for (const auto& e : ex) {
      if (e.has_pair != info.pair || e.text_a.empty()) {
        BOOST_ERROR(info.name << " " << w.split << " line " << e.line << ": bad example");
        break;
      }
    }
  }
  if (!full_data()) {
    const auto sst2 = data::read_glue(GlueTask::SST2, glue / "SST-2" / "train.tsv");
    BOOST_TEST(label_counts(sst2)[1] == 5529);
    BOOST_TEST(label_counts(sst2)[0] == 4471);
    BOOST_TEST(label_counts(data::read_glue(GlueTask::SST2, glue / "SST-2" / "dev.tsv"))[1] == 444);
    return;
  }
  // label balance spot checks
  const auto cola = data::read_glue(GlueTask::CoLA, glue / "CoLA" / "train.tsv");
  BOOST_TEST(label_counts(cola)[1] == 6023);
  BOOST_TEST(label_counts(cola)[0] == 2528);
  const auto mrpc = data::read_glue(GlueTask::MRPC, glue / "MRPC" / "train.tsv");
  BOOST_TEST(label_counts(mrpc)[1] == 2474);
  const auto stsb = data::read_glue(GlueTask::STSB, glue / "STS-B" / "train.tsv");
  BOOST_TEST(stsb.front().score == 5.0);
  BOOST_TEST(stsb.front().text_a == "A plane is taking off.");
}

BOOST_AUTO_TEST_CASE(real_mnli_and_subsets) {
  const fs::path glue = data_root() / "glue";
  // LM-BFF few-shot files in the original GLUE layouts (in the sample too)
  BOOST_TEST(data::read_glue(GlueTask::MNLI, glue / "MNLI/subsets/lmbff_k16_seed42/train.tsv").size() == 48u);
  BOOST_TEST(label_counts(data::read_glue(GlueTask::MNLI, glue / "MNLI/subsets/lmbff_k16_seed42/dev_matched.tsv"))[2] == 16);
  if (!full_data()) return;  // the rest is not in the sample
  const auto mnli = data::read_glue(GlueTask::MNLI, glue / "MNLI" / "dev_matched.simple.tsv");
  BOOST_TEST(mnli.size() == 9815u);
  auto c = label_counts(mnli);  // contradiction 0, entailment 1, neutral 2
  BOOST_TEST(c[1] == 3479);
  BOOST_TEST(c[2] == 3123);
  BOOST_TEST(c[0] == 3213);
  for (const char* task : {"MNLI", "QNLI", "QQP"}) {
    const auto t = data::parse_task(task);
    const auto train = data::read_glue(t, glue / task / "subsets" / "pcp_random10k" / "train.tsv");
    const auto dev = data::read_glue(t, glue / task / "subsets" / "pcp_random10k" / "dev.tsv");
    BOOST_TEST(train.size() == 8999u, task << " pcp train");
    BOOST_TEST(dev.size() == 1000u, task << " pcp dev");
    BOOST_TEST(label_counts(train).count(-1) == 0u);
  }
  BOOST_TEST(label_counts(data::read_glue(GlueTask::QQP, glue / "QQP/subsets/pcp_random10k/train.tsv"))[1] == 3252);
  BOOST_TEST(label_counts(data::read_glue(GlueTask::MNLI, glue / "MNLI/subsets/pcp_random10k/train.tsv"))[0] == 2958);
  BOOST_TEST(data::read_glue(GlueTask::QNLI, glue / "QNLI/subsets/lmbff_k16_seed42/train.tsv").size() == 32u);
  BOOST_TEST(label_counts(data::read_glue(GlueTask::QQP, glue / "QQP/subsets/lmbff_k16_seed42/dev.tsv"))[1] == 16);
}

BOOST_AUTO_TEST_CASE(real_hans_counts) {
  // Full: 5,000 per heuristic x label in both sets; the sample: the first 100 of each
  // cell of the evaluation set.
  const std::vector<std::string> names = full_data() ? std::vector<std::string>{"heuristics_evaluation_set.tsv", "heuristics_train_set.tsv"}
                                                     : std::vector<std::string>{"heuristics_evaluation_set.tsv"};
  const int64_t per_cell = full_data() ? 5000 : 100;
  for (const auto& name : names) {
    const auto ex = data::read_hans(data_root() / "hans" / name);
    BOOST_TEST(ex.size() == static_cast<std::size_t>(6 * per_cell), name);
    std::map<std::pair<std::string, int32_t>, int64_t> cells;
    for (const auto& e : ex) ++cells[{e.heuristic, e.label}];
    BOOST_TEST(cells.size() == 6u);
    for (const auto& h : data::hans_heuristics())
      for (int32_t l : {0, 1}) {
        const int64_t n = cells[std::make_pair(h, l)];
        BOOST_TEST(n == per_cell, name << " " << h << " label " << l);
      }
  }
}

// Reports the reading speed (no timing threshold: a loaded machine must not fail it).
BOOST_AUTO_TEST_CASE(real_sst2_train_read_speed) {
  const auto path = data_root() / "glue" / "SST-2" / "train.tsv";
  (void)data::read_glue(GlueTask::SST2, path);  // warm the page cache
  const auto start = std::chrono::steady_clock::now();
  const auto ex = data::read_glue(GlueTask::SST2, path);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  BOOST_TEST_MESSAGE("SST-2 train: " << ex.size() << " examples in " << s << " s");
  BOOST_TEST(ex.size() == (full_data() ? 67349u : 10000u));
}
