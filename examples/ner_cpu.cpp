// addrop-ner's model code instantiated for the CPU backend.
#include "ner_train.hpp"

ner::Outcome ner::train_run_cpu(const Job& job, const glue::RunSpec& spec, const fs::path& dir, int threads) {
  return ner::train_run<addrop::backend::Cpu>(job, spec, dir, addrop::backend::Cpu::Context{.threads = threads});
}
