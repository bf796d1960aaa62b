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
# Writes the raw per-run outputs to $OUT_DIR/addrop_<arg>/ (default OUT_DIR=bench/results),
# merged ones to addrop_<arg>_ours.json (Google Benchmark's JSON, all cases) and
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
# bench_addrop already in that directory.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
shape=${1:-small}
case "$shape" in small|base|all) ;; *) echo "usage: $0 [small|base|all]" >&2; exit 2 ;; esac
out=${OUT_DIR:-bench/results}
build=${ADDROP_BENCH_BUILD_DIR:-build-bench}
retries=${RETRIES:-1}
disturbed_at=${DISTURBED:-0.1}
read -r -a precisions <<< "${PRECISIONS:-f32 bf16}"
read -r -a cases <<< "${CASES:-plain ga iga aa rd}"
for p in "${precisions[@]}"; do
  case "$p" in f32|bf16) ;; *) echo "compare_addrop: PRECISIONS: '$p' is not f32 or bf16" >&2; exit 2 ;; esac
done
for c in "${cases[@]}"; do
  case "$c" in plain|ga|iga|aa|rd) ;; *) echo "compare_addrop: CASES: '$c' is not plain, ga, iga, aa or rd" >&2; exit 2 ;; esac
done
raw="$out/addrop_$shape"
mkdir -p "$raw"
rm -f "$raw"/*.json "$raw"/*.rss "$raw"/*.runs "$raw"/*.load  # results of an earlier invocation

if [ -z "${ADDROP_BENCH_NO_BUILD:-}" ]; then
  bash cmake/install_deps.sh --with-torch
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DADDROP_NATIVE=ON \
    -DADDROP_BUILD_TESTS=OFF -DADDROP_BUILD_EXAMPLES=OFF -DADDROP_BUILD_BENCH=ON -DADDROP_WITH_CUDA=OFF >/dev/null
  cmake --build "$build" --target bench_addrop --parallel 2 >/dev/null
fi
[ -x "$build/bench/bench_addrop" ] || { echo "compare_addrop: no $build/bench/bench_addrop" >&2; exit 1; }
export OMP_NUM_THREADS=2
unset ADDROP_BENCH_PRECISIONS  # the filter picks the precision; every one must be registered
best=(env OMP_WAIT_POLICY=PASSIVE MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184
      MALLOC_TOP_PAD_=1073741824)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Waits (at most WAIT_IDLE seconds) until no more than 0.1 core was busy for 5 seconds.
wait_idle() {
  local limit=${WAIT_IDLE:-0} waited=0 a b
  while [ "$waited" -lt "$limit" ]; do
    a=$(awk 'NR==1{print $2+$3+$4+$7+$8+$9}' /proc/stat); sleep 5; waited=$((waited + 5))
    b=$(awk 'NR==1{print $2+$3+$4+$7+$8+$9}' /proc/stat)
    [ $((b - a)) -le $((5 * $(getconf CLK_TCK) / 10)) ] && return 0
  done
  [ "$limit" -gt 0 ] && echo "compare_addrop: machine still busy after ${limit}s; running anyway" >&2
  return 0
}

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
# added) and PREFIX.rss (GNU time's maximum resident set, KiB). Fails if the program does.
run() {
  local side=$1 sh=$2 c=$3 prec=$4 prefix=$5
  wait_idle
  if [ "$side" = ours ]; then
    local filter="^AdDropStep/$sh/$c/$prec/"
    [ "$c" = phases ] && filter="^AdDropPhases/$sh/phases/$prec/"
    # shellcheck disable=SC2086
    /usr/bin/time -f %M -o "$prefix.rss" env ${OURS_ENV:-} "$build/bench/bench_addrop" \
      --benchmark_filter="$filter" --benchmark_format=json > "$prefix.json" || return 1
    grep -q '"name"' "$prefix.json" || { echo "compare_addrop: no case matched $filter" >&2; return 1; }
  else
    local py_args=(--shape "$sh" --case "$c" --precision "$prec" --json) pid rc=0
    [ -n "${PYTORCH_ITERS:-}" ] && py_args+=(--iters "$PYTORCH_ITERS")
    [ -n "${PYTORCH_WARMUP:-}" ] && py_args+=(--warmup "$PYTORCH_WARMUP")
    /usr/bin/time -f %M -o "$prefix.rss" "${best[@]}" /usr/bin/python3 bench/pytorch_addrop_step.py \
      "${py_args[@]}" > "$tmp/py.jsonl" &
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

# other_cores PREFIX: the run's other_cores (0 where the run failed: it is not re-run)
other_cores() {
  /usr/bin/python3 - "$1.json" <<'PY'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
    r = r["benchmarks"][0] if "benchmarks" in r else r
    print(r.get("other_cores", 0))
except (OSError, ValueError, KeyError, IndexError):
    print(0)
PY
}

shapes=(small base)
[ "$shape" = all ] || shapes=("$shape")
runs=()  # "side shape case precision"
for sh in "${shapes[@]}"; do
  for c in "${cases[@]}"; do
    for side in ours pytorch; do
      for p in "${precisions[@]}"; do runs+=("$side $sh $c $p"); done
    done
  done
  if [ "${PHASES:-1}" != 0 ]; then
    for p in "${precisions[@]}"; do runs+=("ours $sh phases $p"); done
  fi
done

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
start=$(date +%s)
for item in "${runs[@]}"; do
  read -r side sh c p <<< "$item"
  run "$side" "$sh" "$c" "$p" "$raw/${sh}_${c}_${side}_$p" ||
    echo "compare_addrop: FAILED: $side $sh $c $p (see above)" >&2
  echo "compare_addrop: $side $sh $c $p done ($(( $(date +%s) - start )) s)" >&2
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# Re-runs of disturbed cases; the less disturbed run is kept (runs counted in PREFIX.runs).
for ((attempt = 1; attempt <= retries; attempt++)); do
  again=0
  for item in "${runs[@]}"; do
    read -r side sh c p <<< "$item"
    prefix="$raw/${sh}_${c}_${side}_$p"
    old=$(other_cores "$prefix")
    /usr/bin/python3 -c "import sys; sys.exit(0 if float('$old') > float('$disturbed_at') else 1)" || continue
    again=1
    echo "compare_addrop: re-running disturbed case ($old other cores): $side $sh $c $p" >&2
    runs_so_far=$(( $(cat "$prefix.runs" 2>/dev/null || echo 1) + 1 ))
    echo "$runs_so_far" > "$prefix.runs"
    run "$side" "$sh" "$c" "$p" "$tmp/rerun" || { echo "compare_addrop: re-run FAILED" >&2; continue; }
    new=$(other_cores "$tmp/rerun")
    if /usr/bin/python3 -c "import sys; sys.exit(0 if float('$new') < float('$old') else 1)"; then
      cp "$tmp/rerun.json" "$prefix.json"; cp "$tmp/rerun.rss" "$prefix.rss"
    fi
  done
  [ "$again" = 1 ] || break
done

/usr/bin/python3 - "$raw" "$out" "$shape" "$load_before" "$load_after" "${OURS_ENV:-}" "${runs[@]}" <<'PY'
import json, os, subprocess, sys
raw, out, arg, load_before, load_after, ours_env, *run_list = sys.argv[1:]
CASES = ["plain", "ga", "iga", "aa", "rd"]
PRECS = ["f32", "bf16"]
context, ours_all, pytorch_all, problems = None, [], [], []
res = {}  # (side, shape, case, precision) -> dict with seconds, mib, other_cores, runs

for item in run_list:
    side, sh, c, p = item.split()
    prefix = f"{raw}/{sh}_{c}_{side}_{p}"
    try:
        text = open(prefix + ".json").read()
        if side == "ours":
            doc = json.loads(text)
            context = context or doc.get("context")
            r = doc["benchmarks"][0]
            if r.get("error_occurred"):
                raise ValueError(r.get("error_message", "error"))
        else:
            r = json.loads(text.splitlines()[0])
        r["gnu_time_maxrss_mb"] = round(int(open(prefix + ".rss").read().split()[-1]) / 1024, 1)
    except (OSError, ValueError, KeyError, IndexError) as e:
        problems.append(f"{side} {sh} {c} {p}: missing ({type(e).__name__}: {e})")
        continue
    r["runs"] = int(open(prefix + ".runs").read()) if os.path.exists(prefix + ".runs") else 1
    (ours_all if side == "ours" else pytorch_all).append(r)
    r["seconds"] = r.get("seconds_median") if side == "ours" else r.get("seconds_per_step")
    res[side, sh, c, p] = r

json.dump({"context": context or {}, "benchmarks": ours_all}, open(f"{out}/addrop_{arg}_ours.json", "w"), indent=1)
open(f"{out}/addrop_{arg}_pytorch.jsonl", "w").write("".join(json.dumps(r) + "\n" for r in pytorch_all))

# in-process peak (peak_rss_mb) against GNU time's maximum resident set of the same process
diffs = {side: [r["gnu_time_maxrss_mb"] - r["peak_rss_mb"] for r in rs if "peak_rss_mb" in r]
         for side, rs in (("ours", ours_all), ("PyTorch", pytorch_all))}
not_reset = [r for r in ours_all + pytorch_all if r.get("peak_rss_reset") in (0, False)]

cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                     capture_output=True, text=True).stdout.strip()
engine_ours = (context or {}).get("bf16_matmul_engine", "?")
engine_pt = next((r["bf16_matmul"] for r in pytorch_all if "bf16_matmul" in r), "?")
torch_v = next((r["torch"] for r in pytorch_all), "?")
start_pt = sorted(r["start_rss_mb"] for r in pytorch_all if "start_rss_mb" in r)
start_ours = sorted(r["start_rss_mb"] for r in ours_all if "start_rss_mb" in r)
span = lambda v: f"{v[0]:.0f}" if round(v[0]) == round(v[-1]) else f"{v[0]:.0f}-{v[-1]:.0f}"
lines = [f"CPU: {cpu}; 2 threads each; load average (1/5/15 min) before {load_before}, after {load_after}",
         f"bf16 matrix products: ours {engine_ours}; PyTorch {torch_v} autocast: {engine_pt}",
         f"ours run with {ours_env or 'the plain environment'}; PyTorch with OMP_WAIT_POLICY=PASSIVE "
         "MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=1073741824",
         "each cell: median s/step, peak resident set of the case's own process in MiB (peak_rss_mb; before the "
         "case began the process held "
         + (f"{span(start_ours)} MiB (ours), " if start_ours else "")
         + (f"{span(start_pt)} MiB (PyTorch: interpreter and torch)" if start_pt else "")
         + "); speedups are time ratios (> 1: the second named is faster); other cores = cores other processes "
         f"kept busy during the kept run (above {float(os.environ.get('DISTURBED', '0.1')):g} it was disturbed), "
         "order ours f32 / ours bf16 / PyTorch f32 / PyTorch bf16, likewise runs", ""]
if any(diffs.values()):
    lines.insert(3, "peak check, GNU time's maximum resident set of the process - its in-process peak_rss_mb: "
                 + "; ".join(f"{side} {min(d):+.1f} to {max(d):+.1f} MiB over {len(d)} runs"
                             for side, d in diffs.items() if d)
                 + " (PyTorch's interpreter shutdown, after the case, adds ~9 MiB under the malloc settings)")
if not_reset:
    lines.insert(3, f"WARNING: {len(not_reset)} runs could not reset the peak mark (peak_rss_reset = 0)")

fmt = lambda r: "—" if r is None else f"{r['seconds']:.3f} s, {r['peak_rss_mb']:.0f} MiB"
ratio = lambda a, b: "—" if a is None or b is None else f"{a['seconds'] / b['seconds']:.2f}"
cores = lambda rs: " / ".join("—" if r is None else f"{r['other_cores']:.2f}" for r in rs)
nruns = lambda rs: " / ".join("—" if r is None else str(r["runs"]) for r in rs)
lines += ["| shape | case | ours f32 | ours bf16 | PyTorch f32 | PyTorch bf16 | bf16 speedup ours (f32 / bf16) "
          "| ours bf16 vs PyTorch bf16 (PyTorch / ours) | ours f32 vs PyTorch f32 (PyTorch / ours) "
          "| other cores | runs |",
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
shapes = [s for s in ("small", "base") if any(k[1] == s for k in res)]
get = lambda side, sh, c, p: res.get((side, sh, c, p))
for sh in shapes:
    for c in CASES:
        of, ob, pf, pb = (get(s, sh, c, p) for s in ("ours", "pytorch") for p in PRECS)
        if not any((of, ob, pf, pb)):
            continue
        lines.append(f"| {sh} | {c} | {fmt(of)} | {fmt(ob)} | {fmt(pf)} | {fmt(pb)} | {ratio(of, ob)} | {ratio(pb, ob)} "
                     f"| {ratio(pf, of)} | {cores((of, ob, pf, pb))} | {nruns((of, ob, pf, pb))} |")
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
if problems:
    lines += ["", "Missing runs:"] + [f"- {x}" for x in problems]
text = "\n".join(lines)
open(f"{out}/addrop_{arg}_summary.md", "w").write(text + "\n")
print(text)
PY
