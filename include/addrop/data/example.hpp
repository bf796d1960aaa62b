#pragma once
// One labelled (or unlabelled) text example, and the options and report every reader shares.
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace addrop::data {

/// A sentence or sentence pair as read from a data file.
struct Example {
  std::string guid;            ///< the file's id/index column, else the 0-based row number
  std::string text_a, text_b;  ///< text_b is empty for single-sentence tasks
  bool has_pair = false;
  int32_t label = -1;          ///< class index into the task's label names; -1 = no label (test split)
  double score = std::numeric_limits<double>::quiet_NaN();  ///< regression target (STS-B), NaN otherwise
  std::string heuristic, subcase;  ///< HANS only
  int64_t line = 0;            ///< 1-based physical line of the row in its file
};

/// How a reader treats a malformed row.
struct ReadOptions {
  /// false: throw std::runtime_error("file:line: reason"); true: skip the row, count it in the report.
  bool skip_bad_rows = false;
};

/// What a reader saw: data rows (header excluded, blank lines ignored), rows skipped,
/// and the reasons for the first `kMaxReasons` skips, each as "file:line: reason".
struct ReadReport {
  static constexpr std::size_t kMaxReasons = 10;
  int64_t rows = 0, skipped = 0;
  std::vector<std::string> reasons;
};

}  // namespace addrop::data
