// addrop-glue: fine-tunes a BERT-family model on a GLUE task, plain or with AD-DROP,
// as the paper's experiments do: one run, several runs on one plot (--runs none,ga,rd),
// several seeds (--seeds 1,2,3), or the p/q grid search (--grid p=0.1:0.9:0.1,q=...).
// Each run writes metrics.jsonl, summary.json, the best checkpoint (Hugging Face
// layout, with the tokenizer files) and the state to resume from; the output folder
// gets curves.svg (train loss, dev loss and dev metric per epoch, every run) and, for
// several runs, a table (table.md, table.json).
//
//   addrop-glue --task sst2 --init mini --vocab VOCAB.txt --data GLUE_DIR --output OUT
//   addrop-glue --task rte --model bert-base-uncased/ --data GLUE_DIR --output OUT --attribution ga --p 0.3 --q 0.3
#include <CLI/CLI.hpp>

#include <addrop/data/glue.hpp>
#include <addrop/metrics/glue.hpp>
#include <addrop/text/tokenizer.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "distributed.hpp"
#include "trainer_cli.hpp"
#include "glue_train.hpp"
#include "memory_check.hpp"

namespace fs = std::filesystem;
using namespace addrop;

namespace {

struct Options : addrop_examples::RunFlags {
  std::string task;
  std::string data, train_file, dev_file, dev_mm_file, test_file;
  bool predict = false, skip_bad_rows = false;
  addrop_examples::AdDropFlags addrop;
  addrop_examples::TrainFlags training;
};

/// Task data file: an explicit --train/--dev/--test, else <data>/<TaskDir>/<split file>.
fs::path split_file(const Options& o, data::GlueTask task, const std::string& given, const std::string& split,
                    bool required) {
  if (!given.empty()) {
    if (!fs::exists(given)) throw std::runtime_error(given + ": not found");
    return given;
  }
  if (o.data.empty()) throw std::runtime_error("--data DIR (or --train/--dev files) is needed");
  fs::path dir = o.data;
  const auto& info = data::task_info(task);
  if (fs::exists(dir / info.dir)) dir /= info.dir;
  try {
    return data::glue_split_path(task, dir, split);
  } catch (const std::exception&) {
    if (required) throw;
    return {};
  }
}


}  // namespace

int main(int argc, char** argv) {
  addrop_examples::ProcessGroup process_group(argc, argv, "addrop-glue");
  Options o;
  CLI::App app{"addrop-glue: fine-tune a BERT-family model on a GLUE task, with or without AD-DROP"};
  app.get_formatter()->column_width(34);
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)->always_capture_default();  // a later flag wins; --help shows defaults
  app.add_option("--task", o.task, "sst2, mnli, qnli, qqp, cola, stsb, mrpc or rte")->required();
  addrop_examples::add_model_flags(app, o);
  app.add_option("--data", o.data, "GLUE folder (holding SST-2/, RTE/, ... or the task's own files)");
  app.add_option("--train", o.train_file, "training file (overrides --data)");
  app.add_option("--dev", o.dev_file, "dev file (overrides --data)");
  app.add_option("--dev-mismatched", o.dev_mm_file, "MNLI: the mismatched dev file (overrides --data)");
  app.add_option("--test", o.test_file, "test file for --predict (overrides --data)");
  app.add_flag("--predict", o.predict, "write the GLUE leaderboard TSV of the test split with the best checkpoint");
  app.add_flag("--skip-bad-rows", o.skip_bad_rows, "skip (and count) malformed rows instead of failing");
  addrop_examples::add_run_flags(app, o);
  addrop_examples::add_addrop_flags(app, o.addrop);
  addrop_examples::add_train_flags(app, o.training);
  CLI11_PARSE(app, argc, argv);

  try {
    const data::GlueTask task = data::parse_task(o.task);
    const auto& info = data::task_info(task);
    addrop_examples::check_run_flags(o);
    addrop_examples::apply_defaults(o.training, app, addrop_examples::defaults_for(o));
    addrop_examples::validate(o.addrop);
    addrop_examples::validate(o.training);
    // The runs: attributions x seeds, or the p/q grid.
    const std::vector<addrop_examples::RunSpec> specs =
        addrop_examples::plan_runs(o.addrop, addrop_examples::split_list(o.runs), addrop_examples::split_list(o.seeds), o.grid);
    // Every data file is found before anything is read or written.
    const fs::path train_file = split_file(o, task, o.train_file, "train", true);
    const fs::path dev_file = split_file(o, task, o.dev_file, "dev", true);
    const fs::path mm_file = task == data::GlueTask::MNLI ? split_file(o, task, o.dev_mm_file, "dev_mismatched", false) : fs::path();
    const fs::path test_file = o.predict ? split_file(o, task, o.test_file, "test", true) : fs::path();

    // Tokenizer and model config.
    auto [tokenizer, config] = addrop_examples::setup_model(
        o, info.regression ? models::Task::Regression : models::Task::SequenceClassification, info.num_labels);
    addrop_examples::check_training_memory(config, o);  // before any data is read; again once it is tokenized

    // Data. An empty set is refused: training needs examples, and an empty evaluation
    // set would score 0 and still name a "best" checkpoint.
    data::ReadOptions ropt{.skip_bad_rows = o.skip_bad_rows};
    auto load = [&](const fs::path& file, const char* what) {
      data::ReadReport report;
      auto examples = data::read_glue(task, file, ropt, &report);
      const std::string skipped = report.skipped ? " (" + std::to_string(report.skipped) + " bad rows skipped)" : "";
      if (examples.empty()) throw std::runtime_error(file.string() + ": no " + what + " examples" + skipped);
      std::fprintf(stderr, "%s: %zu %s examples from %s%s\n", info.name.c_str(), examples.size(), what,
                   file.string().c_str(), skipped.c_str());
      return examples;
    };
    auto train_examples = load(train_file, "training");
    if (o.training.max_train_examples > 0 && static_cast<int64_t>(train_examples.size()) > o.training.max_train_examples)
      train_examples.resize(static_cast<std::size_t>(o.training.max_train_examples));
    const auto dev_examples = load(dev_file, "dev");
    std::vector<data::Example> mm_examples, test_examples;
    if (!mm_file.empty()) mm_examples = load(mm_file, "dev-mismatched");
    if (o.predict) test_examples = load(test_file, "test");
    addrop_examples::warn_if_addrop_never_runs("addrop-glue", o.addrop, o.training, specs);
    const fs::path out = addrop_examples::prepare_output(o);

    glue::Job job;
    job.config = config;
    job.model_dir = o.model;
    job.threads = o.threads;
    int64_t truncated = 0;
    const auto t0 = std::chrono::steady_clock::now();
    job.train = addrop_examples::encode_examples(*tokenizer, train_examples, o.training.max_length, info.regression, &truncated);
    job.dev = addrop_examples::encode_examples(*tokenizer, dev_examples, o.training.max_length, info.regression, &truncated);
    job.dev_mismatched = addrop_examples::encode_examples(*tokenizer, mm_examples, o.training.max_length, info.regression, &truncated);
    job.test = addrop_examples::encode_examples(*tokenizer, test_examples, o.training.max_length, info.regression, &truncated);
    std::fprintf(stderr, "tokenized %zu examples in %.2f s (%lld truncated to %lld tokens)\n",
                 job.train.size() + job.dev.size() + job.dev_mismatched.size() + job.test.size(),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                 static_cast<long long>(truncated), static_cast<long long>(o.training.max_length));
    addrop_examples::check_training_memory(
        config, o, addrop_examples::longest_sequence(job.train, job.dev, job.dev_mismatched, job.test));
    if (!train::has_labels(job.dev, info.regression))
      throw std::runtime_error("the dev file has no labels (is it a test file?)");
    job.pad_id = tokenizer->pad_id();
    job.layers = o.addrop.layers;
    job.attribution_precision = addrop_examples::attribution_precision(o.addrop.attribution_precision);
    job.side = o.addrop.side;
    job.schedule = o.addrop.schedule;
    job.ig_steps = o.addrop.ig_steps;
    job.eval_batch_size = o.training.eval_batch_size;
    job.trainer = addrop_examples::trainer_options(o.training);
    job.sampler = addrop_examples::sampler_options(o.training);
    job.trainer.save_extra = [&](const fs::path& dir) { tokenizer->save(dir); };
    job.metrics = [task](const train::Predictions& pred, const std::vector<data::Feature>& gold) {
      train::EvalResult r;
      r.loss = pred.loss;
      metrics::MetricValues values;
      if (data::task_info(task).regression) {
        std::vector<double> g(gold.size());
        for (std::size_t i = 0; i < gold.size(); ++i) g[i] = gold[i].target;
        values = metrics::glue_metrics(task, std::span<const double>(pred.scores), std::span<const double>(g));
      } else {
        std::vector<int32_t> g(gold.size());
        for (std::size_t i = 0; i < gold.size(); ++i) g[i] = gold[i].label;
        values = metrics::glue_metrics(task, std::span<const int32_t>(pred.labels), std::span<const int32_t>(g));
      }
      for (const auto& [name, v] : values.values) r.metrics[name] = v;
      r.main = values.at(values.main);
      return r;
    };
    job.predict_test = o.predict;
    job.write_predictions = [task](const train::Predictions& pred, const fs::path& dir) {
      const fs::path file = dir / data::leaderboard_file_name(task, "test");
      if (data::task_info(task).regression) data::write_leaderboard(task, file, std::span<const double>(pred.scores));
      else data::write_leaderboard(task, file, std::span<const int32_t>(pred.labels));
      std::fprintf(stderr, "test predictions: %s\n", file.string().c_str());
    };

    const bool several = specs.size() > 1;
    if (several) {
      job.trainer.save_last = true;
      if (!o.grid.empty()) job.trainer.save_best = false;  // a grid keeps its table, not 81 checkpoints
    }

    return addrop_examples::run_all(o, specs, out, info, info.main_metric, "", [&](const auto& spec, const fs::path& dir, bool resume) {
      job.trainer.resume = resume;
      const glue::RunOutcome outcome =
          addrop_examples::on_device(o.device, o.threads, o.precision, [&](auto device) { return glue::train_run(device, job, spec, dir); });
      return addrop_examples::RunDone{addrop_examples::summarize(outcome, spec, info, o.training, o), outcome.result};
    });
  } catch (const std::exception& e) {
    return process_group.fail(e);
  }
}
