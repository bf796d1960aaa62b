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
# previous invocation's are removed first; loadavg: the load average before and after the
# runs), merged ones to marian_ours.json (Google
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
# installing, configuring and building and runs the bench_marian already in that directory;
# SUMMARY_ONLY=1 builds and runs nothing and removes nothing: it rewrites the merged outputs
# and the summary from the raw outputs already in $OUT_DIR/marian/ (give THREADS,
# PRECISIONS, CASES, OURS_ENV and DISTURBED as for the run that wrote them; without a loadavg
# there the load average reads "not recorded").
#
# What this script shares with compare_addrop.sh is in bench/compare_common.sh (checking
# the arguments, building, the list of runs, running them, waiting for an idle machine,
# re-running disturbed cases) and bench/compare_common.py (the summary's reading of the raw
# outputs, the merged outputs, its header lines with the peak check, the main table's header,
# rows and common cells).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
name=compare_marian shape=${1:-all}
# shellcheck source=bench/compare_common.sh
source bench/compare_common.sh  # out, build, retries, precisions, ...; check_args, run_all, summarize
threads=${THREADS:-2}
check_args "mini small" "plain ga greedy beam4"
prepare "$out/marian" bench_marian quiet
export OMP_NUM_THREADS=$threads ADDROP_BENCH_THREADS=$threads

# run SIDE SHAPE CASE PRECISION PREFIX: one case in its own process; PREFIX.json (ours:
# Google Benchmark's JSON; PyTorch: one JSON line) and PREFIX.rss (GNU time's maximum
# resident set, KiB). Fails if the program does.
run() {
  local side=$1 sh=$2 c=$3 prec=$4 prefix=$5 kind=MarianTrain
  case "$c" in greedy|beam4) kind=MarianDecode ;; esac
  if [ "$side" = ours ]; then
    run_ours bench_marian "^$kind/$sh/$c/$prec/" "$prefix"
  else
    pytorch_command "$prefix" pytorch_marian.py --shape "$sh" --case "$c" --precision "$prec" --threads "$threads" --json
    "${pytorch_cmd[@]}" > "$prefix.json" || return 1
  fi
}

make_runs "$shape" "mini small"

[ -n "${SUMMARY_ONLY:-}" ] || run_all

summarize "$threads" <<'PY'
from compare_common import PRECS, finish, header_lines, ratio, start, table_head, table_row, write_merged
raw, out, threads, ours_env, results = start(tag=True)
CASES = ["plain", "ga", "greedy", "beam4"]
for r in results.res.values():
    r["mib"] = r.get("peak_rss_mb", r["gnu_time_maxrss_mb"])
write_merged(results, f"{out}/marian_ours.json", f"{out}/marian_pytorch.jsonl")
lines = header_lines(results, raw, threads, ours_env,
                     "median of the timed runs (training: seconds per step, AdamW update included; decoding: seconds "
                     "per generate() call of 32 sources, 32 new tokens, and sentences/s)", "first")

def fmt(r):
    if r is None:
        return "—"
    rate = f", {r['sentences_per_s']:.2f} sent/s" if "sentences_per_s" in r else ""
    return f"{r['seconds']:.3f} s{rate}, {r['mib']:.0f} MiB"
lines += table_head(["ours bf16 vs PyTorch f32 (PyTorch f32 / ours bf16; target ≥ 2)", "ours bf16 vs PyTorch bf16",
                      "ours f32 vs PyTorch f32", "ours bf16 vs ours f32 (bf16 speedup)"])
shapes = results.shapes(("mini", "small"))
get = results.get
targets = []
for sh, c, four in results.rows(shapes, CASES):
    of, ob, pf, pb = four
    lines.append(table_row(sh, c, four, fmt, [ratio(pf, ob), ratio(pb, ob), ratio(pf, of), ratio(of, ob)]))
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

steps = {f"{r['side']} {r['precision']} {sh} {c}": r.get("decoder_steps") for (side, sh, c, p), r in results.res.items()
         if c in ("greedy", "beam4")}
bad = {k: v for k, v in steps.items() if v != 32}
if steps:
    lines += ["", "decoder steps per run: " + ("32 in every decoding run" if not bad else f"NOT 32: {bad}")]
if targets:
    met = [t for t in targets if t[2] >= 2]
    lines += ["", f"Issue's target, ours bf16 at least 2x faster than PyTorch f32: met in {len(met)} of {len(targets)} "
              "cases (" + ", ".join(f"{sh} {c} {x:.2f}x" for sh, c, x in targets) + ")"]
finish(lines, results, f"{out}/marian_summary.md")
PY
