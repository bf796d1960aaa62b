// Unit tests of the training utilities: LR schedules, gradient clipping, early stopping,
// run files (atomic writes, metrics.jsonl), the progress display, the curve plot and the
// optimizer state files.
#define BOOST_TEST_MODULE train_utils
#include <boost/test/unit_test.hpp>

#include <addrop/backend/cpu.hpp>
#include <addrop/train/adamw.hpp>
#include <addrop/train/curve_plot.hpp>
#include <addrop/train/early_stopping.hpp>
#include <addrop/train/grad_clip.hpp>
#include <addrop/train/lr_schedule.hpp>
#include <addrop/train/optimizer_state.hpp>
#include <addrop/train/progress.hpp>
#include <addrop/train/run_files.hpp>
#include <cmath>
#include <fstream>
#include <limits>
#include <memory>
#include <regex>
#include <sstream>

#include "support/helpers.hpp"

using namespace addrop;
using Cpu = backend::Cpu;
namespace fs = std::filesystem;

namespace {

template <class T>
struct OwnedParams {
  std::vector<std::unique_ptr<nn::Parameter<T, Cpu>>> owned;
  nn::ParameterList<T, Cpu> list;
  nn::Parameter<T, Cpu>& add(const std::string& name, const Shape& shape, std::vector<T> grad = {}, T value = T(0.5)) {
    auto p = std::make_unique<nn::Parameter<T, Cpu>>();
    p->allocate(name, shape);
    std::fill(p->value.data(), p->value.data() + p->value.numel(), value);
    std::fill(p->grad.data(), p->grad.data() + p->grad.numel(), T(0));
    std::copy(grad.begin(), grad.end(), p->grad.data());
    list.push_back(p.get());
    owned.push_back(std::move(p));
    return *owned.back();
  }
};

std::string slurp(const fs::path& f) { return train::read_file(f); }

}  // namespace

// ------------------------------------------------------------------------- LR schedules
BOOST_AUTO_TEST_SUITE(lr_schedule)

BOOST_AUTO_TEST_CASE(linear_warmup_then_decay_matches_transformers) {
  const auto s = train::LrSchedule::linear(2.0, 10, train::Warmup::steps(4));
  BOOST_TEST(s.warmup_steps() == 4);
  BOOST_TEST(s.factor(0) == 0.0);   // the first update of a warmup has lr 0
  BOOST_TEST(s.factor(1) == 0.25);
  BOOST_TEST(s.factor(3) == 0.75);
  BOOST_TEST(s.factor(4) == 1.0);   // (10 - 4) / (10 - 4)
  BOOST_TEST(s.factor(7) == 0.5);
  BOOST_TEST(s.factor(9) == 1.0 / 6.0);
  BOOST_TEST(s.factor(10) == 0.0);
  BOOST_TEST(s.factor(15) == 0.0);  // never negative
  BOOST_TEST(s.lr(7) == 1.0);
  const train::LrSchedule same(train::ScheduleKind::Linear, 2.0, 4, 10);
  for (int64_t t = 0; t <= 12; ++t) BOOST_TEST(same(t) == s.lr(t));
}

BOOST_AUTO_TEST_CASE(linear_edge_cases) {
  const auto no_warmup = train::LrSchedule::linear(1.0, 4);
  BOOST_TEST(no_warmup.factor(0) == 1.0);
  BOOST_TEST(no_warmup.factor(3) == 0.25);
  BOOST_TEST(no_warmup.factor(4) == 0.0);
  // warmup == total: HF divides by max(1, total - warmup) = 1.
  const auto all_warmup = train::LrSchedule::linear(1.0, 3, train::Warmup::steps(3));
  BOOST_TEST(all_warmup.factor(2) == 2.0 / 3.0);
  BOOST_TEST(all_warmup.factor(3) == 0.0);
  // total 0: factor 0 from the start.
  BOOST_TEST(train::LrSchedule::linear(1.0, 0).factor(0) == 0.0);
}

BOOST_AUTO_TEST_CASE(warmup_ratio_is_ceiled_like_training_arguments) {
  BOOST_TEST(train::Warmup::ratio(0.1).resolve(25) == 3);   // ceil(2.5)
  BOOST_TEST(train::Warmup::ratio(0.1).resolve(30) == 3);
  BOOST_TEST(train::Warmup::ratio(0.0).resolve(30) == 0);
  BOOST_TEST(train::LrSchedule::linear(1.0, 100, train::Warmup::ratio(0.06)).warmup_steps() == 6);
  BOOST_CHECK_THROW(train::Warmup::ratio(1.5), std::invalid_argument);
  BOOST_CHECK_THROW(train::Warmup::steps(-1), std::invalid_argument);
  BOOST_CHECK_THROW(train::LrSchedule::constant(-1.0), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(constant_and_constant_with_warmup) {
  const auto c = train::LrSchedule::constant(3e-5);
  BOOST_TEST(c.factor(0) == 1.0);
  BOOST_TEST(c.lr(123456) == 3e-5);
  const auto w = train::LrSchedule::constant_with_warmup(1.0, train::Warmup::steps(3));
  BOOST_TEST(w.factor(0) == 0.0);
  BOOST_TEST(w.factor(2) == 2.0 / 3.0);
  BOOST_TEST(w.factor(3) == 1.0);
  BOOST_TEST(w.factor(1000) == 1.0);
  const auto r = train::LrSchedule::constant_with_warmup(1.0, train::Warmup::ratio(0.5), 10);
  BOOST_TEST(r.warmup_steps() == 5);
}

BOOST_AUTO_TEST_CASE(names_and_scheduler_counter) {
  for (auto k : {train::ScheduleKind::Constant, train::ScheduleKind::ConstantWithWarmup, train::ScheduleKind::Linear})
    BOOST_TEST((train::schedule_kind_from_name(train::schedule_kind_name(k)) == k));
  BOOST_TEST(!train::schedule_kind_from_name("cosine").has_value());
  BOOST_TEST(train::LrSchedule::linear(2e-5, 100, train::Warmup::steps(10)).describe() ==
             "linear(lr=2e-05, warmup=10, total=100)");

  OwnedParams<double> ps;
  ps.add("w", {2}, {1.0, 1.0});
  train::AdamW<double, Cpu> opt(ps.list, {.lr = 1.0});
  train::LrScheduler sched(train::LrSchedule::linear(1.0, 4, train::Warmup::steps(2)));
  std::vector<double> seen;
  for (int i = 0; i < 5; ++i) {
    sched.apply(opt);
    seen.push_back(opt.options().lr);
    opt.step();
    sched.step();
  }
  BOOST_TEST(seen == (std::vector<double>{0.0, 0.5, 1.0, 0.5, 0.0}), boost::test_tools::per_element());
  BOOST_TEST(sched.step_count() == 5);
}

BOOST_AUTO_TEST_SUITE_END()

// ------------------------------------------------------------------------- clipping
BOOST_AUTO_TEST_SUITE(grad_clip)

BOOST_AUTO_TEST_CASE(clips_to_max_norm_like_torch) {
  OwnedParams<double> ps;
  ps.add("a.weight", {2}, {3.0, 0.0});
  ps.add("a.bias", {1}, {4.0});
  BOOST_TEST(train::grad_norm(ps.list) == 5.0);
  const auto r = train::clip_grad_norm(ps.list, 1.0);
  BOOST_TEST(r.total_norm == 5.0);
  BOOST_TEST(r.clipped);
  BOOST_TEST(r.finite);
  const double coef = 1.0 / (5.0 + 1e-6);
  BOOST_TEST(r.coefficient == coef);
  BOOST_TEST(ps.list[0]->grad.data()[0] == 3.0 * coef);
  BOOST_TEST(ps.list[1]->grad.data()[0] == 4.0 * coef);
  BOOST_TEST(std::abs(train::grad_norm(ps.list) - 1.0) < 1e-6);
  // Context-first spelling.
  const auto again = train::clip_grad_norm(ps.list, Cpu::Context{}, 0.5);
  BOOST_TEST(again.clipped);
  BOOST_TEST(std::abs(train::grad_norm(ps.list) - 0.5) < 1e-6);
}

BOOST_AUTO_TEST_CASE(leaves_small_gradients_alone) {
  OwnedParams<float> ps;
  ps.add("w", {2}, {0.3f, 0.4f});
  const auto r = train::clip_grad_norm(ps.list, 1.0);
  BOOST_TEST(!r.clipped);
  BOOST_TEST(r.coefficient == 1.0);
  BOOST_TEST(std::abs(r.total_norm - 0.5) < 1e-7);
  BOOST_TEST(ps.list[0]->grad.data()[0] == 0.3f);
  // Exactly max_norm: coef = 1 / (1 + 1e-6) < 1, torch scales (by a hair).
  OwnedParams<double> exact;
  exact.add("w", {1}, {1.0});
  BOOST_TEST(train::clip_grad_norm(exact.list, 1.0).clipped);
  // +inf only measures.
  OwnedParams<double> big;
  big.add("w", {1}, {1e6});
  BOOST_TEST(!train::clip_grad_norm(big.list, std::numeric_limits<double>::infinity()).clipped);
  BOOST_CHECK_THROW(train::clip_grad_norm(big.list, -1.0), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(reports_non_finite_norms) {
  OwnedParams<double> ps;
  ps.add("ok", {2}, {1.0, 2.0});
  ps.add("bert.encoder.layer.0.output.dense.weight", {2}, {std::numeric_limits<double>::quiet_NaN(), 1.0});
  ps.add("later", {1}, {std::numeric_limits<double>::infinity()});
  const auto r = train::clip_grad_norm(ps.list, 1.0);
  BOOST_TEST(!r.finite);
  BOOST_TEST(!r.clipped);
  BOOST_TEST(r.first_nonfinite == "bert.encoder.layer.0.output.dense.weight");
  BOOST_TEST(ps.list[0]->grad.data()[1] == 2.0);  // untouched
  BOOST_CHECK_EXCEPTION(train::clip_grad_norm(ps.list, 1.0, {}, /*error_if_nonfinite=*/true), std::runtime_error,
                        testing::has({"non-finite", "bert.encoder.layer.0.output.dense.weight"}));
}

BOOST_AUTO_TEST_SUITE_END()

// ------------------------------------------------------------------------- early stopping
BOOST_AUTO_TEST_SUITE(early_stopping)

BOOST_AUTO_TEST_CASE(maximize_with_patience) {
  train::EarlyStopping es({.patience = 2, .goal = train::Goal::Maximize});
  BOOST_TEST(!es.best().has_value());
  BOOST_TEST(es.update(0, 0.50).improved);
  BOOST_TEST(es.update(1, 0.60).improved);
  auto v = es.update(2, 0.60);  // a tie is not an improvement
  BOOST_TEST((!v.improved && !v.stop));
  v = es.update(3, 0.58);
  BOOST_TEST((!v.improved && v.stop));
  BOOST_TEST(es.should_stop());
  BOOST_TEST(*es.best() == 0.60);
  BOOST_TEST(es.best_epoch() == 1);
  BOOST_TEST(es.epochs_without_improvement() == 2);
  BOOST_TEST(es.evaluations() == 4);
  train::EarlyStopping by_index({.patience = 1});
  by_index.update(0.1);
  BOOST_TEST(by_index.update(0.2).improved);
  BOOST_TEST(by_index.best_epoch() == 1);
}

BOOST_AUTO_TEST_CASE(minimize_resets_the_count_on_improvement) {
  train::EarlyStopping es({.patience = 2, .goal = train::Goal::Minimize});
  const std::vector<double> losses = {1.0, 1.1, 0.9, 0.95, 0.97, 0.5};
  std::vector<bool> stops;
  for (std::size_t e = 0; e < losses.size(); ++e) stops.push_back(es.update(static_cast<int64_t>(e), losses[e]).stop);
  BOOST_TEST(stops == (std::vector<bool>{false, false, false, false, true, false}), boost::test_tools::per_element());
  BOOST_TEST(*es.best() == 0.5);
  BOOST_TEST(es.best_epoch() == 5);
}

BOOST_AUTO_TEST_CASE(nan_patience_zero_and_min_delta) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  train::EarlyStopping es({.patience = 0});
  BOOST_TEST(!es.update(0, nan).improved);  // NaN never improves, even first
  BOOST_TEST(es.should_stop());
  train::EarlyStopping z({.patience = 0});
  BOOST_TEST(!z.update(0, 0.1).stop);
  BOOST_TEST(z.update(1, 0.05).stop);

  train::EarlyStopping d({.patience = 5, .goal = train::Goal::Maximize, .min_delta = 0.01});
  d.update(0, 0.80);
  BOOST_TEST(!d.update(1, 0.805).improved);
  BOOST_TEST(d.update(2, 0.82).improved);
  BOOST_CHECK_THROW(train::EarlyStopping({.patience = -1}), std::invalid_argument);

  d.restore(0.9, 7, 5);
  BOOST_TEST(d.should_stop());
  BOOST_TEST(d.best_epoch() == 7);
  d.reset();
  BOOST_TEST(!d.best().has_value());
  BOOST_TEST(!d.should_stop());
}

BOOST_AUTO_TEST_SUITE_END()

// ------------------------------------------------------------------------- run files
BOOST_AUTO_TEST_SUITE(run_files)

BOOST_AUTO_TEST_CASE(atomic_write_replaces_and_leaves_no_temporary) {
  testing::TempDir tmp("runfiles");
  const auto f = tmp.dir / "summary.json";
  train::write_file_atomic(f, std::string_view("old\n"));
  train::write_file_atomic(f, std::string_view("new contents\n"));
  BOOST_TEST(slurp(f) == "new contents\n");
  BOOST_TEST(tmp.listing() == (std::vector<std::string>{"summary.json"}), boost::test_tools::per_element());

  // A writer that fails half-way: the old file stays, no temporary is left.
  BOOST_CHECK_THROW(train::write_file_atomic(f,
                                             [](std::ostream& os) {
                                               os << "half";
                                               throw std::runtime_error("disk on fire");
                                             }),
                    std::runtime_error);
  BOOST_TEST(slurp(f) == "new contents\n");
  BOOST_TEST(tmp.listing() == (std::vector<std::string>{"summary.json"}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(failed_rename_keeps_the_target_and_removes_the_temporary) {
  testing::TempDir tmp("runfiles");
  // The target is a non-empty folder: rename(2) fails after the temporary is written.
  const auto target = tmp.dir / "best";
  fs::create_directory(target);
  train::write_file_atomic(target / "keep.txt", std::string_view("kept"));
  BOOST_CHECK_EXCEPTION(train::write_file_atomic(target, std::string_view("x")), train::FileError,
                        testing::has({"best", "rename"}));
  BOOST_TEST(fs::is_directory(target));
  BOOST_TEST(slurp(target / "keep.txt") == "kept");
  BOOST_TEST(tmp.listing() == (std::vector<std::string>{"best"}), boost::test_tools::per_element());
  // A folder that does not exist.
  BOOST_CHECK_EXCEPTION(train::write_file_atomic(tmp.dir / "missing" / "a.json", std::string_view("x")),
                        train::FileError, testing::has({"missing", "a.json"}));
}

BOOST_AUTO_TEST_CASE(summary_json_roundtrip) {
  testing::TempDir tmp("runfiles");
  nlohmann::json s = {{"task", "sst2"}, {"best_epoch", 3}, {"dev_accuracy", 0.9312}, {"diverged", NAN}};
  train::write_summary(tmp.dir / "summary.json", s);
  const auto back = nlohmann::json::parse(slurp(tmp.dir / "summary.json"));
  BOOST_TEST(back["task"] == "sst2");
  BOOST_TEST(back["best_epoch"] == 3);
  BOOST_TEST(back["dev_accuracy"].get<double>() == 0.9312);
  BOOST_TEST(back["diverged"].is_null());  // NaN is written as null
}

BOOST_AUTO_TEST_CASE(metrics_log_appends_and_repairs_a_torn_tail) {
  testing::TempDir tmp("runfiles");
  const auto f = tmp.dir / "metrics.jsonl";
  {
    train::MetricsLog log(f, train::MetricsLog::Mode::Truncate);
    log.append({{"epoch", 0}, {"train_loss", 0.7}});
    log.append({{"epoch", 1}, {"train_loss", 0.5}, {"dev_accuracy", 0.8}});
    BOOST_TEST(log.read().size() == 2u);
  }
  BOOST_TEST(slurp(f) == "{\"epoch\":0,\"train_loss\":0.7}\n{\"dev_accuracy\":0.8,\"epoch\":1,\"train_loss\":0.5}\n");
  // A crash in the middle of an append.
  { std::ofstream(f, std::ios::app) << "{\"epoch\":2,\"tra"; }
  bool torn = false;
  BOOST_TEST(train::read_jsonl(f, &torn).size() == 2u);
  BOOST_TEST(torn);
  {
    train::MetricsLog log(f);  // Append: keeps the intact lines, drops the torn one
    log.append({{"epoch", 2}, {"train_loss", 0.4}});
    const auto recs = log.read();
    BOOST_TEST(recs.size() == 3u);
    BOOST_TEST(recs.at(2)["epoch"] == 2);
  }
  BOOST_TEST(tmp.listing() == (std::vector<std::string>{"metrics.jsonl"}), boost::test_tools::per_element());
  // A damaged line in the middle is an error naming the file and the line.
  { std::ofstream(f, std::ios::app) << "not json\n{\"epoch\":4}\n"; }
  BOOST_CHECK_EXCEPTION(train::read_jsonl(f), train::FileError, testing::has({"metrics.jsonl:4"}));
  // Truncate starts over.
  train::MetricsLog fresh(f, train::MetricsLog::Mode::Truncate);
  BOOST_TEST(fresh.read().empty());
}

BOOST_AUTO_TEST_SUITE_END()

// ------------------------------------------------------------------------- progress
BOOST_AUTO_TEST_SUITE(progress)

BOOST_AUTO_TEST_CASE(plain_lines_when_not_a_terminal) {
  std::ostringstream out;
  double now = 0;
  train::ProgressOptions o;
  o.out = &out;
  o.interactive = false;
  o.line_percent = 25;
  o.line_interval_s = 1e9;
  o.clock = [&] { return now; };
  {
    train::Progress bar(100, "epoch 1", o);
    BOOST_TEST(!bar.interactive());
    for (int i = 0; i < 100; ++i) {
      now += 0.5;  // 2 it/s
      bar.update(1, {{"loss", 1.0 / (i + 1)}});
      if (i == 49) {
        BOOST_TEST(std::abs(bar.rate() - 2.0) < 1e-12);
        BOOST_TEST(std::abs(bar.eta_seconds() - 25.0) < 1e-9);
      }
    }
    bar.finish();
    bar.update(5);  // ignored after finish
    BOOST_TEST(bar.count() == 100);
  }
  const std::string text = out.str();
  std::vector<std::string> lines;
  std::stringstream ss(text);
  for (std::string l; std::getline(ss, l);) lines.push_back(l);
  BOOST_TEST_REQUIRE(lines.size() == 4u, text);  // 25%, 50%, 75%, finish
  BOOST_TEST(lines[0] == "epoch 1: 25/100 (25%) 2.00 it/s, elapsed 00:13, eta 00:38, loss=0.04", text);
  BOOST_TEST(lines[3] == "epoch 1: 100/100 (100%) 2.00 it/s, elapsed 00:50, loss=0.01", text);
  BOOST_TEST(text.find('\r') == std::string::npos);
}

BOOST_AUTO_TEST_CASE(plain_lines_by_time_and_unknown_total) {
  std::ostringstream out;
  double now = 0;
  train::ProgressOptions o;
  o.out = &out;
  o.line_interval_s = 10;
  o.clock = [&] { return now; };
  train::Progress bar(0, "eval", o);  // not std::cerr: plain by default
  for (int i = 0; i < 30; ++i) {
    now += 1;
    bar.update();
  }
  bar.finish();
  BOOST_TEST(out.str() == "eval: 10 1.00 it/s, elapsed 00:10\neval: 20 1.00 it/s, elapsed 00:20\n"
                          "eval: 30 1.00 it/s, elapsed 00:30\neval: 30 1.00 it/s, elapsed 00:30\n");
}

BOOST_AUTO_TEST_CASE(interactive_redraws_in_place_and_throttles) {
  std::ostringstream out;
  double now = 0;
  train::ProgressOptions o;
  o.out = &out;
  o.interactive = true;
  o.bar_width = 10;
  o.clock = [&] { return now; };
  train::Progress bar(4, "epoch 2", o);
  now = 0.01;
  bar.update(1, {{"loss", 0.5}});  // too soon: no redraw
  BOOST_TEST(out.str().empty());
  now = 2;
  bar.update(1);
  BOOST_TEST(out.str() == "\repoch 2  50%|#####     | 2/4 [00:02<00:02, 1.00 it/s, loss=0.5]\x1b[K");
  bar.finish();
  BOOST_TEST(out.str().back() == '\n');
  BOOST_TEST(train::Progress::format_duration(3725) == "1:02:05");
  BOOST_TEST(train::Progress::format_duration(std::nan("")) == "?");
}

BOOST_AUTO_TEST_SUITE_END()

// ------------------------------------------------------------------------- curve plot
BOOST_AUTO_TEST_SUITE(curve_plot)

/// Tags balance (a stack of names), ignoring <?xml ...?>, comments and self-closing tags.
bool well_formed(const std::string& svg, std::string& why) {
  std::vector<std::string> stack;
  std::size_t pos = 0;
  while ((pos = svg.find('<', pos)) != std::string::npos) {
    const std::size_t end = svg.find('>', pos);
    if (end == std::string::npos) return why = "unterminated tag", false;
    const std::string tag = svg.substr(pos + 1, end - pos - 1);
    pos = end + 1;
    if (tag.empty() || tag[0] == '?' || tag[0] == '!') continue;
    if (tag.back() == '/') continue;
    if (tag[0] == '/') {
      const std::string name = tag.substr(1);
      if (stack.empty() || stack.back() != name) return why = "unbalanced </" + name + ">", false;
      stack.pop_back();
    } else {
      stack.push_back(tag.substr(0, tag.find_first_of(" \n\t")));
    }
  }
  if (!stack.empty()) return why = "unclosed <" + stack.back() + ">", false;
  // No raw '&' that is not an entity.
  if (std::regex_search(svg, std::regex("&(?!(amp|lt|gt|quot|apos);)"))) return why = "raw &", false;
  return true;
}

BOOST_AUTO_TEST_CASE(two_panels_with_legend_and_every_name) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<train::CurveRun> runs = {
      {"baseline", {0.69, 0.45, 0.30, 0.21}, {0.60, 0.50, 0.52, 0.58}, {0.80, 0.84, 0.85, 0.84}},
      {"AD-DROP GA", {0.70, 0.50, 0.38, 0.30}, {0.58, 0.47, 0.45, 0.46}, {0.81, 0.85, 0.87, 0.88}},
      {"RD <p=0.3 & q=0.3>", {0.71, nan, 0.40}, {}, {0.79, 0.83, 0.86}},
  };
  const std::string svg = train::curve_plot_svg(runs, {.title = "SST-2", .metric_name = "dev accuracy"});
  BOOST_TEST(svg.find("<svg") != std::string::npos);
  BOOST_TEST(svg.find("</svg>") != std::string::npos);
  for (const char* s : {"baseline", "AD-DROP GA", "RD &lt;p=0.3 &amp; q=0.3&gt;", "train loss", "dev loss",
                        "dev accuracy", "SST-2", "epoch"})
    BOOST_TEST(svg.find(s) != std::string::npos, "missing " << s);
  std::string why;
  BOOST_TEST(well_formed(svg, why), why);
  // 2 series for each of the first two runs, 1 for the third (no dev loss), and one metric each.
  std::size_t series = 0;
  for (std::size_t p = 0; (p = svg.find("class=\"series\"", p)) != std::string::npos; ++p) ++series;
  BOOST_TEST(series == 8u);
  // The NaN splits the third run's train loss: points 1 and 3 are separate polylines.
  BOOST_TEST(svg.find("<title>RD &lt;p=0.3 &amp; q=0.3&gt;: train loss</title>") != std::string::npos);
  BOOST_TEST(svg.find("nan") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(degenerate_inputs_still_draw) {
  std::string why;
  const auto empty = train::curve_plot_svg({});
  BOOST_TEST(well_formed(empty, why), why);
  const auto flat = train::curve_plot_svg({{"one", {0.5}, {0.5}, {1.0}}});
  BOOST_TEST(well_formed(flat, why), why);
  BOOST_TEST(flat.find("nan") == std::string::npos);
  BOOST_TEST(flat.find("inf") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(runs_from_metrics_jsonl) {
  testing::TempDir tmp("plot");
  train::MetricsLog log(tmp.dir / "metrics.jsonl", train::MetricsLog::Mode::Truncate);
  log.append({{"epoch", 0}, {"train_loss", 0.7}, {"dev_loss", 0.6}, {"dev_f1", 0.8}});
  log.append({{"event", "checkpoint"}});
  log.append({{"epoch", 1}, {"train_loss", 0.5}, {"dev_f1", 0.85}});
  const auto run = train::curve_run_from_metrics("baseline", log.read(), "dev_f1");
  BOOST_TEST(run.train_loss == (std::vector<double>{0.7, 0.5}), boost::test_tools::per_element());
  BOOST_TEST(run.dev_metric == (std::vector<double>{0.8, 0.85}), boost::test_tools::per_element());
  BOOST_TEST(run.dev_loss.size() == 2u);
  BOOST_TEST(std::isnan(run.dev_loss[1]));
  train::write_curve_plot(tmp.dir / "curves.svg", {run}, {.title = "", .metric_name = "dev F1"});
  BOOST_TEST(slurp(tmp.dir / "curves.svg").find("dev F1") != std::string::npos);
  BOOST_TEST(tmp.listing() == (std::vector<std::string>{"curves.svg", "metrics.jsonl"}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_SUITE_END()

// ------------------------------------------------------------------------- optimizer state
BOOST_AUTO_TEST_SUITE(optimizer_state)

struct Setup {
  OwnedParams<float> ps;
  std::unique_ptr<train::AdamW<float, Cpu>> opt;
  explicit Setup(bool step, std::vector<int64_t> bias_shape = {3}) {
    ps.add("enc.weight", {2, 3}, {0.1f, -0.2f, 0.3f, 0.4f, -0.5f, 0.6f});
    Shape bs;
    for (auto d : bias_shape) bs.dims[bs.rank++] = d;
    ps.add("enc.bias", bs, {1.0f, 2.0f, 3.0f});
    opt = std::make_unique<train::AdamW<float, Cpu>>(ps.list, train::AdamWOptions{.lr = 1e-2});
    if (step) {
      opt->step();
      opt->step();
    }
  }
};

BOOST_AUTO_TEST_CASE(roundtrip_restores_moments_and_steps) {
  testing::TempDir tmp("optstate");
  Setup a(true);
  train::LrScheduler sched(train::LrSchedule::linear(1e-2, 100), 2);
  train::save_optimizer_state(*a.opt, tmp.dir / "optimizer.safetensors", &sched);
  BOOST_TEST(tmp.listing() == (std::vector<std::string>{"optimizer.safetensors"}), boost::test_tools::per_element());
  const auto st = io::SafeTensors::load(tmp.dir / "optimizer.safetensors");
  BOOST_TEST(st.contains("exp_avg.enc.weight"));
  BOOST_TEST(st.contains("exp_avg_sq.enc.bias"));
  BOOST_TEST(st.metadata().at("step") == "2");
  BOOST_TEST(st.metadata().at("variant") == "huggingface");

  Setup b(false);
  train::LrScheduler sched_b(train::LrSchedule::linear(1e-2, 100));
  const auto info = train::load_optimizer_state(*b.opt, tmp.dir / "optimizer.safetensors", &sched_b);
  BOOST_TEST(info.step == 2);
  BOOST_TEST(b.opt->steps() == 2);
  BOOST_TEST(sched_b.step_count() == 2);
  for (std::size_t i = 0; i < 2; ++i) {
    const auto& m1 = a.opt->exp_avg(i);
    const auto& m2 = b.opt->exp_avg(i);
    const auto& v1 = a.opt->exp_avg_sq(i);
    const auto& v2 = b.opt->exp_avg_sq(i);
    BOOST_TEST(std::equal(m1.data(), m1.data() + m1.numel(), m2.data()));
    BOOST_TEST(std::equal(v1.data(), v1.data() + v1.numel(), v2.data()));
    BOOST_TEST(m1.data()[0] != 0.0f);
  }
  // Without a scheduler in the file, asking for one is an error.
  const auto no_sched = train::optimizer_state_to_safetensors(*a.opt);
  BOOST_CHECK_EXCEPTION(train::optimizer_state_from_safetensors(*b.opt, no_sched, &sched_b), io::Error,
                        testing::has({"schedule_step"}));
  BOOST_TEST(train::optimizer_state_from_safetensors(*b.opt, no_sched).schedule_step == -1);
}

BOOST_AUTO_TEST_CASE(mismatches_name_the_tensor_and_change_nothing) {
  Setup a(true);
  const auto good = train::optimizer_state_to_safetensors(*a.opt);

  Setup b(false);
  auto unchanged = [&] {
    BOOST_TEST(b.opt->steps() == 0);
    for (std::size_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < b.opt->exp_avg(i).numel(); ++j) BOOST_TEST(b.opt->exp_avg(i).data()[j] == 0.0f);
  };

  // A missing tensor (checked after the first parameter's tensors were found).
  auto missing = good;
  missing.erase("exp_avg_sq.enc.bias");
  BOOST_CHECK_EXCEPTION(train::optimizer_state_from_safetensors(*b.opt, missing), io::Error,
                        testing::has({"exp_avg_sq.enc.bias", "missing"}));
  unchanged();
  // A tensor of no parameter.
  auto extra = good;
  const std::vector<float> one = {1.0f};
  extra.insert<float>("exp_avg.classifier.weight", {1}, std::span<const float>(one));
  BOOST_CHECK_EXCEPTION(train::optimizer_state_from_safetensors(*b.opt, extra), io::Error,
                        testing::has({"exp_avg.classifier.weight", "no parameter"}));
  unchanged();
  // A shape that differs.
  Setup c(false, {1, 3});
  BOOST_CHECK_EXCEPTION(train::optimizer_state_from_safetensors(*c.opt, good), io::Error,
                        testing::has({"exp_avg.enc.bias", "[3]", "[1, 3]"}));
  // An integer dtype.
  auto ints = good;
  const std::vector<int32_t> three = {1, 2, 3};
  ints.insert<int32_t>("exp_avg.enc.bias", {3}, std::span<const int32_t>(three));
  BOOST_CHECK_EXCEPTION(train::optimizer_state_from_safetensors(*b.opt, ints), io::Error,
                        testing::has({"exp_avg.enc.bias", "I32"}));
  // Bad metadata.
  auto bad_step = good;
  bad_step.set_metadata("step", "-3");
  BOOST_CHECK_EXCEPTION(train::optimizer_state_from_safetensors(*b.opt, bad_step), io::Error,
                        testing::has({"step", "-3"}));
  auto not_ours = good;
  not_ours.set_metadata("format", "pt");
  BOOST_CHECK_EXCEPTION(train::optimizer_state_from_safetensors(*b.opt, not_ours), io::Error,
                        testing::has({"format", "addrop.adamw"}));
  unchanged();
  // A file that is not there.
  BOOST_CHECK_THROW(train::load_optimizer_state(*b.opt, "/nonexistent/optimizer.safetensors"), io::Error);
}

BOOST_AUTO_TEST_SUITE_END()
