// addrop-ood: out-of-distribution evaluation of models trained with addrop-glue, as in
// the paper: an MNLI model on HANS (entailment vs non-entailment; neutral and
// contradiction count as non-entailment; accuracy per heuristic and gold label) and a
// paraphrase model (QQP, MRPC) on PAWS-X English (accuracy, F1).
//
//   addrop-ood --model OUT/best --hans heuristics_evaluation_set.txt [--output hans.json]
//   addrop-ood --model OUT/best --paws-x test_2k.tsv
#include <CLI/CLI.hpp>

#include <addrop/data/data.hpp>
#include <addrop/metrics/metrics.hpp>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "glue_train.hpp"
#include "trainer_cli.hpp"
#include "memory_check.hpp"

namespace fs = std::filesystem;
using namespace addrop;

int main(int argc, char** argv) {
  std::string model, hans, paws, output, device = "cpu", precision = "f32", entail_label;
  int threads = 0;
  int64_t max_length = 128, batch_size = 64;
  bool skip_bad_rows = false;
  CLI::App app{"addrop-ood: evaluate a trained model on HANS (MNLI models) or PAWS-X (paraphrase models)"};
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)->always_capture_default();  // a later flag wins; --help shows defaults
  app.add_option("--model", model, "trained model folder (config.json, model.safetensors, tokenizer files)")->required();
  app.add_option("--hans", hans, "HANS: heuristics_evaluation_set.txt (11 columns) or its TSV form");
  app.add_option("--paws-x", paws, "PAWS-X English TSV (id, sentence1, sentence2, label)");
  app.add_option("--output", output, "write the results as JSON here");
  app.add_option("--max-length", max_length, "tokens per pair after truncation");
  app.add_option("--batch-size", batch_size, "examples per batch");
  app.add_option("--device", device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--threads", threads, "CPU threads (0: all cores)");
  addrop_examples::add_precision_flag(app, precision);
  app.add_flag("--skip-bad-rows", skip_bad_rows, "skip (and count) malformed rows instead of failing");
  CLI11_PARSE(app, argc, argv);
  try {
    if (hans.empty() == paws.empty()) throw std::runtime_error("give one of --hans FILE or --paws-x FILE");
    addrop_examples::require(max_length >= 4, "--max-length", max_length, "must be at least 4");
    addrop_examples::require(batch_size >= 1, "--batch-size", batch_size, "must be at least 1");
    addrop_examples::require(threads >= 0, "--threads", threads, "must be 0 or more (0: all cores)");
    if (device == "cuda" && !addrop_examples::cuda_available()) throw std::runtime_error("--device cuda: " + addrop_examples::cuda_unavailable_reason());
    const auto tokenizer = addrop_examples::open_tokenizer(model);
    const models::ModelConfig config = io::load_hf_config(model);
    addrop_examples::check_memory(config, {.batch_size = batch_size, .sequence_length = max_length, .optimizer = false}, {.config = model + "/config.json"});
    if (config.task != models::Task::SequenceClassification)
      throw std::runtime_error(model + ": not a sequence classifier");
    addrop_examples::require(max_length <= config.max_position_embeddings, "--max-length", max_length,
                  "exceeds the model's " + std::to_string(config.max_position_embeddings) + " positions");
    const data::ReadOptions ropt{.skip_bad_rows = skip_bad_rows};
    data::ReadReport report;
    const std::string& file = hans.empty() ? paws : hans;
    const auto examples = hans.empty() ? data::read_paws_x(paws, ropt, &report) : data::read_hans(hans, ropt, &report);
    const std::string skipped = report.skipped ? " (" + std::to_string(report.skipped) + " bad rows skipped)" : "";
    // An empty set has no accuracy to report (it would print 0 or NaN).
    if (examples.empty()) throw std::runtime_error(file + ": no examples" + skipped);
    std::fprintf(stderr, "%zu examples from %s%s\n", examples.size(), file.c_str(), skipped.c_str());
    int64_t truncated = 0;
    const auto features = addrop_examples::encode_examples(*tokenizer, examples, max_length, false, &truncated);
    const auto pred = addrop_examples::on_device(device, threads, precision, [&](auto on) {
      return glue::predict_folder(on, model, config, features, tokenizer->pad_id(), batch_size);
    });
    nlohmann::json result{{"model", model}, {"examples", static_cast<int64_t>(examples.size())}, {"truncated", truncated}};
    if (!hans.empty()) {
      // MNLI heads (3 labels, GLUE order contradiction/entailment/neutral): entailment is 1;
      // two-label heads (RTE/QNLI order entailment/not_entailment): entailment is 0.
      if (config.num_labels != 3 && config.num_labels != 2)
        throw std::runtime_error(model + ": HANS needs an NLI head with 2 or 3 labels, not " + std::to_string(config.num_labels));
      std::vector<int32_t> hans_pred(pred.labels.size());
      for (std::size_t i = 0; i < hans_pred.size(); ++i)
        hans_pred[i] = config.num_labels == 3 ? metrics::mnli_to_hans(pred.labels[i]) : pred.labels[i];
      const auto table = metrics::hans_metrics(examples, hans_pred, metrics::HansPredictions::Hans);
      std::printf("HANS (%zu pairs)\n%s", examples.size(), table.to_string().c_str());
      nlohmann::json h{{"accuracy", table.overall.accuracy()},
                       {"entailment", table.by_label[0].accuracy()},
                       {"non_entailment", table.by_label[1].accuracy()}};
      for (const auto& row : table.by_heuristic)
        h[row.name] = {{"accuracy", row.all.accuracy()},
                       {"entailment", row.by_label[0].accuracy()},
                       {"non_entailment", row.by_label[1].accuracy()}};
      result["hans"] = h;
    } else {
      std::vector<int32_t> gold(examples.size());
      for (std::size_t i = 0; i < gold.size(); ++i) gold[i] = examples[i].label;
      if (config.num_labels != 2) throw std::runtime_error(model + ": PAWS-X needs a 2-label paraphrase head");
      const double acc = metrics::accuracy(pred.labels, gold), f1 = metrics::f1_binary(pred.labels, gold);
      std::printf("PAWS-X: accuracy %.4f, F1 %.4f on %zu pairs\n", acc, f1, gold.size());
      result["paws_x"] = {{"accuracy", acc}, {"f1", f1}};
    }
    if (!output.empty()) train::write_json_atomic(output, result);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "addrop-ood: %s\n", e.what());
    return 1;
  }
}
