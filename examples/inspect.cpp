// addrop-inspect: one AD-DROP step on one batch, written out tensor by tensor for
// inspection. It loads a Hugging Face checkpoint folder and a batch file, runs a plain
// eval forward (logits, every layer's attention probabilities), then one AD-DROP step
// (attribution, candidate region, keep mask, masked forward, gold loss, backward) with
// ordinary dropout off and no weight update, and saves everything as one safetensors
// file; optionally an SVG heat map of one layer / head / example.
//
//   addrop-inspect --model DIR --batch FILE --output FILE [--attribution ga|iga|aa|rd] ...
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>

#include "cli_common.hpp"
#include "device.hpp"
#include "inspect_run.hpp"
#include "memory_check.hpp"

using namespace addrop_inspect;

namespace {

using addrop_examples::number;
using addrop_examples::require;
using addrop_examples::whole_number;

constexpr const char* kOutputs =
    "Output tensors: logits, attention_probs.layer{l} (every layer), per target layer\n"
    "attribution.layer{l} (not for rd), candidates.layer{l}, keep_mask.layer{l} (0/1),\n"
    "masked_logits, loss (shape []), grad.<parameter name> for every parameter; metadata:\n"
    "attribution, p, q, layers, side, steps, iga_target, seed, dtype, uniforms.";

/// The flags; CLI11 refuses a value of the wrong kind, a missing file or folder.
void add_flags(CLI::App& app, Options& o) {
  app.add_option("--model", o.model, "Hugging Face folder: config.json + model.safetensors (F32 or F64)")
      ->required()->check(CLI::ExistingDirectory);
  app.add_option("--batch", o.batch,
                 "safetensors with input_ids, attention_mask (int [B,L]), optional\n"
                 "token_type_ids (int [B,L]), labels (int [B], int [B,L] for token\n"
                 "classification, float [B] for regression), optional uniform draws\n"
                 "uniforms.layer{l} (float [B,H,L,L]; RD also uniforms2.layer{l})")
      ->required()->check(CLI::ExistingFile);
  app.add_option("--output", o.output, "safetensors to write (refused if it exists, unless --overwrite)")->required();
  app.add_option("--attribution", o.attribution, "ga (gradient), iga (integrated gradients), aa (attention), rd (random)")
      ->check(CLI::IsMember({"ga", "iga", "aa", "rd"}));
  app.add_option("--p", o.p, "candidate region size, fraction of each row's keys")->transform(number());
  app.add_option("--q", o.q, "probability of dropping a candidate")->transform(number());
  app.add_option("--layers", o.layers, "target layers, 0-based, e.g. 0 or 0,1,2")
      ->delimiter(',')->transform(whole_number<int>())
      ->trigger_on_parse();  // stored at each --layers: a later one replaces the list
  app.add_option("--side", o.side, "drop among the highest (AD-DROP) or lowest attributions")
      ->check(CLI::IsMember({"high", "low"}));
  app.add_option("--steps", o.steps, "integrated-gradients steps m")->transform(whole_number<int>());
  app.add_option("--iga-target", o.iga_target, "fixed (argmax of the first forward) or per-step")
      ->check(CLI::IsMember({"fixed", "per-step"}));
  app.add_option("--seed", o.seed, "seed of the uniform draws when the batch has none")->transform(whole_number<uint64_t>());
  app.add_option("--dtype", o.dtype, "compute and output precision")->check(CLI::IsMember({"f32", "f64"}));
  app.add_option("--device", o.device, "where the step runs (cuda needs a CUDA build and a GPU)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--threads", o.threads, "CPU threads")->transform(whole_number<int>())->default_str("all");
  addrop_examples::add_precision_flag(app, o.precision);
  app.add_option("--attribution-precision", o.attribution_precision,
                 "precision of the attribution passes: model (as --precision), f32 or bf16")
      ->check(CLI::IsMember({"model", "f32", "bf16"}));
  app.add_flag("--overwrite", o.overwrite, "replace existing --output / --svg files");

  const char* svg = "SVG heat map (optional)";
  app.add_option("--svg", o.svg, "write the attribution map and the keep mask of one layer/head/example")->group(svg);
  app.add_option("--svg-layer", o.svg_layer, "a target layer")
      ->transform(whole_number<int>())->default_str("the first of --layers")->group(svg);
  app.add_option("--svg-head", o.svg_head, "attention head")->transform(whole_number<int>())->group(svg);
  app.add_option("--svg-example", o.svg_example, "example of the batch")->transform(whole_number<int64_t>())->group(svg);
  app.add_option("--tokens", o.tokens,
                 "token strings, one per line, line k = id k (e.g. vocab.txt);\n"
                 "without it the axes show token ids")
      ->check(CLI::ExistingFile)->group(svg);
}

/// Each value on its own (its message names the flag and the value), then the flags that
/// go together; --layers sorted, each layer once.
void check_flags(Options& o, const CLI::App& app) {
  require(o.p >= 0 && o.p <= 1, "--p", o.p, "must be in [0, 1]");
  require(o.q >= 0 && o.q <= 1, "--q", o.q, "must be in [0, 1]");
  for (int l : o.layers) require(l >= 0 && l <= 1'000'000, "--layers", l, "must be in [0, 1000000] (layers count from 0)");
  require(o.steps >= 1 && o.steps <= 100'000, "--steps", o.steps, "must be in [1, 100000]");
  if (app.count("--threads")) require(o.threads >= 1 && o.threads <= 4096, "--threads", o.threads, "must be in [1, 4096]");
  if (o.svg_layer) require(*o.svg_layer >= 0 && *o.svg_layer <= 1'000'000, "--svg-layer", *o.svg_layer, "must be in [0, 1000000]");
  require(o.svg_head >= 0 && o.svg_head <= 1'000'000, "--svg-head", o.svg_head, "must be in [0, 1000000]");
  require(o.svg_example >= 0, "--svg-example", o.svg_example, "must be 0 or more");
  if (o.precision == "bf16" && o.dtype == "f64")
    throw std::invalid_argument("--precision bf16: needs --dtype f32 (bf16 products are mixed into float32; float64 stays exact)");

  std::sort(o.layers.begin(), o.layers.end());
  o.layers.erase(std::unique(o.layers.begin(), o.layers.end()), o.layers.end());
  if (o.attribution != "iga" && (app.count("--steps") || app.count("--iga-target")))
    std::fprintf(stderr, "addrop-inspect: note: --steps and --iga-target only matter for --attribution iga\n");
  if (o.svg.empty() && (o.svg_layer || !o.tokens.empty()))
    fail("--svg-layer and --tokens need --svg FILE");
  if (o.svg_layer && !std::binary_search(o.layers.begin(), o.layers.end(), *o.svg_layer))
    fail("--svg-layer " + std::to_string(*o.svg_layer) + " is not a target layer (--layers " + join(o.layers) + ")");
  if (!o.svg.empty() && fs::weakly_canonical(o.svg) == fs::weakly_canonical(o.output))
    fail("--svg and --output name the same file " + o.output);
}

/// Refuses an existing file without --overwrite, and a folder that does not exist.
void check_writable(const std::string& flag, const std::string& path, bool overwrite) {
  const fs::path p(path);
  std::error_code ec;
  if (fs::is_directory(p, ec)) fail(flag + " " + path + " is a directory");
  if (fs::exists(p, ec) && !overwrite) fail(flag + " " + path + " already exists (pass --overwrite to replace it)");
  const fs::path dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
  if (!fs::is_directory(dir, ec)) fail(flag + " " + path + ": the folder " + dir.string() + " does not exist");
}

// ------------------------------------------------------------------------------ batch

std::vector<int64_t> shape_of(const io::SafeTensors& st, const std::string& name) { return st.at(name).shape; }

BatchFile read_batch(const std::string& path, const models::ModelConfig& c, const std::vector<int>& layers,
                     bool random) {
  if (!fs::is_regular_file(path)) fail("--batch " + path + ": no such file");
  const auto st = io::SafeTensors::load(path);
  auto bad = [&](const std::string& tensor, const std::string& why) -> std::invalid_argument {
    return std::invalid_argument(path + ": tensor \"" + tensor + "\" " + why);
  };
  auto require = [&](const std::string& name, const char* what) {
    if (!st.contains(name)) throw std::invalid_argument(path + ": the batch has no tensor \"" + name + "\" (" + what + ")");
  };
  auto integer = [&](const std::string& name, const std::vector<int64_t>& shape) {
    const auto& r = st.at(name);
    if (io::is_floating(r.dtype))
      throw bad(name, "is stored as " + std::string(io::dtype_name(r.dtype)) + "; it must be an integer tensor (I64 or I32)");
    if (r.shape != shape)
      throw bad(name, "has shape " + io::shape_string(r.shape) + ", expected " + io::shape_string(shape));
    return st.values<int32_t>(name);
  };

  require("input_ids", "int64 [B, L] token ids");
  const auto ids_shape = shape_of(st, "input_ids");
  if (ids_shape.size() != 2 || ids_shape[0] <= 0 || ids_shape[1] <= 0)
    throw bad("input_ids", "has shape " + io::shape_string(ids_shape) + ", expected [B, L] with B, L > 0");
  BatchFile out;
  models::Batch& b = out.batch;
  b.size = ids_shape[0];
  b.length = ids_shape[1];
  const int64_t B = b.size, L = b.length, H = c.num_attention_heads;
  b.input_ids = integer("input_ids", ids_shape);
  require("attention_mask", "int64 [B, L], 1 = token, 0 = padding");
  b.attention_mask = integer("attention_mask", ids_shape);
  for (std::size_t i = 0; i < b.attention_mask.size(); ++i)
    if (b.attention_mask[i] != 0 && b.attention_mask[i] != 1)
      throw bad("attention_mask", "holds " + std::to_string(b.attention_mask[i]) + " at [" + std::to_string(i / L) +
                                      "][" + std::to_string(i % L) + "]; only 0 and 1 are allowed");
  for (int64_t e = 0; e < B; ++e)
    if (b.key_length(e) == 0) throw bad("attention_mask", "masks every token of example " + std::to_string(e));
  if (st.contains("token_type_ids")) b.token_type_ids = integer("token_type_ids", ids_shape);

  if (!st.contains("labels"))
    throw std::invalid_argument(path + ": the batch has no tensor \"labels\"; the AD-DROP step trains on the gold loss, so " +
                                (c.task == models::Task::Regression ? std::string("float [B] scores are")
                                 : c.task == models::Task::TokenClassification ? std::string("int64 [B, L] labels are")
                                                                                : std::string("int64 [B] labels are")) +
                                " required");
  if (c.task == models::Task::Regression) {
    const auto shape = shape_of(st, "labels");
    if (!(shape == std::vector<int64_t>{B} || shape == std::vector<int64_t>{B, 1}))
      throw bad("labels", "has shape " + io::shape_string(shape) + ", expected [" + std::to_string(B) + "] regression scores");
    b.targets = st.values<double>("labels");
  } else if (c.task == models::Task::TokenClassification) {
    b.labels = integer("labels", ids_shape);
  } else {
    b.labels = integer("labels", {B});
  }
  try {
    b.validate(c, true);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(path + ": " + e.what());
  }

  // Uniform draws: all target layers or none.
  const std::vector<int64_t> probs{B, H, L, L};
  std::vector<std::string> present, missing;
  for (int l : layers) {
    for (int second = 0; second < (random ? 2 : 1); ++second) {
      const std::string name = (second ? "uniforms2.layer" : "uniforms.layer") + std::to_string(l);
      (st.contains(name) ? present : missing).push_back(name);
    }
  }
  if (!present.empty() && !missing.empty())
    throw std::invalid_argument(path + ": the batch has \"" + present.front() + "\" but no tensor \"" + missing.front() +
                                "\": give the uniform draws of every target layer (--layers " + join(layers) +
                                ") or none");
  if (present.empty()) return out;
  for (int l : layers) {
    for (int second = 0; second < (random ? 2 : 1); ++second) {
      const std::string name = (second ? "uniforms2.layer" : "uniforms.layer") + std::to_string(l);
      const auto& r = st.at(name);
      if (!io::is_floating(r.dtype)) throw bad(name, "must be a float tensor, is " + std::string(io::dtype_name(r.dtype)));
      if (r.shape != probs)
        throw bad(name, "has shape " + io::shape_string(r.shape) + ", expected [B, H, L, L] = " + io::shape_string(probs));
      auto v = st.values<float>(name);
      for (std::size_t i = 0; i < v.size(); ++i)
        if (!(v[i] >= 0.0f && v[i] < 1.0f))
          throw bad(name, "holds " + number_text(v[i]) + " at flat index " + std::to_string(i) + "; draws must be in [0, 1)");
      (second ? out.second_draws : out.draws).push_back(std::move(v));
    }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"addrop-inspect: runs one AD-DROP step (no weight update, ordinary dropout off) on one batch\n"
               "and writes every intermediate tensor to a safetensors file"};
  app.get_formatter()->column_width(34);
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)->always_capture_default();  // a later flag wins; --help shows defaults
  app.footer(kOutputs);
  add_flags(app, o);
  try {
    app.parse(argc, argv);
    check_flags(o, app);
    if (o.device == "cuda" && !addrop_examples::cuda_available())  // before any work
      fail("--device cuda: " + addrop_examples::cuda_unavailable_reason());
    check_writable("--output", o.output, o.overwrite);
    if (!o.svg.empty()) check_writable("--svg", o.svg, o.overwrite);
    const auto config = io::load_hf_config(o.model);
    addrop_examples::check_memory(config, {.batch_size = 0, .optimizer = false, .value_bytes = o.dtype == "f64" ? 8u : 4u}, {.config = o.model + "/config.json"});  // the model alone; the batch is not read yet
    for (int l : o.layers)
      if (l >= config.num_hidden_layers)
        fail("--layers: layer " + std::to_string(l) + " is out of range; the model has " +
             std::to_string(config.num_hidden_layers) + " layers (0.." + std::to_string(config.num_hidden_layers - 1) + ")");
    if (!o.svg.empty() && o.svg_head >= config.num_attention_heads)
      fail("--svg-head " + std::to_string(o.svg_head) + " is out of range; the model has " +
           std::to_string(config.num_attention_heads) + " heads");
    const BatchFile input = read_batch(o.batch, config, o.layers, o.attribution == "rd");
    if (!o.svg.empty() && o.svg_example >= input.batch.size)
      fail("--svg-example " + std::to_string(o.svg_example) + " is out of range; the batch has " +
           std::to_string(input.batch.size) + " examples");
    addrop_examples::on_device(o.device, o.threads, o.precision, [&](auto device) { run_step(device, o, config, input); });
    return 0;
  } catch (const CLI::Success& e) {
    return app.exit(e);  // --help
  } catch (const std::exception& e) {
    std::fprintf(stderr, "addrop-inspect: %s\n", e.what());
    return 1;
  }
}
