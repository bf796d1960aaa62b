#!/usr/bin/env bash
# Builds, on a machine without a GPU, everything tests/cuda/gpu_check.sh runs on a lent
# GPU machine, and copies it into gpu-bundle/ (ignored by git; carried to the GPU machine
# beside the working tree). The GPU machine has the CUDA runtime, cuBLAS, CMake and
# PyTorch but not Boost, so the one Boost library the inspect test needs travels too.
#
#   bash tests/cuda/make_gpu_bundle.sh        # then, on the GPU machine: bash tests/cuda/gpu_check.sh
#
# The binaries are portable (ADDROP_NATIVE=OFF, their own build folder): the GPU
# machine's CPU need not have this machine's instruction set. They are built without
# oneDNN (its 40 MB library would not fit the carry limit): their CPU-side bf16 products
# use the emulation, which gives the same results.
#
# Environment: ADDROP_BUILD_DIR (default build-gpu-bundle), ADDROP_JOBS (default 2).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
build=${ADDROP_BUILD_DIR:-build-gpu-bundle}
ADDROP_BUILD_DIR=$build ADDROP_CMAKE_ARGS="-DADDROP_NATIVE=OFF -DCMAKE_DISABLE_FIND_PACKAGE_dnnl=ON ${ADDROP_CMAKE_ARGS:-}" bash cmake/configure.sh
if ! grep -q '^ADDROP_WITH_CUDA:BOOL=ON' "$build/CMakeCache.txt"; then
  echo "make_gpu_bundle: $build is configured without CUDA (no nvcc or cuBLAS found)" >&2
  exit 1
fi
targets=(test_cuda_backend test_cuda_smoke bench_cuda_step addrop-inspect addrop-train-tiny test_inspect_e2e)
cmake --build "$build" --parallel "${ADDROP_JOBS:-2}" --target "${targets[@]}"
rm -rf gpu-bundle.tmp && mkdir gpu-bundle.tmp
cp "$build/tests/cuda/test_cuda_backend" "$build/tests/cuda/test_cuda_smoke" "$build/bench/bench_cuda_step" \
   "$build/examples/addrop-inspect" "$build/examples/addrop-train-tiny" "$build/tests/test_inspect_e2e" gpu-bundle.tmp/
boost=$(ldd "$build/tests/test_inspect_e2e" | awk '/libboost_unit_test_framework/ {print $3}')
[ -n "$boost" ] && cp -L "$boost" gpu-bundle.tmp/
git rev-parse HEAD > gpu-bundle.tmp/COMMIT
git status --short > gpu-bundle.tmp/DIRTY
rm -rf gpu-bundle && mv gpu-bundle.tmp gpu-bundle
du -sh gpu-bundle
