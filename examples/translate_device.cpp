// addrop-translate's model code for one backend (device code: compiled for the CPU and, in a
// CUDA build, for the GPU; see device.hpp).
#include <addrop/backend/device_code.hpp>

#include "translate_train.hpp"

translate::Outcome translate::train_run(addrop::ThisDevice device, const Job& job, const addrop_examples::RunSpec& spec,
                                        const fs::path& dir) {
  return train_run<addrop::ThisBackend>(job, spec, dir, addrop::make_context(device));
}

std::vector<std::string> translate::translate_run(addrop::ThisDevice device, const fs::path& dir,
                                                  const std::vector<addrop::data::TranslationPair>& pairs,
                                                  const addrop::train::TranslationEvalOptions& options,
                                                  const Detokenize& detokenize) {
  return translate_run<addrop::ThisBackend>(dir, pairs, options, detokenize, addrop::make_context(device));
}
