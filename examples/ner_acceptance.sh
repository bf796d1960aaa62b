#!/usr/bin/env bash
# The CoNLL-2003 experiment reported in docs/ner.md, from random initialisation (no
# checkpoint can be downloaded here), on the real CoNLL-2003 files in $ADDROP_DATA_DIR:
# preset mini with the bert-base-cased vocabulary, batch 32, 3 epochs, baseline and
# AD-DROP GA (the reference's NER setting: every layer a target, p 0.8, q 0.1,
# cross-tuning), seeds 1, 2, 3. Writes out/conll-mini/: one folder per run (metrics.jsonl
# with valid and test F1 per epoch, summary.json, test_predictions.txt for conlleval),
# table.md (3-seed means), curves.svg, and epochs.md (valid / test F1 and wall time per
# epoch of every run).
#
#   ADDROP_DATA_DIR=/path/to/data bash examples/ner_acceptance.sh
#
# Wall time on 2 cores (AMD EPYC, -march=native build): about 3 minutes per baseline run,
# about 4 per AD-DROP run, 20 in all. Run it alone: the step times are measured.
# Environment: ADDROP_BUILD_DIR (default build-native), OUT (default out), SEEDS
# (default 1,2,3).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${ADDROP_BUILD_DIR:-build-native}
out=${OUT:-out}/conll-mini
seeds=${SEEDS:-1,2,3}
data=${ADDROP_DATA_DIR:?set ADDROP_DATA_DIR to the folder holding conll2003/ and tokenizers/ (see README)}
ner=$build/examples/addrop-ner
if [ ! -x "$ner" ]; then
  ADDROP_BUILD_DIR=$build ADDROP_CMAKE_ARGS="-DADDROP_NATIVE=ON ${ADDROP_CMAKE_ARGS:-}" bash cmake/configure.sh
  cmake --build "$build" --target addrop-ner --parallel 2
fi
mkdir -p "$(dirname "$out")"

"$ner" --init mini --vocab "$data/tokenizers/bert-base-cased/vocab.txt" --data "$data/conll2003" --output "$out" \
  --runs none,ga --seeds "$seeds" --epochs 3 --batch-size 32 --lr 1e-3 --lr-schedule linear --warmup 0.1 \
  --bucket --max-length 128 --label-all-tokens --test-each-epoch --threads 2 --no-progress

# Per-epoch valid / test entity F1 and cumulative wall time of every run.
python3 - "$out" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
rows = ["| run | epoch | AD-DROP | train loss | valid F1 | test F1 | seconds |", "|---|---|---|---|---|---|---|"]
for summary in sorted(out.glob("*/summary.json")):
    for h in json.loads(summary.read_text())["history"]:
        rows.append(f"| {summary.parent.name} | {h['epoch'] + 1} | {'yes' if h['addrop'] else 'no'} | "
                    f"{h['train_loss']:.4f} | {h['dev_f1']:.4f} | {h.get('test_f1', float('nan')):.4f} | {h['seconds']:.0f} |")
(out / "epochs.md").write_text("\n".join(rows) + "\n")
print("\n".join(rows))
PY
