// addrop-ner's model code for one backend (device code: compiled for the CPU and, in a
// CUDA build, for the GPU; see device.hpp).
#include <addrop/backend/device_code.hpp>

#include "ner_train.hpp"

ner::Outcome ner::train_run(addrop::ThisDevice device, const Job& job, const addrop_examples::RunSpec& spec, const fs::path& dir) {
  return train_run<addrop::ThisBackend>(job, spec, dir, addrop::make_context(device));
}
