// addrop-train-tiny: the smallest end-to-end run of the library. It builds a small BERT
// sequence classifier, trains it with AdamW and AD-DROP (cross-tuning: epochs of
// --epoch-steps steps alternate plain / AD-DROP) on a synthetic task generated from a seed
// (label 1 iff the sequence contains the "trigger" token 7; padded sequences of varying
// length), prints the loss of every step and the held-out accuracy before and after, and
// optionally saves the trained model as a Hugging Face folder.
//
//   addrop-train-tiny [--steps N] [--epoch-steps N] [--attribution ga|iga|aa|rd|none]
//                     [--p X] [--q X] [--batch N] [--lr X] [--seed N] [--threads N]
//                     [--device cpu|cuda] [--output DIR]
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "device.hpp"
#include "train_tiny.hpp"

using namespace addrop_train_tiny;

namespace {

void usage() {
  std::puts(
      "usage: addrop-train-tiny [--steps N] [--epoch-steps N] [--attribution ga|iga|aa|rd|none] [--p X] [--q X]\n"
      "                         [--batch N] [--lr X] [--seed N] [--threads N] [--device cpu|cuda] [--output DIR]\n"
      "Trains a 2-layer BERT classifier with AD-DROP on a synthetic task and prints the loss going down.\n"
      "  --steps N        optimizer steps (default 60)\n"
      "  --epoch-steps N  steps per epoch; cross-tuning runs AD-DROP in odd epochs (default 10)\n"
      "  --attribution A  ga (default), iga, aa, rd, or none for plain fine-tuning\n"
      "  --p X, --q X     AD-DROP's candidate fraction and drop probability (default 0.3, 0.3)\n"
      "  --batch N     examples per step (default 32)\n"
      "  --lr X        AdamW learning rate (default 1e-3)\n"
      "  --seed N      seed of the data, the initialisation and dropout (default 42)\n"
      "  --threads N   CPU threads (default 2)\n"
      "  --device D    cpu (default) or cuda (needs a CUDA build and a GPU)\n"
      "  --output DIR  save the trained model there (config.json + model.safetensors)");
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(arg + " needs a value");
      return argv[++i];
    };
    auto number = [&](const std::string& v) {
      std::size_t used = 0;
      double x = 0;
      try {
        x = std::stod(v, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used == 0 || used != v.size()) throw std::invalid_argument(arg + ": \"" + v + "\" is not a number");
      return x;
    };
    // A count: a whole number (1.5 steps would be cut to 1 without a word).
    auto count = [&](const std::string& v) {
      const double x = number(v);
      if (x != std::floor(x) || std::fabs(x) > 1e9) throw std::invalid_argument(arg + ": \"" + v + "\" is not a whole number");
      return static_cast<int>(x);
    };
    if (arg == "--help" || arg == "-h") { usage(); std::exit(0); }
    else if (arg == "--steps") o.steps = count(value());
    else if (arg == "--batch") o.batch = count(value());
    else if (arg == "--lr") o.lr = number(value());
    else if (arg == "--seed") {
      const double seed = number(value());
      if (seed < 0 || seed != std::floor(seed)) throw std::invalid_argument(arg + ": the seed must be a whole number, 0 or more");
      o.seed = static_cast<uint64_t>(seed);
    } else if (arg == "--threads") o.threads = count(value());
    else if (arg == "--output") o.output = value();
    else if (arg == "--device") o.device = value();
    else if (arg == "--epoch-steps") o.epoch_steps = count(value());
    else if (arg == "--attribution") o.attribution = value();
    else if (arg == "--p") o.p = number(value());
    else if (arg == "--q") o.q = number(value());
    else throw std::invalid_argument("unknown option " + arg + " (see --help)");
  }
  // Each flag on its own, so that the message names the one at fault and its value.
  auto require = [](bool ok, const std::string& flag, double value, const std::string& rule) {
    char text[32];
    std::snprintf(text, sizeof text, "%g", value);
    if (!ok) throw std::invalid_argument(flag + " " + text + ": " + rule);
  };
  require(o.steps >= 1, "--steps", o.steps, "must be at least 1");
  require(o.epoch_steps >= 1, "--epoch-steps", o.epoch_steps, "must be at least 1");
  require(o.batch >= 1, "--batch", o.batch, "must be at least 1");
  require(o.threads >= 1, "--threads", o.threads, "must be at least 1");
  require(o.lr > 0 && std::isfinite(o.lr), "--lr", o.lr, "must be positive");
  require(o.p >= 0 && o.p <= 1, "--p", o.p, "must be in [0, 1]");
  require(o.q >= 0 && o.q <= 1, "--q", o.q, "must be in [0, 1]");
  if (o.attribution != "ga" && o.attribution != "iga" && o.attribution != "aa" && o.attribution != "rd" &&
      o.attribution != "none")
    throw std::invalid_argument("--attribution must be ga, iga, aa, rd or none, not \"" + o.attribution + "\"");
  if (o.device != "cpu" && o.device != "cuda")
    throw std::invalid_argument("--device must be cpu or cuda, not \"" + o.device + "\"");
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options opt = parse(argc, argv);
    // Cross-tuning runs AD-DROP from the second epoch on: a single epoch is plain training.
    if (opt.attribution != "none" && opt.steps <= opt.epoch_steps)
      std::fprintf(stderr,
                   "addrop-train-tiny: warning: --steps %d with --epoch-steps %d is one epoch, and cross-tuning "
                   "starts with a plain epoch, so AD-DROP never runs; give more --steps than --epoch-steps\n",
                   opt.steps, opt.epoch_steps);
    if (opt.device == "cuda") {
      if (!addrop_examples::cuda_available())
        throw std::runtime_error("--device cuda: " + addrop_examples::cuda_unavailable_reason());
      train_on_cuda(opt);
    } else {
      train_and_report<addrop::backend::Cpu>(opt, {.threads = opt.threads});
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "addrop-train-tiny: %s\n", e.what());
    return 1;
  }
}
