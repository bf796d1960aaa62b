#!/usr/bin/env bash
# The main-job command of the README: installs the dependencies (Debian 12, as root),
# builds only the example trainer addrop-train-tiny in build/ and runs it; arguments
# are passed on to the trainer (try --help). Works from any directory.
#
# Environment: ADDROP_BUILD_DIR (default build), ADDROP_JOBS (default 2),
#              ADDROP_CMAKE_ARGS (extra configure arguments, word-split).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
build_dir=${ADDROP_BUILD_DIR:-build}
jobs=${ADDROP_JOBS:-2}

bash cmake/install_deps.sh

# Same configuration as tests/run_tests.sh, so both scripts share one build folder.
fresh=()
if [ -f "$build_dir/CMakeCache.txt" ] && ! grep -q '^CMAKE_GENERATOR:INTERNAL=Ninja$' "$build_dir/CMakeCache.txt"; then
  echo "run_example: $build_dir was configured with another generator; reconfiguring it from scratch"
  fresh=(--fresh)
fi

# shellcheck disable=SC2086  # ADDROP_CMAKE_ARGS is meant to be word-split
cmake "${fresh[@]}" -S . -B "$build_dir" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release -DADDROP_NATIVE=OFF \
  -DADDROP_BUILD_TESTS=ON -DADDROP_BUILD_EXAMPLES=ON -DADDROP_BUILD_BENCH=ON \
  ${ADDROP_CMAKE_ARGS:-}
cmake --build "$build_dir" --parallel "$jobs" --target addrop-train-tiny

exec "$build_dir/examples/addrop-train-tiny" "$@"
