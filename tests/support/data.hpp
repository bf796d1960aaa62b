#pragma once
// Where the tests find real data: $ADDROP_DATA_DIR when it is set (the full data sets,
// read when the test runs, never frozen at configure time), else the curated sample
// committed in examples/data/ (same layout, a subset of each set; its README says how
// it was cut). Tests whose expectations depend on the full sets (official sizes) ask
// full_data() and check the sample's own sizes otherwise.
#include <cstdlib>
#include <filesystem>
#include <string>

#ifndef ADDROP_SAMPLE_DATA_DIR
#error "tests must be compiled with ADDROP_SAMPLE_DATA_DIR (tests/CMakeLists.txt sets it)"
#endif

namespace addrop::testing {

/// True when $ADDROP_DATA_DIR names a folder: the full data sets are under test.
inline bool full_data() {
  const char* d = std::getenv("ADDROP_DATA_DIR");
  return d && *d;
}

/// The data root: $ADDROP_DATA_DIR, else the committed sample.
inline std::filesystem::path data_root() {
  return full_data() ? std::filesystem::path(std::getenv("ADDROP_DATA_DIR"))
                     : std::filesystem::path(ADDROP_SAMPLE_DATA_DIR);
}

/// One line for a test's output saying which data it read.
inline std::string data_root_description() {
  return full_data() ? "full data in $ADDROP_DATA_DIR=" + data_root().string()
                     : "the committed sample " + data_root().string() + " (set ADDROP_DATA_DIR for the full sets)";
}

}  // namespace addrop::testing
