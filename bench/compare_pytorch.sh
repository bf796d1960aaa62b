#!/usr/bin/env bash
# Runs the training-step benchmark of both sides on this machine, one after the other
# in one invocation: addrop's bench_step (built with -march=native, as OpenBLAS picks its
# kernels for this CPU at run time) and bench/pytorch_step.py (Debian's torch with
# OpenBLAS, 2 threads). Writes the raw outputs and a summary table to $OUT_DIR
# (default bench/results) and prints the table.
#
#   bash bench/compare_pytorch.sh [small|base|all]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
shape=${1:-all}
out=${OUT_DIR:-bench/results}
build=${ADDROP_BENCH_BUILD_DIR:-build-bench}
mkdir -p "$out"

bash cmake/install_deps.sh --with-torch
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DADDROP_NATIVE=ON \
  -DADDROP_BUILD_TESTS=OFF -DADDROP_BUILD_EXAMPLES=OFF -DADDROP_BUILD_BENCH=ON -DADDROP_WITH_CUDA=OFF >/dev/null
cmake --build "$build" --target bench_step --parallel 2 >/dev/null

filter='.*'
[ "$shape" = all ] || filter="/$shape/"
export OMP_NUM_THREADS=2
"$build/bench/bench_step" --benchmark_filter="$filter" --benchmark_format=json > "$out/addrop_step.json"
/usr/bin/python3 bench/pytorch_step.py --shape "$shape" --json > "$out/pytorch_step.jsonl"

/usr/bin/python3 - "$out" <<'PY'
import json, sys, platform, subprocess
out = sys.argv[1]
ours = {}
for b in json.load(open(f"{out}/addrop_step.json"))["benchmarks"]:
    shape = b["name"].split("/")[1]
    ours[shape] = b["seconds_per_step"], b["GFLOPs"]
theirs = {}
for line in open(f"{out}/pytorch_step.jsonl"):
    r = json.loads(line)
    theirs[r["shape"]] = r["seconds_per_step"], r["gflops"], r["torch"]
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
lines = [f"CPU: {cpu}; 2 threads each", "",
         "| shape | addrop s/step | addrop GFLOP/s | PyTorch s/step | PyTorch GFLOP/s | ratio addrop/PyTorch |",
         "| --- | --- | --- | --- | --- | --- |"]
for shape in ours:
    if shape not in theirs: continue
    a, ag = ours[shape]; p, pg, tv = theirs[shape]
    lines.append(f"| {shape} | {a:.3f} | {ag:.1f} | {p:.3f} | {pg:.1f} | {a/p:.2f} |")
text = "\n".join(lines)
open(f"{out}/summary.md", "w").write(text + "\n")
print(text)
PY
