#pragma once
// Loss and metric curves of several runs as one self-contained SVG (no dependencies),
// in the manner of the AD-DROP paper's loss-curve figure: two panels side by side,
//   left:  losses per epoch, one color per run; train loss solid, dev loss dashed;
//   right: the dev metric per epoch, one color per run;
// with axes, "nice" ticks (1, 2, 2.5, 5 x 10^k), grid lines, axis labels, a title and a
// legend below the panels (run colors, and the line style of each loss). Epochs are
// numbered from 1 on the x axis. NaN values leave a gap in the line; a series with no
// values is left out. Every line carries a <title> ("baseline: dev loss") for hovering.
// @code
//   std::vector<train::CurveRun> runs = {{"baseline", tl0, dl0, acc0}, {"AD-DROP GA", tl1, dl1, acc1}};
//   train::write_curve_plot(out / "curves.svg", runs, {.title = "SST-2, BERT-base", .metric_name = "dev accuracy"});
// @endcode
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "run_files.hpp"

namespace addrop::train {

/// One run's curves; element e is epoch e + 1. Any of the three may be empty.
struct CurveRun {
  std::string name;
  std::vector<double> train_loss;
  std::vector<double> dev_loss;
  std::vector<double> dev_metric;
};

struct CurvePlotOptions {
  std::string title;                      ///< above both panels (omitted when empty)
  std::string metric_name = "dev metric"; ///< right panel's y label and legend entry
  std::string train_loss_name = "train loss";
  std::string dev_loss_name = "dev loss";
  int width = 1000;
  int height = 440;
};

namespace curve_plot_detail {

inline std::string escape(std::string_view s) {
  std::string out;
  for (const char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        // Control characters are not allowed in XML 1.0 text.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n') out += ' ';
        else out += c;
    }
  }
  return out;
}

inline std::string num(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", x);
  return buf;
}

inline std::string tick_label(double x, double step) {
  char buf[32];
  if (std::abs(x) < step * 1e-9) x = 0;  // no "-0" or "1e-17"
  std::snprintf(buf, sizeof buf, "%.4g", x);
  return buf;
}

/// A step of the form {1, 2, 2.5, 5} x 10^k near range / target.
inline double nice_step(double range, int target) {
  const double raw = range / std::max(1, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  const double nice = f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10;
  return nice * mag;
}

struct Axis {
  double lo = 0, hi = 1, step = 0.2;
  std::vector<double> ticks;
};

/// An axis covering [lo, hi] rounded out to whole ticks.
inline Axis make_axis(double lo, double hi, int target) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) lo = 0, hi = 1;
  if (hi - lo <= 0) {
    const double pad = lo != 0 ? std::abs(lo) * 0.1 : 1.0;
    lo -= pad;
    hi += pad;
  }
  Axis a;
  a.step = nice_step(hi - lo, target);
  a.lo = std::floor(lo / a.step + 1e-9) * a.step;
  a.hi = std::ceil(hi / a.step - 1e-9) * a.step;
  for (int i = 0;; ++i) {
    const double t = a.lo + i * a.step;
    if (t > a.hi + a.step * 1e-6 || i > 100) break;
    a.ticks.push_back(t);
  }
  return a;
}

inline const char* color(std::size_t i) {
  static const char* palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
  return palette[i % (sizeof palette / sizeof palette[0])];
}

struct Series {
  const std::vector<double>* values;
  std::string name;
  const char* color;
  bool dashed;
  std::string run;
};

struct Panel {
  double x0, y0, w, h;  // plot area in pixels
};

inline void range_of(const std::vector<Series>& series, double& lo, double& hi) {
  lo = std::numeric_limits<double>::infinity();
  hi = -lo;
  for (const auto& s : series)
    for (const double v : *s.values)
      if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
}

inline void draw_panel(std::string& svg, const Panel& p, const std::vector<Series>& series, std::size_t epochs,
                       const std::string& ylabel, const std::string& panel_title) {
  double lo, hi;
  range_of(series, lo, hi);
  const Axis y = make_axis(lo, hi, 5);
  const double xmax = static_cast<double>(std::max<std::size_t>(epochs, 2));
  const double xstep = std::max(1.0, std::ceil(nice_step(xmax - 1, 8)));
  auto px = [&](double epoch) { return p.x0 + (epoch - 1) / (xmax - 1) * p.w; };
  auto py = [&](double v) { return p.y0 + p.h - (v - y.lo) / (y.hi - y.lo) * p.h; };

  svg += "<g class=\"panel\">\n";
  svg += "<text x=\"" + num(p.x0 + p.w / 2) + "\" y=\"" + num(p.y0 - 10) +
         "\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">" + escape(panel_title) + "</text>\n";
  // Grid and y ticks.
  for (const double t : y.ticks) {
    const std::string yy = num(py(t));
    svg += "<line x1=\"" + num(p.x0) + "\" y1=\"" + yy + "\" x2=\"" + num(p.x0 + p.w) + "\" y2=\"" + yy +
           "\" stroke=\"#e0e0e0\" stroke-width=\"1\"/>\n";
    svg += "<line x1=\"" + num(p.x0 - 5) + "\" y1=\"" + yy + "\" x2=\"" + num(p.x0) + "\" y2=\"" + yy +
           "\" stroke=\"#000\" stroke-width=\"1\"/>\n";
    svg += "<text x=\"" + num(p.x0 - 8) + "\" y=\"" + num(py(t) + 4) + "\" text-anchor=\"end\" font-size=\"11\">" +
           tick_label(t, y.step) + "</text>\n";
  }
  // x ticks at whole epochs.
  for (double e = 1; e <= xmax + 1e-9; e += xstep) {
    const std::string xx = num(px(e));
    svg += "<line x1=\"" + xx + "\" y1=\"" + num(p.y0 + p.h) + "\" x2=\"" + xx + "\" y2=\"" + num(p.y0 + p.h + 5) +
           "\" stroke=\"#000\" stroke-width=\"1\"/>\n";
    svg += "<text x=\"" + xx + "\" y=\"" + num(p.y0 + p.h + 18) + "\" text-anchor=\"middle\" font-size=\"11\">" +
           std::to_string(static_cast<long long>(e)) + "</text>\n";
  }
  // Axes and labels.
  svg += "<rect x=\"" + num(p.x0) + "\" y=\"" + num(p.y0) + "\" width=\"" + num(p.w) + "\" height=\"" + num(p.h) +
         "\" fill=\"none\" stroke=\"#000\" stroke-width=\"1\"/>\n";
  svg += "<text x=\"" + num(p.x0 + p.w / 2) + "\" y=\"" + num(p.y0 + p.h + 36) +
         "\" text-anchor=\"middle\" font-size=\"12\">epoch</text>\n";
  const std::string ly = num(p.y0 + p.h / 2), lx = num(p.x0 - 48);
  svg += "<text x=\"" + lx + "\" y=\"" + ly + "\" text-anchor=\"middle\" font-size=\"12\" transform=\"rotate(-90 " + lx +
         " " + ly + ")\">" + escape(ylabel) + "</text>\n";
  // The curves.
  for (const auto& s : series) {
    svg += "<g class=\"series\" fill=\"none\" stroke=\"" + std::string(s.color) + "\" stroke-width=\"2\"" +
           (s.dashed ? " stroke-dasharray=\"6 4\"" : "") + ">\n<title>" + escape(s.run + ": " + s.name) + "</title>\n";
    std::string points;
    auto flush = [&] {
      if (!points.empty()) svg += "<polyline points=\"" + points + "\"/>\n";
      points.clear();
    };
    for (std::size_t e = 0; e < s.values->size(); ++e) {
      const double v = (*s.values)[e];
      if (!std::isfinite(v)) {
        flush();
        continue;
      }
      const std::string pt = num(px(static_cast<double>(e + 1))) + "," + num(py(v));
      points += (points.empty() ? "" : " ") + pt;
      svg += "<circle cx=\"" + num(px(static_cast<double>(e + 1))) + "\" cy=\"" + num(py(v)) + "\" r=\"2.5\" fill=\"" +
             s.color + "\" stroke=\"none\"/>\n";
    }
    flush();
    svg += "</g>\n";
  }
  svg += "</g>\n";
}

}  // namespace curve_plot_detail

/// The SVG document (UTF-8 text).
inline std::string curve_plot_svg(const std::vector<CurveRun>& runs, const CurvePlotOptions& options = {}) {
  namespace d = curve_plot_detail;
  const double W = std::max(400, options.width), H = std::max(250, options.height);
  const double top = options.title.empty() ? 40 : 64, legend_h = 30 + 20.0 * std::ceil(static_cast<double>(runs.size()) / 4.0);
  const double left = 70, right = 20, gap = 80, bottom = 50 + legend_h;
  const double pw = (W - left - right - gap) / 2, ph = H - top - bottom;

  std::vector<d::Series> losses, metrics;
  std::size_t epochs = 1;
  for (std::size_t r = 0; r < runs.size(); ++r) {
    const auto& run = runs[r];
    epochs = std::max({epochs, run.train_loss.size(), run.dev_loss.size(), run.dev_metric.size()});
    if (!run.train_loss.empty())
      losses.push_back({&run.train_loss, options.train_loss_name, d::color(r), false, run.name});
    if (!run.dev_loss.empty()) losses.push_back({&run.dev_loss, options.dev_loss_name, d::color(r), true, run.name});
    if (!run.dev_metric.empty())
      metrics.push_back({&run.dev_metric, options.metric_name, d::color(r), false, run.name});
  }

  std::string svg = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  svg += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + d::num(W) + "\" height=\"" + d::num(H) +
         "\" viewBox=\"0 0 " + d::num(W) + " " + d::num(H) + "\" font-family=\"Helvetica, Arial, sans-serif\">\n";
  svg += "<rect x=\"0\" y=\"0\" width=\"" + d::num(W) + "\" height=\"" + d::num(H) + "\" fill=\"#ffffff\"/>\n";
  if (!options.title.empty())
    svg += "<text x=\"" + d::num(W / 2) + "\" y=\"26\" text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\">" +
           d::escape(options.title) + "</text>\n";
  d::draw_panel(svg, {left, top, pw, ph}, losses, epochs, "loss",
                options.train_loss_name + " / " + options.dev_loss_name);
  d::draw_panel(svg, {left + pw + gap, top, pw, ph}, metrics, epochs, options.metric_name, options.metric_name);

  // Legend: line styles, then one entry per run.
  double ly = top + ph + 62;
  svg += "<g class=\"legend\" font-size=\"12\">\n";
  auto entry = [&](double x, double y, const char* color, bool dashed, const std::string& text) {
    svg += "<line x1=\"" + d::num(x) + "\" y1=\"" + d::num(y - 4) + "\" x2=\"" + d::num(x + 28) + "\" y2=\"" +
           d::num(y - 4) + "\" stroke=\"" + color + "\" stroke-width=\"2\"" + (dashed ? " stroke-dasharray=\"6 4\"" : "") +
           "/>\n";
    svg += "<text x=\"" + d::num(x + 34) + "\" y=\"" + d::num(y) + "\">" + d::escape(text) + "</text>\n";
  };
  entry(left, ly, "#444444", false, options.train_loss_name + ", " + options.metric_name);
  entry(left + 260, ly, "#444444", true, options.dev_loss_name);
  const double col = (W - left - right) / 4;
  for (std::size_t r = 0; r < runs.size(); ++r) {
    const double x = left + col * static_cast<double>(r % 4);
    const double y = ly + 20 * (1 + static_cast<double>(r / 4));
    entry(x, y, d::color(r), false, runs[r].name);
  }
  svg += "</g>\n</svg>\n";
  return svg;
}

/// Writes curve_plot_svg(runs, options) to `file` atomically.
inline void write_curve_plot(const std::filesystem::path& file, const std::vector<CurveRun>& runs,
                             const CurvePlotOptions& options = {}) {
  const std::string svg = curve_plot_svg(runs, options);
  write_file_atomic(file, std::string_view(svg));
}

/// A run's curves from metrics.jsonl records: each record with an "epoch" (0-based
/// integer) contributes its `train_loss_key`, `dev_loss_key` and `metric_key` numbers
/// (absent or null: NaN, a gap). Records without "epoch" are ignored.
inline CurveRun curve_run_from_metrics(std::string name, const std::vector<nlohmann::json>& records,
                                       const std::string& metric_key, const std::string& train_loss_key = "train_loss",
                                       const std::string& dev_loss_key = "dev_loss") {
  CurveRun run;
  run.name = std::move(name);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  auto get = [&](const nlohmann::json& r, const std::string& key) {
    const auto it = r.find(key);
    return (it != r.end() && it->is_number()) ? it->get<double>() : nan;
  };
  for (const auto& r : records) {
    if (!r.is_object()) continue;
    const auto e = r.find("epoch");
    if (e == r.end() || !e->is_number_integer() || e->get<int64_t>() < 0 || e->get<int64_t>() > 100000) continue;
    const auto i = static_cast<std::size_t>(e->get<int64_t>());
    for (auto* v : {&run.train_loss, &run.dev_loss, &run.dev_metric})
      if (v->size() <= i) v->resize(i + 1, nan);
    run.train_loss[i] = get(r, train_loss_key);
    run.dev_loss[i] = get(r, dev_loss_key);
    run.dev_metric[i] = get(r, metric_key);
  }
  auto all_nan = [](const std::vector<double>& v) {
    return std::none_of(v.begin(), v.end(), [](double x) { return std::isfinite(x); });
  };
  for (auto* v : {&run.train_loss, &run.dev_loss, &run.dev_metric})
    if (all_nan(*v)) v->clear();
  return run;
}

}  // namespace addrop::train
