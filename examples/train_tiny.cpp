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
#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "cli_common.hpp"
#include "device.hpp"
#include "train_tiny.hpp"

using namespace addrop_train_tiny;

namespace {

using addrop_examples::number;
using addrop_examples::require;
using addrop_examples::whole_number;

/// The flags; CLI11 refuses a value of the wrong kind ("--steps: \"1.5\" is not a whole number").
void add_flags(CLI::App& app, Options& o) {
  app.add_option("--steps", o.steps, "optimizer steps")->transform(whole_number<int>());
  app.add_option("--epoch-steps", o.epoch_steps, "steps per epoch; cross-tuning runs AD-DROP in odd epochs")
      ->transform(whole_number<int>());
  app.add_option("--attribution", o.attribution, "ga, iga, aa, rd, or none for plain fine-tuning")
      ->check(CLI::IsMember({"ga", "iga", "aa", "rd", "none"}));
  app.add_option("--p", o.p, "AD-DROP's candidate fraction")->transform(number());
  app.add_option("--q", o.q, "AD-DROP's drop probability")->transform(number());
  app.add_option("--batch", o.batch, "examples per step")->transform(whole_number<int>());
  app.add_option("--lr", o.lr, "AdamW learning rate")->transform(number());
  app.add_option("--seed", o.seed, "seed of the data, the initialisation and dropout")->transform(whole_number<uint64_t>());
  app.add_option("--threads", o.threads, "CPU threads")->transform(whole_number<int>());
  app.add_option("--device", o.device, "cpu or cuda (needs a CUDA build and a GPU)")->check(CLI::IsMember({"cpu", "cuda"}));
  addrop_examples::add_precision_flag(app, o.precision);
  app.add_option("--output", o.output, "save the trained model there (config.json + model.safetensors)");
}

/// Each flag on its own, so that the message names the one at fault and its value.
void check_flags(const Options& o) {
  require(o.steps >= 1, "--steps", o.steps, "must be at least 1");
  require(o.epoch_steps >= 1, "--epoch-steps", o.epoch_steps, "must be at least 1");
  require(o.batch >= 1, "--batch", o.batch, "must be at least 1");
  require(o.threads >= 1, "--threads", o.threads, "must be at least 1");
  require(o.lr > 0 && std::isfinite(o.lr), "--lr", o.lr, "must be positive");
  require(o.p >= 0 && o.p <= 1, "--p", o.p, "must be in [0, 1]");
  require(o.q >= 0 && o.q <= 1, "--q", o.q, "must be in [0, 1]");
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  CLI::App app{"addrop-train-tiny: trains a 2-layer BERT classifier with AD-DROP on a synthetic task and prints the loss going down"};
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)->always_capture_default();  // a later flag wins; --help shows defaults
  add_flags(app, opt);
  try {
    app.parse(argc, argv);
    check_flags(opt);
    // Cross-tuning runs AD-DROP from the second epoch on: a single epoch is plain training.
    if (opt.attribution != "none" && opt.steps <= opt.epoch_steps)
      std::fprintf(stderr,
                   "addrop-train-tiny: warning: --steps %d with --epoch-steps %d is one epoch, and cross-tuning "
                   "starts with a plain epoch, so AD-DROP never runs; give more --steps than --epoch-steps\n",
                   opt.steps, opt.epoch_steps);
    addrop_examples::on_device(opt.device, opt.threads, opt.precision, [&](auto device) { train(device, opt); });
    return 0;
  } catch (const CLI::Success& e) {
    return app.exit(e);  // --help
  } catch (const std::exception& e) {
    std::fprintf(stderr, "addrop-train-tiny: %s\n", e.what());
    return 1;
  }
}
