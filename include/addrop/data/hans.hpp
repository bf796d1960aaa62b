#pragma once
// HANS (McCoy et al., 2019): the official heuristics_{evaluation,train}_set.txt
// (11 tab-separated columns: gold_label, sentence1_binary_parse, sentence2_binary_parse,
// sentence1_parse, sentence2_parse, sentence1, sentence2, pairID, heuristic, subcase,
// template) and TSV exports with fewer columns (e.g. gold_label, sentence1, sentence2,
// heuristic). Columns are found by name; subcase and pairID are kept where present.
// Labels: 0 = entailment, 1 = non-entailment (also accepted: "non_entailment", "0", "1").
#include <array>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "example.hpp"
#include "tsv.hpp"

namespace addrop::data {

/// HANS label names in Example::label order.
inline const std::array<std::string, 2>& hans_label_names() {
  static const std::array<std::string, 2> names = {"entailment", "non-entailment"};
  return names;
}

/// The three HANS heuristics, in the paper's order.
inline const std::array<std::string, 3>& hans_heuristics() {
  static const std::array<std::string, 3> names = {"lexical_overlap", "subsequence", "constituent"};
  return names;
}

inline std::vector<Example> read_hans(const std::filesystem::path& file, const ReadOptions& options = {},
                                      ReadReport* report = nullptr) {
  const tsv::Lines lines(file);
  if (lines.lines().empty()) {
    if (report) *report = ReadReport{};
    return {};
  }
  std::vector<std::string_view> header;
  tsv::split_tabs(lines.lines()[0].text, header);
  const int col_label = tsv::find_column(header, {"gold_label", "label"});
  const int col_a = tsv::find_column(header, {"sentence1", "premise"});
  const int col_b = tsv::find_column(header, {"sentence2", "hypothesis"});
  const int col_heur = tsv::find_column(header, {"heuristic"});
  const int col_sub = tsv::find_column(header, {"subcase"});
  const int col_id = tsv::find_column(header, {"pairID", "id", "idx", "index"});
  if (col_a < 0 || col_b < 0 || col_heur < 0)
    tsv::fail(lines, lines.lines()[0].number,
              "HANS header needs sentence1, sentence2 and heuristic columns (header: \"" +
                  std::string(lines.lines()[0].text) + "\")");
  return tsv::for_rows(lines, 1, header.size(), options, report,
                       [&](const std::vector<std::string_view>& f, int64_t row) {
                         Example e;
                         e.guid = col_id >= 0 ? std::string(f[col_id]) : std::to_string(row);
                         e.text_a = std::string(f[col_a]);
                         e.text_b = std::string(f[col_b]);
                         e.has_pair = true;
                         e.heuristic = std::string(tsv::trim(f[col_heur]));
                         if (e.heuristic.empty()) throw tsv::BadRow("empty heuristic");
                         if (col_sub >= 0) e.subcase = std::string(tsv::trim(f[col_sub]));
                         if (col_label >= 0) {
                           const std::string_view t = tsv::trim(f[col_label]);
                           if (t == "entailment" || t == "0") e.label = 0;
                           else if (t == "non-entailment" || t == "non_entailment" || t == "1") e.label = 1;
                           else
                             throw tsv::BadRow("label \"" + std::string(f[col_label]) +
                                               "\" is not entailment or non-entailment");
                         }
                         return e;
                       });
}

}  // namespace addrop::data
