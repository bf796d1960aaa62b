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
      const double x = std::stod(v, &used);
      if (used != v.size()) throw std::invalid_argument(arg + ": \"" + v + "\" is not a number");
      return x;
    };
    if (arg == "--help" || arg == "-h") { usage(); std::exit(0); }
    else if (arg == "--steps") o.steps = static_cast<int>(number(value()));
    else if (arg == "--batch") o.batch = static_cast<int>(number(value()));
    else if (arg == "--lr") o.lr = number(value());
    else if (arg == "--seed") o.seed = static_cast<uint64_t>(number(value()));
    else if (arg == "--threads") o.threads = static_cast<int>(number(value()));
    else if (arg == "--output") o.output = value();
    else if (arg == "--device") o.device = value();
    else if (arg == "--epoch-steps") o.epoch_steps = static_cast<int>(number(value()));
    else if (arg == "--attribution") o.attribution = value();
    else if (arg == "--p") o.p = number(value());
    else if (arg == "--q") o.q = number(value());
    else throw std::invalid_argument("unknown option " + arg + " (see --help)");
  }
  if (o.steps <= 0 || o.batch <= 0 || o.threads <= 0 || o.epoch_steps <= 0 || !(o.lr > 0))
    throw std::invalid_argument("--steps, --epoch-steps, --batch, --threads and --lr must be positive");
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
