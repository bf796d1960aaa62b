// addrop-train-tiny's training for one backend (device code: compiled for the CPU and, in
// a CUDA build, for the GPU; see device.hpp).
#include <addrop/backend/device_code.hpp>

#include "train_tiny.hpp"

void addrop_train_tiny::train(addrop::ThisDevice device, const Options& opt) {
  train_and_report<addrop::ThisBackend>(opt, addrop::make_context(device));
}
