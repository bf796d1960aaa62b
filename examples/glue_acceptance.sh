#!/usr/bin/env bash
# The GLUE experiments reported in docs/glue.md, from random initialisation (no
# checkpoint can be downloaded here), on the real GLUE files in $ADDROP_DATA_DIR:
#
#   sst2   SST-2, preset mini, bert-base-uncased vocabulary: baseline and AD-DROP GA on
#          one plot (out/sst2-mini/curves.svg), dev accuracy and wall time of each run.
#   small  RTE, MRPC, CoLA, STS-B, preset tiny: baseline vs AD-DROP GA vs random dropping
#          (RD), 3 seeds each; per task a table of the dev metric and of the dev-train
#          loss gap (out/<task>-tiny/table.md) and a plot of every run.
#   grid   a 3 x 3 p/q grid of AD-DROP GA on RTE (out/rte-grid/table.md names the best).
#
#   ADDROP_DATA_DIR=/path/to/data bash examples/glue_acceptance.sh [sst2|small|grid|all]
#
# Wall time on 2 cores (AMD EPYC): sst2 about 25 minutes, small about 30, grid about 10.
# The runs use a -march=native build (build-native/; ADDROP_NATIVE=ON, about 2.3x faster
# than the portable build on this AVX-512 machine).
# Environment: ADDROP_BUILD_DIR (default build-native), OUT (default out), JOBS: how many
# runs go side by side in "small" (default 2, each with 2/JOBS threads).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
what=${1:-all}
build=${ADDROP_BUILD_DIR:-build-native}
out=${OUT:-out}
jobs=${JOBS:-2}
data=${ADDROP_DATA_DIR:?set ADDROP_DATA_DIR to the folder holding glue/ and tokenizers/ (see README)}
glue=$build/examples/addrop-glue
vocab=$data/tokenizers/bert-base-uncased/vocab.txt
if [ ! -x "$glue" ]; then
  ADDROP_BUILD_DIR=$build ADDROP_CMAKE_ARGS="-DADDROP_NATIVE=ON ${ADDROP_CMAKE_ARGS:-}" bash cmake/configure.sh
  cmake --build "$build" --target addrop-glue --parallel 2
fi
mkdir -p "$out"

run_sst2() {
  "$glue" --task sst2 --init mini --vocab "$vocab" --data "$data/glue" --output "$out/sst2-mini" \
    --runs none,ga --epochs 3 --batch-size 32 --lr 3e-4 --lr-schedule linear --warmup 0.06 --bucket \
    --max-length 64 --threads 2 --p 0.3 --q 0.3
}

run_small() {
  local threads=$((2 / jobs)); [ "$threads" -ge 1 ] || threads=1
  local pids=() task
  for task in rte mrpc cola stsb; do
    "$glue" --task "$task" --init tiny --vocab "$vocab" --data "$data/glue" --output "$out/$task-tiny" \
      --runs none,ga,rd --seeds 1,2,3 --epochs 4 --batch-size 32 --lr 5e-4 --bucket --max-length 128 \
      --threads "$threads" --p 0.3 --q 0.3 --no-progress > "$out/$task-tiny.log" 2>&1 &
    pids+=($!)
    if [ ${#pids[@]} -ge "$jobs" ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
  done
  wait
  for task in rte mrpc cola stsb; do echo "== $task"; cat "$out/$task-tiny/table.md"; done
}

run_grid() {
  "$glue" --task rte --init tiny --vocab "$vocab" --data "$data/glue" --output "$out/rte-grid" \
    --grid p=0.1:0.5:0.2,q=0.1:0.5:0.2 --attribution ga --epochs 4 --batch-size 32 --lr 5e-4 --bucket \
    --max-length 128 --threads 1 --no-progress
}

case "$what" in
  sst2) run_sst2 ;;
  small) run_small ;;
  grid) run_grid ;;
  all) run_sst2; run_small; run_grid ;;
  *) echo "usage: $0 [sst2|small|grid|all]" >&2; exit 2 ;;
esac
