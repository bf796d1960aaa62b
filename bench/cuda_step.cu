// One AD-DROP training step (gradients only, no optimizer update) on the GPU with
// backend::Cuda: the BERT sequence classifier of bench_addrop.cpp (shapes small and base,
// float, sequence length 128, dropout probabilities 0), cases plain (schedule::Never), GA,
// IGA (m = 20), AA and RD (schedule::Always), target layer {0}, p = q = 0.3 — the cases
// bench/pytorch_addrop_step.py --device cuda times in PyTorch. TF32 off (FP32 GEMMs);
// --precision bf16 runs every float GEMM as Precision::Bf16Mixed instead (inputs rounded
// to bfloat16, tensor cores, float32 accumulation: torch.autocast bf16's split), so that
// f32 and bf16 steps can be timed on the same card.
//
// Each case: 2 untimed warm-up steps, then the median of N timed steps (5; IGA 3), each
// step being model.zero_grad() + AdDrop::step, bracketed by cudaDeviceSynchronize.
// Prints one JSON line per (shape, case): shape, case, seconds_per_step (median),
// seconds_min, iters, warmup, layer, p, q, m, tf32, precision (f32 or bf16), gpu.
//
//   bench_cuda_step [--shape small|base|all] [--case plain|ga|iga|aa|rd|all] [--iters N]
//                   [--precision f32|bf16]
//
// Exits 77 when no CUDA device can be used.
#include <addrop/backend/cuda/cuda.hpp>
#include <addrop/addrop.hpp>

#include "step_shapes.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <type_traits>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using addrop::backend::Cuda;
using Model = addrop::models::EncoderModel<float, Cuda>;
namespace attribution = addrop::attribution;
namespace schedule = addrop::schedule;
namespace selection = addrop::selection;

using namespace addrop::bench;  // StepShape, kSmall, kBase, make_config, make_batch

constexpr int kIgSteps = 20;
constexpr int kWarmup = 2;

addrop::AdDropOptions options() {
  addrop::AdDropOptions o;  // members set one by one: no -Wmissing-field-initializers as fields are added
  o.p = 0.3;
  o.q = 0.3;
  o.layers = {0};
  o.seed = 42;
  return o;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

using Plain = addrop::AdDrop<attribution::Gradient, selection::TopP, schedule::Never>;
using GA = addrop::AdDrop<attribution::Gradient, selection::TopP, schedule::Always>;
using IGA = addrop::AdDrop<attribution::IntegratedGradients, selection::TopP, schedule::Always>;
using AA = addrop::AdDrop<attribution::Attention, selection::TopP, schedule::Always>;
using RD = addrop::AdDrop<attribution::None, selection::Random, schedule::Always>;

template <class Reg>
void run_case(const Cuda::Context& gpu, const StepShape& s, const char* case_name, int iters,
              const std::string& gpu_name) {
  Model model(make_config(s), gpu);
  addrop::models::init_weights(model, 1);
  const auto batch = make_batch(s.batch);
  Reg reg = [] {
    if constexpr (std::is_same_v<typename Reg::AttributionPolicy, attribution::IntegratedGradients>)
      return Reg(options(), attribution::IntegratedGradients({.steps = kIgSteps}));
    else
      return Reg(options());
  }();
  double sink = 0;
  for (int i = 0; i < kWarmup; ++i) {
    model.zero_grad();
    sink += static_cast<double>(reg.step(model, batch, 0).loss);
  }
  check(cudaDeviceSynchronize(), "warm-up");
  std::vector<double> times;
  for (int i = 0; i < iters; ++i) {
    check(cudaDeviceSynchronize(), "before step");
    const auto t0 = std::chrono::steady_clock::now();
    model.zero_grad();
    auto out = reg.step(model, batch, 0);
    check(cudaDeviceSynchronize(), "after step");
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    sink += static_cast<double>(out.loss);
  }
  std::printf(
      "{\"shape\": \"%s\", \"case\": \"%s\", \"seconds_per_step\": %.6g, \"seconds_min\": %.6g, "
      "\"iters\": %d, \"warmup\": %d, \"layer\": 0, \"p\": 0.3, \"q\": 0.3, \"m\": %d, \"tf32\": false, "
      "\"precision\": \"%s\", \"loss_sum\": %.6g, \"gpu\": \"%s\"}\n",
      s.name, case_name, median(times), *std::min_element(times.begin(), times.end()), iters, kWarmup, kIgSteps,
      std::string(addrop::precision_name(gpu.precision)).c_str(), sink, gpu_name.c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  std::string shape = "all", which = "all";
  int iters_override = 0;
  addrop::Precision precision = addrop::Precision::F32;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--shape" && i + 1 < argc) shape = argv[++i];
    else if (a == "--case" && i + 1 < argc) which = argv[++i];
    else if (a == "--iters" && i + 1 < argc) iters_override = std::atoi(argv[++i]);
    else if (a == "--precision" && i + 1 < argc) {
      try {
        precision = addrop::parse_precision(argv[++i], "--precision");
      } catch (const std::invalid_argument& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 2;
      }
    } else {
      std::fprintf(stderr,
                   "usage: %s [--shape small|base|all] [--case plain|ga|iga|aa|rd|all] [--iters N] "
                   "[--precision f32|bf16]\n",
                   argv[0]);
      return 2;
    }
  }
  const std::string why = Cuda::unavailable_reason(0);
  if (!why.empty()) {
    std::fprintf(stderr, "skipped: %s\n", why.c_str());
    return 77;
  }
  int rc = 0;
  try {
    // tf32 = false: FP32 GEMMs, or Bf16Mixed ones with --precision bf16
    Cuda::Context gpu = Cuda::Context::create(0, false, precision);
    cudaDeviceProp prop{};
    check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
    const std::string gpu_name = prop.name;
    std::vector<StepShape> shapes;
    if (shape == "base" || shape == "all") shapes.push_back(kBase);
    if (shape == "small" || shape == "all") shapes.push_back(kSmall);
    for (const auto& s : shapes) {
      auto want = [&](const char* c) { return which == "all" || which == c; };
      auto n = [&](int dflt) { return iters_override > 0 ? iters_override : dflt; };
      if (want("plain")) run_case<Plain>(gpu, s, "plain", n(5), gpu_name);
      if (want("ga")) run_case<GA>(gpu, s, "ga", n(5), gpu_name);
      if (want("iga")) run_case<IGA>(gpu, s, "iga", n(3), gpu_name);
      if (want("aa")) run_case<AA>(gpu, s, "aa", n(5), gpu_name);
      if (want("rd")) run_case<RD>(gpu, s, "rd", n(5), gpu_name);
    }
    gpu = Cuda::Context{};
  } catch (const std::exception& e) {
    std::fprintf(stderr, "FAILED: %s\n", e.what());
    rc = 1;
  }
  return rc;
}
