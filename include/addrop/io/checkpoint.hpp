#pragma once
// Hugging Face checkpoint folders (config.json + model.safetensors) <-> models.
//
// Names are matched exactly as Hugging Face writes them. Like transformers'
// from_pretrained, a checkpoint of the bare body ("embeddings.…" without the
// "bert." prefix) and old LayerNorm names ("gamma"/"beta") are accepted; a tensor
// whose shape differs is an error naming the parameter and both shapes; tensors the
// model does not use and parameters the checkpoint lacks are listed in the report.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "../models/config.hpp"
#include "../models/init.hpp"
#include "hf_config.hpp"
#include "safetensors.hpp"

namespace addrop::io {

struct LoadReport {
  std::vector<std::string> loaded;   ///< model parameters found in the file
  std::vector<std::string> missing;  ///< model parameters absent from the file (left as they were)
  std::vector<std::string> unused;   ///< tensors in the file the model has no use for

  std::string summary() const {
    auto list = [](const std::vector<std::string>& v) {
      std::string s;
      for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + v[i];
      return s.empty() ? std::string("none") : s;
    };
    return std::to_string(loaded.size()) + " loaded; missing: " + list(missing) + "; unused: " + list(unused);
  }
};

namespace checkpoint_detail {
inline std::string legacy_name(std::string n) {
  // Old BERT checkpoints call LayerNorm's parameters gamma / beta.
  auto swap_suffix = [&](const std::string& from, const std::string& to) {
    if (n.size() > from.size() && n.compare(n.size() - from.size(), from.size(), from) == 0)
      n = n.substr(0, n.size() - from.size()) + to;
  };
  swap_suffix("LayerNorm.gamma", "LayerNorm.weight");
  swap_suffix("LayerNorm.beta", "LayerNorm.bias");
  return n;
}
}  // namespace checkpoint_detail

/// Copies every tensor of `file` that names a parameter of `model` into it, converting the
/// stored dtype to the model's scalar type. Throws io::Error on a shape mismatch or, when
/// `strict`, on any missing parameter.
template <class Model>
LoadReport load_weights(Model& model, const SafeTensors& file, bool strict = false) {
  using T = typename Model::value_type;
  using Backend = typename Model::backend_type;
  const std::string prefix = model.config().prefix() + ".";
  LoadReport report;
  std::vector<std::string> claimed;
  // First every check, then every copy: a failing load leaves the model untouched.
  std::vector<std::pair<std::string, nn::Parameter<T, Backend>*>> plan;
  for (const auto& stored : file.names()) {
    std::string name = checkpoint_detail::legacy_name(stored);
    auto* p = model.find_parameter(name);
    if (!p && name.rfind(prefix, 0) != 0) p = model.find_parameter(prefix + name);  // bare body checkpoint
    if (!p) {
      report.unused.push_back(stored);
      continue;
    }
    std::vector<int64_t> want(p->value.shape().dims.begin(), p->value.shape().dims.begin() + p->value.rank());
    const auto& rec = file.at(stored);
    if (rec.shape != want)
      throw Error(file.path().string() + ": tensor \"" + stored + "\" has shape " + shape_string(rec.shape) +
                  " but parameter \"" + p->name + "\" of the " + model.config().architecture() + " has shape " +
                  shape_string(want));
    if (!is_floating(rec.dtype))
      throw Error(file.path().string() + ": tensor \"" + stored + "\" is stored as " + std::string(dtype_name(rec.dtype)) +
                  " but parameter \"" + p->name + "\" needs a floating-point dtype (F64, F32, F16 or BF16)");
    plan.emplace_back(stored, p);
  }
  for (const auto& entry : plan) claimed.push_back(entry.second->name);
  std::sort(claimed.begin(), claimed.end());
  for (auto* p : model.parameters())
    if (!std::binary_search(claimed.begin(), claimed.end(), p->name)) report.missing.push_back(p->name);
  if (strict && !report.missing.empty()) {
    std::string names;
    for (const auto& n : report.missing) names += (names.empty() ? "" : ", ") + n;
    throw Error(file.path().string() + ": missing parameters of the " + model.config().architecture() + ": " + names);
  }
  for (const auto& [stored, p] : plan) {
    const std::vector<T> values = file.template values<T>(stored);
    Backend::to_device(model.context(), p->value.numel(), values.data(), p->value.data());
    report.loaded.push_back(p->name);
  }
  return report;
}

/// Loads <dir>/model.safetensors into a model built from the same folder's config.json.
/// Parameters absent from the file (a fresh task head) get Hugging Face's initialisation from `seed`.
template <class Model>
LoadReport load_pretrained(Model& model, const std::filesystem::path& dir, uint64_t seed = 0) {
  const auto file = dir / "model.safetensors";
  if (!std::filesystem::exists(file))
    throw Error(file.string() + ": not found (a Hugging Face folder needs model.safetensors; convert a "
                "pytorch_model.bin with safetensors' convert script)");
  const SafeTensors st = SafeTensors::load(file);
  LoadReport report = load_weights(model, st, false);
  uint64_t stream = 1u << 20;
  for (const auto& name : report.missing) {
    auto* p = model.find_parameter(name);
    models::init_parameter(*p, model.context(), seed, stream++);
  }
  return report;
}

/// Writes a Hugging Face folder: config.json and model.safetensors (each to a temporary
/// name first, then renamed). `dtype` F32 (default) or F64.
template <class Model>
void save_pretrained(const Model& model, const std::filesystem::path& dir, DType dtype = DType::F32) {
  using T = typename Model::value_type;
  using Backend = typename Model::backend_type;
  std::filesystem::create_directories(dir);
  SafeTensors st;
  st.set_metadata("format", "pt");
  // Buffers (tensors of the state dict that do not train, e.g. Marian's final_logits_bias)
  // are written after the parameters when the model has them.
  std::vector<const nn::Parameter<T, Backend>*> tensors(model.parameters().begin(), model.parameters().end());
  if constexpr (requires { model.buffers(); }) tensors.insert(tensors.end(), model.buffers().begin(), model.buffers().end());
  for (const auto* p : tensors) {
    std::vector<T> host(static_cast<std::size_t>(p->value.numel()));
    Backend::to_host(model.context(), p->value.numel(), p->value.data(), host.data());
    std::vector<int64_t> shape(p->value.shape().dims.begin(), p->value.shape().dims.begin() + p->value.rank());
    if (dtype == DType::F64) {
      std::vector<double> v(host.begin(), host.end());
      st.insert<double>(p->name, shape, std::span<const double>(v));
    } else {
      std::vector<float> v(host.begin(), host.end());
      st.insert<float>(p->name, shape, std::span<const float>(v));
    }
  }
  st.save(dir / "model.safetensors");
  const auto config = dir / "config.json";
  const auto tmp = dir / "config.json.tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(tmp.string() + ": cannot write");
    out << to_hf_json(model.config()).dump(2) << "\n";
    if (!out) throw Error(tmp.string() + ": write failed");
  }
  std::filesystem::rename(tmp, config);
}

}  // namespace addrop::io
