// End-to-end tests of addrop-ner on small CoNLL files the test writes: a learnable task
// (a capitalised name after "Mr" or "Mrs" is a person, possibly two words; a capitalised
// city after "in" is a location; other capitalised words are O), a WordPiece vocabulary
// where some names split into sub-tokens. Checks learning (entity F1 rises), the outputs
// (metrics.jsonl, summary.json with test scores, test_predictions.txt readable as
// conlleval input, test_report.txt, curves.svg, the best checkpoint with label names),
// token-level AD-DROP in cross-tuning, truncation reports, the IOB1 scheme and clear
// errors. With ADDROP_DATA_DIR holding conll2003/ and bert-base-cased, a short real run.
#define BOOST_TEST_MODULE ner_e2e
#include <boost/test/unit_test.hpp>

#include <addrop/data/conll.hpp>
#include <addrop/metrics/entity.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
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
Run run(const std::string& args) { return addrop::testing::run_program(ADDROP_NER_BINARY, args); }
nlohmann::json read_json(const fs::path& p) { return addrop::testing::read_json_file(p); }
std::vector<nlohmann::json> read_jsonl(const fs::path& p) { return addrop::testing::read_jsonl_file(p); }

const char* const kNames[] = {"Smith", "Jones", "Brown", "Taylor", "Johnson", "Wilson", "Clarkson", "Davies"};
const char* const kFirst[] = {"John", "Anna", "Peter"};
const char* const kCities[] = {"Paris", "Berlin", "London", "Madrid", "Rome"};
const char* const kCapitalO[] = {"Monday", "Friday", "The", "Yesterday", "Police", "Today"};
const char* const kLower[] = {"said", "that", "he", "she", "was", "seen", "on", "the", "team", "won", "lost", "a",
                              "game", "met", "with", "officials", "and", "left", "early"};

struct Corpus {
  uint64_t state = 2024;
  int next(int n) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<int>((state >> 33) % static_cast<uint64_t>(n));
  }
  // One sentence as (word, tag) pairs, IOB2.
  std::vector<std::pair<std::string, std::string>> sentence() {
    std::vector<std::pair<std::string, std::string>> s;
    auto filler = [&](int k) {
      for (int i = 0; i < k; ++i) s.emplace_back(kLower[next(19)], "O");
    };
    if (next(2)) s.emplace_back(kCapitalO[next(6)], "O");
    filler(next(3));
    s.emplace_back(next(2) ? "Mr" : "Mrs", "O");
    if (next(3) == 0) {
      s.emplace_back(kFirst[next(3)], "B-PER");
      s.emplace_back(kNames[next(8)], "I-PER");
    } else {
      s.emplace_back(kNames[next(8)], "B-PER");
    }
    filler(1 + next(3));
    if (next(2)) {
      s.emplace_back("in", "O");
      s.emplace_back(kCities[next(5)], "B-LOC");
    }
    if (next(3) == 0) s.emplace_back(kCapitalO[next(6)], "O");
    s.emplace_back(".", "O");
    return s;
  }
};

/// Writes vocab.txt and train.txt / valid.txt / test.txt (4 columns) in `dir`.
void write_corpus(const fs::path& dir, int train, int valid, int test, bool iob1 = false) {
  fs::create_directories(dir);
  std::ofstream vocab(dir / "vocab.txt");
  for (const char* s : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "Mr", "Mrs", "in", "-", "X"}) vocab << s << "\n";
  // Johnson, Clarkson, Davies split into sub-tokens.
  for (const char* s : {"Smith", "Jones", "Brown", "Taylor", "John", "##son", "Wilson", "Clark", "Dav", "##ies", "Anna",
                        "Peter"})
    vocab << s << "\n";
  for (const char* s : kCities) vocab << s << "\n";
  for (const char* s : kCapitalO) vocab << s << "\n";
  for (const char* s : kLower) vocab << s << "\n";
  vocab.close();
  Corpus c;
  for (auto [name, n] : {std::pair{"train.txt", train}, std::pair{"valid.txt", valid}, std::pair{"test.txt", test}}) {
    std::ofstream f(dir / name);
    f << "-DOCSTART- -X- -X- O\n\n";
    for (int i = 0; i < n; ++i) {
      auto s = c.sentence();
      std::vector<std::string> tags;
      for (auto& [w, t] : s) tags.push_back(t);
      if (iob1) tags = addrop::data::iob2_to_iob1(tags);
      for (std::size_t k = 0; k < s.size(); ++k) f << s[k].first << " X X " << tags[k] << "\n";
      f << "\n";
    }
  }
}

std::string base_args(const fs::path& dir) {
  return "--init tiny --vocab " + (dir / "vocab.txt").string() + " --data " + dir.string() +
         " --batch-size 16 --lr 2e-3 --lr-schedule linear --warmup 0.1 --max-length 32 --threads 2 --no-progress";
}

}  // namespace

BOOST_AUTO_TEST_CASE(learns_writes_outputs_and_cross_tunes) {
  addrop::testing::TempDir tmp("ner");
  write_corpus(tmp.dir, 400, 80, 80);
  const fs::path out = tmp.dir / "out";
  const Run r = run(base_args(tmp.dir) + " --epochs 6 --attribution ga --test-each-epoch --output " + out.string());
  BOOST_TEST_INFO(r.output);
  BOOST_REQUIRE_EQUAL(r.status, 0);
  const json summary = read_json(out / "summary.json");
  BOOST_REQUIRE_EQUAL(summary.at("history").size(), 6u);
  const auto& hist = summary.at("history");
  const double first = hist[0].at("main").get<double>(), best = summary.at("best").get<double>();
  BOOST_TEST_INFO("first F1 " << first << ", best " << best);
  BOOST_TEST(best > first);
  BOOST_TEST(best >= 0.8);  // the rule is learnable
  BOOST_TEST(summary.at("main_metric") == "f1");
  BOOST_TEST(summary.at("layers") == json({0, 1}));  // all layers by default
  BOOST_TEST(summary.at("p").get<double>() == 0.8);
  BOOST_TEST(summary.at("q").get<double>() == 0.1);
  BOOST_TEST(summary.at("test").at("f1").get<double>() >= 0.7);
  BOOST_TEST(summary.at("test").at("checkpoint") == "best");
  BOOST_TEST(hist[5].contains("test_f1"));
  BOOST_TEST(!hist[5].contains("dev_test_f1"));  // test metrics keep their own name
  BOOST_TEST(summary.at("training").at("batch_size").get<int>() == 16);
  BOOST_TEST(summary.at("training").at("lr").get<double>() == 2e-3);
  BOOST_TEST(summary.at("training").at("lr_schedule") == "linear");
  const auto lines = read_jsonl(out / "metrics.jsonl");
  BOOST_REQUIRE_EQUAL(lines.size(), 6u);
  for (int e = 0; e < 6; ++e) {
    BOOST_TEST(lines[e].at("addrop").get<bool>() == (e % 2 == 1));  // cross-tuning
    BOOST_TEST(lines[e].contains("dev_f1"));
    BOOST_TEST(lines[e].contains("dev_f1_PER"));
  }
  BOOST_TEST(lines[5].at("train_loss").get<double>() < lines[0].at("train_loss").get<double>());
  for (const char* f : {"best/config.json", "best/model.safetensors", "best/vocab.txt", "last/trainer_state.json",
                        "curves.svg", "test_predictions.txt", "test_report.txt"})
    BOOST_TEST(fs::exists(out / f), f);
  const json config = read_json(out / "best" / "config.json");
  BOOST_TEST(config.at("architectures")[0] == "BertForTokenClassification");
  BOOST_TEST(config.at("id2label").at("0") == "O");
  BOOST_TEST(config.at("label2id").at("B-PER") == 3);
  // the predictions file is conlleval's input: every test sentence, every word
  const auto pred = addrop::data::read_conll_predictions(out / "test_predictions.txt");
  BOOST_REQUIRE_EQUAL(pred.size(), 80u);
  addrop::metrics::EntityCounts counts;
  for (const auto& s : pred) counts.add(s.gold, s.predicted);
  BOOST_TEST(std::abs(counts.f1() - summary.at("test").at("f1").get<double>()) < 1e-12);
  std::ifstream report(out / "test_report.txt");
  std::string line;
  std::getline(report, line);
  BOOST_TEST(line.find("processed") == 0u);
  for (const auto& e : fs::recursive_directory_iterator(out))
    BOOST_TEST(e.path().filename().string().find(".tmp") == std::string::npos, e.path().string());
  // no clobbering
  const Run again = run(base_args(tmp.dir) + " --epochs 1 --output " + out.string());
  BOOST_TEST(again.status != 0);
  BOOST_TEST(again.output.find("--overwrite") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(label_all_tokens_truncation_and_iob1) {
  addrop::testing::TempDir tmp("ner");
  write_corpus(tmp.dir, 120, 40, 40, /*iob1=*/true);
  const fs::path out = tmp.dir / "out";
  const Run r = run(base_args(tmp.dir) + " --scheme iob1 --label-all-tokens --max-length 8 --epochs 1 --attribution ga "
                    "--schedule always --layers 1 --output " + out.string());
  BOOST_TEST_INFO(r.output);
  BOOST_REQUIRE_EQUAL(r.status, 0);
  BOOST_TEST(r.output.find("cut by truncation") != std::string::npos);
  const json summary = read_json(out / "summary.json");
  BOOST_TEST(summary.at("truncated_words").at("train").get<int64_t>() > 0);
  BOOST_TEST(summary.at("label_all_tokens").get<bool>());
  BOOST_TEST(summary.at("layers") == json({1}));
  BOOST_TEST(summary.at("scheme") == "iob1");
  // predictions in the files' scheme (IOB1): gold column equals the file's tags
  const auto pred = addrop::data::read_conll_predictions(out / "test_predictions.txt");
  const auto test = addrop::data::read_conll(tmp.dir / "test.txt", addrop::data::TagScheme::IOB1,
                                             addrop::data::TagScheme::IOB1);
  BOOST_REQUIRE_EQUAL(pred.size(), test.size());
  for (std::size_t s = 0; s < pred.size(); ++s) {
    BOOST_TEST(pred[s].words == test[s].words, boost::test_tools::per_element());
    BOOST_TEST(pred[s].gold == test[s].tags, boost::test_tools::per_element());
  }
}

BOOST_AUTO_TEST_CASE(several_runs_and_errors) {
  addrop::testing::TempDir tmp("ner");
  write_corpus(tmp.dir, 80, 30, 30);
  const fs::path out = tmp.dir / "runs";
  const Run r = run(base_args(tmp.dir) + " --epochs 1 --runs none,rd --output " + out.string());
  BOOST_TEST_INFO(r.output);
  BOOST_REQUIRE_EQUAL(r.status, 0);
  for (const char* f : {"baseline/summary.json", "rd/summary.json", "rd/test_predictions.txt", "table.md", "curves.svg"})
    BOOST_TEST(fs::exists(out / f), f);
  // a tag in valid.txt that train.txt never has
  std::ofstream(tmp.dir / "valid.txt", std::ios::app) << "Acme X X B-ORG\n\n";
  const Run bad = run(base_args(tmp.dir) + " --epochs 1 --output " + (tmp.dir / "bad").string());
  BOOST_TEST(bad.status == 1);
  BOOST_TEST(bad.output.find("B-ORG") != std::string::npos);
  BOOST_TEST(bad.output.find("valid.txt:") != std::string::npos);  // names the file and line
  const Run layers = run(base_args(tmp.dir) + " --epochs 1 --layers 5 --output " + (tmp.dir / "bad2").string());
  BOOST_TEST(layers.status == 1);
  BOOST_TEST(layers.output.find("--layers 5: no such layer") != std::string::npos);
}

// The head's label order: --labels sets it, the saved checkpoint keeps it (id2label), and a
// run from that checkpoint uses it without being told; a malformed list is refused.
BOOST_AUTO_TEST_CASE(label_order_given_and_kept_by_the_checkpoint) {
  addrop::testing::TempDir tmp("ner");
  write_corpus(tmp.dir, 200, 40, 40);
  const std::vector<std::string> order{"I-PER", "B-PER", "O", "I-LOC", "B-LOC"};
  const Run first = run(base_args(tmp.dir) + " --epochs 3 --labels I-PER,B-PER,O,I-LOC,B-LOC --output " +
                        (tmp.dir / "a").string());
  BOOST_TEST_INFO(first.output);
  BOOST_REQUIRE_EQUAL(first.status, 0);
  BOOST_TEST(first.output.find("(from --labels)") != std::string::npos);
  BOOST_TEST(read_json(tmp.dir / "a" / "summary.json").at("labels") == json(order));
  const json config = read_json(tmp.dir / "a" / "best" / "config.json");
  for (std::size_t i = 0; i < order.size(); ++i) BOOST_TEST(config.at("id2label").at(std::to_string(i)) == order[i]);
  const double trained = read_json(tmp.dir / "a" / "summary.json").at("test").at("f1").get<double>();

  // From the checkpoint: same order, and the trained head scores as before right away.
  const Run second = run("--model " + (tmp.dir / "a" / "best").string() + " --data " + tmp.dir.string() +
                         " --epochs 1 --lr 1e-9 --max-length 32 --threads 2 --no-progress --output " +
                         (tmp.dir / "b").string());
  BOOST_TEST_INFO(second.output);
  BOOST_REQUIRE_EQUAL(second.status, 0);
  BOOST_TEST(second.output.find("config.json (id2label)") != std::string::npos);
  const json b = read_json(tmp.dir / "b" / "summary.json");
  BOOST_TEST(b.at("labels") == json(order));
  BOOST_TEST(std::abs(b.at("test").at("f1").get<double>() - trained) < 0.02, b.at("test").at("f1") << " vs " << trained);

  const Run bad = run(base_args(tmp.dir) + " --epochs 1 --labels O,B-PER,I-PER,B-LOC --output " + (tmp.dir / "c").string());
  BOOST_TEST(bad.status == 1);
  BOOST_TEST(bad.output.find("--labels: B-LOC but no I-LOC") != std::string::npos);
  const Run missing = run(base_args(tmp.dir) + " --epochs 1 --labels O,B-PER,I-PER --output " + (tmp.dir / "d").string());
  BOOST_TEST(missing.status == 1);
  BOOST_TEST(missing.output.find("B-LOC") != std::string::npos);
  BOOST_TEST(missing.output.find("--labels") != std::string::npos);
}

// The real CoNLL-2003 files: the committed sample, or the full set in $ADDROP_DATA_DIR.
BOOST_AUTO_TEST_CASE(real_conll2003_smoke) {
  const fs::path data = addrop::testing::data_root();
  BOOST_TEST_MESSAGE("data: " << addrop::testing::data_root_description());
  addrop::testing::TempDir tmp("ner_real");
  const Run r = run("--init tiny --vocab " + (data / "tokenizers" / "bert-base-cased" / "vocab.txt").string() +
                    " --data " + (data / "conll2003").string() + " --output " + (tmp.dir / "out").string() +
                    " --epochs 1 --max-train-examples 300 --batch-size 32 --lr 1e-3 --max-length 64 --threads 2 "
                    "--no-progress --attribution ga");
  BOOST_TEST_INFO(r.output);
  BOOST_REQUIRE_EQUAL(r.status, 0);
  const json summary = read_json(tmp.dir / "out" / "summary.json");
  BOOST_TEST(summary.at("labels").size() == 9u);
  const auto pred = addrop::data::read_conll_predictions(tmp.dir / "out" / "test_predictions.txt");
  BOOST_TEST(pred.size() == (addrop::testing::full_data() ? 3453u : 248u));
}

// A run that cannot fit in this machine's memory is refused with the flag or config.json
// field that drives it and the numbers (it used to end in std::bad_alloc, naming nothing):
// before any data is read when even one example cannot fit (the model, the length); a
// batch size once the data is tokenized (batches are as long as their longest example),
// still before training.
BOOST_AUTO_TEST_CASE(memory_beyond_the_machine_is_refused_naming_its_cause) {
  addrop::testing::TempDir tmp("ner");
  write_corpus(tmp.dir, 20, 10, 10);
  auto refused = [&](const Run& r, const std::string& out, std::initializer_list<std::string> words, bool data_read = false) {
    BOOST_TEST_INFO(r.output);
    BOOST_TEST(r.status == 1);
    for (const auto& w : words) BOOST_TEST(r.output.find(w) != std::string::npos, w);
    BOOST_TEST(r.output.find("bad_alloc") == std::string::npos);
    BOOST_TEST((r.output.find("conll2003:") != std::string::npos) == data_read);
    BOOST_TEST(r.output.find("epoch") == std::string::npos);  // no training
    BOOST_TEST(!fs::exists(out));                             // nor the output folder made
  };
  const std::string a = (tmp.dir / "a").string(), b = (tmp.dir / "b").string(), c = (tmp.dir / "c").string();
  // base_args gives --max-length 32; a later flag wins.
  refused(run(base_args(tmp.dir) + " --max-length 100000 --output " + a), a,
          {"addrop-ner: --max-length 100000: attention scores need ", "even for one example", "this machine has "});
  refused(run(base_args(tmp.dir) + " --batch-size 100000000 --output " + b), b,
          {"--batch-size 100000000: activations need ", "at sequence length ", "examples per batch fit",
           "this machine has "},
          /*data_read=*/true);
  // A checkpoint folder whose config.json asks for 100000 BERT-base layers.
  const fs::path model = tmp.dir / "huge";
  fs::create_directories(model);
  fs::copy_file(tmp.dir / "vocab.txt", model / "vocab.txt");
  std::ofstream(model / "config.json") << R"({"model_type": "bert", "vocab_size": 60, "hidden_size": 768,
    "num_hidden_layers": 100000, "num_attention_heads": 12, "intermediate_size": 3072})";
  refused(run("--model " + model.string() + " --data " + tmp.dir.string() + " --threads 2 --no-progress --output " + c), c,
          {(model / "config.json").string() + ": num_hidden_layers 100000: the model's weights and gradients alone need ",
           "this machine has "});
}

// An IOB1 file read as IOB2 points to the program's flag, not to a C++ name.
BOOST_AUTO_TEST_CASE(an_iob1_file_read_as_iob2_suggests_the_scheme_flag) {
  addrop::testing::TempDir tmp("ner");
  write_corpus(tmp.dir, 40, 10, 10, /*iob1=*/true);
  const Run r = run(base_args(tmp.dir) + " --epochs 1 --output " + (tmp.dir / "out").string());
  BOOST_TEST_INFO(r.output);
  BOOST_TEST(r.status == 1);
  BOOST_TEST(r.output.find("train.txt:") != std::string::npos);
  BOOST_TEST(r.output.find("not valid IOB2") != std::string::npos);
  BOOST_TEST(r.output.find("--scheme iob1") != std::string::npos);
  BOOST_TEST(r.output.find("TagScheme") == std::string::npos);
}

// An empty split is an error naming its file, before any training: no "no training
// examples" without a file, no F1 of 0 over 0 sentences.
BOOST_AUTO_TEST_CASE(an_empty_split_names_its_file) {
  addrop::testing::TempDir tmp("ner");
  write_corpus(tmp.dir, 40, 10, 10);
  std::ofstream(tmp.dir / "empty.txt") << "";
  std::ofstream(tmp.dir / "docstart_only.txt") << "-DOCSTART- -X- -X- O\n\n";
  const fs::path train = tmp.dir / "train.txt", valid = tmp.dir / "valid.txt";
  struct Case {
    std::string files, file, what;
  };
  const Case cases[] = {
      {"--train " + (tmp.dir / "empty.txt").string() + " --valid " + valid.string(), "empty.txt", "no training sentences"},
      {"--train " + train.string() + " --valid " + (tmp.dir / "docstart_only.txt").string(), "docstart_only.txt",
       "no validation sentences"},
      {"--train " + train.string() + " --valid " + valid.string() + " --test " + (tmp.dir / "empty.txt").string(),
       "empty.txt", "no test sentences"},
  };
  int k = 0;
  for (const auto& c : cases) {
    const fs::path out = tmp.dir / ("out" + std::to_string(k++));
    const Run r = run("--init tiny --vocab " + (tmp.dir / "vocab.txt").string() + " " + c.files +
                      " --epochs 1 --max-length 32 --threads 2 --no-progress --output " + out.string());
    BOOST_TEST_INFO(r.output);
    BOOST_TEST(r.status == 1);
    BOOST_TEST(r.output.find((tmp.dir / c.file).string() + ": " + c.what) != std::string::npos);
    BOOST_TEST(!fs::exists(out / "summary.json"));
    BOOST_TEST(!fs::exists(out / "metrics.jsonl"));  // refused before training
  }
}

// Every option is checked before any work starts, each with its own message naming the
// flag and the value: no data read, no output folder made.
BOOST_AUTO_TEST_CASE(every_flag_is_checked_before_any_work) {
  addrop::testing::TempDir tmp("ner");
  write_corpus(tmp.dir, 20, 10, 10);
  const std::string vocab = (tmp.dir / "vocab.txt").string();
  const std::string no_test = "--init tiny --vocab " + vocab + " --train " + (tmp.dir / "train.txt").string() +
                              " --valid " + (tmp.dir / "valid.txt").string() + " --threads 2 --no-progress";
  const std::pair<std::string, std::string> cases[] = {
      {base_args(tmp.dir) + " --epochs 0", "--epochs 0: "},
      {base_args(tmp.dir) + " --batch-size 0", "--batch-size 0: "},
      {base_args(tmp.dir) + " --eval-batch-size 0", "--eval-batch-size 0: "},
      {base_args(tmp.dir) + " --lr -1", "--lr -1: "},
      {base_args(tmp.dir) + " --max-length 2", "--max-length 2: "},
      {base_args(tmp.dir) + " --warmup -1", "--warmup -1: "},
      {base_args(tmp.dir) + " --weight-decay -0.5", "--weight-decay -0.5: "},
      {base_args(tmp.dir) + " --max-grad-norm -1", "--max-grad-norm -1: "},
      {base_args(tmp.dir) + " --patience -1", "--patience -1: "},
      {base_args(tmp.dir) + " --eval-every -1", "--eval-every -1: "},
      {base_args(tmp.dir) + " --max-train-examples -5", "--max-train-examples -5: "},
      {base_args(tmp.dir) + " --dropout 1.5", "--dropout 1.5: "},
      {base_args(tmp.dir) + " --p 1.5", "--p 1.5: "},
      {base_args(tmp.dir) + " --q -0.1", "--q -0.1: "},
      {base_args(tmp.dir) + " --ig-steps 0", "--ig-steps 0: "},
      {base_args(tmp.dir) + " --threads -2", "--threads -2: "},
      {base_args(tmp.dir) + " --continuation same", "--continuation same: only with --label-all-tokens"},
      {base_args(tmp.dir) + " --seeds 1,x", "--seeds: \"x\""},
      {base_args(tmp.dir) + " --runs none,xx", "--runs: \"xx\""},
      {base_args(tmp.dir) + " --grid p=a", "--grid p"},
      {base_args(tmp.dir) + " --layers 9", "--layers 9: no such layer: --init tiny has 2 layers (0..1)"},
      {base_args(tmp.dir) + " --labels O,B-PER", "--labels: B-PER but no I-PER"},
      {base_args(tmp.dir) + " --train " + (tmp.dir / "nowhere.txt").string(), "--train " + (tmp.dir / "nowhere.txt").string()},
      {"--init tiny --vocab " + vocab + " --data " + (tmp.dir / "nowhere").string(), "--data " + (tmp.dir / "nowhere").string()},
      {no_test + " --test-each-epoch", "--test-each-epoch: no test set"},
  };
  int k = 0;
  for (const auto& [args, expected] : cases) {
    const fs::path out = tmp.dir / ("out" + std::to_string(k++));
    const Run r = run(args + " --output " + out.string());
    BOOST_TEST_INFO(args << "\n" << r.output);
    BOOST_TEST(r.status == 1);
    BOOST_TEST(r.output.find("addrop-ner: " + expected) != std::string::npos, expected);
    BOOST_TEST(r.output.find("conll2003:") == std::string::npos);  // no data read
    BOOST_TEST(!fs::exists(out));
  }
}
