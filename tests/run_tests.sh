#!/usr/bin/env bash
# The test command of the README: installs the dependencies (Debian 12, as root),
# configures build/ (Release, Ninja, no -march=native), builds everything and runs
# the whole ctest suite. Exits with ctest's status. Works from any directory.
#
# Environment: ADDROP_BUILD_DIR (default build), ADDROP_JOBS (default 2),
#              ADDROP_CMAKE_ARGS (extra configure arguments, word-split).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
build_dir=${ADDROP_BUILD_DIR:-build}
jobs=${ADDROP_JOBS:-2}

bash cmake/configure.sh
cmake --build "$build_dir" --parallel "$jobs"

status=0
ctest --test-dir "$build_dir" --output-on-failure --no-tests=error -j "$jobs" || status=$?
exit "$status"
