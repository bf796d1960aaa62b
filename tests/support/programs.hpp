#pragma once
// Running the example programs from end-to-end tests, and reading what they write.
#include <boost/test/unit_test.hpp>

#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace addrop::testing {

struct ProgramRun {
  int status;          ///< exit status (-1: killed by a signal)
  std::string output;  ///< stdout and stderr together
};

/// Runs `binary args` through the shell, capturing both output streams.
inline ProgramRun run_program(const std::string& binary, const std::string& args) {
  const std::string cmd = binary + " " + args + " 2>&1";
  ProgramRun r{0, {}};
  FILE* pipe = popen(cmd.c_str(), "r");
  BOOST_REQUIRE_MESSAGE(pipe, "cannot start " + binary);
  char buf[4096];
  while (std::fgets(buf, sizeof buf, pipe)) r.output += buf;
  const int st = pclose(pipe);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

inline nlohmann::json read_json_file(const std::filesystem::path& p) {
  std::ifstream in(p);
  BOOST_REQUIRE_MESSAGE(in, p.string() + " missing");
  return nlohmann::json::parse(in);
}

/// One JSON value per non-empty line (metrics.jsonl).
inline std::vector<nlohmann::json> read_jsonl_file(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

}  // namespace addrop::testing
