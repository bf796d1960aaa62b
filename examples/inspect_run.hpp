// addrop-inspect's step, written once for every backend: inspect_device.cpp instantiates
// it for the CPU and, in a CUDA build, for the GPU (--device cuda). Only the tensors that are written
// out or drawn cross to the host.
#pragma once

#include <addrop/addrop.hpp>
#include <addrop/backend/device.hpp>
#include <addrop/train/run_files.hpp>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "inspect_svg.hpp"

namespace addrop_inspect {

namespace fs = std::filesystem;
using namespace addrop;

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
  std::string device = "cpu";
  std::string precision = "f32";
  std::string attribution_precision = "model";  ///< model, f32 or bf16
  int threads = 0;
  bool overwrite = false;
  std::string svg, tokens;
  std::optional<int> svg_layer;
  int svg_head = 0;
  int64_t svg_example = 0;
};

[[noreturn]] inline void fail(const std::string& what) { throw std::invalid_argument(what); }

inline std::string number_text(double v) {
  char buf[64];
  const auto [ptr, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, ptr) : std::to_string(v);
}

inline std::string join(const std::vector<int>& v) {
  std::string s;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i) s.push_back(',');
    s.append(std::to_string(v[i]));
  }
  return s;
}

/// The batch file's contents: the model batch plus the optional uniform draws.
struct BatchFile {
  models::Batch batch;
  std::vector<std::vector<float>> draws, second_draws;  ///< per target layer, or empty
};

inline std::vector<std::string> read_tokens(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("--tokens " + path + ": cannot open");
  std::vector<std::string> tokens;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    tokens.push_back(std::move(line));
  }
  return tokens;
}

// ------------------------------------------------------------------------------ run

template <class T, class Backend>
std::vector<int64_t> dims(const Tensor<T, Backend>& t) {
  return std::vector<int64_t>(t.shape().dims.begin(), t.shape().dims.begin() + t.rank());
}

/// A tensor's values on the host (a copy from the device on the GPU).
template <class T, class Backend>
std::vector<T> host_values(const typename Backend::Context& ctx, const Tensor<T, Backend>& t) {
  std::vector<T> host(static_cast<std::size_t>(t.numel()));
  Backend::to_host(ctx, t.numel(), t.data(), host.data());
  return host;
}

template <class T, class Backend, class Reg>
void run(const Options& o, const models::ModelConfig& config, const BatchFile& input,
         const typename Backend::Context& context, Reg& reg) {
  constexpr bool scored = attribution::gives_scores<typename Reg::AttributionPolicy>;  // RD has no attribution
  const models::Batch& batch = input.batch;
  const int64_t B = batch.size, L = batch.length, H = config.num_attention_heads, C = config.num_labels;
  const bool token = config.task == models::Task::TokenClassification;
  const std::vector<int64_t> logits_shape = token ? std::vector<int64_t>{B, L, C} : std::vector<int64_t>{B, C};

  models::EncoderModel<T, Backend> model(config, context);
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
  ExternalUniforms ext;
  for (const auto& d : input.draws) ext.draws.emplace_back(d);
  for (const auto& d : input.second_draws) ext.second_draws.emplace_back(d);
  const bool given = !input.draws.empty();

  const int svg_layer = o.svg_layer.value_or(o.layers.front());
  if (!o.svg.empty() && !scored) svg_probs = host_values(model.context(), model.attention_probs(svg_layer));

  model.zero_grad();
  const auto r = reg.step_addrop(model, batch, given ? &ext : nullptr, /*train=*/false);
  std::size_t svg_index = 0;
  for (std::size_t i = 0; i < r.layers.size(); ++i) {
    const std::string s = ".layer" + std::to_string(r.layers[i]);
    if (r.layers[i] == svg_layer) svg_index = i;
    if (scored) put("attribution" + s, dims(*r.attributions[i]), r.attributions[i]->data());
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
  out.set_metadata("precision", o.precision);
  out.set_metadata("attribution_precision", o.attribution_precision);
  out.set_metadata("dtype", o.dtype);
  out.set_metadata("device", o.device);
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
  const std::vector<T> values = !scored ? svg_probs : host_values(model.context(), *r.attributions[svg_index]);
  const std::vector<T> cand = host_values(model.context(), *r.candidates[svg_index]);
  const std::vector<T> keep = host_values(model.context(), *r.keep[svg_index]);
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
  m.left_title = !scored ? "attention A (RD has no attribution)" : "attribution B";
  m.right_title = "keep mask";
  train::write_file_atomic(o.svg, addrop_inspect::render_svg(m));  // temp name, then rename
  std::fprintf(stderr, "addrop-inspect: %s: %zu x %zu heat map\n", o.svg.c_str(), idx.size(), idx.size());
}

template <class T, class Backend>
void dispatch(const Options& o, const models::ModelConfig& config, const BatchFile& input,
              const typename Backend::Context& context) {
  AdDropOptions options{.p = o.p, .q = o.q, .layers = o.layers, .seed = o.seed, .record_masks = false,
                        .attribution_precision = std::nullopt};
  if (o.attribution_precision != "model")
    options.attribution_precision = parse_precision(o.attribution_precision, "--attribution-precision");
  const PolicyNames names{.attribution = o.attribution, .side = o.side, .schedule = "always",
                          .integrated_gradients = {.steps = o.steps, .per_step_argmax = o.iga_target == "per-step"}};
  with_regulariser(names, options, [&](auto& reg) { run<T, Backend>(o, config, input, context, reg); });
}

/// The step per device (inspect_device.cpp, compiled once per backend: device.hpp).
void run_step(addrop::OnCpu device, const Options& o, const models::ModelConfig& config, const BatchFile& input);
void run_step(addrop::OnCuda device, const Options& o, const models::ModelConfig& config, const BatchFile& input);

}  // namespace addrop_inspect
