#!/usr/bin/env bash
# Sourced by the comparison scripts (compare_common.sh, compare_builds.sh): sets the array
# pytorch_env, the env command that runs PyTorch at its best on this machine:
# OMP_WAIT_POLICY=PASSIVE and a glibc malloc that neither trims nor maps large blocks (2-3x
# faster than Debian's default setup here), and OpenBLAS's AVX-512 kernels where it would
# fall back to SSE3 (below). Run from the repository root.
pytorch_env=(env OMP_WAIT_POLICY=PASSIVE MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184
             MALLOC_TOP_PAD_=1073741824)
# Debian's OpenBLAS 0.3.21 (torch's float32 BLAS) does not know every AVX-512 CPU: on the
# Intel Xeon (family 6, model 207) this project's machine became on 2026-12-07 it falls back
# to its SSE3 "Prescott" kernels (38-46 GFLOP/s for a 1024x768x3072 product on 2 threads,
# against 172-183 with its Cooperlake kernels), which would make PyTorch 3-4x slower than it
# can be. PyTorch at its best therefore gets the right kernels named where OpenBLAS falls
# back on an AVX-512 CPU (Cooperlake's where the CPU has AVX512-BF16, else SkylakeX's).
# OPENBLAS_CORETYPE set by the caller is kept.
if [ -z "${OPENBLAS_CORETYPE+set}" ] && grep -qw avx512f /proc/cpuinfo &&
   OPENBLAS_VERBOSE=2 /usr/bin/python3 -c 'import torch; torch.ones(2, 2) @ torch.ones(2, 2)' 2>&1 |
     grep -q '^Core: Prescott'; then
  if grep -qw avx512_bf16 /proc/cpuinfo; then pytorch_env+=(OPENBLAS_CORETYPE=Cooperlake)
  else pytorch_env+=(OPENBLAS_CORETYPE=SkylakeX); fi
elif [ -n "${OPENBLAS_CORETYPE:-}" ]; then
  pytorch_env+=(OPENBLAS_CORETYPE="$OPENBLAS_CORETYPE")
fi
