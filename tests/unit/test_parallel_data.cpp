// Parallel text readers (data/parallel.hpp) on the real WMT16 en-ro files (the committed
// sample, or ADDROP_DATA_DIR's full sets), the Hugging Face JSON-lines layout and WMT
// SGML, the WMT16 Romanian normalisation, and every bad-input error naming file and line.
#define BOOST_TEST_MODULE parallel_data
#include <boost/test/unit_test.hpp>

#include <addrop/data/parallel.hpp>
#include <fstream>

#include "support/data.hpp"
#include "support/helpers.hpp"

using namespace addrop;
namespace fs = std::filesystem;

namespace {
void write(const fs::path& file, const std::string& text) { std::ofstream(file, std::ios::binary) << text; }
}  // namespace

BOOST_AUTO_TEST_CASE(newstest2016_is_line_aligned) {
  const fs::path dir = testing::data_root() / "wmt16_en_ro";
  const auto pairs = data::read_parallel_files(dir / "newstest2016.en", dir / "newstest2016.ro");
  const std::size_t want = testing::full_data() ? 1999 : 200;  // the official size, or the sample's
  BOOST_TEST(pairs.size() == want, testing::data_root_description());
  BOOST_TEST(pairs.front().line == 1);
  BOOST_TEST(pairs.back().line == static_cast<int64_t>(want));
  for (const auto& p : pairs) BOOST_TEST_REQUIRE((!p.source.empty() && !p.target.empty()));
}

BOOST_AUTO_TEST_CASE(romanian_normalisation_as_wmt16_scripts) {
  using N = data::RomanianNormalization;
  BOOST_TEST(data::normalize_romanian("Componenţa şedinţei ŞŢ", N::CommaBelow) == "Componența ședinței ȘȚ");
  BOOST_TEST(data::normalize_romanian("Componenţa şedinţei ŞŢ ăâî ĂÂÎ", N::RemoveDiacritics) ==
             "Componenta sedintei ST aai AAI");
  BOOST_TEST(data::normalize_romanian("Componenţa", N::None) == "Componenţa");
  BOOST_TEST((data::romanian_normalization_from_name("comma-below") == N::CommaBelow));
  BOOST_CHECK_EXCEPTION(data::romanian_normalization_from_name("nfc"), std::invalid_argument, testing::has({"\"nfc\""}));
  // The training text uses cedillas (raw Europarl); after normalisation none is left.
  const fs::path dir = testing::data_root() / "wmt16_en_ro";
  const fs::path en = testing::full_data() ? dir / "train_sample" / "corpus.en" : dir / "train.en";
  const fs::path ro = testing::full_data() ? dir / "train_sample" / "corpus.ro" : dir / "train.ro";
  // The full sample has one empty English line (7975): skipped on request, and reported.
  data::ParallelReadReport report;
  const auto raw = data::read_parallel_files(en, ro, {.skip_empty = true}, &report);
  const auto normalised = data::read_parallel_files(en, ro, {.target_normalization = N::CommaBelow, .skip_empty = true});
  BOOST_TEST(report.skipped_lines == (testing::full_data() ? std::vector<int64_t>{7975} : std::vector<int64_t>{}),
             boost::test_tools::per_element());
  int64_t cedillas = 0, left = 0;
  for (std::size_t i = 0; i < raw.size(); ++i) {
    cedillas += raw[i].target.find("\xC5\x9F") != std::string::npos || raw[i].target.find("\xC5\xA3") != std::string::npos;
    left += normalised[i].target.find("\xC5\x9F") != std::string::npos || normalised[i].target.find("\xC5\xA3") != std::string::npos;
    BOOST_TEST_REQUIRE(normalised[i].source == raw[i].source);  // the English side is untouched
  }
  BOOST_TEST(cedillas > 0);
  BOOST_TEST(left == 0);
}

BOOST_AUTO_TEST_CASE(bad_line_aligned_files_are_named_with_the_line) {
  testing::TempDir tmp("parallel");
  write(tmp.dir / "a.en", "one\ntwo\nthree\n");
  write(tmp.dir / "a.ro", "unu\ndoi\n");
  BOOST_CHECK_EXCEPTION(data::read_parallel_files(tmp.dir / "a.en", tmp.dir / "a.ro"), std::runtime_error,
                        testing::has({"a.en has 3 lines", "a.ro has 2", "line-aligned"}));
  write(tmp.dir / "b.en", "one\n\nthree\n");
  write(tmp.dir / "b.ro", "unu\ndoi\ntrei\n");
  BOOST_CHECK_EXCEPTION(data::read_parallel_files(tmp.dir / "b.en", tmp.dir / "b.ro"), std::runtime_error,
                        testing::has({"b.en:2: empty segment", "skip_empty"}));
  data::ParallelReadReport skipped;
  BOOST_TEST(data::read_parallel_files(tmp.dir / "b.en", tmp.dir / "b.ro", {.skip_empty = true}, &skipped).size() == 2u);
  BOOST_TEST(skipped.skipped_lines == std::vector<int64_t>{2}, boost::test_tools::per_element());
  write(tmp.dir / "c.ro", "unu\ndoi \xC5\n");
  write(tmp.dir / "c.en", "one\ntwo\n");
  BOOST_CHECK_EXCEPTION(data::read_parallel_files(tmp.dir / "c.en", tmp.dir / "c.ro"), std::runtime_error,
                        testing::has({"c.ro:2:", "invalid UTF-8", "byte 4"}));
  BOOST_CHECK_EXCEPTION(data::read_parallel_files(tmp.dir / "missing.en", tmp.dir / "c.ro"), std::runtime_error,
                        testing::has({"missing.en", "cannot open"}));
  // Windows line ends and a byte-order mark are not part of the text.
  write(tmp.dir / "d.en", "\xEF\xBB\xBFone\r\ntwo\r\n");
  write(tmp.dir / "d.ro", "unu\ndoi\n");
  const auto d = data::read_parallel_files(tmp.dir / "d.en", tmp.dir / "d.ro");
  BOOST_TEST(d[0].source == "one");
  BOOST_TEST(d[1].source == "two");
}

BOOST_AUTO_TEST_CASE(hugging_face_json_lines) {
  testing::TempDir tmp("parallel_jsonl");
  write(tmp.dir / "ok.json",
        "{\"translation\": {\"en\": \"Hello\", \"ro\": \"Bun\\u0103 ziua, şefe\"}}\n"
        "{\"translation\": {\"ro\": \"Doi\", \"en\": \"Two\"}}\n");
  const auto ok = data::read_parallel_jsonl(tmp.dir / "ok.json", "en", "ro",
                                            {.target_normalization = data::RomanianNormalization::CommaBelow});
  BOOST_TEST_REQUIRE(ok.size() == 2u);
  BOOST_TEST(ok[0].source == "Hello");
  BOOST_TEST(ok[0].target == "Bună ziua, șefe");
  BOOST_TEST(ok[1].target == "Doi");
  BOOST_TEST(ok[1].line == 2);
  write(tmp.dir / "bad.json", "{\"translation\": {\"en\": \"Hello\", \"ro\": \"Bună\"}}\n{\"translation\": {\"en\": \"x\"}}\n");
  BOOST_CHECK_EXCEPTION(data::read_parallel_jsonl(tmp.dir / "bad.json", "en", "ro"), std::runtime_error,
                        testing::has({"bad.json:2:", "\"translation\".ro"}));
  write(tmp.dir / "notjson.json", "{\"translation\": \n");
  BOOST_CHECK_EXCEPTION(data::read_parallel_jsonl(tmp.dir / "notjson.json", "en", "ro"), std::runtime_error,
                        testing::has({"notjson.json:1:", "not JSON"}));
  write(tmp.dir / "empty.json", "{\"translation\": {\"en\": \" \", \"ro\": \"x\"}}\n");
  BOOST_CHECK_EXCEPTION(data::read_parallel_jsonl(tmp.dir / "empty.json", "en", "ro"), std::runtime_error,
                        testing::has({"empty.json:1:", "empty \"en\" segment"}));
}

BOOST_AUTO_TEST_CASE(wmt_sgml_as_sacrebleu_reads_it) {
  testing::TempDir tmp("parallel_sgml");
  write(tmp.dir / "t.sgm",
        "<refset setid=\"newstest2016\" srclang=\"any\" trglang=\"ro\">\n"
        "<doc sysid=\"ref\" docid=\"abc\" genre=\"news\" origlang=\"en\">\n<p>\n"
        "<seg id=\"1\">  Hello   world\t</seg>\n"
        "<seg id=\"2\">A &amp; B <i>x</i></seg>\n"
        "</p>\n</doc>\n</refset>\n");
  const auto segs = data::read_sgml_segments(tmp.dir / "t.sgm");
  BOOST_TEST(segs == (std::vector<std::string>{"Hello world", "A &amp; B <i>x</i>"}), boost::test_tools::per_element());
  write(tmp.dir / "u.sgm", "<seg id=\"1\">no end\n");
  BOOST_CHECK_EXCEPTION(data::read_sgml_segments(tmp.dir / "u.sgm"), std::runtime_error,
                        testing::has({"u.sgm:1:", "</seg>"}));
}
