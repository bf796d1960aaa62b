#pragma once
// Tab-separated files as GLUE's own processors read them: quoting off (csv.QUOTE_NONE),
// fields split on TAB only, "\n" or "\r\n" line ends, an optional UTF-8 byte order mark,
// an optional final newline. Blank lines are ignored. Columns are found by name.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "example.hpp"

namespace addrop::data {

namespace tsv {

/// The bytes of a file; throws std::runtime_error naming the file when it cannot be read.
inline std::string read_file(const std::filesystem::path& file) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(file.string().c_str(), "rb"), &std::fclose);
  if (!f) throw std::runtime_error(file.string() + ": cannot open: " + std::strerror(errno));
  std::string text;
  char buf[1 << 16];
  for (;;) {
    const std::size_t n = std::fread(buf, 1, sizeof buf, f.get());
    text.append(buf, n);
    if (n < sizeof buf) break;
  }
  if (std::ferror(f.get())) throw std::runtime_error(file.string() + ": read error");
  return text;
}

/// Splits `line` on TAB into `out` (views into `line`).
inline void split_tabs(std::string_view line, std::vector<std::string_view>& out) {
  out.clear();
  std::size_t start = 0;
  for (;;) {
    const std::size_t tab = line.find('\t', start);
    if (tab == std::string_view::npos) {
      out.push_back(line.substr(start));
      return;
    }
    out.push_back(line.substr(start, tab - start));
    start = tab + 1;
  }
}

inline std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

inline bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  return true;
}

/// A malformed row: the reader catches it and throws or skips as ReadOptions says.
struct BadRow : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Parses a whole decimal integer ("0", "-1"); nullopt-like false when it is not one.
inline bool parse_int(std::string_view s, int64_t& v) {
  s = trim(s);
  if (s.empty()) return false;
  const char* first = s.data();
  if (*first == '+') ++first;
  auto [p, ec] = std::from_chars(first, s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size();
}

/// Parses a finite decimal number; throws BadRow naming `what` when it is not one.
inline double parse_double(std::string_view s, std::string_view what) {
  const std::string_view t = trim(s);
  double v = 0;
  const char* first = t.data();
  if (!t.empty() && *first == '+') ++first;
  auto [p, ec] = std::from_chars(first, t.data() + t.size(), v);
  if (t.empty() || ec != std::errc() || p != t.data() + t.size() || !std::isfinite(v))
    throw BadRow(std::string(what) + " \"" + std::string(s) + "\" is not a finite number");
  return v;
}

/// A file split into lines with their 1-based numbers; the BOM and "\r" ends removed.
class Lines {
 public:
  explicit Lines(const std::filesystem::path& file) : file_(file.string()), text_(read_file(file)) {
    std::string_view rest(text_);
    if (rest.substr(0, 3) == "\xEF\xBB\xBF") rest.remove_prefix(3);
    int64_t number = 0;
    while (!rest.empty()) {
      ++number;
      const std::size_t nl = rest.find('\n');
      std::string_view line = rest.substr(0, nl);
      rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.empty()) continue;  // blank lines (and a final empty line) are ignored
      lines_.push_back({line, number});
    }
  }
  struct Line {
    std::string_view text;
    int64_t number;
  };
  const std::string& file() const { return file_; }
  const std::vector<Line>& lines() const { return lines_; }

 private:
  std::string file_;
  std::string text_;
  std::vector<Line> lines_;
};

/// The index of the first header field equal (ignoring case and surrounding blanks) to
/// one of `names`, tried in order; -1 when none is there.
inline int find_column(const std::vector<std::string_view>& header, std::initializer_list<std::string_view> names) {
  for (auto name : names)
    for (std::size_t i = 0; i < header.size(); ++i)
      if (iequals(trim(header[i]), name)) return static_cast<int>(i);
  return -1;
}

/// Runs `parse(fields, line_number)` over the data rows of `lines` from `first`; rows that
/// throw BadRow (or whose field count differs from `expected_fields`, when > 0) go to the
/// error policy. Returns the examples `parse` produced.
template <class Parse>
std::vector<Example> for_rows(const Lines& lines, std::size_t first, std::size_t expected_fields,
                              const ReadOptions& options, ReadReport* report, Parse&& parse) {
  std::vector<Example> out;
  out.reserve(lines.lines().size() - std::min(first, lines.lines().size()));
  ReadReport local;
  ReadReport& rep = report ? *report : local;
  rep = ReadReport{};
  std::vector<std::string_view> fields;
  for (std::size_t i = first; i < lines.lines().size(); ++i) {
    const auto& line = lines.lines()[i];
    ++rep.rows;
    try {
      split_tabs(line.text, fields);
      if (expected_fields > 0 && fields.size() != expected_fields)
        throw BadRow("expected " + std::to_string(expected_fields) + " tab-separated fields, found " +
                     std::to_string(fields.size()));
      Example e = parse(fields, static_cast<int64_t>(out.size() + rep.skipped));
      e.line = line.number;
      out.push_back(std::move(e));
    } catch (const BadRow& bad) {
      const std::string where = lines.file() + ":" + std::to_string(line.number) + ": " + bad.what();
      if (!options.skip_bad_rows) throw std::runtime_error(where);
      ++rep.skipped;
      if (rep.reasons.size() < ReadReport::kMaxReasons) rep.reasons.push_back(where);
    }
  }
  return out;
}

/// "file:line: reason" for a file-level problem (missing header columns and the like).
[[noreturn]] inline void fail(const Lines& lines, int64_t line, const std::string& reason) {
  throw std::runtime_error(lines.file() + ":" + std::to_string(line) + ": " + reason);
}

}  // namespace tsv

}  // namespace addrop::data
