#pragma once
// Saving and restoring AdamW's state (and the LR schedule's step) for resuming a run.
// Optimizer first, then the file, like io::load_weights(model, file):
//   save_optimizer_state(opt, dir / "optimizer.safetensors", &scheduler);
//   load_optimizer_state(opt, dir / "optimizer.safetensors", &scheduler);
//
// File: safetensors, one pair of tensors per parameter, named after it:
//   "exp_avg.<parameter name>", "exp_avg_sq.<parameter name>"   (same shape as the parameter,
//   F32 for a float optimizer, F64 for double; loading converts from any float dtype)
// and "__metadata__" strings:
//   "format": "addrop.adamw", "step": optimizer steps taken, "schedule_step": the
//   LrScheduler's counter (absent when none was saved), "variant", "lr", "beta1", "beta2",
//   "eps", "weight_decay" (informational: options are configuration, not state, and are
//   not restored).
//
// Loading is all-or-nothing: every check (format, step, every tensor present, no tensor
// left over, shapes, dtypes) runs before anything is copied, so a failing load leaves the
// optimizer and the scheduler as they were. Errors are io::Error naming the file and the
// tensor (or metadata key) at fault.
#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdint>
#include <filesystem>
#include <set>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "../io/safetensors.hpp"
#include "adamw.hpp"
#include "lr_schedule.hpp"

namespace addrop::train {

/// The scalar part of a saved state.
struct OptimizerStateInfo {
  int64_t step = 0;           ///< AdamW steps taken
  int64_t schedule_step = -1; ///< the scheduler's step count; -1 when the file has none
};

namespace optimizer_state_detail {
inline std::string label(const io::SafeTensors& st) {
  return st.path().empty() ? std::string("<memory>") : st.path().string();
}
inline int64_t parse_count(const io::SafeTensors& st, const std::string& key, bool required) {
  const auto& meta = st.metadata();
  const auto it = meta.find(key);
  if (it == meta.end()) {
    if (required) throw io::Error(label(st) + ": optimizer state has no \"" + key + "\" in __metadata__");
    return -1;
  }
  int64_t v = 0;
  const char* b = it->second.data();
  const char* e = b + it->second.size();
  const auto [ptr, ec] = std::from_chars(b, e, v);
  if (ec != std::errc() || ptr != e || v < 0)
    throw io::Error(label(st) + ": __metadata__ \"" + key + "\" = \"" + it->second +
                    "\" is not a non-negative integer");
  return v;
}
inline std::string number(double x) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}
template <class T, class Backend>
std::vector<int64_t> dims(const Tensor<T, Backend>& t) {
  return {t.shape().dims.begin(), t.shape().dims.begin() + t.rank()};
}
}  // namespace optimizer_state_detail

/// The optimizer's state (and the scheduler's step, when given) as a safetensors collection.
/// Throws io::Error when two parameters share a name.
template <class T, class Backend>
io::SafeTensors optimizer_state_to_safetensors(const AdamW<T, Backend>& opt, const LrScheduler* scheduler = nullptr) {
  namespace d = optimizer_state_detail;
  io::SafeTensors st;
  std::set<std::string> seen;
  std::vector<T> host;
  for (std::size_t i = 0; i < opt.size(); ++i) {
    const auto& name = opt.parameters()[i]->name;
    if (!seen.insert(name).second)
      throw io::Error("optimizer state: two parameters are called \"" + name + "\"; names must be unique");
    for (const bool second : {false, true}) {
      const auto& t = second ? opt.exp_avg_sq(i) : opt.exp_avg(i);
      host.resize(static_cast<std::size_t>(t.numel()));
      Backend::to_host(opt.context(), t.numel(), t.data(), host.data());
      st.insert<T>((second ? "exp_avg_sq." : "exp_avg.") + name, d::dims(t), std::span<const T>(host));
    }
  }
  const auto& o = opt.options();
  st.set_metadata("format", "addrop.adamw");
  st.set_metadata("step", std::to_string(opt.steps()));
  if (scheduler) st.set_metadata("schedule_step", std::to_string(scheduler->step_count()));
  st.set_metadata("variant", o.variant == AdamWVariant::HuggingFace ? "huggingface" : "torch");
  st.set_metadata("lr", d::number(o.lr));
  st.set_metadata("beta1", d::number(o.beta1));
  st.set_metadata("beta2", d::number(o.beta2));
  st.set_metadata("eps", d::number(o.eps));
  st.set_metadata("weight_decay", d::number(o.weight_decay));
  return st;
}

/// Restores the optimizer (and the scheduler's step, when given) from `st`; all-or-nothing.
/// A scheduler passed here requires "schedule_step" in the file.
template <class T, class Backend>
OptimizerStateInfo optimizer_state_from_safetensors(AdamW<T, Backend>& opt, const io::SafeTensors& st,
                                                    LrScheduler* scheduler = nullptr) {
  namespace d = optimizer_state_detail;
  const std::string where = d::label(st);
  const auto fmt = st.metadata().find("format");
  if (fmt == st.metadata().end() || fmt->second != "addrop.adamw")
    throw io::Error(where + ": not an addrop optimizer state (__metadata__ \"format\" is " +
                    (fmt == st.metadata().end() ? std::string("absent") : "\"" + fmt->second + "\"") +
                    ", expected \"addrop.adamw\")");
  OptimizerStateInfo info;
  info.step = d::parse_count(st, "step", true);
  info.schedule_step = d::parse_count(st, "schedule_step", scheduler != nullptr);

  // Every check first.
  std::set<std::string> expected;
  for (std::size_t i = 0; i < opt.size(); ++i) {
    const auto& name = opt.parameters()[i]->name;
    for (const bool second : {false, true}) {
      const std::string key = (second ? "exp_avg_sq." : "exp_avg.") + name;
      if (!expected.insert(key).second)
        throw io::Error(where + ": two parameters of the optimizer are called \"" + name + "\"");
      if (!st.contains(key))
        throw io::Error(where + ": tensor \"" + key + "\" is missing (the optimizer has parameter \"" + name + "\")");
      const auto& rec = st.at(key);
      const auto want = d::dims(second ? opt.exp_avg_sq(i) : opt.exp_avg(i));
      if (rec.shape != want)
        throw io::Error(where + ": tensor \"" + key + "\" has shape " + io::shape_string(rec.shape) +
                        " but parameter \"" + name + "\" has shape " + io::shape_string(want));
      if (!io::is_floating(rec.dtype))
        throw io::Error(where + ": tensor \"" + key + "\" is stored as " + std::string(io::dtype_name(rec.dtype)) +
                        ", expected a floating-point dtype");
    }
  }
  for (const auto& name : st.names())
    if (!expected.count(name))
      throw io::Error(where + ": tensor \"" + name + "\" belongs to no parameter of the optimizer");

  // Convert everything on the host, then copy: nothing is touched before all is read.
  std::vector<std::vector<T>> values;
  values.reserve(2 * opt.size());
  for (std::size_t i = 0; i < opt.size(); ++i) {
    const auto& name = opt.parameters()[i]->name;
    values.push_back(st.template values<T>("exp_avg." + name));
    values.push_back(st.template values<T>("exp_avg_sq." + name));
  }
  for (std::size_t i = 0; i < opt.size(); ++i) {
    auto& m = opt.exp_avg(i);
    auto& v = opt.exp_avg_sq(i);
    Backend::to_device(opt.context(), m.numel(), values[2 * i].data(), m.data());
    Backend::to_device(opt.context(), v.numel(), values[2 * i + 1].data(), v.data());
  }
  opt.set_steps(info.step);
  if (scheduler) scheduler->set_step_count(info.schedule_step);
  return info;
}

/// Writes the state to `file` (temporary name, then rename; see SafeTensors::save).
template <class T, class Backend>
void save_optimizer_state(const AdamW<T, Backend>& opt, const std::filesystem::path& file,
                          const LrScheduler* scheduler = nullptr) {
  optimizer_state_to_safetensors(opt, scheduler).save(file);
}

/// Reads `file` into the optimizer (and the scheduler's step); all-or-nothing.
template <class T, class Backend>
OptimizerStateInfo load_optimizer_state(AdamW<T, Backend>& opt, const std::filesystem::path& file,
                                        LrScheduler* scheduler = nullptr) {
  return optimizer_state_from_safetensors(opt, io::SafeTensors::load(file), scheduler);
}

}  // namespace addrop::train
