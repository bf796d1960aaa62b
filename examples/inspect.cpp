// addrop-inspect: one AD-DROP step on one batch, written out tensor by tensor for
// inspection. It loads a Hugging Face checkpoint folder and a batch file, runs a plain
// eval forward (logits, every layer's attention probabilities), then one AD-DROP step
// (attribution, candidate region, keep mask, masked forward, gold loss, backward) with
// ordinary dropout off and no weight update, and saves everything as one safetensors
// file; optionally an SVG heat map of one layer / head / example.
//
//   addrop-inspect --model DIR --batch FILE --output FILE [--attribution ga|iga|aa|rd] ...
#include <addrop/addrop.hpp>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <unistd.h>
#include <vector>

#include "inspect_svg.hpp"

namespace fs = std::filesystem;
using namespace addrop;

namespace {

struct Options {
  std::string model, batch, output;
  std::string attribution = "ga";
  double p = 0.3, q = 0.3;
  std::vector<int> layers{0};
  std::string side = "high";
  int steps = 20;
  std::string iga_target = "fixed";
  uint64_t seed = 42;
  std::string dtype = "f32";
  int threads = 0;
  bool overwrite = false;
  std::string svg, tokens;
  std::optional<int> svg_layer;
  int svg_head = 0;
  int64_t svg_example = 0;
};

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

[[noreturn]] void fail(const std::string& what) { throw std::invalid_argument(what); }

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

std::string number_text(double v) {
  char buf[64];
  const auto [ptr, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, ptr) : std::to_string(v);
}

std::string join(const std::vector<int>& v) {
  std::string s;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i) s.push_back(',');
    s.append(std::to_string(v[i]));
  }
  return s;
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

/// The batch file's contents: the model batch plus the optional uniform draws.
struct BatchFile {
  models::Batch batch;
  std::vector<std::vector<float>> draws, second_draws;  ///< per target layer, or empty
};

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

std::vector<std::string> read_tokens(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("--tokens " + path + ": cannot open");
  std::vector<std::string> tokens;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    tokens.push_back(std::move(line));
  }
  return tokens;
}

void write_text_atomically(const fs::path& file, const std::string& text) {
  const fs::path tmp = file.string() + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail(file.string() + ": cannot write " + tmp.string());
    out << text;
    out.flush();
    if (!out) {
      out.close();
      std::error_code ec;
      fs::remove(tmp, ec);
      fail(file.string() + ": write failed");
    }
  }
  std::error_code ec;
  fs::rename(tmp, file, ec);
  if (ec) {
    fs::remove(tmp, ec);
    fail(file.string() + ": cannot rename the temporary file into place");
  }
}

// ------------------------------------------------------------------------------ run

template <class T>
std::vector<int64_t> dims(const Tensor<T, backend::Cpu>& t) {
  return std::vector<int64_t>(t.shape().dims.begin(), t.shape().dims.begin() + t.rank());
}

template <class T, class Attr>
void run(const Options& o, const models::ModelConfig& config, const BatchFile& input) {
  using Backend = backend::Cpu;
  const models::Batch& batch = input.batch;
  const int64_t B = batch.size, L = batch.length, H = config.num_attention_heads, C = config.num_labels;
  const bool token = config.task == models::Task::TokenClassification;
  const std::vector<int64_t> logits_shape = token ? std::vector<int64_t>{B, L, C} : std::vector<int64_t>{B, C};

  models::EncoderModel<T, Backend> model(config, {.threads = o.threads});
  const fs::path weights = fs::path(o.model) / "model.safetensors";
  if (!fs::is_regular_file(weights)) fail("--model " + o.model + ": no model.safetensors in that folder");
  io::load_weights(model, io::SafeTensors::load(weights), /*strict=*/true);

  io::SafeTensors out;
  auto put = [&](const std::string& name, std::vector<int64_t> shape, const T* data) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<T> host(static_cast<std::size_t>(n));
    Backend::to_host(model.context(), n, data, host.data());
    out.insert<T>(name, std::move(shape), std::span<const T>(host));
  };

  // The plain forward (eval mode: no dropout, no AD-DROP mask).
  const auto& logits = model.forward(batch);
  put("logits", logits_shape, logits.data());
  for (int l = 0; l < model.num_layers(); ++l) {
    const auto& a = model.attention_probs(l);
    put("attention_probs.layer" + std::to_string(l), dims(a), a.data());
  }
  std::vector<T> svg_probs;  // RD's heat map shows A_l (it has no attribution)

  // One AD-DROP step, dropout off.
  AdDropOptions options;
  options.p = o.p;
  options.q = o.q;
  options.layers = o.layers;
  options.steps = o.steps;
  options.iga_per_step = o.iga_target == "per-step";
  options.seed = o.seed;
  AdDrop<Attr, selection::TopP<High>, schedule::Always> reg(options);
  reg.selection_policy().side = o.side == "low" ? Side::Low : Side::High;
  ExternalUniforms ext;
  for (const auto& d : input.draws) ext.draws.emplace_back(d);
  for (const auto& d : input.second_draws) ext.second_draws.emplace_back(d);
  const bool given = !input.draws.empty();

  const int svg_layer = o.svg_layer.value_or(o.layers.front());
  if (!o.svg.empty() && Attr::is_random) {
    const auto& a = model.attention_probs(svg_layer);
    svg_probs.assign(a.data(), a.data() + a.numel());
  }

  model.zero_grad();
  const auto r = reg.step_addrop(model, batch, given ? &ext : nullptr, /*train=*/false);
  std::size_t svg_index = 0;
  for (std::size_t i = 0; i < r.layers.size(); ++i) {
    const std::string s = ".layer" + std::to_string(r.layers[i]);
    if (r.layers[i] == svg_layer) svg_index = i;
    if (!Attr::is_random) put("attribution" + s, dims(*r.attributions[i]), r.attributions[i]->data());
    put("candidates" + s, dims(*r.candidates[i]), r.candidates[i]->data());
    put("keep_mask" + s, dims(*r.keep[i]), r.keep[i]->data());
  }
  put("masked_logits", logits_shape, r.logits->data());
  const T loss = static_cast<T>(r.loss);
  out.insert<T>("loss", {}, std::span<const T>(&loss, 1));
  for (const auto* p : model.parameters()) put("grad." + p->name, dims(p->grad), p->grad.data());

  out.set_metadata("format", "pt");
  out.set_metadata("generator", "addrop-inspect");
  out.set_metadata("attribution", o.attribution);
  out.set_metadata("p", number_text(o.p));
  out.set_metadata("q", number_text(o.q));
  out.set_metadata("layers", join(o.layers));
  out.set_metadata("side", o.side);
  out.set_metadata("steps", std::to_string(o.steps));
  out.set_metadata("iga_target", o.iga_target);
  out.set_metadata("seed", std::to_string(o.seed));
  out.set_metadata("dtype", o.dtype);
  out.set_metadata("uniforms", given ? "batch" : "generator");
  out.set_metadata("model", o.model);
  out.set_metadata("batch", o.batch);
  out.save(o.output);
  std::fprintf(stderr, "addrop-inspect: %s: %zu tensors (%s, %s, layers %s, loss %.6g)\n", o.output.c_str(), out.size(),
               o.attribution.c_str(), o.dtype.c_str(), join(o.layers).c_str(), r.loss);

  if (o.svg.empty()) return;
  // The heat map: layer svg_layer, head svg_head, example svg_example, non-pad tokens only.
  const int64_t b = o.svg_example, h = o.svg_head;
  std::vector<int64_t> idx;
  for (int64_t j = 0; j < L; ++j)
    if (batch.attention_mask[b * L + j]) idx.push_back(j);
  std::vector<std::string> vocab;
  if (!o.tokens.empty()) vocab = read_tokens(o.tokens);
  addrop_inspect::HeatMap m;
  for (int64_t j : idx) {
    const int32_t id = batch.input_ids[b * L + j];
    m.labels.push_back(id < static_cast<int64_t>(vocab.size()) ? vocab[static_cast<std::size_t>(id)] : std::to_string(id));
  }
  const T* values = Attr::is_random ? svg_probs.data() : r.attributions[svg_index]->data();
  const T* cand = r.candidates[svg_index]->data();
  const T* keep = r.keep[svg_index]->data();
  for (int64_t i : idx)
    for (int64_t j : idx) {
      const int64_t k = ((b * H + h) * L + i) * L + j;
      m.values.push_back(static_cast<double>(values[k]));
      m.candidates.push_back(cand[k] != T(0));
      m.keep.push_back(keep[k] != T(0));
    }
  static const std::map<std::string, std::string> names{
      {"ga", "gradient (GA)"}, {"iga", "integrated gradients (IGA)"}, {"aa", "attention (AA)"}, {"rd", "random (RD)"}};
  m.title = "AD-DROP " + names.at(o.attribution) + ": layer " + std::to_string(svg_layer) + ", head " +
            std::to_string(h) + ", example " + std::to_string(b) + " (" + std::to_string(idx.size()) + " tokens)";
  m.subtitle = "p = " + number_text(o.p) + ", q = " + number_text(o.q) + ", side " + o.side +
               (o.attribution == "iga" ? ", m = " + std::to_string(o.steps) + ", " + o.iga_target + " target" : "") +
               ", uniforms from " + (given ? "the batch" : "seed " + std::to_string(o.seed)) + ", loss " +
               addrop_inspect::svg_detail::num(r.loss, "%.6g") + "; model " + fs::path(o.model).filename().string();
  m.left_title = Attr::is_random ? "attention A (RD has no attribution)" : "attribution B";
  m.right_title = "keep mask";
  write_text_atomically(o.svg, addrop_inspect::render_svg(m));
  std::fprintf(stderr, "addrop-inspect: %s: %zu x %zu heat map\n", o.svg.c_str(), idx.size(), idx.size());
}

template <class T>
void dispatch(const Options& o, const models::ModelConfig& config, const BatchFile& input) {
  if (o.attribution == "ga") run<T, attribution::Gradient>(o, config, input);
  else if (o.attribution == "iga") run<T, attribution::IntegratedGradients<>>(o, config, input);
  else if (o.attribution == "aa") run<T, attribution::Attention>(o, config, input);
  else run<T, attribution::Random>(o, config, input);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    check_writable("--output", o.output, o.overwrite);
    if (!o.svg.empty()) check_writable("--svg", o.svg, o.overwrite);
    if (!o.tokens.empty() && !fs::is_regular_file(o.tokens)) fail("--tokens " + o.tokens + ": no such file");
    if (!fs::is_directory(o.model)) fail("--model " + o.model + ": not a folder");
    const auto config = io::load_hf_config(o.model);
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
    if (o.dtype == "f64") dispatch<double>(o, config, input);
    else dispatch<float>(o, config, input);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "addrop-inspect: %s\n", e.what());
    return 1;
  }
}
