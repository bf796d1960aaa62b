#!/usr/bin/env bash
# The build a user gets against the portable build, and both against PyTorch at its best
# on this machine, in one invocation: bench_step (forward + backward, small and base) and
# bench_addrop's small plain and GA steps from
#   - the README's build (build/, configured by cmake/configure.sh: -march=native), and
#   - a portable build (build-portable/, ADDROP_NATIVE=OFF: the x86-64 baseline),
# run one after the other, then bench/pytorch_step.py and bench/pytorch_addrop_step.py
# (Debian's torch, 2 threads) with the environment that makes PyTorch 2-3x faster here
# (passive OpenMP waiting, glibc malloc without trimming or mmap for large blocks).
# Peak resident memory of every run (GNU time's maximum RSS) is reported beside its time.
# Writes raw outputs and builds.md to $OUT_DIR (default bench/results) and prints the table.
#
#   bash bench/compare_builds.sh            # about 6 minutes of runs, plus the builds
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${OUT_DIR:-bench/results}
default_build=${ADDROP_BUILD_DIR:-build}
portable_build=${ADDROP_PORTABLE_BUILD_DIR:-build-portable}
mkdir -p "$out"

bash cmake/install_deps.sh --with-torch
ADDROP_BUILD_DIR=$default_build bash cmake/configure.sh >/dev/null
ADDROP_BUILD_DIR=$portable_build ADDROP_CMAKE_ARGS="-DADDROP_NATIVE=OFF -DADDROP_BUILD_TESTS=OFF -DADDROP_WITH_CUDA=OFF" \
  bash cmake/configure.sh >/dev/null
for b in "$default_build" "$portable_build"; do
  cmake --build "$b" --target bench_step bench_addrop --parallel 2 >/dev/null
done

export OMP_NUM_THREADS=2
# One timed run: its output to $1.json (or .jsonl), its peak RSS in KiB to $1.rss.
measure() {
  local name=$1; shift
  /usr/bin/time -f %M -o "$out/$name.rss" "$@" > "$out/$name.out"
}
for kind in default portable; do
  b=$default_build; [ $kind = portable ] && b=$portable_build
  measure "builds_${kind}_step" "$b/bench/bench_step" --benchmark_format=json
  measure "builds_${kind}_addrop" "$b/bench/bench_addrop" --benchmark_filter='AdDropStep/small/(plain|ga)/f32' --benchmark_format=json
done
# shellcheck source=bench/pytorch_env.sh
source bench/pytorch_env.sh  # pytorch_env: PyTorch at its best
best=("${pytorch_env[@]}")
measure builds_pytorch_step "${best[@]}" /usr/bin/python3 bench/pytorch_step.py --shape all --json
for c in plain ga; do
  measure "builds_pytorch_addrop_$c" "${best[@]}" /usr/bin/python3 bench/pytorch_addrop_step.py --shape small --case $c --json
done

/usr/bin/python3 - "$out" <<'PY'
import json, re, subprocess, sys
out = sys.argv[1]
# "BM_TrainingStep/small/min_time:3.000/real_time" -> "TrainingStep/small"
case_name = lambda n: re.sub(r"/f32$", "", re.sub(r"/(iterations|min_time):[^/]*|/real_time", "", n)).replace("BM_", "")
rss = lambda name: int(open(f"{out}/{name}.rss").read().split()[-1]) / 1024  # MiB
rows = {}  # (case) -> {side: (seconds, MiB)}
for kind in ("default", "portable"):
    for prog in ("step", "addrop"):
        name = f"builds_{kind}_{prog}"
        for b in json.load(open(f"{out}/{name}.out"))["benchmarks"]:
            # bench_addrop's median is what pytorch_addrop_step.py reports
            seconds = b.get("seconds_median", b["seconds_per_step"])
            rows.setdefault(case_name(b["name"]), {})[kind] = (seconds, rss(name))
for line in open(f"{out}/builds_pytorch_step.out"):
    r = json.loads(line)
    rows.setdefault(f"TrainingStep/{r['shape']}", {})["pytorch"] = (r["seconds_per_step"], rss("builds_pytorch_step"))
for c in ("plain", "ga"):
    for line in open(f"{out}/builds_pytorch_addrop_{c}.out"):
        r = json.loads(line)
        rows.setdefault(f"AdDropStep/{r['shape']}/{r['case']}", {})["pytorch"] = (r["seconds_per_step"], rss(f"builds_pytorch_addrop_{c}"))
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
fmt = lambda v: f"{v[0]:.3f} s, {v[1]:.0f} MiB" if v else "–"
lines = [f"CPU: {cpu}; 2 threads each; peak RSS of the whole process beside each time", "",
         "| case | default build (README, native) | portable build | PyTorch (best env) | portable / default | default / PyTorch |",
         "| --- | --- | --- | --- | --- | --- |"]
for case, r in rows.items():
    d, p, t = r.get("default"), r.get("portable"), r.get("pytorch")
    ratio = lambda a, b: f"{a[0] / b[0]:.2f}" if a and b else "–"
    lines.append(f"| {case} | {fmt(d)} | {fmt(p)} | {fmt(t)} | {ratio(p, d)} | {ratio(d, t)} |")
text = "\n".join(lines)
open(f"{out}/builds.md", "w").write(text + "\n")
print(text)
PY
