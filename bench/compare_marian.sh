#!/usr/bin/env bash
# The Marian (translation) benchmark of both sides on this machine in one invocation, each
# in float32 and in bf16 mixed precision: addrop's bench_marian (built with -march=native)
# as Marian{Train,Decode}/<shape>/<case>/f32 and /bf16 (Precision::Bf16Mixed: every matrix
# product reads bf16-rounded inputs and accumulates in float32, on oneDNN's matmul where the
# program links it), and bench/pytorch_marian.py (Debian's torch 1.13 with OpenBLAS)
# --precision f32 and bf16 (the training step's forwards with their losses and the whole
# decoding loop under torch.autocast("cpu", dtype=torch.bfloat16), its products on torch's
# oneDNN), the same thread count. PyTorch runs at its best here: OMP_WAIT_POLICY=PASSIVE and
# a glibc malloc that neither trims nor maps large blocks (MALLOC_MMAP_THRESHOLD_=17179869184
# MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=1073741824, as compare_builds.sh and
# compare_addrop.sh run it); ours in the plain environment (OURS_ENV adds variables).
# Cases per shape (mini, then small = OPUS-MT en-ro's): the training step plain and with
# AD-DROP GA on every encoder layer (p = q = 0.2), each with its AdamW update; greedy and
# 4-beam decoding of 32 sources, 32 new tokens (no forced eos, so exactly 32 decoder steps
# on both sides; the summary checks it).
#
# Every case runs in its own process, per shape and case in the order ours f32, ours bf16,
# PyTorch f32, PyTorch bf16, so the four see about the same machine state and each gets its
# own peak memory: peak_rss_mb, which both programs measure in-process (the kernel's VmHWM,
# reset at the start of the case through /proc/self/clear_refs; bench/peak_rss.hpp), in a
# process that runs nothing else, is the process's maximum resident set (PyTorch's includes
# the interpreter and torch, start_rss_mb). GNU time's maximum resident set size of each
# process is recorded beside it as a check (gnu_time_maxrss_mb; the summary gives the range
# of the differences).
#
# Writes the raw per-run outputs to $OUT_DIR/marian/ (default OUT_DIR=bench/results; the
# previous invocation's are removed first), merged ones to marian_ours.json (Google
# Benchmark's JSON, all cases) and marian_pytorch.jsonl, and the summary (marian_summary.md):
# per shape and case the four times with their peak MiB, and the speedups (time ratios, > 1:
# the first named is faster) ours bf16 vs PyTorch f32 (the issue's target, "at least 2x
# faster than PyTorch's", whose reference runs float32), ours bf16 vs PyTorch bf16, ours f32
# vs PyTorch f32, ours bf16 vs ours f32; then the phases of every run and the targets.
# Prints the summary.
#
#   bash bench/compare_marian.sh [mini|small|all]      (default all)
#
# Time on 2 idle cores: float32 alone (PRECISIONS=f32) about 3.7 minutes (mini 1, small 2.7);
# both precisions about twice that, ~8 minutes (each PyTorch bf16 process also probes torch's
# bf16 engine in a child, a few seconds), plus the build on the first run and re-runs of
# disturbed cases; on a busy machine about twice as long (ours slows down most: see
# docs/benchmarks.md).
#
# The machine is shared. A process competing for the cores slows both sides, ours (OpenMP,
# many short parallel regions) far more than its share, so every case records how many cores
# other processes kept busy while it ran (other_cores; both programs measure it from
# /proc/stat). A case above DISTURBED (default 0.1) cores runs again, alone, up to RETRIES
# times (default 1), and the less disturbed run is kept. Environment: THREADS (default 2);
# RETRIES; DISTURBED; WAIT_IDLE=SECONDS waits up to that long for an idle machine before
# each run (default 0); PRECISIONS (default "f32 bf16") and CASES (default "plain ga greedy
# beam4") restrict the runs; ADDROP_BENCH_MARIAN_ITERS sets ours' timed iterations and
# PYTORCH_ITERS / PYTORCH_WARMUP PyTorch's --iters / --warmup (defaults: mini 5, beam 3;
# small 3, beam 2; one warm-up); OURS_ENV="VAR=VALUE ..." runs ours with those variables too
# (e.g. OMP_WAIT_POLICY=PASSIVE on a busy machine; by default ours runs in the plain
# environment); ADDROP_BENCH_BUILD_DIR (default build-bench); ADDROP_BENCH_NO_BUILD=1 skips
# installing, configuring and building and runs the bench_marian already in that directory.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
shape=${1:-all}
case "$shape" in mini|small|all) ;; *) echo "usage: $0 [mini|small|all]" >&2; exit 2 ;; esac
out=${OUT_DIR:-bench/results}
build=${ADDROP_BENCH_BUILD_DIR:-build-bench}
threads=${THREADS:-2}
retries=${RETRIES:-1}
disturbed_at=${DISTURBED:-0.1}
read -r -a precisions <<< "${PRECISIONS:-f32 bf16}"
read -r -a cases <<< "${CASES:-plain ga greedy beam4}"
for p in "${precisions[@]}"; do
  case "$p" in f32|bf16) ;; *) echo "compare_marian: PRECISIONS: '$p' is not f32 or bf16" >&2; exit 2 ;; esac
done
for c in "${cases[@]}"; do
  case "$c" in plain|ga|greedy|beam4) ;; *) echo "compare_marian: CASES: '$c' is not plain, ga, greedy or beam4" >&2; exit 2 ;; esac
done
raw="$out/marian"
mkdir -p "$raw"
rm -f "$raw"/*.json "$raw"/*.rss "$raw"/*.runs  # results of an earlier invocation

if [ -z "${ADDROP_BENCH_NO_BUILD:-}" ]; then
  bash cmake/install_deps.sh --with-torch >/dev/null
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DADDROP_NATIVE=ON \
    -DADDROP_BUILD_TESTS=OFF -DADDROP_BUILD_EXAMPLES=OFF -DADDROP_BUILD_BENCH=ON -DADDROP_WITH_CUDA=OFF >/dev/null
  cmake --build "$build" --target bench_marian --parallel 2 >/dev/null
fi
[ -x "$build/bench/bench_marian" ] || { echo "compare_marian: no $build/bench/bench_marian" >&2; exit 1; }

export OMP_NUM_THREADS=$threads ADDROP_BENCH_THREADS=$threads
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
  [ "$limit" -gt 0 ] && echo "compare_marian: machine still busy after ${limit}s; running anyway" >&2
  return 0
}

# run SIDE SHAPE CASE PRECISION PREFIX: one case in its own process; PREFIX.json (ours:
# Google Benchmark's JSON; PyTorch: one JSON line) and PREFIX.rss (GNU time's maximum
# resident set, KiB). Fails if the program does.
run() {
  local side=$1 sh=$2 c=$3 prec=$4 prefix=$5 kind=MarianTrain
  case "$c" in greedy|beam4) kind=MarianDecode ;; esac
  wait_idle
  if [ "$side" = ours ]; then
    local filter="^$kind/$sh/$c/$prec/"
    # shellcheck disable=SC2086
    /usr/bin/time -f %M -o "$prefix.rss" env ${OURS_ENV:-} "$build/bench/bench_marian" \
      --benchmark_filter="$filter" --benchmark_format=json > "$prefix.json" || return 1
    grep -q '"name"' "$prefix.json" || { echo "compare_marian: no case matched $filter" >&2; return 1; }
  else
    local py_args=(--shape "$sh" --case "$c" --precision "$prec" --threads "$threads" --json)
    [ -n "${PYTORCH_ITERS:-}" ] && py_args+=(--iters "$PYTORCH_ITERS")
    [ -n "${PYTORCH_WARMUP:-}" ] && py_args+=(--warmup "$PYTORCH_WARMUP")
    /usr/bin/time -f %M -o "$prefix.rss" "${best[@]}" /usr/bin/python3 bench/pytorch_marian.py \
      "${py_args[@]}" > "$prefix.json" || return 1
  fi
}

# other_cores PREFIX: the run's other_cores from either side's output (0 where the run
# failed: it is not re-run)
other_cores() {
  /usr/bin/python3 - "$1.json" <<'PY'
import json, sys
try:
    r = json.load(open(sys.argv[1]))  # ours: Google Benchmark's JSON; PyTorch: its one line
    r = r["benchmarks"][0] if "benchmarks" in r else r
    print(r.get("other_cores", 0))
except (OSError, ValueError, KeyError, IndexError):
    print(0)
PY
}

shapes=(mini small)
[ "$shape" = all ] || shapes=("$shape")
runs=()  # "side shape case precision"
for sh in "${shapes[@]}"; do
  for c in "${cases[@]}"; do
    for side in ours pytorch; do
      for p in "${precisions[@]}"; do runs+=("$side $sh $c $p"); done
    done
  done
done

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
start=$(date +%s)
for item in "${runs[@]}"; do
  read -r side sh c p <<< "$item"
  run "$side" "$sh" "$c" "$p" "$raw/${sh}_${c}_${side}_$p" ||
    echo "compare_marian: FAILED: $side $sh $c $p (see above)" >&2
  echo "compare_marian: $side $sh $c $p done ($(( $(date +%s) - start )) s)" >&2
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
    echo "compare_marian: re-running disturbed case ($old other cores): $side $sh $c $p" >&2
    runs_so_far=$(( $(cat "$prefix.runs" 2>/dev/null || echo 1) + 1 ))
    echo "$runs_so_far" > "$prefix.runs"
    run "$side" "$sh" "$c" "$p" "$tmp/rerun" || { echo "compare_marian: re-run FAILED" >&2; continue; }
    new=$(other_cores "$tmp/rerun")
    if /usr/bin/python3 -c "import sys; sys.exit(0 if float('$new') < float('$old') else 1)"; then
      cp "$tmp/rerun.json" "$prefix.json"; cp "$tmp/rerun.rss" "$prefix.rss"
    fi
  done
  [ "$again" = 1 ] || break
done

/usr/bin/python3 - "$raw" "$out" "$threads" "$load_before" "$load_after" "${OURS_ENV:-}" "${runs[@]}" <<'PY'
import json, os, subprocess, sys
raw, out, threads, load_before, load_after, ours_env, *run_list = sys.argv[1:]
CASES = ["plain", "ga", "greedy", "beam4"]
PRECS = ["f32", "bf16"]
context, ours_all, pytorch_all, problems = None, [], [], []
res = {}  # (side, shape, case, precision) -> the run's record, with seconds, mib, runs

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
    r["side"], r["precision"] = side, p
    (ours_all if side == "ours" else pytorch_all).append(r)
    r["seconds"] = r["seconds_median"] if side == "ours" else r["seconds_per_step"]
    r["mib"] = r.get("peak_rss_mb", r["gnu_time_maxrss_mb"])
    res[side, sh, c, p] = r

json.dump({"context": context or {}, "benchmarks": ours_all}, open(f"{out}/marian_ours.json", "w"), indent=1)
open(f"{out}/marian_pytorch.jsonl", "w").write("".join(json.dumps(r) + "\n" for r in pytorch_all))

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
lines = [f"CPU: {cpu}; {threads} threads each; load average (1/5/15 min) before {load_before}, after {load_after}",
         f"bf16 matrix products: ours {engine_ours}; PyTorch {torch_v} autocast: {engine_pt}",
         f"ours run with {ours_env or 'the plain environment'}; PyTorch with OMP_WAIT_POLICY=PASSIVE "
         "MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=1073741824",
         "each cell: median of the timed runs (training: seconds per step, AdamW update included; decoding: seconds "
         "per generate() call of 32 sources, 32 new tokens, and sentences/s), peak resident set of the case's own "
         "process in MiB (peak_rss_mb; before the case began the process held "
         + (f"{span(start_ours)} MiB (ours), " if start_ours else "")
         + (f"{span(start_pt)} MiB (PyTorch: interpreter and torch)" if start_pt else "")
         + "); speedups are time ratios (> 1: the first named is faster); other cores = cores other processes "
         f"kept busy during the kept run (above {float(os.environ.get('DISTURBED', '0.1')):g} it was disturbed), "
         "order ours f32 / ours bf16 / PyTorch f32 / PyTorch bf16, likewise runs", ""]
if any(diffs.values()):
    lines.insert(3, "peak check, GNU time's maximum resident set of the process - its in-process peak_rss_mb: "
                 + "; ".join(f"{side} {min(d):+.1f} to {max(d):+.1f} MiB over {len(d)} runs"
                             for side, d in diffs.items() if d))
if not_reset:
    lines.insert(3, f"WARNING: {len(not_reset)} runs could not reset the peak mark (peak_rss_reset = 0)")

def fmt(r):
    if r is None:
        return "—"
    rate = f", {r['sentences_per_s']:.2f} sent/s" if "sentences_per_s" in r else ""
    return f"{r['seconds']:.3f} s{rate}, {r['mib']:.0f} MiB"
ratio = lambda slow, fast: "—" if slow is None or fast is None else f"{slow['seconds'] / fast['seconds']:.2f}"
cores = lambda rs: " / ".join("—" if r is None else f"{r['other_cores']:.2f}" for r in rs)
nruns = lambda rs: " / ".join("—" if r is None else str(r["runs"]) for r in rs)
lines += ["| shape | case | ours f32 | ours bf16 | PyTorch f32 | PyTorch bf16 "
          "| ours bf16 vs PyTorch f32 (PyTorch f32 / ours bf16; target ≥ 2) | ours bf16 vs PyTorch bf16 "
          "| ours f32 vs PyTorch f32 | ours bf16 vs ours f32 (bf16 speedup) | other cores | runs |",
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
shapes = [s for s in ("mini", "small") if any(k[1] == s for k in res)]
get = lambda side, sh, c, p: res.get((side, sh, c, p))
targets = []
for sh in shapes:
    for c in CASES:
        of, ob, pf, pb = (get(s, sh, c, p) for s in ("ours", "pytorch") for p in PRECS)
        if not any((of, ob, pf, pb)):
            continue
        lines.append(f"| {sh} | {c} | {fmt(of)} | {fmt(ob)} | {fmt(pf)} | {fmt(pb)} | {ratio(pf, ob)} | {ratio(pb, ob)} "
                     f"| {ratio(pf, of)} | {ratio(of, ob)} | {cores((of, ob, pf, pb))} | {nruns((of, ob, pf, pb))} |")
        if ob and pf:
            targets.append((sh, c, pf["seconds"] / ob["seconds"]))

lines += ["", "Phases (medians, seconds). Training: forward, loss, backward (plain) or the whole AD-DROP step "
          "before the optimizer (ga), optimizer update. Decoding: encode (encoder + cross-attention keys/values), "
          "decoder (the decoder-step calls), reorder (beam: cache reordering), search (the rest of the loop: logits "
          "processing, log-softmax, top-k, bookkeeping).", "",
          "| shape | case | precision | phases ours | phases PyTorch |", "| --- | --- | --- | --- | --- |"]
names = {"forward_s": "forward", "loss_s": "loss", "backward_s": "backward", "addrop_step_s": "addrop step",
         "addrop_s": "addrop step", "adamw_s": "optimizer", "optimizer_s": "optimizer", "encode_s": "encode",
         "decoder_s": "decoder", "reorder_s": "reorder", "search_s": "search"}
phase = lambda r: "—" if r is None else ", ".join(f"{names[k]} {r[k]:.3f}" for k in names if k in r)
for sh in shapes:
    for c in CASES:
        for p in PRECS:
            a, t = get("ours", sh, c, p), get("pytorch", sh, c, p)
            if a or t:
                lines.append(f"| {sh} | {c} | {p} | {phase(a)} | {phase(t)} |")

steps = {f"{r['side']} {r['precision']} {sh} {c}": r.get("decoder_steps") for (side, sh, c, p), r in res.items()
         if c in ("greedy", "beam4")}
bad = {k: v for k, v in steps.items() if v != 32}
if steps:
    lines += ["", "decoder steps per run: " + ("32 in every decoding run" if not bad else f"NOT 32: {bad}")]
if targets:
    met = [t for t in targets if t[2] >= 2]
    lines += ["", f"Issue's target, ours bf16 at least 2x faster than PyTorch f32: met in {len(met)} of {len(targets)} "
              "cases (" + ", ".join(f"{sh} {c} {x:.2f}x" for sh, c, x in targets) + ")"]
if problems:
    lines += ["", "Missing runs:"] + [f"- {x}" for x in problems]
text = "\n".join(lines)
open(f"{out}/marian_summary.md", "w").write(text + "\n")
print(text)
PY
