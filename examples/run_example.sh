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

bash cmake/configure.sh
cmake --build "$build_dir" --parallel "$jobs" --target addrop-train-tiny

exec "$build_dir/examples/addrop-train-tiny" "$@"
