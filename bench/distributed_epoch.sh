#!/usr/bin/env bash
# One GLUE epoch (SST-2 sample, --init mini, plain and GA) as 1 process x 2 threads and as
# mpirun -np 2 x 1 thread, on the build a user gets (build/, or $BUILD); prints wall
# seconds, the all-reduce share and the dev accuracy of each (docs/benchmarks.md,
# "Data parallel").
#   bash bench/distributed_epoch.sh [--max-train-examples N]
set -euo pipefail
build=${BUILD:-build}
glue=$build/examples/addrop-glue
data=examples/data
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
common=(--task sst2 --init mini --vocab "$data/tokenizers/bert-base-uncased/vocab.txt" --data "$data/glue"
        --epochs 1 --schedule always --overwrite "$@")
out=${OUT:-bench/results/distributed}
mkdir -p "$out"
for run in none ga; do
  "$glue" "${common[@]}" --runs "$run" --threads 2 --output "$out/$run-1x2" >/dev/null 2>"$out/$run-1x2.log"
  mpirun -np 2 --oversubscribe --bind-to none "$glue" "${common[@]}" --runs "$run" --threads 1 \
    --output "$out/$run-2x1" >/dev/null 2>"$out/$run-2x1.log"
done
python3 - "$out" <<'PY'
import json, sys, os
out = sys.argv[1]
print("| run | layout | seconds | all-reduce s (share) | dev accuracy |")
print("|---|---|---|---|---|")
for run in ["none", "ga"]:
    for layout in ["1x2", "2x1"]:
        d = os.path.join(out, f"{run}-{layout}")
        s = json.load(open(os.path.join(d, "summary.json")))
        sec = s["seconds"]; ar = s.get("allreduce_seconds", 0.0)
        acc = "%.4f" % s["best"]
        name = "1 process x 2 threads" if layout == "1x2" else "2 processes x 1 thread"
        print(f"| {run} | {name} | {sec:.1f} | {ar:.2f} ({100*ar/sec:.1f} %) | {acc} |")
PY
