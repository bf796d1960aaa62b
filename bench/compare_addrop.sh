#!/usr/bin/env bash
# Runs the AD-DROP training-step benchmark of both sides on this machine in one invocation,
# each in float32 and in bf16 mixed precision: addrop's bench_addrop (built with
# -march=native, like compare_pytorch.sh) as AdDropStep/<shape>/<case>/f32 and /bf16
# (Precision::Bf16Mixed: every matrix product reads bf16-rounded inputs and accumulates in
# float32, on oneDNN's matmul where the program links it), and bench/pytorch_addrop_step.py
# (Debian's torch 1.13 with OpenBLAS, 2 threads) --precision f32 and bf16 (every forward
# under torch.autocast("cpu", dtype=torch.bfloat16), its products on torch's oneDNN), cases
# plain, ga, iga (m = 20), aa, rd at target layer 0, p = q = 0.3, and ours' phase breakdown
# (AdDropPhases/<shape>/phases/<precision>). PyTorch runs at its best here:
# OMP_WAIT_POLICY=PASSIVE and a glibc malloc that neither trims nor maps large blocks
# (MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184
# MALLOC_TOP_PAD_=1073741824, as compare_builds.sh and compare_marian.sh run it); ours in the
# plain environment (OURS_ENV="VAR=VALUE ..." adds variables).
#
# Every case runs in its own process, per shape and case in the order ours f32, ours bf16,
# PyTorch f32, PyTorch bf16, so the four see about the same machine state and each gets its
# own peak memory: peak_rss_mb, which both programs measure in-process (the kernel's VmHWM,
# reset at the start of the case through /proc/self/clear_refs; see bench_addrop.cpp), in a
# process that runs nothing else, is the process's maximum resident set (PyTorch's includes
# the interpreter and torch, ~230 MiB before the case starts: start_rss_mb). GNU time's
# maximum resident set size of each process is recorded beside it as a check
# (gnu_time_maxrss_mb; the summary gives the range of the differences: ours within
# 0.3 MiB; PyTorch ~9 MiB more, which Python's shutdown after the case adds under the
# malloc settings: with os._exit right after the case the two agree).
#
# Writes the raw per-run outputs to $OUT_DIR/addrop_<arg>/ (default OUT_DIR=bench/results; the
# previous invocation's are removed first; loadavg: the load average before and after the
# runs), merged ones to addrop_<arg>_ours.json (Google Benchmark's JSON, all cases) and
# addrop_<arg>_pytorch.jsonl, and the summary (addrop_<arg>_summary.md): per shape and case
# the four s/step with their peak MiB, the bf16 speedup of ours (ours f32 / ours bf16) and
# ours bf16 against PyTorch bf16 (PyTorch bf16 / ours bf16; f32 likewise), each side's
# variant / plain, and ours' phases per precision. Prints the summary.
#
#   bash bench/compare_addrop.sh [small|base|all]     (default small)
#
# Time on 2 idle cores (estimated from the float32 runs of docs/benchmarks.md; bf16 adds
# about as much again, less where it is faster; each process also starts up, PyTorch's in
# ~3-5 s): small about 5 minutes, base about 13, all about 18-20; re-runs of disturbed cases
# come on top (a base IGA case costs 1-2 minutes per run).
#
# The machine is shared. A process competing for the cores slows both sides, ours (OpenMP,
# many short parallel regions) far more than its share, so every case records how many
# cores other processes kept busy while it ran (other_cores: bench_addrop measures it itself;
# for PyTorch a 1 s sampler runs beside the process tree). A case above DISTURBED (default
# 0.1) cores is run again, alone, up to RETRIES times (default 1), and the less disturbed run
# is kept. Environment: RETRIES; DISTURBED; WAIT_IDLE=SECONDS waits up to that long for the
# machine to go idle before each run (default 0); PRECISIONS (default "f32 bf16") and CASES
# (default "plain ga iga aa rd") restrict the runs; PHASES=0 leaves out ours' phases;
# PYTORCH_ITERS / PYTORCH_WARMUP override pytorch_addrop_step.py's --iters / --warmup;
# bench_addrop's variables pass through (ADDROP_BENCH_IGA_BASE_ITERS: ours' base IGA
# iterations, default 2; ADDROP_BENCH_ITERS=N: every case's, for quick checks;
# ADDROP_BENCH_NO_IG=1: no IG phases); ADDROP_BENCH_BUILD_DIR (default build-bench);
# ADDROP_BENCH_NO_BUILD=1 skips installing, configuring and building and runs the
# bench_addrop already in that directory. SUMMARY_ONLY=1 builds and runs nothing and removes
# nothing: it rewrites the merged outputs and the summary from the raw outputs already in
# $OUT_DIR/addrop_<arg>/ (give PRECISIONS, CASES, PHASES, OURS_ENV and DISTURBED as for the
# run that wrote them; without a loadavg there the load average reads "not recorded").
#
# What this script shares with compare_marian.sh is in bench/compare_common.sh (checking
# the arguments, building, the list of runs, running them, waiting for an idle machine,
# re-running disturbed cases) and bench/compare_common.py (the summary's reading of the raw
# outputs, the merged outputs, its header lines with the peak check, the main table's header,
# rows and common cells).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
name=compare_addrop shape=${1:-small}
# shellcheck source=bench/compare_common.sh
source bench/compare_common.sh  # out, build, retries, precisions, ...; check_args, run_all, summarize
check_args "small base" "plain ga iga aa rd"
prepare "$out/addrop_$shape" bench_addrop
export OMP_NUM_THREADS=2

# monitor PID: once a second, the cores other processes kept busy: (busy time of the machine
# in /proc/stat - CPU time of PID and its descendants) / wall time. The tree's CPU time counts
# each process's own and its reaped children's time (utime stime cutime cstime), so it does
# not drop when a child (GNU time's python, python's probe) exits.
monitor() {
  /usr/bin/python3 - "$1" <<'PY'
import os, sys, time
root = int(sys.argv[1])
hz = os.sysconf("SC_CLK_TCK")
def busy():
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return f[0] + f[1] + f[2] + f[5] + f[6] + f[7]   # user nice system irq softirq steal
def tree():
    stats = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                f = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(d)] = int(f[1]), sum(int(x) for x in f[11:15])   # ppid; utime stime cutime cstime
    if root not in stats:
        return None
    members, total, grew = {root}, 0, True
    while grew:
        grew = False
        for pid, (ppid, _) in stats.items():
            if ppid in members and pid not in members:
                members.add(pid); grew = True
    return sum(stats[p][1] for p in members)
b0, o0, t0 = busy(), tree(), time.time()
while True:
    time.sleep(1.0)
    b1, o1, t1 = busy(), tree(), time.time()
    if o1 is None:
        break
    print(f"{max(0.0, ((b1 - b0) - (o1 - o0)) / hz / (t1 - t0)):.2f}", flush=True)
    b0, o0, t0 = b1, o1, t1
PY
}

# run SIDE SHAPE CASE PRECISION PREFIX: one case (CASE = phases: ours' phases) in its own
# process; PREFIX.json (ours: Google Benchmark's JSON; PyTorch: one JSON line, other_cores
# added, and PREFIX.load, the monitor's samples) and PREFIX.rss (GNU time's maximum resident
# set, KiB). Fails if the program does.
run() {
  local side=$1 sh=$2 c=$3 prec=$4 prefix=$5
  if [ "$side" = ours ]; then
    local filter="^AdDropStep/$sh/$c/$prec/"
    [ "$c" = phases ] && filter="^AdDropPhases/$sh/phases/$prec/"
    run_ours bench_addrop "$filter" "$prefix"
  else
    local pid rc=0
    pytorch_command "$prefix" pytorch_addrop_step.py --shape "$sh" --case "$c" --precision "$prec" --json
    "${pytorch_cmd[@]}" > "$tmp/py.jsonl" &
    pid=$!
    monitor "$pid" > "$prefix.load"
    wait "$pid" || rc=$?
    [ "$rc" = 0 ] || return 1
    /usr/bin/python3 - "$tmp/py.jsonl" "$prefix.load" > "$prefix.json" <<'PY'
import json, sys
v = [float(l) for l in open(sys.argv[2]) if l.strip()]
r = json.loads(open(sys.argv[1]).readline())
r["other_cores"] = round(sum(v) / len(v), 3) if v else 0.0
print(json.dumps(r))
PY
  fi
}

if [ "${PHASES:-1}" != 0 ]; then
  make_runs "$shape" "small base" phases
else
  make_runs "$shape" "small base"
fi

[ -n "${SUMMARY_ONLY:-}" ] || run_all

summarize "$shape" <<'PY'
from compare_common import PRECS, finish, header_lines, ratio, start, table_head, table_row, write_merged
raw, out, arg, ours_env, results = start()
CASES = ["plain", "ga", "iga", "aa", "rd"]
write_merged(results, f"{out}/addrop_{arg}_ours.json", f"{out}/addrop_{arg}_pytorch.jsonl")
lines = header_lines(results, raw, 2, ours_env, "median s/step", "second",
                     " (PyTorch's interpreter shutdown, after the case, adds ~9 MiB under the malloc settings)")

fmt = lambda r: "—" if r is None else f"{r['seconds']:.3f} s, {r['peak_rss_mb']:.0f} MiB"
lines += table_head(["bf16 speedup ours (f32 / bf16)", "ours bf16 vs PyTorch bf16 (PyTorch / ours)",
                      "ours f32 vs PyTorch f32 (PyTorch / ours)"])
shapes = results.shapes(("small", "base"))
get = results.get
for sh, c, four in results.rows(shapes, CASES):
    of, ob, pf, pb = four
    lines.append(table_row(sh, c, four, fmt, [ratio(of, ob), ratio(pb, ob), ratio(pf, of)]))
rel = []
for sh in shapes:
    for c in CASES[1:]:
        cells = [ratio(get(s, sh, c, p), get(s, sh, "plain", p)) for s in ("ours", "pytorch") for p in PRECS]
        if any(x != "—" for x in cells):
            rel.append(f"| {sh} | {c} | " + " | ".join(cells) + " |")
if rel:
    lines += ["", "Variant / plain (time ratios):", "",
              "| shape | case | ours f32 | ours bf16 | PyTorch f32 | PyTorch bf16 |", "| --- | --- | --- | --- | --- | --- |"] + rel
phases = {(sh, p): get("ours", sh, "phases", p) for sh in shapes for p in PRECS}
if any(phases.values()):
    lines += ["", "Phases of ours (median of the repeats; seconds and in units of one forward of the same precision):", "",
              "| shape | phase | f32 s | f32 / forward | bf16 s | bf16 / forward |", "| --- | --- | --- | --- | --- | --- |"]
    order = ["forward", "loss_full_backward", "ga_attribution", "select_topp", "select_topp_masks", "masked_forward",
             "ig_attribution", "ig_stacked_attribution", "select_random"]
    for sh in shapes:
        bf, bb = phases[sh, "f32"], phases[sh, "bf16"]
        if not (bf or bb):
            continue
        cell = lambda b, n, k, d: "—" if not b or f"{n}{k}" not in b else f"{b[n + k]:.{d}f}"
        for n in order:
            if any(b and f"{n}_s" in b for b in (bf, bb)):
                lines.append(f"| {sh} | {n} | {cell(bf, n, '_s', 4)} | {cell(bf, n, '_per_forward', 2)} "
                             f"| {cell(bb, n, '_s', 4)} | {cell(bb, n, '_per_forward', 2)} |")
        pk = lambda b: "—" if not b else f"{b['peak_rss_mb']:.0f}"
        oc = lambda b: "—" if not b else f"{b['other_cores']:.2f}"
        lines.append(f"| {sh} | (peak MiB; other cores) | {pk(bf)}; {oc(bf)} | | {pk(bb)}; {oc(bb)} | |")
finish(lines, results, f"{out}/addrop_{arg}_summary.md")
PY
