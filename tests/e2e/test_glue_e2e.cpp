// End-to-end tests of addrop-glue and addrop-ood on small files the test writes: a
// learnable SST-2-style task (label 1 iff the sentence holds "good" or "great"), an
// MNLI-style task for HANS, a WordPiece vocabulary. Checks learning, the output folder
// (metrics.jsonl, summary.json, best checkpoint with tokenizer files, curves.svg),
// cross-tuning's epochs, exact resumption, the p/q grid (and its resumption), several
// runs on one plot, leaderboard predictions and clear errors. When ADDROP_DATA_DIR
// holds the real GLUE files, a short real-data smoke run too.
#define BOOST_TEST_MODULE glue_e2e
#include <boost/test/unit_test.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/helpers.hpp"
#include "support/programs.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using Run = addrop::testing::ProgramRun;
Run run(const std::string& args) { return addrop::testing::run_program(ADDROP_GLUE_BINARY, args); }
Run run_ood(const std::string& args) { return addrop::testing::run_program(ADDROP_OOD_BINARY, args); }
nlohmann::json read_json(const fs::path& p) { return addrop::testing::read_json_file(p); }
std::vector<nlohmann::json> read_jsonl(const fs::path& p) { return addrop::testing::read_jsonl_file(p); }

const char* const kWords[] = {"the", "a", "movie", "film", "plot", "actor", "was", "is", "very", "quite",
                              "good", "great", "bad", "awful", "story", "and", "but", "not", "really", "fun"};

// Writes vocab.txt and an SST-2-style task folder (train.tsv, dev.tsv, test.tsv).
void write_task(const fs::path& dir, int train_rows, int dev_rows) {
  fs::create_directories(dir / "SST-2");
  std::ofstream vocab(dir / "vocab.txt");
  for (const char* s : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","}) vocab << s << "\n";
  for (const char* w : kWords) vocab << w << "\n";
  uint64_t state = 12345;
  auto next = [&] {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<int>((state >> 33) % 1000003);
  };
  auto sentence = [&](int& label) {
    const int len = 4 + next() % 8;
    std::string s;
    label = 0;
    for (int i = 0; i < len; ++i) {
      const char* w = kWords[next() % 20];
      if (std::string(w) == "good" || std::string(w) == "great") label = 1;
      if (i) s += " ";
      s += w;
    }
    return s + " .";
  };
  for (auto [name, rows] : {std::pair{"train.tsv", train_rows}, std::pair{"dev.tsv", dev_rows}}) {
    std::ofstream f(dir / "SST-2" / name);
    f << "sentence\tlabel\n";
    for (int i = 0; i < rows; ++i) {
      int label = 0;
      const std::string s = sentence(label);
      f << s << "\t" << label << "\n";
    }
  }
  std::ofstream test(dir / "SST-2" / "test.tsv");
  test << "index\tsentence\n";
  for (int i = 0; i < 20; ++i) {
    int label = 0;
    test << i << "\t" << sentence(label) << "\n";
  }
}

const std::string kCommon = " --task sst2 --init tiny --epochs 4 --batch-size 16 --lr 1e-3 --max-length 24 --threads 2 --no-progress";

}  // namespace

BOOST_AUTO_TEST_CASE(trains_writes_outputs_and_cross_tunes) {
  addrop::testing::TempDir tmp("glue");
  write_task(tmp.dir, 400, 100);
  const fs::path out = tmp.dir / "out";
  const Run r = run("--vocab " + (tmp.dir / "vocab.txt").string() + " --data " + tmp.dir.string() +
                    " --output " + out.string() + kCommon + " --attribution ga --p 0.3 --q 0.3 --predict");
  BOOST_TEST_INFO(r.output);
  BOOST_REQUIRE_EQUAL(r.status, 0);
  const json summary = read_json(out / "summary.json");
  BOOST_TEST(summary.at("history").size() == 4u);
  BOOST_TEST(summary.at("best").get<double>() >= 0.9);  // the rule is learnable
  const auto lines = read_jsonl(out / "metrics.jsonl");
  BOOST_REQUIRE_EQUAL(lines.size(), 4u);
  // cross-tuning: AD-DROP in the odd 0-based epochs only
  for (int e = 0; e < 4; ++e) BOOST_TEST(lines[e].at("addrop").get<bool>() == (e % 2 == 1));
  BOOST_TEST(lines[3].at("train_loss").get<double>() < lines[0].at("train_loss").get<double>());
  for (const char* f : {"best/config.json", "best/model.safetensors", "best/vocab.txt", "best/tokenizer_config.json",
                        "last/optimizer.safetensors", "last/trainer_state.json", "curves.svg", "SST-2.tsv"})
    BOOST_TEST(fs::exists(out / f), f);
  // no temporary files left behind
  for (const auto& e : fs::recursive_directory_iterator(out))
    BOOST_TEST(e.path().filename().string().find(".tmp") == std::string::npos, e.path().string());
  // leaderboard file: header + 20 rows
  std::ifstream pred(out / "SST-2.tsv");
  int rows = 0;
  for (std::string line; std::getline(pred, line);) ++rows;
  BOOST_TEST(rows == 21);
  // the output folder is not overwritten without --overwrite
  const Run again = run("--vocab " + (tmp.dir / "vocab.txt").string() + " --data " + tmp.dir.string() +
                        " --output " + out.string() + kCommon);
  BOOST_TEST(again.status != 0);
  BOOST_TEST(again.output.find("--overwrite") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(resume_continues_exactly) {
  addrop::testing::TempDir tmp("glue");
  write_task(tmp.dir, 200, 60);
  const std::string base = "--vocab " + (tmp.dir / "vocab.txt").string() + " --data " + tmp.dir.string() +
                           " --task sst2 --init tiny --batch-size 16 --lr 1e-3 --max-length 24 --threads 2 --no-progress --attribution ga";
  const fs::path straight = tmp.dir / "straight", split = tmp.dir / "split";
  BOOST_REQUIRE_EQUAL(run(base + " --epochs 3 --output " + straight.string()).status, 0);
  // an interrupted run: 2 epochs done, then continued to 3 with --resume
  BOOST_REQUIRE_EQUAL(run(base + " --epochs 2 --output " + split.string()).status, 0);
  const Run resumed = run(base + " --epochs 3 --resume --output " + split.string());
  BOOST_TEST_INFO(resumed.output);
  BOOST_REQUIRE_EQUAL(resumed.status, 0);
  const json a = read_json(straight / "summary.json"), b = read_json(split / "summary.json");
  BOOST_REQUIRE_EQUAL(b.at("history").size(), 3u);
  for (int e = 0; e < 3; ++e) {
    BOOST_TEST(a.at("history")[e].at("train_loss").get<double>() == b.at("history")[e].at("train_loss").get<double>());
    BOOST_TEST(a.at("history")[e].at("main").get<double>() == b.at("history")[e].at("main").get<double>());
  }
  BOOST_TEST(a.at("steps").get<int64_t>() == b.at("steps").get<int64_t>());
}

BOOST_AUTO_TEST_CASE(grid_names_best_setting_and_resumes) {
  addrop::testing::TempDir tmp("glue");
  write_task(tmp.dir, 120, 60);
  const fs::path out = tmp.dir / "grid";
  const std::string args = "--vocab " + (tmp.dir / "vocab.txt").string() + " --data " + tmp.dir.string() +
                           " --output " + out.string() +
                           " --task sst2 --init tiny --epochs 2 --batch-size 16 --lr 1e-3 --max-length 24 --threads 2 "
                           "--no-progress --grid p=0.1:0.2:0.1,q=0.2:0.4:0.2";
  const Run r = run(args);
  BOOST_TEST_INFO(r.output);
  BOOST_REQUIRE_EQUAL(r.status, 0);
  const json table = read_json(out / "table.json");
  BOOST_TEST(table.at("rows").size() == 4u);
  BOOST_TEST(table.contains("best_setting"));
  BOOST_TEST(fs::exists(out / "p0.2_q0.4" / "summary.json"));
  BOOST_TEST(fs::exists(out / "curves.svg"));
  const Run again = run(args);
  BOOST_REQUIRE_EQUAL(again.status, 0);
  BOOST_TEST(again.output.find("done earlier") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(several_runs_share_one_plot) {
  addrop::testing::TempDir tmp("glue");
  write_task(tmp.dir, 120, 60);
  const fs::path out = tmp.dir / "runs";
  const Run r = run("--vocab " + (tmp.dir / "vocab.txt").string() + " --data " + tmp.dir.string() + " --output " +
                    out.string() +
                    " --task sst2 --init tiny --epochs 2 --batch-size 16 --lr 1e-3 --max-length 24 --threads 2 "
                    "--no-progress --runs none,ga,rd --seeds 1,2");
  BOOST_TEST_INFO(r.output);
  BOOST_REQUIRE_EQUAL(r.status, 0);
  std::ifstream svg(out / "curves.svg");
  std::stringstream ss;
  ss << svg.rdbuf();
  for (const char* name : {"baseline_seed1", "ga_seed2", "rd_seed1"}) BOOST_TEST(ss.str().find(name) != std::string::npos, name);
  const json table = read_json(out / "table.json");
  BOOST_TEST(table.at("rows").size() == 3u);
  BOOST_TEST(table.at("rows")[0].at("runs").get<int>() == 2);
}

BOOST_AUTO_TEST_CASE(bad_input_is_named) {
  addrop::testing::TempDir tmp("glue");
  write_task(tmp.dir, 50, 20);
  {
    std::ofstream f(tmp.dir / "SST-2" / "train.tsv", std::ios::app);
    f << "a row without a label column\n";
  }
  const std::string base = "--vocab " + (tmp.dir / "vocab.txt").string() + " --data " + tmp.dir.string() + kCommon;
  const Run r = run(base + " --output " + (tmp.dir / "o1").string());
  BOOST_TEST(r.status != 0);
  BOOST_TEST_INFO(r.output);
  BOOST_TEST(r.output.find("train.tsv:52") != std::string::npos);
  const Run skipped = run(base + " --epochs 1 --skip-bad-rows --output " + (tmp.dir / "o2").string());
  BOOST_TEST_INFO(skipped.output);
  BOOST_TEST(skipped.status == 0);
  BOOST_TEST(skipped.output.find("1 bad rows skipped") != std::string::npos);
  const Run cuda = run(base + " --device cuda --output " + (tmp.dir / "o3").string());
  if (cuda.status != 0) BOOST_TEST(cuda.output.find("--device cuda") != std::string::npos);
  const Run unknown = run(base + " --task nope --output " + (tmp.dir / "o4").string());
  BOOST_TEST(unknown.status != 0);
  BOOST_TEST(unknown.output.find("nope") != std::string::npos);
}

// MNLI-style training files and a HANS file: addrop-ood reports the per-heuristic table.
BOOST_AUTO_TEST_CASE(ood_hans_and_paws_x) {
  addrop::testing::TempDir tmp("ood");
  write_task(tmp.dir, 10, 10);  // for vocab.txt
  fs::create_directories(tmp.dir / "MNLI");
  const char* labels[] = {"contradiction", "entailment", "neutral"};
  for (const char* name : {"train.tsv", "dev_matched.tsv"}) {
    std::ofstream f(tmp.dir / "MNLI" / name);
    f << "index\tsentence1\tsentence2\tgold_label\n";
    for (int i = 0; i < 60; ++i)
      f << i << "\tthe movie was good .\tthe " << kWords[i % 20] << " was " << kWords[(i * 7) % 20] << " .\t"
        << labels[i % 3] << "\n";
  }
  const std::string vocab = " --vocab " + (tmp.dir / "vocab.txt").string();
  const Run trained = run("--task mnli --init tiny" + vocab + " --data " + tmp.dir.string() + " --output " +
                          (tmp.dir / "mnli").string() + " --epochs 1 --batch-size 16 --max-length 24 --threads 2 --no-progress");
  BOOST_TEST_INFO(trained.output);
  BOOST_REQUIRE_EQUAL(trained.status, 0);
  {
    std::ofstream f(tmp.dir / "hans.tsv");
    f << "gold_label\tsentence1\tsentence2\theuristic\n";
    const char* heuristics[] = {"lexical_overlap", "subsequence", "constituent"};
    for (int i = 0; i < 30; ++i)
      f << (i % 2 ? "non-entailment" : "entailment") << "\tthe actor was good .\tthe actor was " << kWords[i % 20]
        << " .\t" << heuristics[i % 3] << "\n";
  }
  const fs::path json_out = tmp.dir / "hans.json";
  const Run hans = run_ood("--model " + (tmp.dir / "mnli" / "best").string() + " --hans " + (tmp.dir / "hans.tsv").string() +
                           " --output " + json_out.string() + " --threads 2");
  BOOST_TEST_INFO(hans.output);
  BOOST_REQUIRE_EQUAL(hans.status, 0);
  BOOST_TEST(hans.output.find("lexical_overlap") != std::string::npos);
  const json h = read_json(json_out);
  for (const char* k : {"lexical_overlap", "subsequence", "constituent"}) {
    const double acc = h.at("hans").at(k).at("accuracy").get<double>();
    BOOST_TEST((acc >= 0.0 && acc <= 1.0));
  }
  // a 3-label MNLI model is not a paraphrase model
  {
    std::ofstream f(tmp.dir / "paws.tsv");
    f << "id\tsentence1\tsentence2\tlabel\n1\tthe plot was fun .\tthe fun was plot .\t0\n";
  }
  const Run paws = run_ood("--model " + (tmp.dir / "mnli" / "best").string() + " --paws-x " + (tmp.dir / "paws.tsv").string());
  BOOST_TEST(paws.status != 0);
  BOOST_TEST(paws.output.find("paraphrase") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(real_sst2_smoke, *boost::unit_test::precondition([](boost::unit_test::test_unit_id) {
  const char* d = std::getenv("ADDROP_DATA_DIR");
  return boost::test_tools::assertion_result(d && fs::exists(fs::path(d) / "glue" / "SST-2" / "train.tsv"));
})) {
  const fs::path data = std::getenv("ADDROP_DATA_DIR");
  addrop::testing::TempDir tmp("glue");
  const Run r = run("--task sst2 --init tiny --vocab " + (data / "tokenizers" / "bert-base-uncased" / "vocab.txt").string() +
                    " --data " + (data / "glue").string() + " --output " + (tmp.dir / "sst2").string() +
                    " --epochs 1 --max-train-examples 8000 --batch-size 32 --lr 1e-3 --lr-schedule linear --warmup 0.1"
                    " --max-length 64 --threads 2 --no-progress");
  BOOST_TEST_INFO(r.output);
  BOOST_REQUIRE_EQUAL(r.status, 0);
  const json s = read_json(tmp.dir / "sst2" / "summary.json");
  // Well above the majority class (0.509 of SST-2 dev): 0.751 when written (2026-11-27).
  BOOST_TEST(s.at("best").get<double>() > 0.65);
}
