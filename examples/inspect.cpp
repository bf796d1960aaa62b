// addrop-inspect: one AD-DROP step on one batch, written out tensor by tensor for
// inspection. It loads a Hugging Face checkpoint folder and a batch file, runs a plain
// eval forward (logits, every layer's attention probabilities), then one AD-DROP step
// (attribution, candidate region, keep mask, masked forward, gold loss, backward) with
// ordinary dropout off and no weight update, and saves everything as one safetensors
// file; optionally an SVG heat map of one layer / head / example.
//
//   addrop-inspect --model DIR --batch FILE --output FILE [--attribution ga|iga|aa|rd] ...
#include <charconv>
#include <cstdlib>

#include "device.hpp"
#include "inspect_run.hpp"
#include "memory_check.hpp"

using namespace addrop_inspect;

namespace {

void usage() {
  std::puts(
      "usage: addrop-inspect --model DIR --batch FILE --output FILE [options]\n"
      "Runs one AD-DROP step (no weight update, ordinary dropout off) on one batch and writes\n"
      "every intermediate tensor to a safetensors file.\n"
      "\n"
      "  --model DIR          Hugging Face folder: config.json + model.safetensors (F32 or F64)\n"
      "  --batch FILE         safetensors with input_ids, attention_mask (int [B,L]), optional\n"
      "                       token_type_ids (int [B,L]), labels (int [B], int [B,L] for token\n"
      "                       classification, float [B] for regression), optional uniform draws\n"
      "                       uniforms.layer{l} (float [B,H,L,L]; RD also uniforms2.layer{l})\n"
      "  --output FILE        safetensors to write (refused if it exists, unless --overwrite)\n"
      "  --attribution KIND   ga (gradient, default), iga (integrated gradients), aa (attention),\n"
      "                       rd (random)\n"
      "  --p X                candidate region size, fraction of each row's keys (default 0.3)\n"
      "  --q X                probability of dropping a candidate (default 0.3)\n"
      "  --layers L,L,...     target layers, 0-based (default 0)\n"
      "  --side high|low      drop among the highest (AD-DROP) or lowest attributions (default high)\n"
      "  --steps M            integrated-gradients steps m (default 20)\n"
      "  --iga-target T       fixed (argmax of the first forward, default) or per-step\n"
      "  --seed N             seed of the uniform draws when the batch has none (default 42)\n"
      "  --dtype f32|f64      compute and output precision (default f32)\n"
      "  --device cpu|cuda    where the step runs (default cpu; cuda needs a CUDA build and a GPU)\n"
      "  --threads N          CPU threads (default: all)\n"
      "  --overwrite          replace existing --output / --svg files\n"
      "\n"
      "SVG heat map (optional):\n"
      "  --svg FILE           write the attribution map and the keep mask of one layer/head/example\n"
      "  --svg-layer L        a target layer (default: the first of --layers)\n"
      "  --svg-head H         attention head (default 0)\n"
      "  --svg-example B      example of the batch (default 0)\n"
      "  --tokens FILE        token strings, one per line, line k = id k (e.g. vocab.txt);\n"
      "                       without it the axes show token ids\n"
      "\n"
      "Output tensors: logits, attention_probs.layer{l} (every layer), per target layer\n"
      "attribution.layer{l} (not for rd), candidates.layer{l}, keep_mask.layer{l} (0/1),\n"
      "masked_logits, loss (shape []), grad.<parameter name> for every parameter; metadata:\n"
      "attribution, p, q, layers, side, steps, iga_target, seed, dtype, uniforms.");
}

int64_t parse_int(const std::string& flag, const std::string& text) {
  int64_t v = 0;
  const auto* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc() || ptr != end) fail(flag + ": \"" + text + "\" is not an integer");
  return v;
}

double parse_double(const std::string& flag, const std::string& text) {
  double v = 0;
  const auto* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc() || ptr != end) fail(flag + ": \"" + text + "\" is not a number");
  return v;
}

Options parse(int argc, char** argv) {
  Options o;
  bool have_steps = false, have_iga_target = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) fail(arg + " needs a value (see --help)");
      return argv[++i];
    };
    auto one_of = [&](const std::string& v, std::initializer_list<const char*> allowed) {
      std::string list;
      for (const char* a : allowed) {
        if (v == a) return v;
        if (!list.empty()) list.append(", ");
        list.append(a);
      }
      fail(arg + ": \"" + v + "\" is not one of " + list);
    };
    if (arg == "--help" || arg == "-h") {
      usage();
      std::exit(0);
    } else if (arg == "--model") o.model = value();
    else if (arg == "--batch") o.batch = value();
    else if (arg == "--output") o.output = value();
    else if (arg == "--attribution") o.attribution = one_of(value(), {"ga", "iga", "aa", "rd"});
    else if (arg == "--p") o.p = parse_double(arg, value());
    else if (arg == "--q") o.q = parse_double(arg, value());
    else if (arg == "--layers") {
      const std::string v = value();
      o.layers.clear();
      std::size_t start = 0;
      while (true) {
        const std::size_t comma = v.find(',', start);
        const std::string part = v.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        const int64_t l = parse_int(arg, part);
        if (l < 0 || l > 1'000'000) fail(arg + ": layer " + part + " is out of range");
        o.layers.push_back(static_cast<int>(l));
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
      std::sort(o.layers.begin(), o.layers.end());
      o.layers.erase(std::unique(o.layers.begin(), o.layers.end()), o.layers.end());
    } else if (arg == "--side") o.side = one_of(value(), {"high", "low"});
    else if (arg == "--steps") {
      const int64_t m = parse_int(arg, value());
      if (m < 1 || m > 100'000) fail(arg + ": m must be in [1, 100000], got " + std::to_string(m));
      o.steps = static_cast<int>(m);
      have_steps = true;
    } else if (arg == "--iga-target") {
      o.iga_target = one_of(value(), {"fixed", "per-step"});
      have_iga_target = true;
    } else if (arg == "--seed") {
      const std::string v = value();
      uint64_t s = 0;
      const auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), s);
      if (v.empty() || ec != std::errc() || ptr != v.data() + v.size())
        fail(arg + ": \"" + v + "\" is not a non-negative integer");
      o.seed = s;
    } else if (arg == "--dtype") o.dtype = one_of(value(), {"f32", "f64"});
    else if (arg == "--device") o.device = one_of(value(), {"cpu", "cuda"});
    else if (arg == "--threads") {
      const int64_t t = parse_int(arg, value());
      if (t < 1 || t > 4096) fail(arg + " must be a positive thread count, got " + std::to_string(t));
      o.threads = static_cast<int>(t);
    } else if (arg == "--overwrite") o.overwrite = true;
    else if (arg == "--svg") o.svg = value();
    else if (arg == "--svg-layer") {
      const int64_t l = parse_int(arg, value());
      if (l < 0 || l > 1'000'000) fail(arg + ": layer " + std::to_string(l) + " is out of range");
      o.svg_layer = static_cast<int>(l);
    } else if (arg == "--svg-head") {
      const int64_t h = parse_int(arg, value());
      if (h < 0 || h > 1'000'000) fail(arg + ": head " + std::to_string(h) + " is out of range");
      o.svg_head = static_cast<int>(h);
    } else if (arg == "--svg-example") {
      o.svg_example = parse_int(arg, value());
      if (o.svg_example < 0) fail(arg + ": example " + std::to_string(o.svg_example) + " is out of range");
    } else if (arg == "--tokens") o.tokens = value();
    else fail("unknown option " + arg + " (see --help)");
  }
  if (o.model.empty()) fail("--model DIR is required (see --help)");
  if (o.batch.empty()) fail("--batch FILE is required (see --help)");
  if (o.output.empty()) fail("--output FILE is required (see --help)");
  if (!(o.p >= 0 && o.p <= 1)) fail("--p must be in [0, 1], got " + number_text(o.p));
  if (!(o.q >= 0 && o.q <= 1)) fail("--q must be in [0, 1], got " + number_text(o.q));
  if (o.attribution != "iga" && (have_steps || have_iga_target))
    std::fprintf(stderr, "addrop-inspect: note: --steps and --iga-target only matter for --attribution iga\n");
  if (o.svg.empty() && (o.svg_layer || !o.tokens.empty()))
    fail("--svg-layer and --tokens need --svg FILE");
  if (o.svg_layer && !std::binary_search(o.layers.begin(), o.layers.end(), *o.svg_layer))
    fail("--svg-layer " + std::to_string(*o.svg_layer) + " is not a target layer (--layers " + join(o.layers) + ")");
  if (!o.svg.empty() && fs::weakly_canonical(o.svg) == fs::weakly_canonical(o.output))
    fail("--svg and --output name the same file " + o.output);
  return o;
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
  try {
    const Options o = parse(argc, argv);
    if (o.device == "cuda" && !addrop_examples::cuda_available())
      fail("--device cuda: " + addrop_examples::cuda_unavailable_reason());
    check_writable("--output", o.output, o.overwrite);
    if (!o.svg.empty()) check_writable("--svg", o.svg, o.overwrite);
    if (!o.tokens.empty() && !fs::is_regular_file(o.tokens)) fail("--tokens " + o.tokens + ": no such file");
    if (!fs::is_directory(o.model)) fail("--model " + o.model + ": not a folder");
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
    if (o.device == "cuda") {
      run_on_cuda(o, config, input);
    } else {
      const backend::Cpu::Context cpu{.threads = o.threads};
      if (o.dtype == "f64") dispatch<double, backend::Cpu>(o, config, input, cpu);
      else dispatch<float, backend::Cpu>(o, config, input, cpu);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "addrop-inspect: %s\n", e.what());
    return 1;
  }
}
