#pragma once
// The command-line side shared by the example trainers: the AD-DROP and training flags
// (docs/architecture.md's conventions), the plan of runs (attributions x seeds, or a p/q grid),
// run summaries, the curve plot over runs and the results table.
#include <CLI/CLI.hpp>

#include <addrop/data/glue.hpp>
#include <addrop/io/hf_config.hpp>
#include <addrop/models/presets.hpp>
#include <addrop/text/tokenizer.hpp>
#include <addrop/train/curve_plot.hpp>
#include <addrop/train/run_files.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_common.hpp"
#include "device.hpp"
#include "distributed.hpp"
#include "run_plan.hpp"

namespace addrop_examples {

namespace fs = std::filesystem;

struct AdDropFlags {
  std::string attribution = "ga";
  double p = 0.3, q = 0.3;
  std::vector<int> layers{0};
  std::string side = "high";
  std::string schedule = "cross";
  int ig_steps = 20;
  uint64_t seed = 42;
  std::string attribution_precision = "model";  ///< model, f32 or bf16
};

/// --attribution-precision as AdDropOptions takes it: "model" is unset (the run's precision).
inline std::optional<addrop::Precision> attribution_precision(const std::string& flag) {
  if (flag == "model") return std::nullopt;
  return addrop::parse_precision(flag, "--attribution-precision");
}

/// The training settings whose default depends on where the weights come from. The
/// paper's, for a pretrained checkpoint (--model), barely move random weights in an
/// epoch; from scratch (--init) a higher peak rate with warmup and linear decay learns,
/// and length buckets make its epochs cheaper.
struct TrainDefaults {
  const char* name;  ///< recorded in summary.json
  double lr;
  const char* lr_schedule;
  double warmup;
  bool bucket;
  int64_t max_length;
};
inline constexpr TrainDefaults kFromScratch{"from_scratch", 3e-4, "linear", 0.1, true, 128};
inline constexpr TrainDefaults kPretrained{"pretrained", 2e-5, "constant", 0, false, 128};

inline constexpr double kModelDropout = -1;  ///< --dropout's "keep the model's"

struct TrainFlags {
  int epochs = 3;
  int64_t batch_size = 32, eval_batch_size = 64;
  // lr, lr_schedule, warmup, bucket, max_length: apply_defaults sets those not given.
  double lr = kPretrained.lr, warmup = kPretrained.warmup, weight_decay = 0.01, max_grad_norm = 1.0;
  std::string lr_schedule = kPretrained.lr_schedule, adamw = "hf";
  int64_t max_length = kPretrained.max_length;
  int patience = 0;
  int64_t eval_every = 0;
  int64_t max_train_examples = 0;
  bool bucket = kPretrained.bucket;
  double dropout = kModelDropout;
  bool no_progress = false;
  std::string defaults = kPretrained.name;  ///< the preset of the flags not given
};

/// The flags every example trainer has besides its data and task: where the model
/// comes from, where results go, the device, and the plan of runs.
struct RunFlags {
  std::string model, init, vocab;
  std::string output;
  bool overwrite = false, resume = false;
  std::string device = "cpu";
  int threads = 0;
  std::string precision = "f32";  ///< --precision: f32 or bf16
  std::string runs, seeds, grid;  ///< comma lists; p=a:b:s,q=a:b:s
};

// "FLAG VALUE: RULE" messages, shared with the other example programs (cli_common.hpp).

/// --help's default of a preset setting: "A with --init, B with --model", or A alone.
template <class T>
std::string preset_default(const T& from_scratch, const T& pretrained) {
  std::ostringstream a, b;
  a << from_scratch;
  b << pretrained;
  return a.str() == b.str() ? a.str() : a.str() + " with --init, " + b.str() + " with --model";
}

inline void add_addrop_flags(CLI::App& app, AdDropFlags& f) {
  app.add_option("--attribution", f.attribution, "none (plain fine-tuning), ga, iga, aa or rd")
      ->check(CLI::IsMember({"none", "ga", "iga", "aa", "rd"}));
  app.add_option("--p", f.p, "AD-DROP candidate fraction p in [0,1]");
  app.add_option("--q", f.q, "AD-DROP drop probability q in [0,1]");
  app.add_option("--layers", f.layers, "target layers, e.g. 0 or 0,1,2,3")->delimiter(',');
  app.add_option("--side", f.side, "candidates from the high (default) or low attributions")
      ->check(CLI::IsMember({"high", "low"}));
  app.add_option("--schedule", f.schedule, "cross (AD-DROP in odd epochs), always, never")
      ->check(CLI::IsMember({"cross", "always", "never"}));
  app.add_option("--ig-steps", f.ig_steps, "integrated-gradients steps m (iga)");
  app.add_option("--seed", f.seed, "seed of shuffling, initialisation, dropout and AD-DROP draws");
  app.add_option("--attribution-precision", f.attribution_precision,
                 "precision of AD-DROP's attribution passes: model (as --precision), f32 or bf16")
      ->check(CLI::IsMember({"model", "f32", "bf16"}));
}

inline void add_train_flags(CLI::App& app, TrainFlags& f) {
  app.add_option("--epochs", f.epochs, "training epochs");
  app.add_option("--batch-size", f.batch_size, "examples per optimizer step");
  app.add_option("--eval-batch-size", f.eval_batch_size, "examples per evaluation batch");
  app.add_option("--lr", f.lr, "AdamW learning rate")->default_str(preset_default(kFromScratch.lr, kPretrained.lr));
  app.add_option("--lr-schedule", f.lr_schedule, "constant, linear (warmup then linear decay) or constant-warmup")
      ->check(CLI::IsMember({"constant", "linear", "constant-warmup"}))
      ->default_str(preset_default(kFromScratch.lr_schedule, kPretrained.lr_schedule));
  app.add_option("--warmup", f.warmup, "warmup: a fraction of all steps (< 1) or a step count")
      ->default_str(preset_default(kFromScratch.warmup, kPretrained.warmup));
  app.add_option("--weight-decay", f.weight_decay, "decoupled weight decay (none on biases and LayerNorm weights)");
  app.add_option("--adamw", f.adamw, "hf (transformers' AdamW, the reference's) or torch (torch.optim.AdamW)")
      ->check(CLI::IsMember({"hf", "torch"}));
  app.add_option("--max-grad-norm", f.max_grad_norm, "gradient-norm clipping (0: off)");
  app.add_option("--max-length", f.max_length, "tokens per example after truncation (longest first)")
      ->default_str(preset_default(kFromScratch.max_length, kPretrained.max_length));
  app.add_option("--patience", f.patience, "early stopping after this many evaluations without improvement (0: off)");
  app.add_option("--eval-every", f.eval_every, "evaluate every N steps instead of every epoch (0: every epoch)");
  app.add_option("--max-train-examples", f.max_train_examples, "train on this prefix of the training set (0: all)");
  app.add_flag("--bucket,!--no-bucket", f.bucket, "length-bucketed batches (less padding); --no-bucket: off")
      ->default_str(preset_default(kFromScratch.bucket ? "on" : "off", kPretrained.bucket ? "on" : "off"));
  app.add_option("--dropout", f.dropout, "override the model's hidden and attention dropout, in [0, 1) (-1: the model's)")
      ->default_str("the model's");
  app.add_flag("--no-progress", f.no_progress, "no progress bar");
}

/// Sets the preset settings the user did not give from `d` (CLI11 counts the given ones).
inline void apply_defaults(TrainFlags& f, const CLI::App& app, const TrainDefaults& d) {
  auto given = [&](const char* flag) { return app.count(flag) > 0; };
  if (!given("--lr")) f.lr = d.lr;
  if (!given("--lr-schedule")) f.lr_schedule = d.lr_schedule;
  if (!given("--warmup")) f.warmup = d.warmup;
  if (!given("--bucket")) f.bucket = d.bucket;  // counts --no-bucket too
  if (!given("--max-length")) f.max_length = d.max_length;
  f.defaults = d.name;
}

/// The model-independent checks; the target layers against the model: check_layers.
inline void validate(const AdDropFlags& f) {
  require(f.p >= 0 && f.p <= 1, "--p", f.p, "must be in [0, 1]");
  require(f.q >= 0 && f.q <= 1, "--q", f.q, "must be in [0, 1]");
  if (f.layers.empty()) throw std::invalid_argument("--layers: no target layer");
  for (int l : f.layers) require(l >= 0, "--layers", l, "must be 0 or more (layers count from 0)");
  require(f.ig_steps >= 1, "--ig-steps", f.ig_steps, "must be at least 1");
}

/// Throws unless every target layer is one of a `num_layers`-layer model's; `model` says
/// where that count comes from ("--init tiny", a checkpoint's config.json).
inline void check_layers(const std::vector<int>& layers, int64_t num_layers, const std::string& model) {
  for (int l : layers)
    require(l < num_layers, "--layers", l,
            "no such layer: " + model + " has " + std::to_string(num_layers) + " layers (0.." +
                std::to_string(num_layers - 1) + ")");
}

inline void validate(const TrainFlags& f) {
  const auto finite = [](double v) { return std::isfinite(v); };
  require(f.epochs >= 1, "--epochs", f.epochs, "must be at least 1");
  require(f.batch_size >= 1, "--batch-size", f.batch_size, "must be at least 1");
  require(f.eval_batch_size >= 1, "--eval-batch-size", f.eval_batch_size, "must be at least 1");
  require(f.lr > 0 && finite(f.lr), "--lr", f.lr, "must be positive");
  require(f.warmup >= 0 && finite(f.warmup), "--warmup", f.warmup, "must be 0 or more (a fraction below 1, else steps)");
  require(f.weight_decay >= 0 && finite(f.weight_decay), "--weight-decay", f.weight_decay, "must be 0 or more");
  require(f.max_grad_norm >= 0 && finite(f.max_grad_norm), "--max-grad-norm", f.max_grad_norm, "must be 0 or more (0: off)");
  require(f.max_length >= 4, "--max-length", f.max_length, "must be at least 4");
  require(f.patience >= 0, "--patience", f.patience, "must be 0 or more (0: off)");
  require(f.eval_every >= 0, "--eval-every", f.eval_every, "must be 0 or more (0: every epoch)");
  require(f.max_train_examples >= 0, "--max-train-examples", f.max_train_examples, "must be 0 or more (0: all)");
  require(f.dropout == kModelDropout || (f.dropout >= 0 && f.dropout < 1), "--dropout", f.dropout, "must be in [0, 1)");
}

inline addrop::train::TrainerOptions trainer_options(const TrainFlags& f) {
  using namespace addrop::train;
  TrainerOptions t;
  t.epochs = f.epochs;
  t.eval_every = f.eval_every;
  t.patience = f.patience;
  t.max_grad_norm = f.max_grad_norm;
  t.optimizer.lr = f.lr;
  t.optimizer.weight_decay = f.weight_decay;
  if (f.adamw == "torch") {
    t.optimizer.variant = AdamWVariant::Torch;
    t.optimizer.eps = 1e-8;
  }
  t.lr_schedule = f.lr_schedule == "linear"            ? ScheduleKind::Linear
                  : f.lr_schedule == "constant-warmup" ? ScheduleKind::ConstantWithWarmup
                                                       : ScheduleKind::Constant;
  t.warmup = f.warmup;
  t.progress = !f.no_progress;
  return t;
}

/// The training batches' sampler options (the seed is set per run).
inline addrop::data::SamplerOptions sampler_options(const TrainFlags& f) {
  addrop::data::SamplerOptions s;
  s.batch_size = f.batch_size;
  s.bucket_by_length = f.bucket;
  return s;
}

/// A tokenizer from a folder (its tokenizer files) or from a lone vocab.txt / vocab.json.
inline std::unique_ptr<addrop::text::Tokenizer> open_tokenizer(const fs::path& path) {
  if (fs::is_directory(path)) return addrop::text::load_tokenizer(path);
  if (!fs::exists(path)) throw std::runtime_error(path.string() + ": not found");
  // A file stands for its folder (which may also hold tokenizer_config.json), so it must
  // carry the name the loader looks for there.
  const std::string name = path.filename().string();
  if (name != "vocab.txt" && name != "vocab.json" && name != "merges.txt" && name != "tokenizer.json")
    throw std::runtime_error(path.string() + ": a tokenizer file is named vocab.txt (WordPiece), vocab.json + merges.txt " +
                             "(byte-level BPE) or tokenizer.json; rename it or give the folder that holds it");
  return addrop::text::load_tokenizer(fs::absolute(path).parent_path());
}

/// Tokenizes examples (in parallel, order kept); counts those truncation shortened.
inline std::vector<addrop::data::Feature> encode_examples(const addrop::text::Tokenizer& tok, const std::vector<addrop::data::Example>& examples,
                                  int64_t max_length, bool regression, int64_t* truncated) {
  std::vector<addrop::data::Feature> out(examples.size());
#pragma omp parallel for schedule(dynamic, 256) reduction(+ : truncated[:1])
  for (std::size_t i = 0; i < examples.size(); ++i) {
    const auto& e = examples[i];
    const auto enc = e.has_pair ? tok.encode(e.text_a, std::string_view(e.text_b), max_length) : tok.encode(e.text_a, std::nullopt, max_length);
    addrop::data::Feature& f = out[i];
    f.ids = enc.ids;
    f.type_ids = enc.type_ids;
    f.label = e.label;
    f.target = regression ? e.score : 0.0;
    f.index = static_cast<int64_t>(i);
    truncated[0] += enc.truncated_tokens > 0;
  }
  return out;
}

inline std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

/// "a:b:s" → a, a+s, ..., b (inclusive, rounded to the step's digits).
inline std::vector<double> parse_range(const std::string& text, const std::string& what) {
  std::vector<double> parts;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ':');) {
    try {
      std::size_t used = 0;
      parts.push_back(std::stod(item, &used));
      if (used != item.size()) throw std::invalid_argument("");
    } catch (const std::exception&) {
      throw std::invalid_argument("--grid " + what + ": \"" + item + "\" is not a number");
    }
  }
  if (parts.size() == 1) return parts;
  if (parts.size() != 3 || !(parts[2] > 0) || parts[1] < parts[0])
    throw std::invalid_argument("--grid " + what + "=" + text + ": expected start:end:step with end >= start, step > 0");
  std::vector<double> out;
  for (int i = 0;; ++i) {
    const double v = std::round((parts[0] + i * parts[2]) * 1e6) / 1e6;
    if (v > parts[1] + 1e-9) break;
    out.push_back(v);
  }
  return out;
}

/// The runs to do: the grid (p x q, with the --attribution method), else attributions x seeds.
inline std::vector<RunSpec> plan_runs(const AdDropFlags& f, const std::vector<std::string>& runs,
                                      const std::vector<std::string>& seeds, const std::string& grid) {
  std::vector<uint64_t> seed_values;
  for (const auto& s : seeds) {
    try {
      seed_values.push_back(std::stoull(s));
    } catch (const std::exception&) {
      throw std::invalid_argument("--seeds: \"" + s + "\" is not a seed");
    }
  }
  if (seed_values.empty()) seed_values.push_back(f.seed);
  std::vector<RunSpec> out;
  const bool many_seeds = seed_values.size() > 1;
  if (!grid.empty()) {
    std::vector<double> ps{f.p}, qs{f.q};
    std::stringstream ss(grid);
    for (std::string item; std::getline(ss, item, ',');) {
      const auto eq = item.find('=');
      if (eq == std::string::npos) throw std::invalid_argument("--grid: \"" + item + "\" should be p=... or q=...");
      const std::string key = item.substr(0, eq);
      if (key == "p") ps = parse_range(item.substr(eq + 1), "p");
      else if (key == "q") qs = parse_range(item.substr(eq + 1), "q");
      else throw std::invalid_argument("--grid: unknown parameter \"" + key + "\" (p or q)");
    }
    if (f.attribution == "none") throw std::invalid_argument("--grid needs an AD-DROP --attribution (not none)");
    for (double p : ps)
      for (double q : qs)
        for (uint64_t seed : seed_values) {
          if (p < 0 || p > 1 || q < 0 || q > 1) throw std::invalid_argument("--grid: p and q must be in [0, 1]");
          RunSpec s{"p" + number_name(p) + "_q" + number_name(q) + (many_seeds ? "_seed" + std::to_string(seed) : ""),
                    f.attribution, p, q, seed};
          out.push_back(s);
        }
    return out;
  }
  std::vector<std::string> attributions = runs.empty() ? std::vector<std::string>{f.attribution} : runs;
  for (const auto& a : attributions) {
    if (a != "none" && a != "ga" && a != "iga" && a != "aa" && a != "rd")
      throw std::invalid_argument("--runs: \"" + a + "\" is not none, ga, iga, aa or rd");
    for (uint64_t seed : seed_values) {
      const std::string base = a == "none" ? "baseline" : a;
      out.push_back({base + (many_seeds ? "_seed" + std::to_string(seed) : ""), a, f.p, f.q, seed});
    }
  }
  return out;
}

struct RunRecord {
  RunSpec spec;
  nlohmann::json summary;
  fs::path dir;
};

inline nlohmann::json summarize(const RunOutcome& o, const RunSpec& spec, const addrop::data::TaskInfo& info,
                                const TrainFlags& flags, const RunFlags& run) {
  nlohmann::json j;
  j["run"] = spec.name;
  j["task"] = info.name;
  j["attribution"] = spec.attribution;
  j["p"] = spec.p;
  j["q"] = spec.q;
  j["seed"] = spec.seed;
  j["epochs"] = flags.epochs;
  j["device"] = run.device;
  j["precision"] = run.precision;
  // The training settings, so that a summary alone says how its numbers were made.
  j["training"] = {{"defaults", flags.defaults},             {"batch_size", flags.batch_size},
                   {"eval_batch_size", flags.eval_batch_size}, {"lr", flags.lr},
                   {"lr_schedule", flags.lr_schedule},         {"warmup", flags.warmup},
                   {"weight_decay", flags.weight_decay},       {"adamw", flags.adamw},
                   {"max_grad_norm", flags.max_grad_norm},     {"max_length", flags.max_length},
                   {"bucket", flags.bucket},                   {"patience", flags.patience},
                   {"eval_every", flags.eval_every},           {"max_train_examples", flags.max_train_examples},
                   {"dropout", flags.dropout >= 0 ? nlohmann::json(flags.dropout) : nlohmann::json("model")}};
  j["steps"] = o.result.steps;
  j["seconds"] = o.result.seconds;
  j["main_metric"] = info.main_metric;
  j["stop"] = addrop::train::to_string(o.result.stop_reason);
  j["stop_reason"] = o.result.stop_message;
  j["history"] = nlohmann::json::array();
  for (const auto& r : o.result.history) j["history"].push_back(addrop::train::to_json(r, spec.name));
  if (const auto* best = o.result.best()) {
    j["best_epoch"] = best->epoch;
    j["best_step"] = best->step;
    j["best"] = best->dev.main;
    j["best_metrics"] = best->dev.metrics;
  }
  return j;
}

/// Prints why a run stopped before its last epoch, with the flags that bear on it.
inline void report_stop(const std::string& run, const addrop::train::TrainResult& r) {
  using addrop::train::StopReason;
  if (r.stop_reason == StopReason::Completed) return;
  std::fprintf(stderr, "%s: stopped: %s\n", run.c_str(), r.stop_message.c_str());
  if (r.stop_reason == StopReason::NonFiniteLoss)
    std::fprintf(stderr, "%s: try a lower --lr, or clipping with --max-grad-norm\n", run.c_str());
}

/// Whether a run (its summary.json) stopped on a NaN or infinite training loss.
inline bool stopped_on_non_finite_loss(const nlohmann::json& summary) {
  return summary.value("stop", std::string()) == addrop::train::to_string(addrop::train::StopReason::NonFiniteLoss);
}

/// Curves of every run: train loss and dev loss in one panel, the dev metric in another.
inline void write_curves(const fs::path& file, const std::vector<RunRecord>& records, const std::string& metric) {
  std::vector<addrop::train::CurveRun> runs;
  for (const auto& r : records) {
    addrop::train::CurveRun c;
    c.name = r.spec.name;
    for (const auto& h : r.summary.value("history", nlohmann::json::array())) {
      c.train_loss.push_back(h.at("train_loss").get<double>());
      c.dev_loss.push_back(h.at("dev_loss").is_null() ? std::nan("") : h.at("dev_loss").get<double>());
      c.dev_metric.push_back(h.at("main").get<double>());
    }
    runs.push_back(std::move(c));
  }
  addrop::train::write_curve_plot(file, runs, {.title = "", .metric_name = "dev " + metric});
}

inline double mean_of(const std::vector<double>& v) {
  return v.empty() ? 0 : std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}
inline double std_of(const std::vector<double>& v) {
  if (v.size() < 2) return 0;
  const double m = mean_of(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size() - 1));
}

/// table.md / table.json: per setting, mean ± std over seeds of the best dev metric and
/// of the train/dev loss gap at the best epoch; for a grid, the best (p, q).
inline void write_table(const fs::path& out, const std::vector<RunRecord>& records, const addrop::data::TaskInfo& info,
                        bool grid) {
  struct Group {
    std::string setting;
    std::vector<double> best, gap, final_gap, seconds;
    std::vector<double> test;                    ///< test-set main metric of the best checkpoint (when scored)
    std::vector<std::vector<double>> epoch_gap;  ///< [evaluation][run]: dev - train loss
  };
  std::vector<Group> groups;
  for (const auto& r : records) {
    std::string setting = r.spec.name;
    if (const auto pos = setting.find("_seed"); pos != std::string::npos) setting = setting.substr(0, pos);
    auto it = std::find_if(groups.begin(), groups.end(), [&](const Group& g) { return g.setting == setting; });
    if (it == groups.end()) {
      groups.push_back({setting, {}, {}, {}, {}, {}, {}});
      it = groups.end() - 1;
    }
    const auto& s = r.summary;
    if (!s.contains("best")) continue;
    it->best.push_back(s.at("best").get<double>());
    it->seconds.push_back(s.at("seconds").get<double>());
    if (s.contains("test") && s.at("test").contains(info.main_metric))
      it->test.push_back(s.at("test").at(info.main_metric).get<double>());
    const auto& hist = s.at("history");
    const int best_epoch = s.at("best_epoch").get<int>();
    for (const auto& h : hist)
      if (h.at("epoch").get<int>() == best_epoch && !h.at("dev_loss").is_null())
        it->gap.push_back(h.at("dev_loss").get<double>() - h.at("train_loss").get<double>());
    for (std::size_t e = 0; e < hist.size(); ++e) {
      if (hist[e].at("dev_loss").is_null()) continue;
      if (it->epoch_gap.size() <= e) it->epoch_gap.resize(e + 1);
      it->epoch_gap[e].push_back(hist[e].at("dev_loss").get<double>() - hist[e].at("train_loss").get<double>());
    }
    if (!hist.empty() && !hist.back().at("dev_loss").is_null())
      it->final_gap.push_back(hist.back().at("dev_loss").get<double>() - hist.back().at("train_loss").get<double>());
  }
  const bool with_test = std::any_of(groups.begin(), groups.end(), [](const Group& g) { return !g.test.empty(); });
  std::ostringstream md;
  md << "| " << (grid ? "p, q" : "run") << " | seeds | dev " << info.main_metric << " (best epoch, mean ± std) | "
     << (with_test ? "test " + info.main_metric + " (best checkpoint) | " : std::string())
     << "dev−train loss gap at best | gap per evaluation (epoch 1, 2, …) | seconds/run |\n"
     << (with_test ? "|---|---|---|---|---|---|---|\n" : "|---|---|---|---|---|---|\n");
  nlohmann::json table = nlohmann::json::array();
  const Group* best_group = nullptr;
  for (const auto& g : groups) {
    std::vector<double> gaps;
    std::string gap_text;
    for (const auto& e : g.epoch_gap) {
      gaps.push_back(mean_of(e));
      char buf[32];
      std::snprintf(buf, sizeof buf, "%s%.3f", gap_text.empty() ? "" : ", ", mean_of(e));
      gap_text += buf;
    }
    char test_text[64] = "";
    if (with_test) std::snprintf(test_text, sizeof test_text, " %.4f ± %.4f |", mean_of(g.test), std_of(g.test));
    char line[768];
    std::snprintf(line, sizeof line, "| %s | %zu | %.4f ± %.4f |%s %.4f | %s | %.0f |\n", g.setting.c_str(),
                  g.best.size(), mean_of(g.best), std_of(g.best), test_text, mean_of(g.gap), gap_text.c_str(),
                  mean_of(g.seconds));
    md << line;
    nlohmann::json row{{"setting", g.setting}, {"runs", g.best.size()}, {"mean", mean_of(g.best)},
                       {"std", std_of(g.best)}, {"values", g.best}, {"loss_gap_at_best", mean_of(g.gap)},
                       {"loss_gap_per_evaluation", gaps}, {"loss_gap_last", mean_of(g.final_gap)},
                       {"seconds", mean_of(g.seconds)}};
    if (!g.test.empty()) row["test"] = {{"mean", mean_of(g.test)}, {"std", std_of(g.test)}, {"values", g.test}};
    table.push_back(row);
    if (!g.best.empty() && (!best_group || mean_of(g.best) > mean_of(best_group->best))) best_group = &g;
  }
  nlohmann::json j{{"task", info.name}, {"metric", info.main_metric}, {"rows", table}};
  if (best_group) {
    j["best_setting"] = best_group->setting;
    md << "\nbest: " << best_group->setting << " (" << info.main_metric << " " << mean_of(best_group->best) << ")\n";
  }
  addrop::train::write_file_atomic(out / "table.md", md.str());
  addrop::train::write_json_atomic(out / "table.json", j);
  std::printf("%s", md.str().c_str());
}




inline void add_model_flags(CLI::App& app, RunFlags& f) {
  app.add_option("--model", f.model, "Hugging Face checkpoint folder (config.json, model.safetensors, tokenizer files)");
  app.add_option("--init", f.init, "random initialisation instead of --model: tiny, mini or small");
  app.add_option("--vocab", f.vocab, "with --init: vocab.txt (WordPiece) or a tokenizer folder");
}

inline void add_run_flags(CLI::App& app, RunFlags& f) {
  app.add_option("--output", f.output, "output folder")->required();
  app.add_flag("--overwrite", f.overwrite, "replace an existing output folder");
  app.add_flag("--resume", f.resume, "continue the runs in --output from their last saved epoch");
  app.add_option("--device", f.device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--threads", f.threads, "CPU threads (0: all cores)");
  add_precision_flag(app, f.precision);
  app.add_option("--runs", f.runs, "several runs on one plot: a comma list of attributions, e.g. none,ga,rd");
  app.add_option("--seeds", f.seeds, "run every setting with each of these seeds, e.g. 1,2,3");
  app.add_option("--grid", f.grid, "p/q grid search, e.g. p=0.1:0.9:0.1,q=0.1:0.9:0.1 (resumable)");
}

/// Throws when the model source is incomplete or the device cannot be used.
inline void check_run_flags(const RunFlags& f) {
  if (f.model.empty() == f.init.empty()) throw std::runtime_error("give either --model DIR or --init PRESET (with --vocab)");
  if (!f.init.empty() && f.vocab.empty()) throw std::runtime_error("--init needs --vocab (vocab.txt or a tokenizer folder)");
  require(f.threads >= 0, "--threads", f.threads, "must be 0 or more (0: all cores)");
  if (f.device == "cuda" && !cuda_available()) throw std::runtime_error("--device cuda: " + cuda_unavailable_reason());
}

/// The training defaults for the model source: random weights (--init) or a checkpoint.
inline const TrainDefaults& defaults_for(const RunFlags& f) { return f.init.empty() ? kPretrained : kFromScratch; }

/// The model's shape as its user named it, for messages: "--init tiny" or DIR/config.json.
inline std::string model_source(const RunFlags& f) {
  return f.init.empty() ? (fs::path(f.model) / "config.json").string() : "--init " + f.init;
}

/// Cross-tuning runs AD-DROP in the second, fourth, ... epoch: with one epoch an AD-DROP
/// run would quietly be plain fine-tuning, so say so before any training.
inline void warn_if_addrop_never_runs(const char* program, const AdDropFlags& a, const TrainFlags& t,
                                      const std::vector<RunSpec>& specs) {
  const bool addrop = std::any_of(specs.begin(), specs.end(), [](const RunSpec& s) { return s.attribution != "none"; });
  if (addrop && a.schedule == "cross" && t.epochs < 2)
    std::fprintf(stderr,
                 "%s: warning: --schedule cross with --epochs %d never reaches an AD-DROP epoch (cross-tuning "
                 "starts with a plain epoch), so the AD-DROP runs are plain fine-tuning; give --epochs 2 or more, "
                 "or --schedule always\n",
                 program, t.epochs);
}

/// Creates the output folder. A non-empty one is refused unless --overwrite (which
/// clears it) or --resume; with several runs (--runs, --seeds, --grid) it is reused and
/// finished runs are skipped.
inline fs::path prepare_output(const RunFlags& f) {
  const fs::path out = f.output;
  const bool several = !f.grid.empty() || !f.runs.empty() || !f.seeds.empty();
  if (writes_files()) {  // rank 0 decides; the others wait for the folder to be ready
    if (fs::exists(out) && !fs::is_empty(out) && !f.overwrite && !f.resume && !several)
      throw std::runtime_error(out.string() + " exists and is not empty (use --overwrite, or --resume to continue; "
                               "with --runs, --seeds or --grid finished runs are skipped)");
    if (f.overwrite && !f.resume && fs::exists(out)) fs::remove_all(out);
    fs::create_directories(out);
  }
  communicator().barrier();
  return out;
}

/// The tokenizer and model configuration a trainer starts from: the checkpoint's (--model)
/// or a preset sized for the tokenizer (--init with --vocab), with the task head
/// (num_labels 0 keeps the configuration's), --dropout applied and validated; --max-length
/// and --layers are checked against it. Options: RunFlags with `training` and `addrop`.
struct ModelSetup {
  std::unique_ptr<addrop::text::Tokenizer> tokenizer;
  addrop::models::ModelConfig config;
};
template <class Options>
ModelSetup setup_model(const Options& o, addrop::models::Task task, int64_t num_labels) {
  namespace models = addrop::models;
  ModelSetup m;
  m.tokenizer = open_tokenizer(!o.model.empty() ? fs::path(o.model) : fs::path(o.vocab));
  if (!o.model.empty()) {
    m.config = addrop::io::load_hf_config(o.model);
  } else {
    const bool bpe = m.tokenizer->kind() == "byte_bpe";
    m.config = models::preset_config(o.init, m.tokenizer->vocab_size(), m.tokenizer->pad_id(),
                                     bpe ? models::Family::Roberta : models::Family::Bert,
                                     std::max<int64_t>(512, o.training.max_length));
  }
  if (num_labels > 0) m.config.num_labels = num_labels;
  m.config.task = task;
  if (o.training.dropout >= 0)
    m.config.hidden_dropout_prob = m.config.attention_probs_dropout_prob = static_cast<float>(o.training.dropout);
  m.config.validate();
  require(o.training.max_length <= m.config.max_position_embeddings, "--max-length", o.training.max_length,
          "exceeds the model's " + std::to_string(m.config.max_position_embeddings) + " positions");
  check_layers(o.addrop.layers, m.config.num_hidden_layers, model_source(o));
  return m;
}

/// What one run of run_all() returns: its summary (summary.json) and how training ended.
struct RunDone {
  nlohmann::json summary;
  addrop::train::TrainResult result;
};

/// Runs every planned setting in turn, each in its own folder under `out` when there are
/// several: a setting whose summary.json exists is skipped (unless --overwrite), one with
/// a saved state is resumed (with --resume, or always within a plan of several). Each
/// run is train(spec, dir, resume) -> RunDone; its summary is written and its stop
/// reported. Then the curves of every run, the table of several (grid: by p and q), and
/// the exit status: 3 when a run stopped on a non-finite loss, else 0.
template <class Train>
int run_all(const RunFlags& flags, const std::vector<RunSpec>& specs, const fs::path& out,
            const addrop::data::TaskInfo& info, const std::string& curve_metric, const std::string& detail,
            Train&& train) {
  namespace train_ns = addrop::train;
  const bool several = specs.size() > 1;
  std::vector<RunRecord> records;
  for (const auto& spec : specs) {
    const fs::path dir = several ? out / spec.name : out;
    RunRecord rec{spec, {}, dir};
    // Rank 0 looks at the folder and tells the others (who may not share its disk).
    std::string state;
    if (writes_files()) {
      if (several && fs::exists(dir / "summary.json") && !flags.overwrite) state = train_ns::read_file(dir / "summary.json");
      else state = fs::exists(dir / "last" / "trainer_state.json") && (flags.resume || several) ? "resume" : "fresh";
    }
    communicator().host_broadcast(state, 0);
    if (state != "resume" && state != "fresh") {
      rec.summary = nlohmann::json::parse(state);
      std::fprintf(stderr, "%s: done earlier (%s), skipped\n", spec.name.c_str(), (dir / "summary.json").c_str());
      records.push_back(rec);
      continue;
    }
    if (writes_files()) fs::create_directories(dir);
    const bool resume = state == "resume";
    std::fprintf(stderr, "== %s: attribution %s, %sp %.2f, q %.2f, seed %llu, %s%s\n", spec.name.c_str(),
                 spec.attribution.c_str(), detail.c_str(), spec.p, spec.q, static_cast<unsigned long long>(spec.seed),
                 flags.device.c_str(), resume ? " (resumed)" : "");
    RunDone done = train(spec, dir, resume);
    rec.summary = std::move(done.summary);
    rec.summary["processes"] = communicator().size();
    if (communicator().size() > 1) rec.summary["allreduce_seconds"] = done.result.allreduce_seconds;
    if (writes_files()) {
      train_ns::write_summary(dir / "summary.json", rec.summary);
      report_stop(spec.name, done.result);
    }
    records.push_back(rec);
  }
  if (writes_files()) {
    write_curves(out / "curves.svg", records, curve_metric);
    if (several) write_table(out, records, info, !flags.grid.empty());
    else std::printf("%s\n", records.front().summary.dump(2).c_str());
  }
  const bool nan_stop = std::any_of(records.begin(), records.end(),
                                    [](const RunRecord& r) { return stopped_on_non_finite_loss(r.summary); });
  return nan_stop ? 3 : 0;
}

}  // namespace addrop_examples
