#pragma once
// PAWS-X (Yang et al., 2019) TSV files: header "id\tsentence1\tsentence2\tlabel",
// label 0 (not a paraphrase) or 1 (paraphrase). Columns are found by name; a file
// without the label column gives label -1. Empty sentences (a few occur in the
// machine-translated train sets) are kept as they are.
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "example.hpp"
#include "tsv.hpp"

namespace addrop::data {

inline std::vector<Example> read_paws_x(const std::filesystem::path& file, const ReadOptions& options = {},
                                        ReadReport* report = nullptr) {
  const tsv::Lines lines(file);
  if (lines.lines().empty()) {
    if (report) *report = ReadReport{};
    return {};
  }
  std::vector<std::string_view> header;
  tsv::split_tabs(lines.lines()[0].text, header);
  const int col_a = tsv::find_column(header, {"sentence1"});
  const int col_b = tsv::find_column(header, {"sentence2"});
  const int col_label = tsv::find_column(header, {"label"});
  const int col_id = tsv::find_column(header, {"id", "idx", "index"});
  if (col_a < 0 || col_b < 0)
    tsv::fail(lines, lines.lines()[0].number,
              "PAWS-X header needs sentence1 and sentence2 columns (header: \"" + std::string(lines.lines()[0].text) +
                  "\")");
  return tsv::for_rows(lines, 1, header.size(), options, report,
                       [&](const std::vector<std::string_view>& f, int64_t row) {
                         Example e;
                         e.guid = col_id >= 0 ? std::string(f[col_id]) : std::to_string(row);
                         e.text_a = std::string(f[col_a]);
                         e.text_b = std::string(f[col_b]);
                         e.has_pair = true;
                         if (col_label >= 0) {
                           int64_t v = 0;
                           if (!tsv::parse_int(f[col_label], v) || (v != 0 && v != 1))
                             throw tsv::BadRow("label \"" + std::string(f[col_label]) + "\" is not 0 or 1");
                           e.label = static_cast<int32_t>(v);
                         }
                         return e;
                       });
}

}  // namespace addrop::data
