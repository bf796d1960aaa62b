#pragma once
// What every example trainer runs and gets back, whatever its task: one run's AD-DROP
// setting and seed (a RunSpec; trainer_cli.hpp plans several), and its training result.
#include <addrop/train/trainer.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace addrop_examples {

/// One training run: the AD-DROP setting and the seed.
struct RunSpec {
  std::string name;                 ///< folder and legend name
  std::string attribution = "ga";   ///< none, ga, iga, aa, rd
  double p = 0.3, q = 0.3;
  uint64_t seed = 42;
};

struct RunOutcome {
  addrop::train::TrainResult result;
  std::optional<addrop::train::EvalResult> best_dev;
};

}  // namespace addrop_examples
