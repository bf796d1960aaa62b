#pragma once
// The eight GLUE tasks: a task table (names, folders, labels, metrics, split and
// leaderboard file names), a reader for the TSV files as GLUE distributes them, and the
// leaderboard prediction writer.
//
// Label order follows the Hugging Face `glue` processors (transformers.data.processors.glue):
// MNLI ["contradiction", "entailment", "neutral"], QNLI and RTE ["entailment",
// "not_entailment"], SST-2 / CoLA / MRPC / QQP ["0", "1"]; STS-B is a regression (score).
//
// Columns are found by name wherever a file has a header, so variant layouts load too:
//   text_a: sentence1 | premise | question | question1 | #1 String | sentence
//   text_b: sentence2 | hypothesis | sentence | question2 | #2 String
//   label : gold_label | label | is_duplicate | Quality | score
// (each task looks only at its own names, see column_names()). A file without the
// label column is a test split: every label is -1 (score NaN). CoLA train/dev have no
// header (source, label, orig_label, sentence); its test file has one (index, sentence).
// Label cells may hold a label name or, where the order is unambiguous, its index:
// "0"/"1" for the binary tasks (QNLI/RTE: 0 = entailment as in both the processor and
// the `datasets` order). MNLI refuses integer labels: the `datasets` order (entailment,
// neutral, contradiction) differs from the processor order, so a number is ambiguous.
#include <array>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "example.hpp"
#include "tsv.hpp"

namespace addrop::data {

enum class GlueTask { SST2, MNLI, QNLI, QQP, CoLA, STSB, MRPC, RTE };

/// Everything a trainer needs to know about a GLUE task.
struct TaskInfo {
  GlueTask task;
  std::string name;  ///< canonical lower-case name: sst2, mnli, qnli, qqp, cola, stsb, mrpc, rte
  std::string dir;   ///< folder in the GLUE layout: SST-2, MNLI, ...
  bool pair;         ///< sentence-pair task
  int num_labels;    ///< 1 for STS-B (regression)
  bool regression;
  std::vector<std::string> label_names;  ///< index order of Example::label; empty for STS-B
  std::string main_metric;               ///< accuracy | f1 | mcc | pearson
  std::vector<std::string> metrics;      ///< every metric reported, main first
  std::string train_file, dev_file, test_file;  ///< file names inside `dir`
  std::string dev_mismatched_file, test_mismatched_file;  ///< MNLI only, else empty
  std::string leaderboard_file;             ///< GLUE submission file name (MNLI: MNLI-m.tsv)
  std::string leaderboard_mismatched_file;  ///< MNLI-mm.tsv, else empty
};

/// Every task, in GlueTask order.
inline const std::array<TaskInfo, 8>& all_tasks() {
  static const std::array<TaskInfo, 8> table = {{
      {GlueTask::SST2, "sst2", "SST-2", false, 2, false, {"0", "1"}, "accuracy", {"accuracy"},
       "train.tsv", "dev.tsv", "test.tsv", "", "", "SST-2.tsv", ""},
      {GlueTask::MNLI, "mnli", "MNLI", true, 3, false, {"contradiction", "entailment", "neutral"}, "accuracy",
       {"accuracy"}, "train.tsv", "dev_matched.tsv", "test_matched.tsv", "dev_mismatched.tsv",
       "test_mismatched.tsv", "MNLI-m.tsv", "MNLI-mm.tsv"},
      {GlueTask::QNLI, "qnli", "QNLI", true, 2, false, {"entailment", "not_entailment"}, "accuracy", {"accuracy"},
       "train.tsv", "dev.tsv", "test.tsv", "", "", "QNLI.tsv", ""},
      {GlueTask::QQP, "qqp", "QQP", true, 2, false, {"0", "1"}, "f1", {"f1", "accuracy", "combined"},
       "train.tsv", "dev.tsv", "test.tsv", "", "", "QQP.tsv", ""},
      {GlueTask::CoLA, "cola", "CoLA", false, 2, false, {"0", "1"}, "mcc", {"mcc", "accuracy"}, "train.tsv",
       "dev.tsv", "test.tsv", "", "", "CoLA.tsv", ""},
      {GlueTask::STSB, "stsb", "STS-B", true, 1, true, {}, "pearson", {"pearson", "spearman", "combined"},
       "train.tsv", "dev.tsv", "test.tsv", "", "", "STS-B.tsv", ""},
      {GlueTask::MRPC, "mrpc", "MRPC", true, 2, false, {"0", "1"}, "f1", {"f1", "accuracy", "combined"},
       "train.tsv", "dev.tsv", "test.tsv", "", "", "MRPC.tsv", ""},
      {GlueTask::RTE, "rte", "RTE", true, 2, false, {"entailment", "not_entailment"}, "accuracy", {"accuracy"},
       "train.tsv", "dev.tsv", "test.tsv", "", "", "RTE.tsv", ""},
  }};
  return table;
}

inline const TaskInfo& task_info(GlueTask task) { return all_tasks().at(static_cast<std::size_t>(task)); }

/// "sst2", "SST-2", "sst-2", "STS-B", "mnli", ... (case and '-'/'_' ignored); throws
/// std::invalid_argument listing the valid names.
inline GlueTask parse_task(std::string_view name) {
  std::string key;
  for (char c : name)
    if (c != '-' && c != '_' && c != ' ') key += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const auto& t : all_tasks())
    if (t.name == key) return t.task;
  std::string valid;
  for (const auto& t : all_tasks()) valid += (valid.empty() ? "" : ", ") + t.name;
  throw std::invalid_argument("unknown GLUE task \"" + std::string(name) + "\"; valid names: " + valid +
                              " (also sst-2, sts-b)");
}

namespace glue_detail {

struct Columns {
  std::vector<std::string_view> a, b, label, id;
};

inline Columns column_names(GlueTask task) {
  switch (task) {
    case GlueTask::SST2: return {{"sentence", "sentence1"}, {}, {"label"}, {"index", "idx", "id"}};
    case GlueTask::CoLA: return {{"sentence", "sentence1"}, {}, {"label"}, {"index", "idx", "id"}};
    case GlueTask::MNLI:
      return {{"sentence1", "premise"}, {"sentence2", "hypothesis"}, {"gold_label", "label"},
              {"index", "idx", "id", "pairID"}};
    case GlueTask::QNLI:
      return {{"question", "sentence1"}, {"sentence", "sentence2"}, {"label"}, {"index", "idx", "id"}};
    case GlueTask::QQP:
      return {{"question1", "sentence1"}, {"question2", "sentence2"}, {"is_duplicate", "label"},
              {"id", "index", "idx"}};
    case GlueTask::STSB:
      return {{"sentence1"}, {"sentence2"}, {"score", "label"}, {"index", "idx", "id"}};
    case GlueTask::MRPC:
      return {{"#1 String", "sentence1"}, {"#2 String", "sentence2"}, {"Quality", "label"},
              {"index", "idx", "id"}};
    case GlueTask::RTE:
      return {{"sentence1", "premise"}, {"sentence2", "hypothesis"}, {"label"}, {"index", "idx", "id"}};
  }
  return {};
}

inline int find_any(const std::vector<std::string_view>& header, const std::vector<std::string_view>& names) {
  for (auto name : names) {
    const int i = tsv::find_column(header, {name});
    if (i >= 0) return i;
  }
  return -1;
}

inline std::string join(const std::vector<std::string_view>& names) {
  std::string s;
  for (auto n : names) s += (s.empty() ? "\"" : " or \"") + std::string(n) + "\"";
  return s;
}

/// The class index of a label cell; throws tsv::BadRow.
inline int32_t parse_label(const TaskInfo& info, std::string_view cell) {
  const std::string_view t = tsv::trim(cell);
  for (std::size_t i = 0; i < info.label_names.size(); ++i)
    if (t == info.label_names[i]) return static_cast<int32_t>(i);
  int64_t v = 0;
  if (info.task != GlueTask::MNLI && tsv::parse_int(t, v) && v >= 0 && v < info.num_labels)
    return static_cast<int32_t>(v);
  std::string valid;
  for (const auto& n : info.label_names) valid += (valid.empty() ? "" : ", ") + n;
  std::string why = "label \"" + std::string(cell) + "\" is not one of " + valid + " for " + info.name;
  if (info.task == GlueTask::MNLI && tsv::parse_int(t, v))
    why += " (integer MNLI labels are ambiguous: write the label names)";
  throw tsv::BadRow(why);
}

}  // namespace glue_detail

/// Reads one GLUE TSV file of `task` (any split). Throws std::runtime_error "file:line:
/// reason" for a malformed row (or skips it, see ReadOptions) and for a header that
/// lacks a needed column.
inline std::vector<Example> read_glue(GlueTask task, const std::filesystem::path& file,
                                      const ReadOptions& options = {}, ReadReport* report = nullptr) {
  const TaskInfo& info = task_info(task);
  const tsv::Lines lines(file);
  if (lines.lines().empty()) {
    if (report) *report = ReadReport{};
    return {};
  }
  std::vector<std::string_view> header;
  tsv::split_tabs(lines.lines()[0].text, header);
  const auto names = glue_detail::column_names(task);
  int col_a = glue_detail::find_any(header, names.a);
  int col_b = info.pair ? glue_detail::find_any(header, names.b) : -1;
  int col_label = glue_detail::find_any(header, names.label);
  int col_id = glue_detail::find_any(header, names.id);
  std::size_t first = 1, expected = header.size();
  if (col_a < 0 && task == GlueTask::CoLA) {
    // GLUE CoLA train/dev: no header; source, label, orig_label, sentence.
    first = 0;
    expected = 4;
    col_a = 3;
    col_label = 1;
    col_id = -1;
  } else if (col_a < 0 || (info.pair && col_b < 0)) {
    const bool missing_a = col_a < 0;
    tsv::fail(lines, lines.lines()[0].number,
              "no " + glue_detail::join(missing_a ? names.a : names.b) + " column in the header for " + info.name +
                  " (header: \"" + std::string(lines.lines()[0].text) + "\")");
  }
  return tsv::for_rows(lines, first, expected, options, report,
                       [&](const std::vector<std::string_view>& f, int64_t row) {
                         Example e;
                         e.guid = col_id >= 0 ? std::string(f[col_id]) : std::to_string(row);
                         e.text_a = std::string(f[col_a]);
                         if (col_b >= 0) {
                           e.text_b = std::string(f[col_b]);
                           e.has_pair = true;
                         }
                         if (col_label >= 0) {
                           if (info.regression) e.score = tsv::parse_double(f[col_label], "score");
                           else e.label = glue_detail::parse_label(info, f[col_label]);
                         }
                         return e;
                       });
}

/// The file of `split` in `task_dir` (a task folder such as glue/MNLI, or the GLUE root
/// holding it). split: train, dev (MNLI: dev_matched), dev_matched, dev_mismatched, test
/// (MNLI: test_matched), test_matched, test_mismatched. Throws std::invalid_argument for
/// a split the task lacks and std::runtime_error naming the missing file.
inline std::filesystem::path glue_split_path(GlueTask task, const std::filesystem::path& task_dir,
                                             std::string_view split) {
  const TaskInfo& info = task_info(task);
  const bool mnli = task == GlueTask::MNLI;
  std::string name;
  if (split == "train") name = info.train_file;
  else if (split == "dev" || (mnli && split == "dev_matched")) name = info.dev_file;
  else if (split == "test" || (mnli && split == "test_matched")) name = info.test_file;
  else if (mnli && split == "dev_mismatched") name = info.dev_mismatched_file;
  else if (mnli && split == "test_mismatched") name = info.test_mismatched_file;
  else
    throw std::invalid_argument("GLUE " + info.name + " has no split \"" + std::string(split) + "\"; valid: train, " +
                                (mnli ? "dev (= dev_matched), dev_mismatched, test (= test_matched), test_mismatched"
                                      : "dev, test"));
  const auto direct = task_dir / name;
  if (std::filesystem::is_regular_file(direct)) return direct;
  const auto nested = task_dir / info.dir / name;
  if (std::filesystem::is_regular_file(nested)) return nested;
  throw std::runtime_error("GLUE " + info.name + " " + std::string(split) + " split: file " + direct.string() +
                           " does not exist");
}

/// The GLUE leaderboard file name for the test split `split` (test, test_matched,
/// test_mismatched; "ax"/"diagnostic" with MNLI gives AX.tsv).
inline std::string leaderboard_file_name(GlueTask task, std::string_view split = "test") {
  const TaskInfo& info = task_info(task);
  if (task == GlueTask::MNLI) {
    if (split == "test_mismatched") return info.leaderboard_mismatched_file;
    if (split == "ax" || split == "diagnostic") return "AX.tsv";
  }
  if (split == "test" || split == "test_matched") return info.leaderboard_file;
  throw std::invalid_argument("no GLUE leaderboard file for " + info.name + " split \"" + std::string(split) + "\"");
}

namespace glue_detail {

template <class WriteRows>
void write_atomically(const std::filesystem::path& file, WriteRows&& rows) {
  auto tmp = file;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error(tmp.string() + ": cannot open for writing");
    out << "index\tprediction\n";
    try {
      rows(out);
    } catch (...) {
      out.close();
      std::error_code ec;
      std::filesystem::remove(tmp, ec);
      throw;
    }
    out.flush();
    if (!out) {
      out.close();
      std::error_code ec;
      std::filesystem::remove(tmp, ec);
      throw std::runtime_error(tmp.string() + ": write failed");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, file, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    throw std::runtime_error("cannot rename " + tmp.string() + " to " + file.string() + ": " + ec.message());
  }
}

}  // namespace glue_detail

/// Writes a GLUE leaderboard file (header "index\tprediction", rows "i\t<label>",
/// i = 0..n-1 in test-file order) for a classification task: label names for
/// MNLI/QNLI/RTE, 0/1 for the others. Written to "<file>.tmp", then renamed.
inline void write_leaderboard(GlueTask task, const std::filesystem::path& file, std::span<const int32_t> predictions) {
  const TaskInfo& info = task_info(task);
  if (info.regression)
    throw std::invalid_argument("write_leaderboard: " + info.name + " is a regression task; pass scores (double)");
  for (std::size_t i = 0; i < predictions.size(); ++i)
    if (predictions[i] < 0 || predictions[i] >= info.num_labels)
      throw std::invalid_argument("write_leaderboard: prediction " + std::to_string(i) + " = " +
                                  std::to_string(predictions[i]) + " is not a " + info.name + " label index");
  glue_detail::write_atomically(file, [&](std::ofstream& out) {
    for (std::size_t i = 0; i < predictions.size(); ++i)
      out << i << '\t' << info.label_names[static_cast<std::size_t>(predictions[i])] << '\n';
  });
}

/// Writes the STS-B leaderboard file: scores with 3 decimals (as Hugging Face run_glue),
/// not clipped.
inline void write_leaderboard(GlueTask task, const std::filesystem::path& file, std::span<const double> scores) {
  const TaskInfo& info = task_info(task);
  if (!info.regression)
    throw std::invalid_argument("write_leaderboard: " + info.name + " is a classification task; pass label indices");
  for (std::size_t i = 0; i < scores.size(); ++i)
    if (!std::isfinite(scores[i]))
      throw std::invalid_argument("write_leaderboard: score " + std::to_string(i) + " is not finite");
  glue_detail::write_atomically(file, [&](std::ofstream& out) {
    char buf[64];
    for (std::size_t i = 0; i < scores.size(); ++i) {
      std::snprintf(buf, sizeof buf, "%zu\t%.3f\n", i, scores[i]);
      out << buf;
    }
  });
}

}  // namespace addrop::data
