#pragma once
// What every benchmark program reads from the environment, and its main():
//   ADDROP_BENCH_THREADS     threads of every case (default 2)
//   ADDROP_BENCH_PRECISIONS  "f32", "bf16" or both, comma or space separated (default both)
// run_benchmarks() records the bf16 engine and the threads in the output's context.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include <addrop/backend/cpu.hpp>

namespace addrop::bench {

inline bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v && *v && std::string(v) != "0";
}

inline int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

inline int bench_threads() { return std::max(1, env_int("ADDROP_BENCH_THREADS", 2)); }

inline std::vector<Precision> bench_precisions() {
  const char* v = std::getenv("ADDROP_BENCH_PRECISIONS");
  std::string text = v && *v ? v : "f32,bf16";
  std::replace(text.begin(), text.end(), ',', ' ');
  std::istringstream words(text);
  std::vector<Precision> out;
  for (std::string w; words >> w;) {
    const Precision p = parse_precision(w, "ADDROP_BENCH_PRECISIONS");
    if (std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
  }
  return out;
}

/// Google Benchmark's main, after the program registered its cases.
inline int run_benchmarks(int argc, char** argv) {
  benchmark::AddCustomContext("bf16_matmul_engine", backend::bf16_matmul_engine());
  benchmark::AddCustomContext("threads", std::to_string(bench_threads()));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace addrop::bench
