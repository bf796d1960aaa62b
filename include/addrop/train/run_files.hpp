#pragma once
// The files a training run leaves in its output folder, written so that nothing already
// there is lost or half-overwritten:
//   - write_file_atomic / write_json_atomic: the new contents go to a temporary file in
//     the same folder ("<name>.tmp.<pid>.<n>"), are flushed to disk (fsync), and the
//     temporary is renamed over the target (then the folder is fsync'ed, best effort). A
//     reader sees the old file or the complete new one, never a mix; on any failure the
//     temporary is removed and the old file is left as it was.
//   - MetricsLog (metrics.jsonl, one JSON object per line): appends. Each record is one
//     write(2) of a complete line to a file opened with O_APPEND, followed by fsync, so
//     earlier lines are never rewritten; a crash can at worst leave a torn last line,
//     which the next MetricsLog on that file (Mode::Append) removes (atomically, by
//     rewriting the intact lines) before appending. Mode::Truncate starts a fresh log
//     (atomically replaced by an empty file).
//   - write_summary: summary.json, atomically.
// JSON through nlohmann::json; NaN and infinities are written as null (nlohmann's rule).
// POSIX only (open/write/fsync/rename). Errors are FileError naming the file and the
// operation, with the system's reason.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

namespace addrop::train {

/// Every failure writing or reading a run file: names the file and what failed.
struct FileError : std::runtime_error {
  using runtime_error::runtime_error;
};

namespace run_files_detail {
inline std::string reason(int err) { return std::strerror(err); }

/// Writes all of `data` to fd; returns errno (0 on success).
inline int write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return 0;
}

inline void fsync_folder(const std::filesystem::path& folder) {
  const int fd = ::open(folder.empty() ? "." : folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // best effort
  (void)::fsync(fd);
  ::close(fd);
}

inline std::filesystem::path temp_name(const std::filesystem::path& file) {
  static std::atomic<unsigned> counter{0};
  std::filesystem::path tmp = file;
  tmp += ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
  return tmp;
}
}  // namespace run_files_detail

/// Atomically replaces `file` with `contents` (see the top of this header).
inline void write_file_atomic(const std::filesystem::path& file, std::string_view contents) {
  namespace d = run_files_detail;
  const auto tmp = d::temp_name(file);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int err = errno;
    throw FileError(file.string() + ": cannot create the temporary file " + tmp.string() + ": " + d::reason(err));
  }
  int err = d::write_all(fd, contents);
  const char* what = "write";
  if (err == 0 && ::fsync(fd) != 0) { err = errno; what = "fsync"; }
  if (::close(fd) != 0 && err == 0) { err = errno; what = "close"; }
  if (err == 0 && ::rename(tmp.c_str(), file.c_str()) != 0) { err = errno; what = "rename"; }
  if (err != 0) {
    ::unlink(tmp.c_str());
    throw FileError(file.string() + ": " + what + " failed: " + d::reason(err) + " (the old file, if any, is unchanged)");
  }
  d::fsync_folder(file.parent_path());
}

/// As write_file_atomic, with the contents produced by `writer` into a string stream; if
/// `writer` throws, nothing is written and the exception propagates.
inline void write_file_atomic(const std::filesystem::path& file, const std::function<void(std::ostream&)>& writer) {
  std::ostringstream os;
  writer(os);
  write_file_atomic(file, std::string_view(os.str()));
}

/// Atomically writes `j` as JSON (indented by `indent`, -1 for one line) plus a newline.
inline void write_json_atomic(const std::filesystem::path& file, const nlohmann::json& j, int indent = 2) {
  std::string text;
  try {
    text = j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
  } catch (const nlohmann::json::exception& e) {
    throw FileError(file.string() + ": cannot serialise JSON: " + e.what());
  }
  text += '\n';
  write_file_atomic(file, std::string_view(text));
}

/// Reads a whole file; FileError naming it on failure.
inline std::string read_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw FileError(file.string() + ": cannot open for reading");
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw FileError(file.string() + ": read failed");
  return s;
}

/// Parses a JSON-lines file: one object per non-empty line. A malformed line throws
/// FileError naming the file and the line number, except a last line with no newline
/// (a torn append), which is skipped and reported through `torn_tail` when given.
inline std::vector<nlohmann::json> read_jsonl(const std::filesystem::path& file, bool* torn_tail = nullptr) {
  const std::string text = read_file(file);
  std::vector<nlohmann::json> records;
  if (torn_tail) *torn_tail = false;
  std::size_t pos = 0;
  int64_t line = 0;
  while (pos < text.size()) {
    ++line;
    const std::size_t nl = text.find('\n', pos);
    const bool complete = nl != std::string::npos;
    const std::string_view row(text.data() + pos, (complete ? nl : text.size()) - pos);
    pos = complete ? nl + 1 : text.size();
    if (row.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    try {
      records.push_back(nlohmann::json::parse(row));
    } catch (const nlohmann::json::parse_error& e) {
      if (!complete) {
        if (torn_tail) *torn_tail = true;
        break;
      }
      throw FileError(file.string() + ":" + std::to_string(line) + ": not a JSON value: " + e.what());
    }
  }
  return records;
}

/// metrics.jsonl: one JSON object per line, appended with fsync (see the top of this header).
class MetricsLog {
 public:
  enum class Mode {
    Append,    ///< keep the records already in the file (resuming); drops a torn last line
    Truncate,  ///< start empty (a fresh run)
  };

  explicit MetricsLog(std::filesystem::path file, Mode mode = Mode::Append) : file_(std::move(file)) {
    std::error_code ec;
    const bool exists = std::filesystem::exists(file_, ec);
    if (mode == Mode::Truncate || !exists) {
      write_file_atomic(file_, std::string_view());
      return;
    }
    const std::string text = read_file(file_);
    if (!text.empty() && text.back() != '\n') {
      // A torn append: keep the complete lines only.
      const std::size_t last = text.rfind('\n');
      write_file_atomic(file_, std::string_view(text.data(), last == std::string::npos ? 0 : last + 1));
    }
  }

  /// Appends `record` as one line (compact JSON) and flushes it to disk.
  void append(const nlohmann::json& record) {
    namespace d = run_files_detail;
    std::string line;
    try {
      line = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    } catch (const nlohmann::json::exception& e) {
      throw FileError(file_.string() + ": cannot serialise the record: " + e.what());
    }
    line += '\n';
    const int fd = ::open(file_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      const int err = errno;
      throw FileError(file_.string() + ": cannot open for appending: " + d::reason(err));
    }
    int err = d::write_all(fd, line);
    const char* what = "append";
    if (err == 0 && ::fsync(fd) != 0) { err = errno; what = "fsync"; }
    if (::close(fd) != 0 && err == 0) { err = errno; what = "close"; }
    if (err != 0) throw FileError(file_.string() + ": " + what + " failed: " + d::reason(err));
  }

  /// Every record in the file.
  std::vector<nlohmann::json> read() const { return read_jsonl(file_); }
  const std::filesystem::path& path() const { return file_; }

 private:
  std::filesystem::path file_;
};

/// Writes summary.json (or any final JSON document) atomically, indented by 2.
inline void write_summary(const std::filesystem::path& file, const nlohmann::json& summary) {
  write_json_atomic(file, summary, 2);
}

}  // namespace addrop::train
