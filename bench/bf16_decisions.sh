#!/usr/bin/env bash
# How many AD-DROP decisions bf16 changes on a real SST-2 batch (docs/precision.md): the
# first 32 SST-2 dev sentences of the committed sample, tokenized with addrop-tokenize, one
# AD-DROP step with addrop-inspect in float32 and in bf16 (same weights, same draws,
# dropout off) for GA and IGA at every layer, and the fraction of candidate and keep
# decisions that differ, per attribution (bench/bf16_decisions.py).
#
#   bash bench/bf16_decisions.sh CHECKPOINT_DIR [BUILD_DIR]
#
# CHECKPOINT_DIR: a BERT sequence classifier in Hugging Face layout, e.g. the best
# checkpoint of the README's demo (out/sst2-demo/baseline). Needs /usr/bin/python3 with
# torch (cmake/install_deps.sh --with-torch). Takes about a minute on 2 cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
model=${1:?usage: $0 CHECKPOINT_DIR [BUILD_DIR]}
build=${2:-build}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
data=examples/data/glue/SST-2/dev.tsv
sed -n 2,33p "$data" | cut -f1 > "$work/sentences.txt"
sed -n 2,33p "$data" | cut -f2 > "$work/labels.txt"
"$build/examples/addrop-tokenize" --model "$model" --max-length 64 < "$work/sentences.txt" > "$work/ids.txt"
/usr/bin/python3 bench/bf16_decisions.py batch "$work/ids.txt" "$work/labels.txt" "$work/batch.safetensors"
layers=$(/usr/bin/python3 -c "import json,sys; print(','.join(str(l) for l in range(json.load(open(sys.argv[1]))['num_hidden_layers'])))" "$model/config.json")
for attribution in ga iga; do
  for precision in f32 bf16; do
    "$build/examples/addrop-inspect" --model "$model" --batch "$work/batch.safetensors" \
      --output "$work/$attribution-$precision.safetensors" --attribution "$attribution" --layers "$layers" \
      --p 0.3 --q 0.3 --seed 42 --precision "$precision" > /dev/null 2>&1
  done
  /usr/bin/python3 bench/bf16_decisions.py compare "$attribution" "$work/batch.safetensors" "$work/$attribution-f32.safetensors" \
    "$work/$attribution-bf16.safetensors"
done
