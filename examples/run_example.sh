#!/usr/bin/env bash
# The main-job command of the README: installs the dependencies (Debian 12, as root),
# builds the GLUE trainer addrop-glue in build/ and runs the SST-2 demo on the data
# committed in examples/data (no download, no variable): a BERT-mini from random
# initialisation with the bert-base-uncased vocabulary, fine-tuned on 10,000 real SST-2
# sentences for 2 epochs, once plain and once with AD-DROP (gradient attribution,
# cross-tuning), scored on the whole SST-2 dev set. The training settings are
# addrop-glue's defaults for --init (lr 3e-4, 10 % warmup, linear decay, length
# buckets). Results, checkpoints, table.md and curves.svg land in out/sst2-demo/.
#
#   bash examples/run_example.sh               # the SST-2 demo
#   bash examples/run_example.sh --synthetic   # the synthetic demo addrop-train-tiny
#   bash examples/run_example.sh ARGS...       # addrop-glue ARGS (try --help), e.g. the
#                                              # full SST-2: --data "$ADDROP_DATA_DIR/glue"
#
# Environment: ADDROP_BUILD_DIR (default build), ADDROP_JOBS (default 2),
#              ADDROP_CMAKE_ARGS (extra configure arguments, word-split).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
build_dir=${ADDROP_BUILD_DIR:-build}
jobs=${ADDROP_JOBS:-2}

bash cmake/configure.sh
cmake --build "$build_dir" --parallel "$jobs" --target addrop-glue addrop-train-tiny

if [ "${1:-}" = "--synthetic" ]; then
  shift
  exec "$build_dir/examples/addrop-train-tiny" "$@"
fi
if [ $# -gt 0 ]; then
  exec "$build_dir/examples/addrop-glue" "$@"
fi

data=examples/data
start=$(date +%s)
"$build_dir/examples/addrop-glue" --task sst2 --init mini \
  --vocab "$data/tokenizers/bert-base-uncased/vocab.txt" --data "$data/glue" \
  --output out/sst2-demo --overwrite --runs none,ga --epochs 2
echo "run_example: SST-2 demo done in $(( $(date +%s) - start )) s; results in out/sst2-demo/ (table.md, curves.svg, baseline/ and ga/ with summary.json and the best checkpoint)"
