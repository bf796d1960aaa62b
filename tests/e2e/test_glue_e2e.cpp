// End-to-end tests of addrop-glue and addrop-ood on small files the test writes: a
// learnable SST-2-style task (label 1 iff the sentence holds "good" or "great"), an
// MNLI-style task for HANS, a WordPiece vocabulary. Checks learning, the output folder
// (metrics.jsonl, summary.json, best checkpoint with tokenizer files, curves.svg),
// cross-tuning's epochs, exact resumption, the p/q grid (and its resumption), several
// runs on one plot, leaderboard predictions and clear errors. Then a short run on the
// real SST-2: the committed sample, or the full set where ADDROP_DATA_DIR names it.
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

#include "support/data.hpp"
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
                           " --task sst2 --init tiny --batch-size 16 --lr 1e-3 --max-length 24 --threads 2 --no-progress --attribution ga"
                           " --lr-schedule constant --warmup 0";  // a decay would span 2 epochs in one run, 3 in the other
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

// The real SST-2 files: the committed sample (10,000 training sentences, the whole dev
// set), or the full set in $ADDROP_DATA_DIR; both train on the first 8,000 sentences.
BOOST_AUTO_TEST_CASE(real_sst2_smoke) {
  const fs::path data = addrop::testing::data_root();
  BOOST_TEST_MESSAGE("data: " << addrop::testing::data_root_description());
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

// ---------------------------------------------------------------------------------------
// Options and inputs are checked before any work: a refusal names the flag (and its bad
// value) or the file, reads no data and creates no output folder.

namespace {

// A checkpoint folder with a config and a vocabulary but no weights: enough for the
// programs' checks, which must refuse before they would load weights.
fs::path write_config_only_checkpoint(const fs::path& dir, int layers) {
  const fs::path model = dir / "config_only";
  fs::create_directories(model);
  fs::copy_file(dir / "vocab.txt", model / "vocab.txt");
  std::ofstream(model / "config.json") << R"({"model_type": "bert", "vocab_size": 27, "hidden_size": 32,
    "num_hidden_layers": )" << layers << R"(, "num_attention_heads": 2, "intermediate_size": 64,
    "max_position_embeddings": 128, "num_labels": 2})";
  return model;
}

// The refusal came before the data was read and before the output folder was made.
void check_refused_early(const Run& r, const fs::path& out) {
  BOOST_TEST(r.status != 0);
  BOOST_TEST(r.output.find("examples from") == std::string::npos);
  BOOST_TEST(!fs::exists(out));
}

}  // namespace

BOOST_AUTO_TEST_CASE(each_bad_number_names_its_flag) {
  addrop::testing::TempDir tmp("glue");
  write_task(tmp.dir, 20, 10);
  const fs::path out = tmp.dir / "out";
  const std::string base = "--vocab " + (tmp.dir / "vocab.txt").string() + " --data " + tmp.dir.string() +
                           " --output " + out.string() + kCommon;
  // flag and value -> what the message says about it
  const std::pair<std::string, std::string> cases[] = {
      {"--epochs 0", "at least 1"},          {"--batch-size 0", "at least 1"},
      {"--eval-batch-size 0", "at least 1"}, {"--lr -1", "positive"},
      {"--lr 0", "positive"},                {"--warmup -0.1", "0 or more"},
      {"--weight-decay -1", "0 or more"},    {"--max-grad-norm -1", "0 or more"},
      {"--eval-every -1", "0 or more"},      {"--patience -1", "0 or more"},
      {"--max-train-examples -1", "0 or more"}, {"--dropout 1", "[0, 1)"},
      {"--dropout -0.5", "[0, 1)"},          {"--max-length 2", "at least 4"},
      {"--ig-steps 0", "at least 1"},        {"--threads -1", "0 or more"},
      {"--p 1.5", "[0, 1]"},                 {"--q -0.1", "[0, 1]"},
      {"--layers -1", "0 or more"}};
  for (const auto& [flag, why] : cases) {
    const Run r = run(base + " " + flag);
    BOOST_TEST_INFO(flag << ": " << r.output);
    check_refused_early(r, out);
    BOOST_TEST(r.output.find(flag + ": ") != std::string::npos, flag << " is named with its value");
    BOOST_TEST(r.output.find(why) != std::string::npos, flag << " says why");
  }
  // one flag at fault: the message does not list the others
  const Run one = run(base + " --batch-size 0");
  BOOST_TEST(one.output.find("--epochs") == std::string::npos);
  BOOST_TEST(one.output.find("--lr") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(target_layers_are_checked_against_the_model_first) {
  addrop::testing::TempDir tmp("glue");
  write_task(tmp.dir, 20, 10);
  const fs::path out = tmp.dir / "out";
  const std::string init = "--vocab " + (tmp.dir / "vocab.txt").string() + " --data " + tmp.dir.string() +
                           " --output " + out.string() + kCommon;  // --init tiny: 2 layers
  // refused whatever the epochs (cross-tuning's first epoch is plain) and the attributions
  for (const char* extra : {" --layers 99 --epochs 1", " --layers 99 --epochs 2", " --runs none,ga --layers 0,2",
                            " --attribution none --layers 99"}) {
    const Run r = run(init + extra);
    BOOST_TEST_INFO(extra << ": " << r.output);
    check_refused_early(r, out);
    BOOST_TEST(r.output.find("--layers") != std::string::npos);
    BOOST_TEST(r.output.find("2 layers") != std::string::npos);
  }
  // with --model, the checkpoint's config.json counts (refused before its weights, which it lacks)
  const fs::path model = write_config_only_checkpoint(tmp.dir, 3);
  const Run r = run("--model " + model.string() + " --task sst2 --data " + tmp.dir.string() + " --output " +
                    out.string() + " --epochs 2 --threads 2 --no-progress --layers 0,3");
  BOOST_TEST_INFO(r.output);
  check_refused_early(r, out);
  BOOST_TEST(r.output.find("--layers 3") != std::string::npos);
  BOOST_TEST(r.output.find("3 layers") != std::string::npos);
  BOOST_TEST(r.output.find("config.json") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(cross_tuning_in_one_epoch_warns_before_training) {
  addrop::testing::TempDir tmp("glue");
  write_task(tmp.dir, 40, 10);
  const Run r = run("--vocab " + (tmp.dir / "vocab.txt").string() + " --data " + tmp.dir.string() + " --output " +
                    (tmp.dir / "out").string() + kCommon + " --epochs 1 --attribution ga --schedule cross");
  BOOST_TEST_INFO(r.output);
  BOOST_REQUIRE_EQUAL(r.status, 0);
  const auto warning = r.output.find("warning: --schedule cross with --epochs 1");
  BOOST_REQUIRE(warning != std::string::npos);
  BOOST_TEST(warning < r.output.find("== "));  // before the run starts
  // plain runs and AD-DROP-from-the-start runs have nothing to warn about
  for (const char* extra : {" --attribution none", " --schedule always"}) {
    const Run quiet = run("--vocab " + (tmp.dir / "vocab.txt").string() + " --data " + tmp.dir.string() + " --output " +
                          (tmp.dir / "quiet").string() + kCommon + " --epochs 1 --overwrite" + extra);
    BOOST_TEST_INFO(extra << ": " << quiet.output);
    BOOST_TEST(quiet.status == 0);
    BOOST_TEST(quiet.output.find("warning") == std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(empty_data_files_are_named_before_training) {
  addrop::testing::TempDir tmp("glue");
  write_task(tmp.dir, 20, 10);
  const fs::path out = tmp.dir / "out";
  const std::string base = "--vocab " + (tmp.dir / "vocab.txt").string() + " --data " + tmp.dir.string() +
                           " --output " + out.string() + kCommon;
  const fs::path empty = tmp.dir / "empty.tsv", header_only = tmp.dir / "header_only.tsv";
  std::ofstream(empty).flush();
  std::ofstream(header_only) << "sentence\tlabel\n";
  for (const fs::path& file : {empty, header_only}) {
    for (const auto& [flag, what] : {std::pair<std::string, std::string>{"--train", "no training examples"},
                                     {"--dev", "no dev examples"},
                                     {"--predict --test", "no test examples"}}) {
      const Run r = run(base + " " + flag + " " + file.string());
      BOOST_TEST_INFO(flag << " " << file << ": " << r.output);
      BOOST_TEST(r.status != 0);
      BOOST_TEST(r.output.find(file.string() + ": " + what) != std::string::npos);
      BOOST_TEST(r.output.find("== ") == std::string::npos);  // no run started
      BOOST_TEST(!fs::exists(out / "best"));
    }
  }
  // MNLI's second dev set too
  fs::create_directories(tmp.dir / "MNLI");
  for (const char* name : {"train.tsv", "dev_matched.tsv"}) {
    std::ofstream f(tmp.dir / "MNLI" / name);
    f << "index\tsentence1\tsentence2\tgold_label\n0\tthe plot\tthe film\tneutral\n";
  }
  std::ofstream(tmp.dir / "MNLI" / "dev_mismatched.tsv") << "index\tsentence1\tsentence2\tgold_label\n";
  const Run mm = run(base + " --task mnli");
  BOOST_TEST_INFO(mm.output);
  BOOST_TEST(mm.status != 0);
  BOOST_TEST(mm.output.find("dev_mismatched.tsv: no dev-mismatched examples") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(defaults_follow_the_model_source) {
  addrop::testing::TempDir tmp("glue");
  write_task(tmp.dir, 40, 10);
  const Run help = run("--help");
  BOOST_TEST_INFO(help.output);
  BOOST_TEST(help.output.find("0.0003 with --init, 2e-05 with --model") != std::string::npos);
  BOOST_TEST(help.output.find("linear with --init, constant with --model") != std::string::npos);
  BOOST_TEST(help.output.find("--no-bucket") != std::string::npos);
  // no lr, schedule, warmup, bucket or max-length flag: each run records what it used
  const std::string data = " --data " + tmp.dir.string() + " --task sst2 --epochs 1 --batch-size 16 --threads 2 "
                           "--no-progress --attribution none";
  const std::string init = "--init tiny --vocab " + (tmp.dir / "vocab.txt").string() + data;
  const Run scratch = run(init + " --output " + (tmp.dir / "scratch").string());
  BOOST_TEST_INFO(scratch.output);
  BOOST_REQUIRE_EQUAL(scratch.status, 0);
  const json a = read_json(tmp.dir / "scratch" / "summary.json").at("training");
  BOOST_TEST(a.at("lr").get<double>() == 3e-4);
  BOOST_TEST(a.at("lr_schedule").get<std::string>() == "linear");
  BOOST_TEST(a.at("warmup").get<double>() == 0.1);
  BOOST_TEST(a.at("bucket").get<bool>() == true);
  BOOST_TEST(a.at("max_length").get<int64_t>() == 128);
  BOOST_TEST(a.at("defaults").get<std::string>() == "from_scratch");
  const Run pretrained = run("--model " + (tmp.dir / "scratch" / "best").string() + data + " --output " +
                             (tmp.dir / "pretrained").string());
  BOOST_TEST_INFO(pretrained.output);
  BOOST_REQUIRE_EQUAL(pretrained.status, 0);
  const json b = read_json(tmp.dir / "pretrained" / "summary.json").at("training");
  BOOST_TEST(b.at("lr").get<double>() == 2e-5);
  BOOST_TEST(b.at("lr_schedule").get<std::string>() == "constant");
  BOOST_TEST(b.at("warmup").get<double>() == 0.0);
  BOOST_TEST(b.at("bucket").get<bool>() == false);
  BOOST_TEST(b.at("max_length").get<int64_t>() == 128);
  BOOST_TEST(b.at("defaults").get<std::string>() == "pretrained");
  // a flag given wins over its preset; the others still come from it
  const Run mixed = run(init + " --lr 1e-3 --no-bucket --max-length 32 --output " + (tmp.dir / "mixed").string());
  BOOST_TEST_INFO(mixed.output);
  BOOST_REQUIRE_EQUAL(mixed.status, 0);
  const json c = read_json(tmp.dir / "mixed" / "summary.json").at("training");
  BOOST_TEST(c.at("lr").get<double>() == 1e-3);
  BOOST_TEST(c.at("bucket").get<bool>() == false);
  BOOST_TEST(c.at("max_length").get<int64_t>() == 32);
  BOOST_TEST(c.at("lr_schedule").get<std::string>() == "linear");
  BOOST_TEST(c.at("warmup").get<double>() == 0.1);
}

BOOST_AUTO_TEST_CASE(ood_checks_its_flags_and_files_first) {
  addrop::testing::TempDir tmp("ood");
  write_task(tmp.dir, 10, 10);  // for vocab.txt
  const fs::path model = write_config_only_checkpoint(tmp.dir, 2);
  const fs::path hans = tmp.dir / "hans.tsv", empty = tmp.dir / "empty_hans.tsv";
  std::ofstream(hans) << "gold_label\tsentence1\tsentence2\theuristic\nentailment\tthe plot\tthe plot\tsubsequence\n";
  std::ofstream(empty) << "gold_label\tsentence1\tsentence2\theuristic\n";
  const std::string base = "--model " + model.string() + " --hans ";
  const Run r = run_ood(base + empty.string());
  BOOST_TEST_INFO(r.output);
  BOOST_TEST(r.status != 0);
  BOOST_TEST(r.output.find(empty.string() + ": no examples") != std::string::npos);
  for (const auto& [flag, why] : {std::pair<std::string, std::string>{"--batch-size 0", "at least 1"},
                                  {"--max-length 2", "at least 4"},
                                  {"--max-length 129", "128 positions"},
                                  {"--threads -1", "0 or more"}}) {
    const Run bad = run_ood(base + hans.string() + " " + flag);
    BOOST_TEST_INFO(flag << ": " << bad.output);
    BOOST_TEST(bad.status != 0);
    BOOST_TEST(bad.output.find(flag + ": ") != std::string::npos);
    BOOST_TEST(bad.output.find(why) != std::string::npos);
    BOOST_TEST(bad.output.find("examples from") == std::string::npos);  // before reading the file
  }
}

// addrop-train-tiny's own flags: each named with its value; a run too short for
// cross-tuning to reach AD-DROP says so before training.
BOOST_AUTO_TEST_CASE(train_tiny_checks_each_flag) {
  auto run_tiny = [](const std::string& args) { return addrop::testing::run_program(ADDROP_TRAIN_TINY_BINARY, args); };
  const std::pair<std::string, std::string> cases[] = {
      {"--steps 0", "at least 1"},  {"--epoch-steps 0", "at least 1"}, {"--batch 0", "at least 1"},
      {"--threads 0", "at least 1"}, {"--lr -1", "positive"},          {"--p 1.5", "[0, 1]"},
      {"--q -0.5", "[0, 1]"}};
  for (const auto& [flag, why] : cases) {
    const Run r = run_tiny(flag);
    BOOST_TEST_INFO(flag << ": " << r.output);
    BOOST_TEST(r.status != 0);
    BOOST_TEST(r.output.find(flag + ": ") != std::string::npos);
    BOOST_TEST(r.output.find(why) != std::string::npos);
    BOOST_TEST(r.output.find("BERT classifier") == std::string::npos);  // refused before building the model
  }
  const Run fraction = run_tiny("--steps 1.5");
  BOOST_TEST(fraction.status != 0);
  BOOST_TEST(fraction.output.find("--steps: \"1.5\" is not a whole number") != std::string::npos);
  const Run one_epoch = run_tiny("--steps 4 --epoch-steps 10 --batch 8");
  BOOST_TEST_INFO(one_epoch.output);
  BOOST_TEST(one_epoch.status == 0);
  const auto warning = one_epoch.output.find("warning: --steps 4 with --epoch-steps 10");
  BOOST_REQUIRE(warning != std::string::npos);
  BOOST_TEST(warning < one_epoch.output.find("step   1"));
}
