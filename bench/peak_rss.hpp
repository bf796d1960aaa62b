#pragma once
// The peak resident memory of one benchmark case (bench_addrop.cpp, bench_marian.cpp):
// construct a PeakRss at the start of the case (before the model, so its memory counts),
// call report(state) at its end. Counters: peak_rss_mb, the highest resident set of the
// process while the case ran, and start_rss_mb, the resident set when it began, both in MiB
// (2^20 bytes). The peak is the kernel's high-water mark VmHWM (/proc/self/status), reset
// to the current resident set at construction by writing "5" to /proc/self/clear_refs
// (CLEAR_REFS_MM_HIWATER_RSS, Linux >= 4.0); where that fails, a warning is printed once,
// the counter peak_rss_reset = 0 is added and peak_rss_mb is the process's peak so far.
// Several cases in one process: memory an earlier case left with the allocator is in
// start_rss_mb and may hide under the peak, so for per-case peaks run one case per process.
#include <benchmark/benchmark.h>

#include <errno.h>  // program_invocation_short_name (glibc)

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <utility>

namespace addrop::bench {

class PeakRss {
 public:
  PeakRss() : reset_(reset_high_water_mark()), start_kib_(status_kib("VmRSS:")) {}
  void report(benchmark::State& state) const {
    state.counters["peak_rss_mb"] = status_kib("VmHWM:") / 1024.0;
    state.counters["start_rss_mb"] = start_kib_ / 1024.0;
    if (!reset_) state.counters["peak_rss_reset"] = 0;
  }

 private:
  // "5" to clear_refs sets VmHWM to the current VmRSS (fs/proc/task_mmu.c, CLEAR_REFS_MM_HIWATER_RSS).
  static bool reset_high_water_mark() {
    std::FILE* f = std::fopen("/proc/self/clear_refs", "w");
    bool ok = f && std::fputs("5", f) >= 0;
    if (f && std::fclose(f) != 0) ok = false;  // the buffered write happens here
    if (!ok) {
      static bool warned = false;
      if (!std::exchange(warned, true))
        std::fprintf(stderr, "%s: cannot reset the peak RSS (/proc/self/clear_refs); "
                             "peak_rss_mb is the process's peak so far\n", program_invocation_short_name);
    }
    return ok;
  }
  static double status_kib(const std::string& key) {  // a "Key:   123 kB" line of /proc/self/status
    std::ifstream f("/proc/self/status");
    for (std::string line; std::getline(f, line);)
      if (line.rfind(key, 0) == 0) return std::atof(line.c_str() + key.size());
    return -1;
  }
  bool reset_;
  double start_kib_;
};

}  // namespace addrop::bench
