#!/usr/bin/env bash
# The CUDA checks and benchmarks in one run on a lent GPU machine (a few minutes), from
# the repository root, with gpu-bundle/ made by tests/cuda/make_gpu_bundle.sh carried:
#
#   run(command="bash tests/cuda/gpu_check.sh", carry=["gpu-bundle"])
#
# 1. the card (nvidia-smi); 2. test_cuda_smoke and test_cuda_backend (every op against the
# CPU, models and AD-DROP steps against the golden fixtures, masks identical); 3. the
# inspect end-to-end test (every golden AD-DROP variant with --device cuda too); 4.
# addrop-train-tiny --device cuda learns its task; 5. bench_cuda_step (every case in f32,
# GA in bf16 too) beside bench/pytorch_addrop_step.py --device cuda, same card, same run;
# 6. where nsys exists, a per-kernel profile of the base GA step, and torch.profiler's
# table of PyTorch's. Logs go to $OUT (or gpu-check-out/); the exit status is the number
# of failed checks.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
bundle=${GPU_BUNDLE:-gpu-bundle}
out=${OUT:-gpu-check-out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/$bundle${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export ADDROP_FIXTURE_DIR="$PWD/tests/golden/fixtures"
export ADDROP_INSPECT_BINARY="$PWD/$bundle/addrop-inspect"
failed=0
step() {  # step NAME COMMAND...: runs it, logs to $out/NAME.log, prints one line
  local name=$1; shift
  local t0=$SECONDS
  "$@" > "$out/$name.log" 2>&1
  local rc=$?
  echo "$name: exit $rc ($((SECONDS - t0)) s)" | tee -a "$out/summary.txt"
  [ $rc -eq 0 ] || { failed=$((failed + 1)); tail -20 "$out/$name.log"; }
}
{ cat "$bundle/COMMIT"; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; } \
  | tee "$out/summary.txt"
step cuda_smoke "$bundle/test_cuda_smoke"
step cuda_backend "$bundle/test_cuda_backend"
step inspect_e2e "$bundle/test_inspect_e2e" --log_level=warning
step train_tiny cmake -DBINARY="$PWD/$bundle/addrop-train-tiny" -P tests/e2e/train_tiny_check.cmake
step bench_addrop "$bundle/bench_cuda_step" --shape all --case all
# The GA step again with Precision::Bf16Mixed GEMMs (bf16 inputs on tensor cores, float32
# accumulation), beside the f32 one above: same card, same run ("precision" in the JSON).
step bench_addrop_bf16 "$bundle/bench_cuda_step" --shape all --case ga --precision bf16
step bench_pytorch python3 bench/pytorch_addrop_step.py --device cuda --shape all --case all --json
grep -h '"case"' "$out/bench_addrop.log" "$out/bench_addrop_bf16.log" "$out/bench_pytorch.log" | tee -a "$out/summary.txt"
# 6. Optional, not counted: where Nsight Systems is installed, the per-kernel time of the
# BERT-base GA step (which kernels to work on next if the step is still behind PyTorch's).
if command -v nsys > /dev/null; then
  nsys profile -o "$out/ga_base" --force-overwrite true "$bundle/bench_cuda_step" --shape base --case ga --iters 3 \
    > "$out/nsys.log" 2>&1 &&
    { nsys stats --report cuda_gpu_kern_sum "$out/ga_base.nsys-rep" || nsys stats --report gpukernsum "$out/ga_base.nsys-rep"; } \
      > "$out/kernels.txt" 2>> "$out/nsys.log"
  echo "nsys: exit $? (kernel summary in kernels.txt; not counted)" | tee -a "$out/summary.txt"
  rm -f "$out/ga_base.nsys-rep" "$out/ga_base.sqlite"  # large; the summary is what matters
fi
python3 bench/pytorch_addrop_step.py --device cuda --shape base --case ga --iters 1 --profile 3 \
  > /dev/null 2> "$out/torch_kernels.txt"
echo "torch profile: exit $? (PyTorch's per-kernel table in torch_kernels.txt; not counted)" | tee -a "$out/summary.txt"
exit "$failed"
