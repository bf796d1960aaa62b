// CoNLL-2003 reading, IOB1 <-> IOB2 conversion, label sets and the predictions writer, on
// files the test writes; then the real files: the full CoNLL-2003 under $ADDROP_DATA_DIR,
// or the committed sample of it (examples/data/conll2003).
#define BOOST_TEST_MODULE conll
#include <boost/test/unit_test.hpp>

#include <addrop/data/conll.hpp>
#include <addrop/metrics/entity.hpp>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>

#include "support/data.hpp"
#include "support/helpers.hpp"

using namespace addrop::data;
using addrop::testing::has;
using addrop::testing::TempDir;
using Tags = std::vector<std::string>;
namespace fs = std::filesystem;

namespace {

Tags tags(const std::string& s) {
  std::istringstream in(s);
  Tags out;
  for (std::string t; in >> t;) out.push_back(t);
  return out;
}

std::string join(const Tags& t) {
  std::string s;
  for (const auto& x : t) s += (s.empty() ? "" : " ") + x;
  return s;
}

fs::path write(const TempDir& d, const std::string& name, const std::string& text) {
  const fs::path p = d.dir / name;
  std::ofstream(p, std::ios::binary) << text;
  return p;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string to_crlf(const std::string& s) {
  std::string out;
  for (char c : s) out += c == '\n' ? std::string("\r\n") : std::string(1, c);
  return out;
}

// Two documents, an extra blank line, a -DOCSTART- without the blank after it, no final blank line.
const std::string kSample =
    "-DOCSTART- -X- -X- O\n"        // 1
    "\n"                            // 2
    "EU NNP B-NP B-ORG\n"           // 3
    "rejects VBZ B-VP O\n"          // 4
    "\n"                            // 5
    "Peter NNP B-NP B-PER\n"        // 6
    "Blackburn NNP I-NP I-PER\n"    // 7
    "\n"                            // 8
    "\n"                            // 9
    "-DOCSTART- -X- -X- O\n"        // 10
    "BRUSSELS NNP B-NP B-LOC\n"     // 11
    "1996-08-22 CD I-NP O\n";       // 12

void check_sample(const std::vector<Sentence>& s) {
  BOOST_TEST_REQUIRE(s.size() == 3u);
  BOOST_TEST(s[0].words == tags("EU rejects"), boost::test_tools::per_element());
  BOOST_TEST(s[0].pos == tags("NNP VBZ"), boost::test_tools::per_element());
  BOOST_TEST(s[0].chunk == tags("B-NP B-VP"), boost::test_tools::per_element());
  BOOST_TEST(s[0].tags == tags("B-ORG O"), boost::test_tools::per_element());
  BOOST_TEST(s[1].tags == tags("B-PER I-PER"), boost::test_tools::per_element());
  BOOST_TEST(s[2].words == tags("BRUSSELS 1996-08-22"), boost::test_tools::per_element());
  BOOST_TEST(s[2].tags == tags("B-LOC O"), boost::test_tools::per_element());
  BOOST_TEST(s[0].line == 3);
  BOOST_TEST(s[1].line == 6);
  BOOST_TEST(s[2].line == 11);
  BOOST_TEST(s[0].document == 0);
  BOOST_TEST(s[1].document == 0);
  BOOST_TEST(s[2].document == 1);
}

// Runs `f`, expecting std::runtime_error whose message starts with "<file>:<line>: " and holds `words`.
void expect_failure(const fs::path& file, int line, std::initializer_list<std::string> words,
                    TagScheme scheme = TagScheme::IOB2) {
  try {
    read_conll(file, scheme);
    BOOST_ERROR("no error reading " << file << " (expected one at line " << line << ")");
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what(), prefix = file.string() + ":" + std::to_string(line) + ": ";
    BOOST_CHECK_MESSAGE(msg.rfind(prefix, 0) == 0, "message \"" << msg << "\" does not start with \"" << prefix << "\"");
    for (const auto& w : words)
      BOOST_CHECK_MESSAGE(msg.find(w) != std::string::npos, "message \"" << msg << "\" lacks \"" << w << "\"");
  }
}

// Every sequence of length n over `alphabet`.
void for_each_sequence(const Tags& alphabet, std::size_t n, const std::function<void(const Tags&)>& f) {
  Tags seq(n);
  std::function<void(std::size_t)> rec = [&](std::size_t i) {
    if (i == n) return f(seq);
    for (const auto& a : alphabet) {
      seq[i] = a;
      rec(i + 1);
    }
  };
  rec(0);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(reader)

BOOST_AUTO_TEST_CASE(docstart_blank_lines_missing_final_blank) {
  TempDir d("conll");
  check_sample(read_conll(write(d, "a.txt", kSample)));
  // No final newline at all.
  check_sample(read_conll(write(d, "b.txt", kSample.substr(0, kSample.size() - 1))));
  // With the final blank line and trailing blanks.
  check_sample(read_conll(write(d, "c.txt", kSample + "\n\n")));
}

BOOST_AUTO_TEST_CASE(crlf) {
  TempDir d("conll");
  check_sample(read_conll(write(d, "a.txt", to_crlf(kSample))));
  check_sample(read_conll(write(d, "b.txt", to_crlf(kSample + "\n"))));
}

BOOST_AUTO_TEST_CASE(no_docstart_tabs_and_whitespace_only_separators) {
  TempDir d("conll");
  const auto s = read_conll(write(d, "a.txt", "A\tNN\tB-NP\tB-PER\nB NN I-NP O  \n \t\nC NN B-NP O\n"));
  BOOST_TEST_REQUIRE(s.size() == 2u);
  BOOST_TEST(s[0].words == tags("A B"), boost::test_tools::per_element());
  BOOST_TEST(s[0].tags == tags("B-PER O"), boost::test_tools::per_element());
  BOOST_TEST(s[1].line == 4);
  BOOST_TEST(s[1].document == 0);
  BOOST_TEST(read_conll(write(d, "empty.txt", "")).empty());
  BOOST_TEST(read_conll(write(d, "docstart_only.txt", "-DOCSTART- -X- -X- O\n\n")).empty());
}

BOOST_AUTO_TEST_CASE(malformed_lines) {
  TempDir d("conll");
  const std::string ok = "EU NNP B-NP B-ORG\n";
  expect_failure(write(d, "three.txt", ok + "rejects VBZ O\n"), 2, {"3 columns, expected 4"});
  expect_failure(write(d, "five.txt", ok + "\n" + "a b c d O\n"), 3, {"5 columns"});
  expect_failure(write(d, "one.txt", ok + "lonely\n"), 2, {"1 columns"});
  expect_failure(write(d, "empty_word.txt", ok + " NNP B-NP O\n"), 2, {"empty word"});
  expect_failure(write(d, "double_space.txt", ok + "EU  NNP B-NP O\n"), 2, {"empty column 2"});
  expect_failure(write(d, "x_tag.txt", ok + "John NNP B-NP X-PER\n"), 2, {"bad NER tag \"X-PER\""});
  expect_failure(write(d, "b_only.txt", ok + "John NNP B-NP B-\n"), 2, {"bad NER tag \"B-\""});
  expect_failure(write(d, "no_prefix.txt", "John NNP B-NP PER\n"), 1, {"bad NER tag \"PER\""});
  expect_failure(write(d, "crlf_bad.txt", to_crlf(ok + ok + "\n" + "x y z\n")), 4, {"3 columns"});
  // An IOB1 file read as IOB2: the first I- after O is reported, with a hint.
  expect_failure(write(d, "iob1.txt", ok + "\nU.N. NNP I-NP I-ORG\n"), 3,
                 {"\"I-ORG\" at a sentence start", "not valid IOB2", "looks like IOB1 tagging: read it with the IOB1 scheme"});
  expect_failure(write(d, "iob1b.txt", "a b c O\nd e f I-PER\n"), 2, {"after \"O\"", "not valid IOB2"});
  expect_failure(write(d, "iob1c.txt", "a b c B-LOC\nd e f I-PER\n"), 2, {"after \"B-LOC\""});
  // Tag errors are reported in IOB1 files too.
  expect_failure(write(d, "iob1_bad.txt", "a b c I-PER\nd e f Y-PER\n"), 2, {"bad NER tag"}, TagScheme::IOB1);
  BOOST_CHECK_EXCEPTION(read_conll(d.dir / "missing.txt"), std::runtime_error, has({"missing.txt", "cannot open"}));
}

// The IOB2 violation is a SchemeError carrying the scheme to use, so that a program names
// its own option for it; the message names the scheme only, no C++ enumerator or flag.
BOOST_AUTO_TEST_CASE(scheme_error_suggests_iob1_neutrally) {
  TempDir d("conll");
  const fs::path f = write(d, "iob1.txt", "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP I-MISC\n");
  try {
    read_conll(f, TagScheme::IOB2);
    BOOST_ERROR("no SchemeError");
  } catch (const SchemeError& e) {
    BOOST_TEST((e.suggested == TagScheme::IOB1));
    BOOST_TEST(e.file == f);
    BOOST_TEST(e.line == 3);
    const std::string msg = e.what();
    BOOST_TEST(msg.find("read it with the IOB1 scheme") != std::string::npos, msg);
    BOOST_TEST(msg.find("TagScheme") == std::string::npos, msg);
    BOOST_TEST(msg.find("--") == std::string::npos, msg);
  }
  BOOST_TEST(read_conll(f, TagScheme::IOB1).size() == 1u);  // as suggested
}

BOOST_AUTO_TEST_CASE(iob1_file) {
  TempDir d("conll");
  const fs::path f = write(d, "eng.train",
                           "-DOCSTART- -X- O O\n\n"
                           "U.N. NNP I-NP I-ORG\nofficial NN I-NP O\nEkeus NNP I-NP I-PER\nheads VBZ I-VP O\n"
                           "for IN I-PP O\nBaghdad NNP I-NP I-LOC\n. . O O\n\n"
                           "Germany NNP I-NP I-LOC\nBritain NNP I-NP B-LOC\nand CC O O\nEU NNP I-NP I-ORG\n"
                           "German JJ I-NP I-MISC\nofficials NNS I-NP O\n");
  const auto iob2 = read_conll(f, TagScheme::IOB1);  // out_scheme IOB2 by default
  BOOST_TEST_REQUIRE(iob2.size() == 2u);
  BOOST_TEST(join(iob2[0].tags) == "B-ORG O B-PER O O B-LOC O");
  BOOST_TEST(join(iob2[1].tags) == "B-LOC B-LOC O B-ORG B-MISC O");
  BOOST_TEST(join(iob2[0].chunk) == "I-NP I-NP I-NP I-VP I-PP I-NP O");  // other columns kept as written
  BOOST_TEST(iob2[0].line == 3);
  const auto iob1 = read_conll(f, TagScheme::IOB1, TagScheme::IOB1);
  BOOST_TEST(join(iob1[0].tags) == "I-ORG O I-PER O O I-LOC O");
  BOOST_TEST(join(iob1[1].tags) == "I-LOC B-LOC O I-ORG I-MISC O");
  // An IOB2 file read as IOB2 and emitted as IOB1.
  const fs::path g = write(d, "bio.txt", "a b c B-LOC\nd e f B-LOC\ng h i I-LOC\nj k l B-PER\n");
  BOOST_TEST(join(read_conll(g, TagScheme::IOB2, TagScheme::IOB1)[0].tags) == "I-LOC B-LOC I-LOC I-PER");
  BOOST_TEST(join(read_conll(g, TagScheme::IOB2, TagScheme::IOB2)[0].tags) == "B-LOC B-LOC I-LOC B-PER");
  // Reading an IOB2 file as IOB1 (B- after O) keeps the entities.
  BOOST_TEST(join(read_conll(g, TagScheme::IOB1, TagScheme::IOB2)[0].tags) == "B-LOC B-LOC I-LOC B-PER");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(schemes)

BOOST_AUTO_TEST_CASE(conversion_examples) {
  BOOST_TEST(join(iob1_to_iob2(tags("I-PER I-PER B-PER O I-LOC I-ORG"))) == "B-PER I-PER B-PER O B-LOC B-ORG");
  BOOST_TEST(join(iob2_to_iob1(tags("B-PER I-PER B-PER O B-LOC B-ORG"))) == "I-PER I-PER B-PER O I-LOC I-ORG");
  BOOST_TEST(join(iob2_to_iob1(tags("B-PER B-LOC I-LOC"))) == "I-PER I-LOC I-LOC");
  BOOST_TEST(join(iob1_to_iob2(tags("O B-PER I-PER"))) == "O B-PER I-PER");  // non-canonical IOB1 kept as entities
  BOOST_TEST(join(iob2_to_iob1(tags("O B-PER I-PER"))) == "O I-PER I-PER");
  BOOST_TEST(iob1_to_iob2({}).empty());
  BOOST_TEST(is_iob2(tags("B-PER I-PER B-PER O B-LOC")));
  BOOST_TEST(!is_iob2(tags("O I-PER")));
  BOOST_TEST(!is_iob2(tags("B-PER I-LOC")));
  BOOST_TEST(!is_iob2(tags("X-PER")));
  BOOST_TEST(is_iob1(tags("I-PER B-PER O I-LOC")));
  BOOST_TEST(!is_iob1(tags("O B-PER")));
  BOOST_TEST(!is_iob1(tags("I-LOC B-PER")));
  BOOST_TEST(is_iob1({}));
  BOOST_TEST(is_iob2({}));
  BOOST_CHECK_EXCEPTION(iob1_to_iob2(tags("O E-PER")), std::invalid_argument, has({"token 1", "E-PER"}));
  BOOST_CHECK_EXCEPTION(iob2_to_iob1(tags("B-")), std::invalid_argument, has({"token 0"}));
}

BOOST_AUTO_TEST_CASE(round_trips_over_every_short_sequence) {
  using addrop::metrics::extract_chunks;
  const Tags alphabet = tags("O B-A I-A B-B I-B");
  int64_t n_iob1 = 0, n_iob2 = 0;
  for (std::size_t n = 0; n <= 5; ++n)
    for_each_sequence(alphabet, n, [&](const Tags& s) {
      const Tags to2 = iob1_to_iob2(s), to1 = iob2_to_iob1(s);
      // Both conversions keep every chunk and give a valid sequence of their scheme.
      BOOST_CHECK_MESSAGE(extract_chunks(to2) == extract_chunks(s) && is_iob2(to2), join(s) << " -> " << join(to2));
      BOOST_CHECK_MESSAGE(extract_chunks(to1) == extract_chunks(s) && is_iob1(to1), join(s) << " -> " << join(to1));
      if (is_iob2(s)) {
        ++n_iob2;
        BOOST_CHECK_MESSAGE(iob1_to_iob2(to1) == s, join(s) << " -> " << join(to1) << " -> " << join(iob1_to_iob2(to1)));
        BOOST_CHECK_MESSAGE(to2 == s, join(s));
      }
      if (is_iob1(s)) {
        ++n_iob1;
        BOOST_CHECK_MESSAGE(iob2_to_iob1(to2) == s, join(s) << " -> " << join(to2) << " -> " << join(iob2_to_iob1(to2)));
        BOOST_CHECK_MESSAGE(to1 == s, join(s));
      }
    });
  // Valid sequences exist in both schemes at every length (a bijection between them).
  BOOST_TEST(n_iob1 == n_iob2);
  BOOST_TEST(n_iob1 > 100);
}

BOOST_AUTO_TEST_CASE(labels) {
  std::vector<Sentence> s(2);
  s[0].tags = tags("B-PER I-PER O B-ORG");
  s[1].tags = tags("I-MISC O B-LOC");  // MISC only seen as I-: both labels still listed
  const Tags expected = tags("O B-LOC I-LOC B-MISC I-MISC B-ORG I-ORG B-PER I-PER");
  BOOST_TEST(label_set(s) == expected, boost::test_tools::per_element());
  BOOST_TEST(label_set_for_types({"PER", "MISC", "ORG", "LOC", "PER"}) == expected, boost::test_tools::per_element());
  BOOST_TEST(label_set({}) == Tags{"O"}, boost::test_tools::per_element());
  const auto ids = encode_tags(s[0].tags, expected);
  BOOST_TEST(ids == (std::vector<int32_t>{7, 8, 0, 5}), boost::test_tools::per_element());
  BOOST_CHECK_EXCEPTION(encode_tags(tags("O B-DATE"), expected), std::invalid_argument, has({"token 1", "B-DATE"}));
  s[1].tags[2] = "Z-LOC";
  BOOST_CHECK_EXCEPTION(label_set(s), std::invalid_argument, has({"sentence 1", "token 2", "Z-LOC"}));
}

// A label list given by the user or a checkpoint's id2label: any order, but well formed.
BOOST_AUTO_TEST_CASE(given_label_lists) {
  BOOST_CHECK_NO_THROW(check_label_list(tags("O B-PER I-PER B-LOC I-LOC"), "src"));
  BOOST_CHECK_NO_THROW(check_label_list(tags("B-LOC I-PER O I-LOC B-PER"), "src"));
  BOOST_CHECK_EXCEPTION(check_label_list(tags("O B-PER I-PER PER"), "--labels"), std::invalid_argument,
                        has({"--labels", "label 3", "\"PER\""}));
  BOOST_CHECK_EXCEPTION(check_label_list(tags("O B-PER I-PER B-PER"), "cfg"), std::invalid_argument,
                        has({"cfg", "B-PER", "twice"}));
  BOOST_CHECK_EXCEPTION(check_label_list(tags("B-PER I-PER"), "cfg"), std::invalid_argument, has({"no \"O\""}));
  BOOST_CHECK_EXCEPTION(check_label_list(tags("O B-PER I-PER B-ORG"), "cfg"), std::invalid_argument,
                        has({"B-ORG but no I-ORG"}));
  BOOST_CHECK_EXCEPTION(check_label_list(tags("O I-MISC"), "cfg"), std::invalid_argument, has({"I-MISC but no B-MISC"}));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(writer)

BOOST_AUTO_TEST_CASE(written_predictions_read_back) {
  TempDir d("conll");
  const auto gold = read_conll(write(d, "in.txt", kSample));
  const std::vector<Tags> pred{tags("B-ORG B-MISC"), tags("B-PER B-PER"), tags("I-LOC O")};
  const fs::path out = d.dir / "pred.txt";
  std::ofstream(out) << "old contents";
  write_conll_predictions(out, gold, pred);
  BOOST_TEST(slurp(out) ==
             "EU B-ORG B-ORG\nrejects O B-MISC\n\n"
             "Peter B-PER B-PER\nBlackburn I-PER B-PER\n\n"
             "BRUSSELS B-LOC I-LOC\n1996-08-22 O O\n\n");
  BOOST_TEST(d.listing() == (Tags{"in.txt", "pred.txt"}), boost::test_tools::per_element());  // no temporary left

  const auto back = read_conll_predictions(out);
  BOOST_TEST_REQUIRE(back.size() == 3u);
  for (std::size_t s = 0; s < 3; ++s) {
    BOOST_TEST(back[s].words == gold[s].words, boost::test_tools::per_element());
    BOOST_TEST(back[s].gold == gold[s].tags, boost::test_tools::per_element());
    BOOST_TEST(back[s].predicted == pred[s], boost::test_tools::per_element());
  }
  BOOST_TEST(back[1].line == 4);
  // conlleval's counts of this file: gold ORG, PER, LOC; predicted ORG, MISC, PER, PER, LOC; correct ORG, LOC.
  addrop::metrics::EntityCounts c;
  for (const auto& s : back) c.add(s.gold, s.predicted);
  BOOST_TEST(c.total().gold == 3);
  BOOST_TEST(c.total().predicted == 5);
  BOOST_TEST(c.total().correct == 2);
  BOOST_TEST(c.correct_tokens() == 3);
}

BOOST_AUTO_TEST_CASE(bad_input_leaves_the_old_file) {
  TempDir d("conll");
  const auto gold = read_conll(write(d, "in.txt", kSample));
  const fs::path out = d.dir / "pred.txt";
  std::ofstream(out) << "old contents";
  BOOST_CHECK_EXCEPTION(write_conll_predictions(out, gold, {}), std::invalid_argument, has({"3 sentences but 0"}));
  BOOST_CHECK_EXCEPTION(write_conll_predictions(out, gold, {tags("O O"), tags("O"), tags("O O")}),
                        std::invalid_argument, has({"sentence 1", "1 predicted"}));
  auto spaced = gold;
  spaced[2].words[1] = "two words";
  BOOST_CHECK_EXCEPTION(write_conll_predictions(out, spaced, {tags("O O"), tags("O O"), tags("O O")}),
                        std::invalid_argument, has({"sentence 2, token 1", "whitespace"}));
  BOOST_CHECK_EXCEPTION(write_conll_predictions(out, gold, {tags("O O"), tags("O O"), Tags{"O", ""}}),
                        std::invalid_argument, has({"predicted tag"}));
  BOOST_TEST(slurp(out) == "old contents");
  BOOST_CHECK_EXCEPTION(write_conll_predictions(d.dir / "no" / "such" / "dir.txt", gold,
                                                {tags("O O"), tags("O O"), tags("O O")}),
                        std::runtime_error, has({"cannot open"}));
  BOOST_TEST(d.listing() == (Tags{"in.txt", "pred.txt"}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(real_files)

namespace {
// The full CoNLL-2003 under $ADDROP_DATA_DIR, else the committed sample (the first 60 /
// 15 / 15 documents of train / valid / test).
fs::path conll_dir() {
  const fs::path dir = addrop::testing::data_root() / "conll2003";
  BOOST_TEST_MESSAGE("data: " << addrop::testing::data_root_description());
  for (const char* name : {"train.txt", "valid.txt", "test.txt"})
    BOOST_REQUIRE_MESSAGE(fs::exists(dir / name), (dir / name).string() << " is missing");
  return dir;
}
}  // namespace

BOOST_AUTO_TEST_CASE(sizes_and_scheme) {
  const fs::path dir = conll_dir();
  struct Split {
    const char* name;
    std::size_t sentences, tokens;
    int64_t documents;
  };
  const Tags expected_labels = tags("O B-LOC I-LOC B-MISC I-MISC B-ORG I-ORG B-PER I-PER");
  const std::vector<Split> splits =
      addrop::testing::full_data()
          ? std::vector<Split>{{"train.txt", 14041, 203621, 946}, {"valid.txt", 3250, 51362, 216}, {"test.txt", 3453, 46435, 231}}
          : std::vector<Split>{{"train.txt", 992, 11906, 60}, {"valid.txt", 321, 3764, 15}, {"test.txt", 248, 3585, 15}};
  for (const Split& sp : splits) {
    BOOST_TEST_CONTEXT(sp.name) {
      const auto s = read_conll(dir / sp.name);  // throws on any line that is not valid IOB2
      std::size_t tokens = 0;
      bool iob2 = true;
      for (const auto& x : s) {
        tokens += x.words.size();
        iob2 = iob2 && is_iob2(x.tags);
      }
      BOOST_TEST(s.size() == sp.sentences);
      BOOST_TEST(tokens == sp.tokens);
      BOOST_TEST(iob2);
      BOOST_TEST(s.back().document + 1 == sp.documents);
      BOOST_TEST(s.front().line == 3);
      BOOST_TEST(label_set(s) == expected_labels, boost::test_tools::per_element());
    }
  }
}

BOOST_AUTO_TEST_CASE(valid_split_through_iob1_and_back) {
  const fs::path dir = conll_dir();
  TempDir d("conll");
  const auto gold = read_conll(dir / "valid.txt");
  // Write an IOB1 copy in the four-column format and read it back as IOB1 -> IOB2.
  std::string text = "-DOCSTART- -X- -X- O\n\n";
  for (const auto& s : gold) {
    const Tags t1 = iob2_to_iob1(s.tags);
    BOOST_REQUIRE(is_iob1(t1));
    for (std::size_t i = 0; i < s.words.size(); ++i)
      text += s.words[i] + " " + s.pos[i] + " " + s.chunk[i] + " " + t1[i] + "\n";
    text += "\n";
  }
  const auto back = read_conll(write(d, "valid.iob1", text), TagScheme::IOB1, TagScheme::IOB2);
  BOOST_TEST_REQUIRE(back.size() == gold.size());
  std::size_t differ = 0;
  for (std::size_t s = 0; s < gold.size(); ++s) differ += back[s].tags != gold[s].tags || back[s].words != gold[s].words;
  BOOST_TEST(differ == 0u);
  // Read as IOB2, the IOB1 copy fails at its first I- after O.
  BOOST_CHECK_THROW(read_conll(d.dir / "valid.iob1"), std::runtime_error);
}

BOOST_AUTO_TEST_CASE(valid_split_scored_against_a_perturbation) {
  const fs::path dir = conll_dir();
  // The corruption of tests/reference/entity_counts.py --perturb; its counts (conlleval port and
  // seqeval port agree) are written below. Gold 5942 phrases is conlleval's count for CoNLL-2003 dev.
  const auto gold = read_conll(dir / "valid.txt");
  const Tags labels = label_set(gold);
  std::vector<Tags> pred;
  std::size_t k = 0;
  for (const auto& s : gold) {
    Tags p;
    for (const auto& t : s.tags) {
      const auto idx = static_cast<std::size_t>(std::find(labels.begin(), labels.end(), t) - labels.begin());
      p.push_back(k % 11 == 5 ? labels[(idx + k) % labels.size()] : k % 13 == 0 ? "O" : t);
      ++k;
    }
    pred.push_back(std::move(p));
  }
  const auto c = addrop::metrics::evaluate_entities([&] {
    std::vector<Tags> g;
    for (const auto& s : gold) g.push_back(s.tags);
    return g;
  }(), pred);
  using addrop::metrics::ChunkCounts;
  if (addrop::testing::full_data()) {
    BOOST_TEST(c.tokens() == 51362);
    BOOST_TEST(c.correct_tokens() == 46613);
    BOOST_TEST(c.total().gold == 5942);
    BOOST_TEST(c.total().predicted == 9415);
    BOOST_TEST(c.total().correct == 4685);
    BOOST_TEST((c.of("LOC") == ChunkCounts{1837, 2621, 1520}));
    BOOST_TEST((c.of("MISC") == ChunkCounts{922, 1831, 732}));
    BOOST_TEST((c.of("ORG") == ChunkCounts{1341, 2230, 1044}));
    BOOST_TEST((c.of("PER") == ChunkCounts{1842, 2733, 1389}));
    BOOST_TEST(c.report() ==
               "processed 51362 tokens with 5942 phrases; found: 9415 phrases; correct: 4685.\n"
               "accuracy:  90.75%; precision:  49.76%; recall:  78.85%; FB1:  61.01\n"
               "              LOC: precision:  57.99%; recall:  82.74%; FB1:  68.19  2621\n"
               "             MISC: precision:  39.98%; recall:  79.39%; FB1:  53.18  1831\n"
               "              ORG: precision:  46.82%; recall:  77.85%; FB1:  58.47  2230\n"
               "              PER: precision:  50.82%; recall:  75.41%; FB1:  60.72  2733\n");
  } else {  // the sample's valid.txt: `entity_counts.py --perturb examples/data/conll2003/valid.txt`
    BOOST_TEST(c.tokens() == 3764);
    BOOST_TEST(c.correct_tokens() == 3395);
    BOOST_TEST((c.of("LOC") == ChunkCounts{149, 200, 118}));
    BOOST_TEST((c.of("MISC") == ChunkCounts{53, 129, 40}));
    BOOST_TEST((c.of("ORG") == ChunkCounts{182, 236, 151}));
    BOOST_TEST((c.of("PER") == ChunkCounts{159, 223, 116}));
    BOOST_TEST(c.report() ==
               "processed 3764 tokens with 543 phrases; found: 788 phrases; correct: 425.\n"
               "accuracy:  90.20%; precision:  53.93%; recall:  78.27%; FB1:  63.86\n"
               "              LOC: precision:  59.00%; recall:  79.19%; FB1:  67.62  200\n"
               "             MISC: precision:  31.01%; recall:  75.47%; FB1:  43.96  129\n"
               "              ORG: precision:  63.98%; recall:  82.97%; FB1:  72.25  236\n"
               "              PER: precision:  52.02%; recall:  72.96%; FB1:  60.73  223\n");
  }

  // The predictions file holds the same counts.
  TempDir d("conll");
  write_conll_predictions(d.dir / "pred.txt", gold, pred);
  addrop::metrics::EntityCounts again;
  for (const auto& s : read_conll_predictions(d.dir / "pred.txt")) again.add(s.gold, s.predicted);
  BOOST_TEST(again.report() == c.report());
}

BOOST_AUTO_TEST_SUITE_END()
