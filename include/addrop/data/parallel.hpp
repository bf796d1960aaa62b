#pragma once
// Parallel text for translation, in the layouts its publishers ship it:
//   - line-aligned files, one segment per line (WMT16 en-ro: newstest2016.en / .ro);
//   - Hugging Face datasets JSON lines, {"translation": {"en": "...", "ro": "..."}};
//   - WMT SGML test sets (<seg id="1">...</seg>), read as sacreBLEU reads them.
// Mismatched line counts, empty segments, invalid UTF-8 and malformed JSON are errors
// naming the file and the line. Romanian text can be normalised the WMT16 way
// (rsennrich/wmt16-scripts): cedilla ş ţ to comma-below ș ț, and optionally the
// diacritics removed (ș ț ă â î to s t a a i); docs/translation.md says which the paper's
// setup implies (none: the Hugging Face wmt16 text as it is).
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "../metrics/unicode_text.hpp"

namespace addrop::data {

struct ParallelExample {
  std::string source, target;
  int64_t line = 0;  ///< 1-based line in the source file (JSON lines: in that file)
};

enum class RomanianNormalization {
  None,              ///< the text as published
  CommaBelow,        ///< ş ţ Ş Ţ (cedilla) -> ș ț Ș Ț (normalise-romanian.py)
  RemoveDiacritics,  ///< CommaBelow, then ș ț ă â î (and capitals) -> s t a a i (remove-diacritics.py)
};

/// "none", "comma-below" or "remove-diacritics"; anything else throws naming the value.
inline RomanianNormalization romanian_normalization_from_name(std::string_view name) {
  if (name == "none") return RomanianNormalization::None;
  if (name == "comma-below") return RomanianNormalization::CommaBelow;
  if (name == "remove-diacritics") return RomanianNormalization::RemoveDiacritics;
  throw std::invalid_argument("Romanian normalisation \"" + std::string(name) +
                              "\" is not one of none, comma-below, remove-diacritics");
}

inline std::string normalize_romanian(std::string_view text, RomanianNormalization how) {
  if (how == RomanianNormalization::None) return std::string(text);
  std::string out;
  for (char32_t c : metrics::unicode_text::decode_utf8(text, "Romanian text")) {
    switch (c) {  // cedilla -> comma below
      case 0x015E: c = 0x0218; break;
      case 0x015F: c = 0x0219; break;
      case 0x0162: c = 0x021A; break;
      case 0x0163: c = 0x021B; break;
      default: break;
    }
    if (how == RomanianNormalization::RemoveDiacritics) switch (c) {
        case 0x0218: c = U'S'; break;
        case 0x0219: c = U's'; break;
        case 0x021A: c = U'T'; break;
        case 0x021B: c = U't'; break;
        case 0x0102: case 0x00C2: c = U'A'; break;
        case 0x0103: case 0x00E2: c = U'a'; break;
        case 0x00CE: c = U'I'; break;
        case 0x00EE: c = U'i'; break;
        default: break;
      }
    metrics::unicode_text::append_utf8(out, c);
  }
  return out;
}

struct ParallelReadOptions {
  RomanianNormalization target_normalization = RomanianNormalization::None;
  /// Drop a pair with an empty side instead of failing (raw Europarl has a few); each
  /// dropped pair is counted in ParallelReadReport.
  bool skip_empty = false;
};

struct ParallelReadReport {
  std::vector<int64_t> skipped_lines;  ///< 1-based lines of the pairs dropped by skip_empty
};

namespace parallel_detail {
// The lines of a text file (without "\n" or a final "\r"), each checked to be UTF-8.
inline std::vector<std::string> read_lines(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error(file.string() + ": cannot open");
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (lines.empty() && line.starts_with("\xEF\xBB\xBF")) line.erase(0, 3);  // a UTF-8 byte-order mark
    try {
      metrics::unicode_text::decode_utf8(line);
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error(file.string() + ":" + std::to_string(lines.size() + 1) + ": " + e.what());
    }
    lines.push_back(std::move(line));
  }
  return lines;
}

inline bool blank(std::string_view s) {
  for (char32_t c : metrics::unicode_text::decode_utf8(s))
    if (!metrics::unicode_text::is_python_space(c)) return false;
  return true;
}
}  // namespace parallel_detail

/// Line-aligned source and target files. Both must have the same number of lines and no
/// empty line (unless skip_empty); the target side is normalised as asked (Romanian targets).
inline std::vector<ParallelExample> read_parallel_files(const std::filesystem::path& source,
                                                        const std::filesystem::path& target,
                                                        const ParallelReadOptions& options = {},
                                                        ParallelReadReport* report = nullptr) {
  const auto src = parallel_detail::read_lines(source), tgt = parallel_detail::read_lines(target);
  if (src.size() != tgt.size())
    throw std::runtime_error(source.string() + " has " + std::to_string(src.size()) + " lines but " + target.string() +
                             " has " + std::to_string(tgt.size()) + ": the files must be line-aligned");
  std::vector<ParallelExample> out;
  out.reserve(src.size());
  for (std::size_t i = 0; i < src.size(); ++i) {
    const auto line = static_cast<int64_t>(i + 1);
    bool empty = false;
    for (const auto& [text, file] : {std::pair{&src[i], &source}, std::pair{&tgt[i], &target}}) {
      if (!parallel_detail::blank(*text)) continue;
      if (!options.skip_empty)
        throw std::runtime_error(file->string() + ":" + std::to_string(line) +
                                 ": empty segment (ParallelReadOptions::skip_empty drops such pairs)");
      empty = true;
    }
    if (empty) {
      if (report) report->skipped_lines.push_back(line);
      continue;
    }
    out.push_back({src[i], normalize_romanian(tgt[i], options.target_normalization), line});
  }
  return out;
}

/// Hugging Face datasets JSON lines: {"translation": {"<source_lang>": ..., "<target_lang>": ...}}.
inline std::vector<ParallelExample> read_parallel_jsonl(const std::filesystem::path& file, const std::string& source_lang,
                                                        const std::string& target_lang,
                                                        const ParallelReadOptions& options = {},
                                                        ParallelReadReport* report = nullptr) {
  const auto lines = parallel_detail::read_lines(file);
  std::vector<ParallelExample> out;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const std::string at = file.string() + ":" + std::to_string(i + 1) + ": ";
    if (parallel_detail::blank(lines[i])) continue;  // a trailing blank line is not a record
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(lines[i]);
    } catch (const nlohmann::json::exception& e) {
      throw std::runtime_error(at + "not JSON (" + e.what() + ")");
    }
    if (!j.is_object() || !j.contains("translation") || !j["translation"].is_object())
      throw std::runtime_error(at + "no \"translation\" object");
    std::string text[2];
    bool empty = false;
    for (int k = 0; k < 2; ++k) {
      const std::string& lang = k == 0 ? source_lang : target_lang;
      const auto& t = j["translation"];
      if (!t.contains(lang) || !t[lang].is_string())
        throw std::runtime_error(at + "field \"translation\"." + lang + " is missing or not a string");
      text[k] = t[lang].get<std::string>();
      try {
        metrics::unicode_text::decode_utf8(text[k]);
      } catch (const std::invalid_argument& e) {
        throw std::runtime_error(at + "\"" + lang + "\": " + e.what());
      }
      if (parallel_detail::blank(text[k])) {
        if (!options.skip_empty)
          throw std::runtime_error(at + "empty \"" + lang + "\" segment (ParallelReadOptions::skip_empty drops such pairs)");
        empty = true;
      }
    }
    if (empty) {
      if (report) report->skipped_lines.push_back(static_cast<int64_t>(i + 1));
      continue;
    }
    out.push_back({text[0], normalize_romanian(text[1], options.target_normalization), static_cast<int64_t>(i + 1)});
  }
  if (out.empty()) throw std::runtime_error(file.string() + ": no translation records");
  return out;
}

/// The segments of a WMT SGML file, as sacreBLEU extracts them: every line that starts
/// with "<seg " gives the text between its first '>' and its last "</seg>", with leading
/// and trailing whitespace removed and inner runs of whitespace made one space.
inline std::vector<std::string> read_sgml_segments(const std::filesystem::path& file) {
  const auto lines = parallel_detail::read_lines(file);
  std::vector<std::string> out;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const std::string& line = lines[i];
    if (!line.starts_with("<seg ")) continue;
    const auto open = line.find('>'), close = line.rfind("</seg>");
    if (open == std::string::npos || close == std::string::npos || close < open)
      throw std::runtime_error(file.string() + ":" + std::to_string(i + 1) + ": a <seg> line without its </seg>");
    std::string text;
    bool space = false;
    for (char32_t c : metrics::unicode_text::decode_utf8(std::string_view(line).substr(open + 1, close - open - 1))) {
      if (metrics::unicode_text::is_python_space(c)) {
        space = !text.empty();
        continue;
      }
      if (space) text += ' ';
      space = false;
      metrics::unicode_text::append_utf8(text, c);
    }
    out.push_back(std::move(text));
  }
  if (out.empty()) throw std::runtime_error(file.string() + ": no <seg> lines");
  return out;
}

}  // namespace addrop::data
