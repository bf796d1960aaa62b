# shellcheck shell=bash disable=SC2034  # variables for the sourcing script
# What bench/compare_addrop.sh and bench/compare_marian.sh share: both run their benchmark
# cases one per process (ours and PyTorch, float32 and bf16), re-run disturbed ones, and
# summarize the raw outputs with Python (their helpers: bench/compare_common.py).
#
# Sourced by the scripts after `set -euo pipefail` and the cd to the repository root, with
#   name   the prefix of every message (compare_addrop, compare_marian)
#   shape  the script's argument
# set. Sourcing sets, from the environment both scripts document:
#   out           OUT_DIR (default bench/results)
#   build         ADDROP_BENCH_BUILD_DIR (default build-bench)
#   retries       RETRIES (default 1)
#   disturbed_at  DISTURBED (default 0.1)
#   precisions    the words of PRECISIONS (default "f32 bf16"; check_args checks them)
#   pytorch_env   the env command that runs PyTorch at its best: OMP_WAIT_POLICY=PASSIVE,
#                 a glibc malloc that neither trims nor maps large blocks, and OpenBLAS's
#                 AVX-512 kernels named where it would fall back to SSE3 (below)
#   tmp           a scratch folder, removed on exit
# The script then calls check_args (sets cases) and prepare (sets raw, the folder of its raw
# per-run outputs, and builds), defines
#   run SIDE SHAPE CASE PRECISION PREFIX   one case in its own process, writing PREFIX.json
#                                          (its record, other_cores in it) and PREFIX.rss
#                                          (GNU time's maximum resident set, KiB); fails if
#                                          the program does
# sets runs with make_runs, and calls run_all (unless SUMMARY_ONLY) and summarize.
: "${name:?compare_common.sh: set name before sourcing}"
out=${OUT_DIR:-bench/results}
build=${ADDROP_BENCH_BUILD_DIR:-build-bench}
retries=${RETRIES:-1}
disturbed_at=${DISTURBED:-0.1}
read -r -a precisions <<< "${PRECISIONS:-f32 bf16}"
# shellcheck source=bench/pytorch_env.sh
source bench/pytorch_env.sh  # pytorch_env
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# check_words WHAT "CHOICE ..." WORD...: exits 2 with a message unless every WORD is a CHOICE.
check_words() {
  local what=$1 choices=$2 w c list
  shift 2
  list=${choices// /, }
  list="${list%, *} or ${list##*, }"
  for w in "$@"; do
    for c in $choices; do [ "$w" = "$c" ] && continue 2; done
    echo "$name: $what: '$w' is not $list" >&2
    exit 2
  done
}

# check_args "SHAPE..." "CASE...": exits 2 with the usage unless shape is a SHAPE or all; sets
# cases to the words of CASES (default: the CASEs) and checks precisions and cases.
# shellcheck disable=SC2154  # shape: set by the script
check_args() {
  local s
  for s in $1 all; do [ "$shape" = "$s" ] && break; done
  [ "$shape" = "$s" ] || { echo "usage: $0 [${1// /|}|all]" >&2; exit 2; }
  read -r -a cases <<< "${CASES:-$2}"
  check_words PRECISIONS "f32 bf16" "${precisions[@]}"
  check_words CASES "$2" "${cases[@]}"
}

# prepare RAW TARGET [quiet]: sets raw to RAW and makes it; unless SUMMARY_ONLY is set,
# removes the raw outputs of an earlier invocation from it and builds TARGET (build_bench).
# Unsets ADDROP_BENCH_PRECISIONS: the filter picks the precision; every one must be registered.
prepare() {
  raw=$1
  mkdir -p "$raw"
  if [ -z "${SUMMARY_ONLY:-}" ]; then
    rm -f "$raw"/loadavg "$raw"/*.json "$raw"/*.rss "$raw"/*.runs "$raw"/*.load
    build_bench "$2" "${3:-}"
  fi
  unset ADDROP_BENCH_PRECISIONS
}

# build_bench TARGET [quiet]: unless ADDROP_BENCH_NO_BUILD is set, installs the dependencies
# (cmake/install_deps.sh --with-torch; quiet: its output discarded), configures $build
# (Release, -march=native, the benchmarks only, no CUDA) and builds TARGET; then checks that
# $build/bench/TARGET is there.
build_bench() {
  local target=$1 quiet=${2:-}
  if [ -z "${ADDROP_BENCH_NO_BUILD:-}" ]; then
    if [ -n "$quiet" ]; then
      bash cmake/install_deps.sh --with-torch >/dev/null
    else
      bash cmake/install_deps.sh --with-torch
    fi
    cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DADDROP_NATIVE=ON \
      -DADDROP_BUILD_TESTS=OFF -DADDROP_BUILD_EXAMPLES=OFF -DADDROP_BUILD_BENCH=ON -DADDROP_WITH_CUDA=OFF >/dev/null
    cmake --build "$build" --target "$target" --parallel 2 >/dev/null
  fi
  [ -x "$build/bench/$target" ] || { echo "$name: no $build/bench/$target" >&2; exit 1; }
}

# Waits (at most WAIT_IDLE seconds) until no more than 0.1 core was busy for 5 seconds.
wait_idle() {
  local limit=${WAIT_IDLE:-0} waited=0 a b
  while [ "$waited" -lt "$limit" ]; do
    a=$(awk 'NR==1{print $2+$3+$4+$7+$8+$9}' /proc/stat); sleep 5; waited=$((waited + 5))
    b=$(awk 'NR==1{print $2+$3+$4+$7+$8+$9}' /proc/stat)
    [ $((b - a)) -le $((5 * $(getconf CLK_TCK) / 10)) ] && return 0
  done
  [ "$limit" -gt 0 ] && echo "$name: machine still busy after ${limit}s; running anyway" >&2
  return 0
}

# run_ours PROGRAM FILTER PREFIX: runs the cases of $build/bench/PROGRAM that match FILTER
# (OURS_ENV's variables added to the environment) under GNU time: PREFIX.json (Google
# Benchmark's JSON) and PREFIX.rss. Fails if the program does or no case matched.
run_ours() {
  local program=$1 filter=$2 prefix=$3
  # shellcheck disable=SC2086
  /usr/bin/time -f %M -o "$prefix.rss" env ${OURS_ENV:-} "$build/bench/$program" \
    --benchmark_filter="$filter" --benchmark_format=json > "$prefix.json" || return 1
  grep -q '"name"' "$prefix.json" || { echo "$name: no case matched $filter" >&2; return 1; }
}

# pytorch_command PREFIX SCRIPT ARG...: sets the array pytorch_cmd to the command that runs
# bench/SCRIPT with the ARGs (and --iters PYTORCH_ITERS, --warmup PYTORCH_WARMUP where set)
# in pytorch_env under GNU time (PREFIX.rss).
pytorch_command() {
  local prefix=$1 script=$2
  shift 2
  local args=("$@")
  [ -n "${PYTORCH_ITERS:-}" ] && args+=(--iters "$PYTORCH_ITERS")
  [ -n "${PYTORCH_WARMUP:-}" ] && args+=(--warmup "$PYTORCH_WARMUP")
  pytorch_cmd=(/usr/bin/time -f %M -o "$prefix.rss" "${pytorch_env[@]}" /usr/bin/python3 "bench/$script" "${args[@]}")
}

# make_runs ARG "SHAPE..." [OURS_ONLY_CASE]: sets runs ("side shape case precision"): per
# shape (every SHAPE where ARG is all, else ARG) and case (cases), ours' runs of each
# precision, then PyTorch's; then, with OURS_ONLY_CASE, ours' run of that case per precision.
# shellcheck disable=SC2154  # cases: set by the script
make_runs() {
  local arg=$1 extra=${3:-} shapes sh c side p
  read -r -a shapes <<< "$2"
  [ "$arg" = all ] || shapes=("$arg")
  runs=()
  for sh in "${shapes[@]}"; do
    for c in "${cases[@]}"; do
      for side in ours pytorch; do
        for p in "${precisions[@]}"; do runs+=("$side $sh $c $p"); done
      done
    done
    if [ -n "$extra" ]; then
      for p in "${precisions[@]}"; do runs+=("ours $sh $extra $p"); done
    fi
  done
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

# run_all: runs every item of runs, after wait_idle, into $raw/<shape>_<case>_<side>_<precision>
# (.json, .rss, and what run adds) and records the load average (1/5/15 min) before and after
# in $raw/loadavg (two lines). Then re-runs the cases above DISTURBED other cores, up to
# RETRIES times, each time keeping the less disturbed run (runs counted in PREFIX.runs).
# shellcheck disable=SC2154  # runs: set by the script
run_all() {
  local item side sh c p prefix old new attempt again runs_so_far start load_before load_after
  load_before=$(cut -d' ' -f1-3 /proc/loadavg)
  start=$(date +%s)
  for item in "${runs[@]}"; do
    read -r side sh c p <<< "$item"
    wait_idle
    run "$side" "$sh" "$c" "$p" "$raw/${sh}_${c}_${side}_$p" ||
      echo "$name: FAILED: $side $sh $c $p (see above)" >&2
    echo "$name: $side $sh $c $p done ($(( $(date +%s) - start )) s)" >&2
  done
  load_after=$(cut -d' ' -f1-3 /proc/loadavg)
  printf '%s\n%s\n' "$load_before" "$load_after" > "$raw/loadavg"

  for ((attempt = 1; attempt <= retries; attempt++)); do
    again=0
    for item in "${runs[@]}"; do
      read -r side sh c p <<< "$item"
      prefix="$raw/${sh}_${c}_${side}_$p"
      old=$(other_cores "$prefix")
      /usr/bin/python3 -c "import sys; sys.exit(0 if float('$old') > float('$disturbed_at') else 1)" || continue
      again=1
      echo "$name: re-running disturbed case ($old other cores): $side $sh $c $p" >&2
      runs_so_far=$(( $(cat "$prefix.runs" 2>/dev/null || echo 1) + 1 ))
      echo "$runs_so_far" > "$prefix.runs"
      wait_idle
      run "$side" "$sh" "$c" "$p" "$tmp/rerun" || { echo "$name: re-run FAILED" >&2; continue; }
      new=$(other_cores "$tmp/rerun")
      if /usr/bin/python3 -c "import sys; sys.exit(0 if float('$new') < float('$old') else 1)"; then
        cp "$tmp/rerun.json" "$prefix.json"; cp "$tmp/rerun.rss" "$prefix.rss"
      fi
    done
    [ "$again" = 1 ] || break
  done
}

# summarize ARG <<'PY' ... PY: runs the Python summary on stdin with the arguments $raw $out
# ARG "$OURS_ENV" "${runs[@]}" (compare_common.start reads them), where it can import
# compare_common (bench/ on its path; no bytecode written) and compare_common.py finds
# pytorch_env's variables (COMPARE_PYTORCH_ENV).
# shellcheck disable=SC2154  # runs: set by the script
summarize() {
  PYTHONPATH="$PWD/bench${PYTHONPATH:+:$PYTHONPATH}" PYTHONDONTWRITEBYTECODE=1 \
    COMPARE_PYTORCH_ENV="${pytorch_env[*]:1}" /usr/bin/python3 - "$raw" "$out" "$1" "${OURS_ENV:-}" "${runs[@]}"
}
