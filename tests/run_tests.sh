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

bash cmake/install_deps.sh

# A build folder configured earlier with another generator cannot be reused as is.
fresh=()
if [ -f "$build_dir/CMakeCache.txt" ] && ! grep -q '^CMAKE_GENERATOR:INTERNAL=Ninja$' "$build_dir/CMakeCache.txt"; then
  echo "run_tests: $build_dir was configured with another generator; reconfiguring it from scratch"
  fresh=(--fresh)
fi

# shellcheck disable=SC2086  # ADDROP_CMAKE_ARGS is meant to be word-split
cmake "${fresh[@]}" -S . -B "$build_dir" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release -DADDROP_NATIVE=OFF \
  -DADDROP_BUILD_TESTS=ON -DADDROP_BUILD_EXAMPLES=ON -DADDROP_BUILD_BENCH=ON \
  ${ADDROP_CMAKE_ARGS:-}
cmake --build "$build_dir" --parallel "$jobs"

status=0
ctest --test-dir "$build_dir" --output-on-failure --no-tests=error -j "$jobs" || status=$?
exit "$status"
