#!/usr/bin/env bash
# Sourced by the comparison scripts (compare_common.sh, compare_builds.sh): sets the array
# pytorch_env, the env command that runs PyTorch at its best on this machine:
# OMP_WAIT_POLICY=PASSIVE and a glibc malloc that neither trims nor maps large blocks (2-3x
# faster than Debian's default setup here), and the fastest of OpenBLAS's kernels for this
# CPU (below). Run from the repository root.
pytorch_env=(env OMP_WAIT_POLICY=PASSIVE MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184
             MALLOC_TOP_PAD_=1073741824)
# Debian's OpenBLAS 0.3.21 (torch's float32 BLAS) does not know every recent CPU and then
# picks slow kernels: SSE3 on the Intel Xeon this project ran on in December 2026 (38-46
# against 172-183 GFLOP/s with its AVX-512 kernels), AVX2 on the AMD EPYC Zen 5 after it
# (85-92 against 119). bench/openblas_coretype.py measures the candidates and names the
# fastest (about 10 s). PYTORCH_OPENBLAS_CORETYPE=NAME forces one (empty: OpenBLAS's own
# choice); an OPENBLAS_CORETYPE in the caller's environment is not trusted to be the best
# and is replaced.
if [ -n "${PYTORCH_OPENBLAS_CORETYPE+set}" ]; then
  pytorch_coretype=$PYTORCH_OPENBLAS_CORETYPE
else
  pytorch_coretype=$(/usr/bin/python3 bench/openblas_coretype.py)
fi
if [ -n "$pytorch_coretype" ]; then
  pytorch_env+=(OPENBLAS_CORETYPE="$pytorch_coretype")
else
  pytorch_env=(env -u OPENBLAS_CORETYPE "${pytorch_env[@]:1}")
fi
