#pragma once
// A progress display for training loops, on stderr by default.
//
// Interactive (the stream is a terminal): one line redrawn in place (carriage return,
// clear to end of line), at most every `redraw_interval_s`:
//   epoch 1  42%|############                | 210/500 [00:31<00:43, 6.71 it/s, loss=0.4312]
// Not a terminal (a log file, a pipe, a test's string stream): plain lines, one each
// time progress crosses another `line_percent` percent or `line_interval_s` seconds have
// passed since the last line, and one at finish():
//   epoch 1: 210/500 (42%) 6.71 it/s, elapsed 00:31, eta 00:43, loss=0.4312
// The rate is the mean since the first update() (it/s, or s/it when below 1 it/s);
// ETA = remaining / rate. total = 0 means unknown: no percentage, no ETA.
// @code
//   train::Progress bar(batches.size(), "epoch 1");
//   for (...) { ...; bar.update(1, {{"loss", loss}}); }
//   bar.finish();
// @endcode
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <initializer_list>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace addrop::train {

struct ProgressOptions {
  /// Where to draw; nullptr = std::cerr.
  std::ostream* out = nullptr;
  /// Draw in place (terminal) or print plain lines; default: whether the stream is
  /// std::cerr and stderr is a terminal (isatty), otherwise plain lines.
  std::optional<bool> interactive;
  double redraw_interval_s = 0.1;  ///< interactive: minimum time between redraws
  double line_interval_s = 30.0;   ///< plain: a line at least this often
  int line_percent = 10;           ///< plain: a line each time this many percent more are done (0: off)
  int bar_width = 30;              ///< interactive: characters of the bar
  /// Seconds from an arbitrary origin; default: std::chrono::steady_clock (tests pass a fake).
  std::function<double()> clock;
};

/// One named number shown after the counts ("loss=0.4312").
struct ProgressStat {
  std::string_view name;
  double value;
};

class Progress {
 public:
  Progress(int64_t total, std::string label, ProgressOptions options = {})
      : total_(std::max<int64_t>(0, total)), label_(std::move(label)), options_(std::move(options)) {
    out_ = options_.out ? options_.out : &std::cerr;
    interactive_ = options_.interactive ? *options_.interactive : (out_ == &std::cerr && ::isatty(STDERR_FILENO) == 1);
    if (!options_.clock)
      options_.clock = [] {
        return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
      };
    start_ = last_draw_ = last_line_ = options_.clock();
  }
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  ~Progress() {
    try {
      finish();
    } catch (...) {
    }
  }

  /// Adds `n` done items and updates the named stats (kept until changed); redraws when due.
  void update(int64_t n = 1, std::initializer_list<ProgressStat> stats = {}) {
    if (finished_) return;
    count_ += n;
    for (const auto& s : stats) set_stat(s.name, s.value);
    const double now = options_.clock();
    if (interactive_) {
      if (now - last_draw_ >= options_.redraw_interval_s || (total_ > 0 && count_ >= total_)) {
        draw_bar(now);
        last_draw_ = now;
      }
      return;
    }
    bool due = now - last_line_ >= options_.line_interval_s;
    if (total_ > 0 && options_.line_percent > 0) {
      const int64_t bucket = count_ * 100 / total_ / options_.line_percent;
      if (bucket > last_bucket_) {
        last_bucket_ = bucket;
        due = true;
      }
    }
    if (due && !(total_ > 0 && count_ >= total_)) {  // the last line is finish()'s
      print_line(now);
      last_line_ = now;
    }
  }
  /// Sets a stat without counting progress.
  void set_stat(std::string_view name, double value) {
    for (auto& [k, v] : stats_)
      if (k == name) {
        v = value;
        return;
      }
    stats_.emplace_back(std::string(name), value);
  }

  /// Final draw (the whole line, a newline); later updates are ignored. Idempotent.
  void finish() {
    if (finished_) return;
    finished_ = true;
    const double now = options_.clock();
    if (interactive_) {
      draw_bar(now);
      *out_ << '\n';
    } else {
      print_line(now);
    }
    out_->flush();
  }

  int64_t count() const { return count_; }
  int64_t total() const { return total_; }
  bool interactive() const { return interactive_; }
  /// Items per second since the start (0 before any time has passed).
  double rate() const { return rate_at(options_.clock()); }
  /// Seconds left at the current rate; NaN when unknown (no total or no rate yet).
  double eta_seconds() const { return eta_at(options_.clock()); }

  /// "mm:ss", or "h:mm:ss" from an hour on; "?" when not finite.
  static std::string format_duration(double seconds) {
    if (!std::isfinite(seconds) || seconds < 0) return "?";
    const auto s = static_cast<int64_t>(seconds + 0.5);
    char buf[48];
    if (s >= 3600)
      std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                    static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
    else
      std::snprintf(buf, sizeof buf, "%02lld:%02lld", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
    return buf;
  }

 private:
  double rate_at(double now) const {
    const double elapsed = now - start_;
    return elapsed > 0 ? static_cast<double>(count_) / elapsed : 0.0;
  }
  double eta_at(double now) const {
    const double r = rate_at(now);
    if (total_ <= 0 || r <= 0) return std::nan("");
    return static_cast<double>(std::max<int64_t>(0, total_ - count_)) / r;
  }
  std::string rate_text(double now) const {
    const double r = rate_at(now);
    char buf[48];
    if (r > 0 && r < 1) std::snprintf(buf, sizeof buf, "%.2f s/it", 1.0 / r);
    else std::snprintf(buf, sizeof buf, "%.2f it/s", r);
    return buf;
  }
  std::string stats_text() const {
    std::string s;
    char buf[64];
    for (const auto& [k, v] : stats_) {
      std::snprintf(buf, sizeof buf, "%.4g", v);
      s += ", " + k + "=" + buf;
    }
    return s;
  }
  void draw_bar(double now) {
    std::string line = "\r" + label_ + " ";
    if (total_ > 0) {
      const double frac = std::min(1.0, static_cast<double>(count_) / static_cast<double>(total_));
      const int width = std::max(1, options_.bar_width);
      const int filled = static_cast<int>(frac * width);
      char pct[16];
      std::snprintf(pct, sizeof pct, "%3d%%|", static_cast<int>(frac * 100));
      line += pct;
      line += std::string(static_cast<std::size_t>(filled), '#') + std::string(static_cast<std::size_t>(width - filled), ' ');
      line += "| " + std::to_string(count_) + "/" + std::to_string(total_);
      line += " [" + format_duration(now - start_) + "<" + format_duration(eta_at(now)) + ", " + rate_text(now);
    } else {
      line += std::to_string(count_) + " [" + format_duration(now - start_) + ", " + rate_text(now);
    }
    line += stats_text() + "]\x1b[K";
    *out_ << line;
    out_->flush();
  }
  void print_line(double now) {
    std::string line = label_ + ": " + std::to_string(count_);
    if (total_ > 0) {
      line += "/" + std::to_string(total_) + " (" +
              std::to_string(static_cast<int>(std::min<int64_t>(100, count_ * 100 / total_))) + "%)";
    }
    line += " " + rate_text(now) + ", elapsed " + format_duration(now - start_);
    if (total_ > 0 && !finished_) line += ", eta " + format_duration(eta_at(now));
    line += stats_text();
    *out_ << line << '\n';
    out_->flush();
  }

  int64_t total_;
  std::string label_;
  ProgressOptions options_;
  std::ostream* out_ = nullptr;
  bool interactive_ = false;
  bool finished_ = false;
  int64_t count_ = 0;
  int64_t last_bucket_ = 0;
  double start_ = 0, last_draw_ = 0, last_line_ = 0;
  std::vector<std::pair<std::string, double>> stats_;
};

}  // namespace addrop::train
