// addrop-ner: fine-tunes a BERT-family model (BERT, ELECTRA or RoBERTa layouts) on
// CoNLL-2003 named-entity recognition, plain or with AD-DROP at the token level, as the
// paper's NER experiment (ELECTRA-base; all layers as targets, p 0.8, q 0.1).
//
//   addrop-ner --init mini --vocab bert-base-cased/vocab.txt --data conll2003/ --output OUT --lr 1e-3
//   addrop-ner --model electra-base-discriminator/ --data conll2003/ --output OUT --lr 2e-5 --attribution ga
//
// Words are tokenized into sub-tokens (the first sub-token carries the word's label; the
// others -100, or a label with --label-all-tokens); evaluation maps the first sub-token's
// prediction back to each word and scores entities as conlleval does. Every epoch is
// evaluated on valid.txt; the best checkpoint (valid entity F1) scores test.txt and writes
// test_predictions.txt ("word gold predicted", conlleval's input), test_report.txt
// (conlleval's report), metrics.jsonl, summary.json; the output folder gets curves.svg.
#include <CLI/CLI.hpp>

#include <addrop/data/conll.hpp>
#include <addrop/data/token_alignment.hpp>
#include <addrop/metrics/entity.hpp>
#include <addrop/text/tokenizer.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "distributed.hpp"
#include "trainer_cli.hpp"
#include "memory_check.hpp"
#include "ner_train.hpp"

namespace fs = std::filesystem;
using namespace addrop;

namespace {

struct Options : addrop_examples::RunFlags {
  std::string data, train_file, valid_file, test_file;
  std::string scheme = "iob2";
  bool label_all_tokens = false;
  std::string continuation = "b-to-i";
  std::string labels;  ///< comma list; empty: the checkpoint's id2label, else the training file's
  bool test_each_epoch = false;
  addrop_examples::AdDropFlags addrop;
  addrop_examples::TrainFlags training;
};

fs::path split_file(const Options& o, const std::string& given, const char* name, const char* flag) {
  if (given.empty() && o.data.empty())
    throw std::runtime_error(std::string("--data DIR (or ") + flag + " FILE) is needed");
  if (!given.empty()) {
    if (!fs::is_regular_file(given)) throw std::runtime_error(std::string(flag) + " " + given + ": no such file");
    return given;
  }
  const fs::path p = fs::path(o.data) / name;
  if (!fs::is_regular_file(p)) throw std::runtime_error("--data " + o.data + ": no " + name + " in it (" + p.string() + ")");
  return p;
}

/// Every value flag of addrop-ner and the flags that only apply with another, each with
/// its own message naming the flag and the value given (before any file is read).
void check_ner_flags(const CLI::App& app, const Options& o) {
  auto need = [](bool ok, const std::string& flag, const std::string& value, const std::string& rule) {
    if (!ok) throw std::invalid_argument(flag + " " + value + ": " + rule);
  };
  const auto& t = o.training;
  const auto& a = o.addrop;
  auto num = [](double v) { return addrop_examples::number_name(v); };
  auto text = [](int64_t v) { return std::to_string(v); };
  need(t.epochs > 0, "--epochs", text(t.epochs), "must be at least 1");
  need(t.batch_size > 0, "--batch-size", text(t.batch_size), "must be at least 1");
  need(t.eval_batch_size > 0, "--eval-batch-size", text(t.eval_batch_size), "must be at least 1");
  need(t.lr > 0 && std::isfinite(t.lr), "--lr", num(t.lr), "must be a positive number");
  need(t.max_length >= 4, "--max-length", text(t.max_length), "must be at least 4 ([CLS], a token, [SEP] and room)");
  need(t.max_length <= std::numeric_limits<int32_t>::max(), "--max-length", text(t.max_length),
       "exceeds the int32 positions of a batch");
  need(t.warmup >= 0, "--warmup", num(t.warmup), "must be a fraction of the steps (< 1) or a step count, not negative");
  need(t.weight_decay >= 0, "--weight-decay", num(t.weight_decay), "must not be negative");
  need(t.max_grad_norm >= 0, "--max-grad-norm", num(t.max_grad_norm), "must not be negative (0 turns clipping off)");
  need(t.patience >= 0, "--patience", text(t.patience), "must not be negative (0 turns early stopping off)");
  need(t.eval_every >= 0, "--eval-every", text(t.eval_every), "must not be negative (0: every epoch)");
  need(t.max_train_examples >= 0, "--max-train-examples", text(t.max_train_examples), "must not be negative (0: all)");
  need(!app.count("--dropout") || (t.dropout >= 0 && t.dropout < 1), "--dropout", num(t.dropout), "must be in [0, 1)");
  need(a.p >= 0 && a.p <= 1, "--p", num(a.p), "must be in [0, 1]");
  need(a.q >= 0 && a.q <= 1, "--q", num(a.q), "must be in [0, 1]");
  need(a.ig_steps > 0, "--ig-steps", text(a.ig_steps), "must be at least 1");
  need(o.threads >= 0, "--threads", text(o.threads), "must not be negative (0: all cores)");
  if (!o.model.empty() && !o.vocab.empty())
    throw std::invalid_argument("--vocab " + o.vocab + ": only with --init; a --model folder brings its own tokenizer");
  if (app.count("--continuation") && !o.label_all_tokens)
    throw std::invalid_argument("--continuation " + o.continuation + ": only with --label-all-tokens (without it, "
                                "continuation sub-tokens are not labelled)");
}

struct Split {
  fs::path file;
  std::vector<data::Sentence> sentences;  // tags in IOB2
  data::TokenFeatures features;
  std::vector<std::vector<std::string>> gold;
};

std::string scheme_name(data::TagScheme s) { return s == data::TagScheme::IOB1 ? "iob1" : "iob2"; }

/// The label order of a checkpoint's token-classification head: config.json's id2label
/// when it names real tags (O, B-X, I-X); empty for a generic LABEL_0.. or no id2label
/// (a fresh head, whose order the training file may choose).
std::vector<std::string> checkpoint_labels(const fs::path& model_dir) {
  const fs::path file = model_dir / "config.json";
  const auto j = nlohmann::json::parse(train::read_file(file));
  if (!j.contains("id2label") || !j.at("id2label").is_object() || j.at("id2label").empty()) return {};
  const auto& map = j.at("id2label");
  std::vector<std::string> labels(map.size());
  for (const auto& [key, value] : map.items()) {
    std::size_t id = 0;
    const auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), id);
    if (ec != std::errc() || end != key.data() + key.size() || id >= labels.size() || !value.is_string())
      throw std::runtime_error(file.string() + ": id2label key \"" + key + "\" is not an id in 0.." +
                               std::to_string(labels.size() - 1) + " with a string label");
    labels[id] = value.get<std::string>();
  }
  for (const auto& l : labels)
    if (l.rfind("LABEL_", 0) == 0) return {};  // Hugging Face's generic default names (LABEL_0, LABEL_1, ...): no real label list
  data::check_label_list(labels, file.string() + " (id2label)");
  return labels;
}

}  // namespace

int main(int argc, char** argv) {
  addrop_examples::ProcessGroup process_group(argc, argv, "addrop-ner");
  Options o;
  // The reference's CoNLL-2003 setting: every encoder layer a target, p 0.8, q 0.1.
  o.addrop.p = 0.8;
  o.addrop.q = 0.1;
  o.addrop.layers.clear();  // empty = all layers (filled in once the model is known)
  CLI::App app{"addrop-ner: fine-tune a BERT-family model on CoNLL-2003 NER, with or without AD-DROP"};
  app.get_formatter()->column_width(34);
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)->always_capture_default();  // --help shows defaults
  addrop_examples::add_model_flags(app, o);
  app.add_option("--data", o.data, "CoNLL-2003 folder with train.txt, valid.txt, test.txt");
  app.add_option("--train", o.train_file, "training file (overrides --data)");
  app.add_option("--valid", o.valid_file, "validation file (overrides --data)");
  app.add_option("--test", o.test_file, "test file (overrides --data; scored with the best checkpoint)");
  app.add_option("--scheme", o.scheme, "tagging scheme of the files: iob2 (B- starts every entity) or iob1 (original CoNLL)")
      ->check(CLI::IsMember({"iob1", "iob2"}));
  app.add_flag("--label-all-tokens", o.label_all_tokens,
               "label every sub-token of a word (the AD-DROP reference's setting), not only the first");
  app.add_option("--continuation", o.continuation,
                 "with --label-all-tokens: b-to-i (B-X continues as I-X; run_ner.py >= 4.11, the reference) or same")
      ->check(CLI::IsMember({"b-to-i", "same"}));
  app.add_flag("--test-each-epoch", o.test_each_epoch, "also score the test set at every evaluation (test_* metrics)");
  app.add_option("--labels", o.labels,
                 "label list in the head's order, e.g. O,B-PER,I-PER,... (default: the --model checkpoint's id2label, "
                 "else O then B-/I- of every type in the training file)");
  addrop_examples::add_run_flags(app, o);
  addrop_examples::add_addrop_flags(app, o.addrop);
  app.get_option("--layers")->default_str("all");
  addrop_examples::add_train_flags(app, o.training);
  CLI11_PARSE(app, argc, argv);

  try {
    // Every option is checked before any work: flags, files, the model and its memory need.
    check_ner_flags(app, o);
    addrop_examples::check_run_flags(o);
    addrop_examples::apply_defaults(o.training, app, addrop_examples::defaults_for(o));
    addrop_examples::validate(o.training);
    const data::TagScheme scheme = o.scheme == "iob1" ? data::TagScheme::IOB1 : data::TagScheme::IOB2;
    const std::vector<addrop_examples::RunSpec> specs =
        addrop_examples::plan_runs(o.addrop, addrop_examples::split_list(o.runs), addrop_examples::split_list(o.seeds), o.grid);
    std::vector<std::string> labels;  // the label order: given, or the checkpoint head's, or the training file's
    std::string label_source = "the training file";
    if (!o.labels.empty()) {
      labels = addrop_examples::split_list(o.labels);
      label_source = "--labels";
      data::check_label_list(labels, label_source);
    } else if (!o.model.empty()) {
      labels = checkpoint_labels(o.model);
      if (!labels.empty()) label_source = (fs::path(o.model) / "config.json").string() + " (id2label)";
    }
    const fs::path train_file = split_file(o, o.train_file, "train.txt", "--train");
    const fs::path valid_file = split_file(o, o.valid_file, "valid.txt", "--valid");
    const bool have_test = !o.test_file.empty() || (!o.data.empty() && fs::exists(fs::path(o.data) / "test.txt"));
    const fs::path test_file = have_test ? split_file(o, o.test_file, "test.txt", "--test") : fs::path();
    if (o.test_each_epoch && !have_test)
      throw std::runtime_error("--test-each-epoch: no test set (give --test FILE, or --data with a test.txt)");

    // Tokenizer and model config (the number of labels is set once the data is read).
    auto [tokenizer, config] = addrop_examples::setup_model(o, models::Task::TokenClassification,
                                                            static_cast<int64_t>(labels.size()));
    if (o.addrop.layers.empty())
      for (int l = 0; l < config.num_hidden_layers; ++l) o.addrop.layers.push_back(l);
    addrop_examples::validate(o.addrop);
    addrop_examples::check_training_memory(config, o);  // before any data is read; again once it is tokenized

    // Data: tags are read in the file's scheme and trained on in IOB2. An empty split is
    // an error naming its file (no training, and no F1 over zero sentences).
    auto read = [&](const fs::path& file, const char* what) {
      Split s;
      s.file = file;
      try {
        s.sentences = data::read_conll(file, scheme, data::TagScheme::IOB2);
      } catch (const data::SchemeError& e) {
        throw std::runtime_error(std::string(e.what()) + " (--scheme " + scheme_name(e.suggested) + ")");
      }
      if (s.sentences.empty())
        throw std::runtime_error(file.string() + ": no " + what + " sentences (a CoNLL file has one \"word POS chunk NER\" "
                                 "line per token, a blank line after each sentence)");
      int64_t words = 0;
      for (const auto& x : s.sentences) words += static_cast<int64_t>(x.words.size());
      std::fprintf(stderr, "conll2003: %zu %s sentences (%lld words) from %s\n", s.sentences.size(), what,
                   static_cast<long long>(words), file.string().c_str());
      return s;
    };
    Split train = read(train_file, "training");
    if (o.training.max_train_examples > 0 && static_cast<int64_t>(train.sentences.size()) > o.training.max_train_examples)
      train.sentences.resize(static_cast<std::size_t>(o.training.max_train_examples));
    Split valid = read(valid_file, "validation");
    Split test;
    if (have_test) test = read(test_file, "test");
    if (labels.empty()) labels = data::label_set(train.sentences);
    config.num_labels = static_cast<int64_t>(labels.size());

    // Tokenization and label alignment.
    const data::TokenAlignOptions align{.max_length = o.training.max_length,
                                        .label_all_tokens = o.label_all_tokens,
                                        .continuation = o.continuation == "same" ? data::Continuation::Same
                                                                                 : data::Continuation::BToI};
    const std::vector<int32_t> continuation = data::b_to_i_map(labels);
    const auto t0 = std::chrono::steady_clock::now();
    auto encode = [&](Split& s, const char* what) {
      std::vector<std::vector<std::string>> words;
      std::vector<std::vector<int32_t>> ids;
      for (std::size_t k = 0; k < s.sentences.size(); ++k) {
        const auto& x = s.sentences[k];
        words.push_back(x.words);
        try {
          ids.push_back(data::encode_tags(x.tags, labels));  // throws on a tag outside the label list
        } catch (const std::invalid_argument& e) {
          throw std::invalid_argument(s.file.string() + ":" + std::to_string(x.line) + ": the sentence from this line, " +
                                      e.what());
        }
        s.gold.push_back(x.tags);
      }
      s.features = data::encode_sentences(*tokenizer, words, ids, align, continuation);
      if (s.features.truncated_words || s.features.empty_words)
        std::fprintf(stderr, "%s: %lld words cut by truncation to %lld tokens (in %lld sentences; predicted O)%s\n", what,
                     static_cast<long long>(s.features.truncated_words), static_cast<long long>(o.training.max_length),
                     static_cast<long long>(s.features.truncated_sentences),
                     s.features.empty_words ? (", " + std::to_string(s.features.empty_words) + " words without tokens").c_str() : "");
    };
    try {
      encode(train, "train");
      encode(valid, "valid");
      if (have_test) encode(test, "test");
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error(std::string(e.what()) + " (the " + std::to_string(labels.size()) + " labels come from " +
                               label_source + ")");
    }
    addrop_examples::check_training_memory(config, o,
                                           addrop_examples::longest_sequence(train.features.features, valid.features.features,
                                                                             test.features.features));
    addrop_examples::warn_if_addrop_never_runs("addrop-ner", o.addrop, o.training, specs);
    const fs::path out = addrop_examples::prepare_output(o);

    std::fprintf(stderr, "tokenized %zu sentences in %.2f s; %zu labels (from %s):",
                 train.sentences.size() + valid.sentences.size() + test.sentences.size(),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), labels.size(),
                 label_source.c_str());
    for (const auto& l : labels) std::fprintf(stderr, " %s", l.c_str());
    std::fprintf(stderr, "\n");

    ner::Job job;
    job.config = config;
    job.model_dir = o.model;
    job.labels = labels;
    job.train = std::move(train.features);
    job.dev = std::move(valid.features);
    job.dev_gold = valid.gold;
    job.test = std::move(test.features);
    job.test_gold = test.gold;
    job.pad_id = tokenizer->pad_id();
    job.eval_batch_size = o.training.eval_batch_size;
    job.layers = o.addrop.layers;
    job.attribution_precision = addrop_examples::attribution_precision(o.addrop.attribution_precision);
    job.side = o.addrop.side;
    job.schedule = o.addrop.schedule;
    job.ig_steps = o.addrop.ig_steps;
    job.test_each_epoch = o.test_each_epoch && have_test;
    job.trainer = addrop_examples::trainer_options(o.training);
    job.sampler = addrop_examples::sampler_options(o.training);
    job.trainer.save_extra = [&](const fs::path& dir) {
      tokenizer->save(dir);
      // config.json with the label names (Hugging Face's id2label / label2id).
      auto j = nlohmann::json::parse(train::read_file(dir / "config.json"));
      nlohmann::json id2label = nlohmann::json::object(), label2id = nlohmann::json::object();
      for (std::size_t i = 0; i < labels.size(); ++i) {
        id2label[std::to_string(i)] = labels[i];
        label2id[labels[i]] = i;
      }
      j["id2label"] = id2label;
      j["label2id"] = label2id;
      train::write_json_atomic(dir / "config.json", j);
    };

    data::TaskInfo info{};
    info.name = "conll2003";
    info.main_metric = "f1";
    const std::string detail = "layers " + std::to_string(job.layers.size()) + ", ";
    return addrop_examples::run_all(o, specs, out, info, "entity F1", detail, [&](const auto& spec, const fs::path& dir, bool resume) {
      job.trainer.resume = resume;
      const ner::Outcome outcome =
          addrop_examples::on_device(o.device, o.threads, o.precision, [&](auto device) { return ner::train_run(device, job, spec, dir); });
      nlohmann::json summary = addrop_examples::summarize(outcome.run, spec, info, o.training, o);
      summary["scheme"] = scheme_name(scheme);
      summary["labels"] = labels;
      summary["layers"] = job.layers;
      summary["label_all_tokens"] = o.label_all_tokens;
      if (o.label_all_tokens) summary["continuation"] = o.continuation;
      summary["max_length"] = o.training.max_length;
      summary["truncated_words"] = {{"train", job.train.truncated_words},
                                    {"valid", job.dev.truncated_words},
                                    {"test", job.test.truncated_words}};
      if (outcome.test) {
        const auto& t = *outcome.test;
        nlohmann::json tj = t.metrics();
        tj["loss"] = std::isfinite(t.loss) ? nlohmann::json(t.loss) : nlohmann::json(nullptr);
        tj["checkpoint"] = outcome.test_from_best ? "best" : "last";
        tj["gold_entities"] = t.counts.total().gold;
        tj["predicted_entities"] = t.counts.total().predicted;
        tj["correct_entities"] = t.counts.total().correct;
        summary["test"] = tj;
        // conlleval's input, in the files' own scheme, and its report.
        std::vector<data::Sentence> sentences = test.sentences;
        std::vector<std::vector<std::string>> predicted = t.predicted;
        if (scheme == data::TagScheme::IOB1) {
          for (auto& x : sentences) x.tags = data::iob2_to_iob1(x.tags);
          for (auto& x : predicted) x = data::iob2_to_iob1(x);
        }
        if (addrop_examples::writes_files()) {
          data::write_conll_predictions(dir / "test_predictions.txt", sentences, predicted);
          train::write_file_atomic(dir / "test_report.txt", t.counts.report());
        }
        std::fprintf(stderr, "%s: test (%s checkpoint): F1 %.4f, precision %.4f, recall %.4f; %s\n", spec.name.c_str(),
                     outcome.test_from_best ? "best" : "last", t.counts.f1(), t.counts.precision(), t.counts.recall(),
                     (dir / "test_predictions.txt").c_str());
        if (!o.grid.empty() && addrop_examples::writes_files()) fs::remove_all(dir / "best");  // a grid keeps its table, not 81 checkpoints
      }
      return addrop_examples::RunDone{std::move(summary), outcome.run.result};
    });
  } catch (const std::exception& e) {
    return process_group.fail(e);
  }
}
