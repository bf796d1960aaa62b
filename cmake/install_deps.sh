#!/usr/bin/env bash
# Installs the Debian 12 packages that addrop's build, tests, examples and benchmarks
# need (see docs/dependencies.md). Skips apt entirely when all of them are installed,
# so repeated runs cost a second. Needs root (or sudo) only when something is missing.
# The CUDA Toolkit is optional and not installed here (it is not in Debian 12 main).
set -euo pipefail

packages=(
  build-essential
  cmake
  ninja-build
  git
  libeigen3-dev
  nlohmann-json3-dev
  libboost-test-dev
  libbenchmark-dev
  pkg-config
  libutf8proc-dev
  libpcre2-dev
  libcli11-dev
  libsentencepiece-dev
  libdnnl-dev
  ocl-icd-opencl-dev  # libdnnl-dev's CMake config requires OpenCL (only Recommended by the package)
  libopenmpi-dev
  openmpi-bin
)
# --with-torch: also what the PyTorch side needs (tests/reference/ fixture generator,
# bench/pytorch_step.py): Debian's torch, with OpenBLAS as the system BLAS; and SentencePiece's
# Python module for tests/reference/make_marian_tokenizer_cases.py.
if [ "${1:-}" = "--with-torch" ]; then
  packages+=(python3-torch python3-numpy libopenblas0-pthread python3-sentencepiece)
fi

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  if [ "$status" != "installed" ]; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all ${#packages[@]} packages already installed (${packages[*]})"
  exit 0
fi

echo "install_deps: missing packages: ${missing[*]}"

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo_cmd=(sudo)
  else
    echo "install_deps: not root and no sudo; install these packages as root: ${missing[*]}" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
echo "install_deps: apt-get update"
"${sudo_cmd[@]}" apt-get update -q
echo "install_deps: apt-get install ${missing[*]}"
"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "install_deps: done"
