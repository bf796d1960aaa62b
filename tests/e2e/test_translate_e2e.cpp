// End-to-end tests of addrop-translate on the committed WMT16 en-ro sample
// (examples/data/wmt16_en_ro): a tiny Marian learns 48 real sentence pairs by heart with a
// tokenizer it trains (greedy BLEU on them rises far above copying the source); every
// checkpoint is a complete Marian folder; the test translations, the `evaluate`,
// `translate` and `score` commands agree with each other and with summary.json; AD-DROP
// (GA on every encoder layer, cross-tuning) trains; bad flags fail before any work,
// naming the flag.
#define BOOST_TEST_MODULE translate_e2e
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/programs.hpp"

namespace fs = std::filesystem;

namespace {

using Run = addrop::testing::ProgramRun;
Run run(const std::string& args) { return addrop::testing::run_program(ADDROP_TRANSLATE_BINARY, args); }

const fs::path kData = fs::path(ADDROP_SAMPLE_DATA_DIR) / "wmt16_en_ro";

fs::path scratch(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("addrop_translate_e2e_" + name);
  fs::remove_all(p);
  return p;
}

std::vector<std::string> lines(const fs::path& file) {
  std::ifstream in(file);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

void write_lines(const fs::path& file, const std::vector<std::string>& v) {
  std::ofstream out(file);
  for (const auto& l : v) out << l << "\n";
}

// A memorisation run: 48 pairs, trained until they are learnt, scored on themselves (the
// references keep Europarl's cedilla spelling, so the targets are trained on as published).
const std::string kMemorise = " --init tiny --train " + (kData / "train").string() + " --train-lines 1:48 --dev " +
                              (kData / "train").string() + " --dev-lines 1:48 --test " + (kData / "train").string() +
                              " --test-lines 1:48 --vocab-size 300 --epochs 60 --batch-size 8 --lr 3e-3 --warmup 0.05"
                              " --dropout 0 --label-smoothing 0 --eval-every 120 --num-beams 2 --max-new-tokens 100"
                              " --target-normalization none --no-progress --threads 2";

}  // namespace

BOOST_AUTO_TEST_CASE(learns_real_pairs_and_its_commands_agree) {
  const fs::path out = scratch("memorise");
  const Run r = run("train" + kMemorise + " --attribution none --output " + out.string());
  BOOST_REQUIRE_MESSAGE(r.status == 0, r.output);
  const auto summary = addrop::testing::read_json_file(out / "summary.json");
  const double copy = summary.at("copy_source_bleu").at("test").get<double>();
  const double test_bleu = summary.at("test").at("bleu").get<double>();
  const double best_dev = summary.at("best").get<double>();
  BOOST_TEST_MESSAGE("memorised 48 pairs: test BLEU " << test_bleu << " (beam 2), best dev BLEU " << best_dev
                                                       << " (greedy), copying the source " << copy);
  BOOST_TEST(test_bleu > 60.0, "the pairs are learnt: BLEU " << test_bleu);
  BOOST_TEST(best_dev > 60.0);
  BOOST_TEST(copy < 10.0);

  // The checkpoint is a complete Marian folder, and the trained tokenizer beside the runs.
  for (const char* f : {"config.json", "model.safetensors", "generation_config.json", "source.spm", "target.spm",
                        "vocab.json", "tokenizer_config.json"})
    BOOST_TEST(fs::exists(out / "best" / f), f);
  const auto config = addrop::testing::read_json_file(out / "best" / "config.json");
  BOOST_TEST(config.at("model_type") == "marian");
  BOOST_TEST(config.at("vocab_size") == 300);
  BOOST_TEST(config.at("pad_token_id") == 299);
  BOOST_TEST(config.at("decoder_start_token_id") == 299);

  // `score` on the test translations gives summary.json's numbers; `evaluate` with the
  // best checkpoint makes the same translations; `translate` too, from standard input.
  const fs::path refs = out / "refs.ro", srcs = out / "srcs.en";
  auto all_refs = lines(kData / "train.ro"), all_srcs = lines(kData / "train.en");
  write_lines(refs, {all_refs.begin(), all_refs.begin() + 48});
  write_lines(srcs, {all_srcs.begin(), all_srcs.begin() + 48});
  const Run score = run("score --hypotheses " + (out / "test_translations.txt").string() + " --reference " + refs.string() + " --json");
  BOOST_REQUIRE_MESSAGE(score.status == 0, score.output);
  const auto j = nlohmann::json::parse(score.output);
  BOOST_TEST(j.at("score").get<double>() == test_bleu);
  BOOST_TEST(j.at("counts") == summary.at("test").at("counts"));
  BOOST_TEST(j.at("totals") == summary.at("test").at("totals"));
  BOOST_TEST(j.at("sys_len") == summary.at("test").at("sys_len"));
  BOOST_TEST(j.at("ref_len") == summary.at("test").at("ref_len"));
  const Run eval = run("evaluate --model " + (out / "best").string() + " --source " + srcs.string() + " --reference " +
                       refs.string() + " --num-beams 2 --max-new-tokens 100 --output-file " + (out / "eval.ro").string());
  BOOST_REQUIRE_MESSAGE(eval.status == 0, eval.output);
  BOOST_TEST(lines(out / "eval.ro") == lines(out / "test_translations.txt"));
  BOOST_TEST(eval.output.find("BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp = ") != std::string::npos, eval.output);
  const Run tr = run("translate --model " + (out / "best").string() + " --num-beams 2 --max-new-tokens 100 < " + srcs.string());
  BOOST_REQUIRE_MESSAGE(tr.status == 0, tr.output);
  std::string want;
  for (const auto& l : lines(out / "test_translations.txt")) want += l + "\n";
  BOOST_TEST(tr.output == want);
  fs::remove_all(out);
}

BOOST_AUTO_TEST_CASE(addrop_ga_on_every_encoder_layer_trains) {
  const fs::path out = scratch("ga");
  const Run r = run("train --init tiny --train " + (kData / "train").string() + " --dev " + (kData / "newsdev2016").string() +
                    " --dev-lines 1:20 --vocab-size 500 --epochs 2 --batch-size 32 --max-new-tokens 20 --no-progress"
                    " --attribution ga --output " + out.string());
  BOOST_REQUIRE_MESSAGE(r.status == 0, r.output);
  const auto summary = addrop::testing::read_json_file(out / "summary.json");
  BOOST_TEST(summary.at("layers") == nlohmann::json::array({0, 1}));
  BOOST_TEST(summary.at("p").get<double>() == 0.2);
  BOOST_TEST(summary.at("q").get<double>() == 0.2);
  const auto& history = summary.at("history");
  BOOST_REQUIRE(history.size() == 2u);
  BOOST_TEST(history[0].at("addrop") == false);  // cross-tuning: the first epoch is plain
  BOOST_TEST(history[1].at("addrop") == true);
  BOOST_TEST(std::isfinite(history[1].at("train_loss").get<double>()));
  fs::remove_all(out);
}

BOOST_AUTO_TEST_CASE(score_is_sacrebleu) {
  // A perfect match: every count equals its total (the values sacreBLEU gives for it).
  const fs::path dir = scratch("score");
  fs::create_directories(dir);
  write_lines(dir / "hyp", {"The dog bit the man.", "It wasn't surprising."});
  write_lines(dir / "ref", {"The dog bit the man.", "It wasn't surprising."});
  const Run r = run("score --hypotheses " + (dir / "hyp").string() + " --reference " + (dir / "ref").string() + " --json");
  BOOST_REQUIRE_MESSAGE(r.status == 0, r.output);
  const auto j = nlohmann::json::parse(r.output);
  // 13a: "The dog bit the man ." and "It wasn't surprising ." (the apostrophe stays inside).
  BOOST_TEST(std::abs(j.at("score").get<double>() - 100.0) <= 1e-12);
  BOOST_TEST(j.at("bp").get<double>() == 1.0);
  BOOST_TEST(j.at("sys_len") == 10);
  BOOST_TEST(j.at("ref_len") == 10);
  BOOST_TEST(j.at("counts") == nlohmann::json::array({10, 8, 6, 4}));
  BOOST_TEST(j.at("totals") == nlohmann::json::array({10, 8, 6, 4}));
  const Run text = run("score --hypotheses " + (dir / "hyp").string() + " --reference " + (dir / "ref").string());
  BOOST_TEST(text.output.find("BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp = 100.00 100.0/100.0/100.0/100.0 (BP = 1.000 "
                              "ratio = 1.000 hyp_len = 10 ref_len = 10)") != std::string::npos,
             text.output);
  BOOST_TEST(text.output.find("chrF2|nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no = 100.00") != std::string::npos);
  write_lines(dir / "short", {"The dog bit the man."});
  const Run bad = run("score --hypotheses " + (dir / "short").string() + " --reference " + (dir / "ref").string());
  BOOST_TEST(bad.status != 0);
  BOOST_TEST(bad.output.find("has 1 lines but --reference") != std::string::npos, bad.output);
  fs::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(bad_flags_fail_before_any_work_naming_the_flag) {
  const std::string base = "train --init tiny --train " + (kData / "train").string() + " --dev " +
                           (kData / "newsdev2016").string() + " --output " + scratch("bad").string();
  struct Case {
    std::string args, expect;
  };
  const std::vector<Case> cases = {
      {" --train-lines 9:2", "--train-lines 9:2: must be FIRST:LAST with 1 <= FIRST <= LAST"},
      {" --dev-lines x", "--dev-lines x: must be FIRST:LAST"},
      {" --label-smoothing 1.5", "--label-smoothing 1.5: must be in [0, 1)"},
      {" --vocab-size 5", "--vocab-size 5: must be at least 16"},
      {" --vocab-size 50000", "vocab_size 50000 is more than this training text supports"},
      {" --test " + (kData / "nowhere").string(), "nowhere.en"},
      {" --max-new-tokens 0", "--max-new-tokens 0: must be at least 1"},
      {" --layers 7", "--layers 7: no such layer"},
      {" --model somewhere", "give either --model DIR or --init"},
  };
  for (const auto& c : cases) {
    const Run r = run(base + c.args);
    BOOST_TEST(r.status != 0, c.args);
    BOOST_TEST(r.output.find(c.expect) != std::string::npos, c.args << " gave: " << r.output);
  }
  fs::remove_all(scratch("bad"));
}
