#!/usr/bin/env bash
# Shared by the README's two commands (tests/run_tests.sh, examples/run_example.sh), so
# both use one build folder configured one way: installs the Debian packages, then
# configures $ADDROP_BUILD_DIR (default build; Release, Ninja, tests, examples and
# benchmarks on, built for this machine's instruction set). Extra configure arguments:
# ADDROP_CMAKE_ARGS (word-split), e.g. -DADDROP_NATIVE=OFF for portable binaries.
# Run from the repository root.
set -euo pipefail
build_dir=${ADDROP_BUILD_DIR:-build}

bash cmake/install_deps.sh

# A build folder configured earlier with another generator cannot be reused as is.
fresh=()
if [ -f "$build_dir/CMakeCache.txt" ] && ! grep -q '^CMAKE_GENERATOR:INTERNAL=Ninja$' "$build_dir/CMakeCache.txt"; then
  echo "configure: $build_dir was configured with another generator; reconfiguring it from scratch"
  fresh=(--fresh)
fi

# shellcheck disable=SC2086  # ADDROP_CMAKE_ARGS is meant to be word-split
cmake "${fresh[@]}" -S . -B "$build_dir" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release \
  -DADDROP_BUILD_TESTS=ON -DADDROP_BUILD_EXAMPLES=ON -DADDROP_BUILD_BENCH=ON \
  ${ADDROP_CMAKE_ARGS:-}
