#!/usr/bin/env bash
# The Marian (translation) benchmark of both sides on this machine in one invocation:
# addrop's bench_marian (built with -march=native) and bench/pytorch_marian.py (Debian's
# torch 1.13 with OpenBLAS, run at its best here: OMP_WAIT_POLICY=PASSIVE and a glibc malloc
# that neither trims nor maps large blocks, as bench/compare_builds.sh runs it), the same
# thread count. Cases per shape (mini, then small = OPUS-MT en-ro's): the training step
# plain and with AD-DROP GA on every encoder layer (p = q = 0.2), each with its AdamW
# update; greedy and 4-beam decoding of 32 sources, 32 new tokens (no forced eos, so exactly
# 32 decoder steps on both sides). Every case runs in its own process, ours then PyTorch's,
# so both see the same machine state and each gets its own peak memory (GNU time's maximum
# resident set). Writes the raw outputs and marian_summary.md to $OUT_DIR (default
# bench/results) and prints the tables.
#
#   bash bench/compare_marian.sh [mini|small|all]      (default all)
#
# Time on 2 idle cores: about 3.7 minutes (mini 1, small 2.7), plus re-runs of disturbed cases;
# on a busy machine about 7 minutes (ours slows down most: see docs/benchmarks.md).
# Environment: THREADS (default 2); RETRIES (default 1): a case during which other processes
# kept more than DISTURBED (default 0.1) cores busy runs again, alone, that many times at
# most, and the less disturbed run is kept; WAIT_IDLE=SECONDS waits up to that long for an
# idle machine before each run (default 0); ADDROP_BENCH_MARIAN_ITERS sets ours' timed
# iterations and PYTORCH_ITERS PyTorch's (defaults: mini 5, beam 3; small 3, beam 2);
# OURS_ENV="VAR=VALUE ..." runs ours with those variables too (e.g. OMP_WAIT_POLICY=PASSIVE
# on a busy machine; by default ours runs in the plain environment).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
shape=${1:-all}
case "$shape" in mini|small|all) ;; *) echo "usage: $0 [mini|small|all]" >&2; exit 2 ;; esac
out=${OUT_DIR:-bench/results}
build=${ADDROP_BENCH_BUILD_DIR:-build-bench}
threads=${THREADS:-2}
retries=${RETRIES:-1}
disturbed_at=${DISTURBED:-0.1}
raw="$out/marian"
mkdir -p "$raw"

bash cmake/install_deps.sh --with-torch >/dev/null
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DADDROP_NATIVE=ON \
  -DADDROP_BUILD_TESTS=OFF -DADDROP_BUILD_EXAMPLES=OFF -DADDROP_BUILD_BENCH=ON -DADDROP_WITH_CUDA=OFF >/dev/null
cmake --build "$build" --target bench_marian --parallel 2 >/dev/null

export OMP_NUM_THREADS=$threads ADDROP_BENCH_THREADS=$threads
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

# run SIDE SHAPE CASE PREFIX: one case in its own process; PREFIX.json (ours: Google
# Benchmark's JSON; PyTorch: one JSON line) and PREFIX.rss (peak resident set, KiB).
run() {
  local side=$1 sh=$2 c=$3 prefix=$4 kind=MarianTrain
  case "$c" in greedy|beam4) kind=MarianDecode ;; esac
  wait_idle
  if [ "$side" = ours ]; then
    # shellcheck disable=SC2086
    /usr/bin/time -f %M -o "$prefix.rss" env ${OURS_ENV:-} "$build/bench/bench_marian" \
      --benchmark_filter="^$kind/$sh/$c/" --benchmark_format=json > "$prefix.json"
  else
    local py_args=(--shape "$sh" --case "$c" --threads "$threads" --json)
    [ -n "${PYTORCH_ITERS:-}" ] && py_args+=(--iters "$PYTORCH_ITERS")
    /usr/bin/time -f %M -o "$prefix.rss" "${best[@]}" /usr/bin/python3 bench/pytorch_marian.py "${py_args[@]}" > "$prefix.json"
  fi
}

# other_cores PREFIX: the case's other_cores from either side's output
other_cores() {
  /usr/bin/python3 - "$1.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
r = r["benchmarks"][0] if "benchmarks" in r else r
print(r.get("other_cores", 0))
PY
}

shapes=(mini small)
[ "$shape" = all ] || shapes=("$shape")
cases=(plain ga greedy beam4)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
start=$(date +%s)
for sh in "${shapes[@]}"; do
  for c in "${cases[@]}"; do
    for side in ours pytorch; do
      run "$side" "$sh" "$c" "$raw/${sh}_${c}_$side"
      echo "compare_marian: $sh $c $side done ($(( $(date +%s) - start )) s)" >&2
    done
  done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# Re-runs of disturbed cases; the less disturbed run is kept (runs counted in PREFIX.runs).
for ((attempt = 1; attempt <= retries; attempt++)); do
  again=0
  for sh in "${shapes[@]}"; do
    for c in "${cases[@]}"; do
      for side in ours pytorch; do
        prefix="$raw/${sh}_${c}_$side"
        old=$(other_cores "$prefix")
        /usr/bin/python3 -c "import sys; sys.exit(0 if float('$old') > float('$disturbed_at') else 1)" || continue
        again=1
        echo "compare_marian: re-running disturbed case ($old other cores): $sh $c $side" >&2
        run "$side" "$sh" "$c" "$tmp/rerun"
        new=$(other_cores "$tmp/rerun")
        runs=$(( $(cat "$prefix.runs" 2>/dev/null || echo 1) + 1 ))
        if /usr/bin/python3 -c "import sys; sys.exit(0 if float('$new') < float('$old') else 1)"; then
          cp "$tmp/rerun.json" "$prefix.json"; cp "$tmp/rerun.rss" "$prefix.rss"
        fi
        echo "$runs" > "$prefix.runs"
      done
    done
  done
  [ "$again" = 1 ] || break
done

/usr/bin/python3 - "$raw" "$out" "$threads" "$load_before" "$load_after" "${OURS_ENV:-}" "${shapes[@]}" <<'PY'
import json, os, subprocess, sys
raw, out, threads, load_before, load_after, ours_env, *shapes = sys.argv[1:]
CASES = ["plain", "ga", "greedy", "beam4"]
def load(sh, c, side):
    p = f"{raw}/{sh}_{c}_{side}"
    text = open(p + ".json").read()
    r = json.loads(text)["benchmarks"][0] if side == "ours" else json.loads(text)
    if side == "ours":  # Google Benchmark: counters beside the name
        r = dict(r, seconds_per_step=r["seconds_median"])
    r["mib"] = int(open(p + ".rss").read().split()[-1]) / 1024
    r["runs"] = int(open(p + ".runs").read()) if os.path.exists(p + ".runs") else 1
    return r
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                     capture_output=True, text=True).stdout.strip()
lines = [f"CPU: {cpu}; {threads} threads each; load average (1/5/15 min) before {load_before}, after {load_after}; "
         f"ours run with {ours_env or 'the plain environment'}, PyTorch with OMP_WAIT_POLICY=PASSIVE and the malloc settings",
         "time = median of the timed runs; training: seconds per step (AdamW update included); decoding: seconds per "
         "generate() call of 32 sources, 32 new tokens, and sentences/s; peak = the process's maximum resident set; "
         "other cores = cores other processes kept busy during the kept run (above ~0.1 it was disturbed)", "",
         "| shape | case | ours | PyTorch | speedup (PyTorch time / ours) | peak MiB ours / PyTorch "
         "| other cores ours / PyTorch | runs ours / PyTorch |",
         "| --- | --- | --- | --- | --- | --- | --- | --- |"]
rows = {}
for sh in shapes:
    for c in CASES:
        try:
            a, p = load(sh, c, "ours"), load(sh, c, "pytorch")
        except (OSError, ValueError, KeyError, IndexError) as e:
            lines.append(f"| {sh} | {c} | (missing: {e}) | | | | | |")
            continue
        rows[sh, c] = a, p
        if "sentences_per_s" in p:
            fa = f"{a['seconds_per_step']:.3f} s, {a['sentences_per_s']:.2f} sent/s"
            fp = f"{p['seconds_per_step']:.3f} s, {p['sentences_per_s']:.2f} sent/s"
        else:
            fa, fp = f"{a['seconds_per_step']:.3f} s", f"{p['seconds_per_step']:.3f} s"
        lines.append(f"| {sh} | {c} | {fa} | {fp} | {p['seconds_per_step'] / a['seconds_per_step']:.2f} "
                     f"| {a['mib']:.0f} / {p['mib']:.0f} | {a['other_cores']:.2f} / {p['other_cores']:.2f} "
                     f"| {a['runs']} / {p['runs']} |")
lines += ["", "Phases (medians, seconds; ours / PyTorch). Training: forward, loss, backward (plain) or the whole "
          "AD-DROP step before the optimizer (ga), optimizer update. Decoding: encode (encoder + cross-attention "
          "keys/values), decoder (the decoder-step calls), reorder (beam: cache reordering), search (the rest of "
          "the loop: logits processing, log-softmax, top-k, bookkeeping).", "",
          "| shape | case | phases ours | phases PyTorch |", "| --- | --- | --- | --- |"]
names = {"forward_s": "forward", "loss_s": "loss", "backward_s": "backward", "addrop_step_s": "addrop step",
         "addrop_s": "addrop step", "adamw_s": "optimizer", "optimizer_s": "optimizer", "encode_s": "encode",
         "decoder_s": "decoder", "reorder_s": "reorder", "search_s": "search"}
for (sh, c), (a, p) in rows.items():
    fa = ", ".join(f"{names[k]} {a[k]:.3f}" for k in names if k in a)
    fp = ", ".join(f"{names[k]} {p[k]:.3f}" for k in names if k in p)
    lines.append(f"| {sh} | {c} | {fa} | {fp} |")
steps = {(sh, c, side): r.get("decoder_steps") for (sh, c), rs in rows.items() for side, r in zip(("ours", "pytorch"), rs)
         if c in ("greedy", "beam4")}
bad = {k: v for k, v in steps.items() if v != 32}
lines += ["", "decoder steps per run: " + ("32 on both sides in every decoding case" if not bad else f"NOT 32: {bad}")]
text = "\n".join(lines)
open(f"{out}/marian_summary.md", "w").write(text + "\n")
print(text)
PY
