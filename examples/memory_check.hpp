#pragma once
// The example programs' memory check: refuses a run that cannot fit in this machine's
// memory before any data is read. The library names the quantity that drives the need
// ("sequence length 100000", a config.json field); this maps it to the program's own
// flag or to the config's source.
#include <addrop/models/memory.hpp>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <sstream>
#include <stdexcept>
#include <string>

namespace addrop_examples {

/// Where each quantity of a run comes from, as the program's user knows it.
struct MemorySources {
  std::string config;  ///< the model's config: "<dir>/config.json" or "the --init tiny model"
  std::string batch = "--batch-size", eval_batch = "--eval-batch-size", length = "--max-length";
};

/// addrop::models::check_memory, its error worded with `sources`.
inline void check_memory(const addrop::models::ModelConfig& config, const addrop::models::RunShape& shape,
                         const MemorySources& sources) {
  using addrop::models::MemoryDriver;
  try {
    addrop::models::check_memory(config, shape);
  } catch (const addrop::models::MemoryError& e) {
    const std::string value = std::to_string(e.value);
    switch (e.driver) {
      case MemoryDriver::Model: throw std::runtime_error(e.quantity + " in " + sources.config + ": " + e.reason);
      case MemoryDriver::SequenceLength: throw std::runtime_error(sources.length + " " + value + ": " + e.reason);
      case MemoryDriver::BatchSize: throw std::runtime_error(sources.batch + " " + value + ": " + e.reason);
      case MemoryDriver::EvalBatchSize: throw std::runtime_error(sources.eval_batch + " " + value + ": " + e.reason);
    }
    throw;
  }
}

/// For the trainers (addrop-glue, addrop-ner): the run's shape from their training and
/// AD-DROP flags, the largest over every run planned (--runs may add AD-DROP or IGA).
/// An empty --layers means every layer (addrop-ner's default).
///
/// Called twice. Before any data is read (`longest` 0) it refuses only what can never
/// fit: the model itself, or one example of --max-length tokens. Batches are padded to
/// their own longest example, so whether a whole batch fits depends on the data: once it
/// is tokenized, `longest` (its longest example) gives the real worst case, and a batch
/// size beyond the memory is refused then, still before training.
template <class Options>
void check_training_memory(const addrop::models::ModelConfig& config, const Options& o, int64_t longest = 0) {
  // As addrop_examples::plan_runs: --runs lists the attributions unless a --grid uses --attribution.
  std::stringstream runs(o.grid.empty() && !o.runs.empty() ? o.runs : o.addrop.attribution);
  bool addrop = false, iga = false;
  for (std::string a; std::getline(runs, a, ',');) {
    addrop = addrop || (!a.empty() && a != "none");
    iga = iga || a == "iga";
  }
  const int64_t targets = o.addrop.layers.empty() ? config.num_hidden_layers : static_cast<int64_t>(o.addrop.layers.size());
  const addrop::models::RunShape shape{.batch_size = o.training.batch_size,
                                       .eval_batch_size = o.training.eval_batch_size,
                                       .sequence_length = longest > 0 ? std::min(longest, o.training.max_length)
                                                                      : o.training.max_length,
                                       .target_layers = addrop ? targets : 0,
                                       .ig_steps = iga ? o.addrop.ig_steps : 0};
  const std::string source = o.model.empty() ? "the --init " + o.init + " model"
                                             : (std::filesystem::path(o.model) / "config.json").string();
  try {
    check_memory(config, shape, {.config = source});
  } catch (const std::runtime_error&) {
    if (longest > 0) throw;
    // Before the data: only a single example counts.
    check_memory(config, {.batch_size = 1, .eval_batch_size = 1, .sequence_length = shape.sequence_length,
                          .target_layers = shape.target_layers, .ig_steps = shape.ig_steps},
                 {.config = source});
  }
}

/// The longest token sequence among feature sets (each a range of items with `ids`).
template <class... FeatureSets>
int64_t longest_sequence(const FeatureSets&... sets) {
  int64_t longest = 1;
  auto scan = [&](const auto& set) {
    for (const auto& f : set) longest = std::max<int64_t>(longest, static_cast<int64_t>(f.ids.size()));
  };
  (scan(sets), ...);
  return longest;
}

}  // namespace addrop_examples
