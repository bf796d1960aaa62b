"""Helpers of bench/bf16_decisions.sh.

  batch IDS LABELS OUT      padded batch file for addrop-inspect from addrop-tokenize's ids
  compare NAME BATCH F32 BF16   fraction of candidate / keep decisions that differ over the
                               real (query, key) positions of every head and target layer
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "reference"))
from safetensors_io import load_file, save_file  # noqa: E402


def batch(ids_path, labels_path, out):
    rows = [[int(t) for t in line.split()] for line in open(ids_path)]
    labels = [int(line) for line in open(labels_path)]
    length = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), length, dtype=torch.int64)
    mask = torch.zeros(len(rows), length, dtype=torch.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    save_file({"input_ids": ids, "attention_mask": mask, "labels": torch.tensor(labels, dtype=torch.int64)}, out)


def compare(name, batch_path, f32_path, bf16_path):
    mask = load_file(batch_path)["attention_mask"].bool()  # [B, L]
    real = (mask[:, None, :, None] & mask[:, None, None, :])  # [B, 1, Lq, Lk]
    a = load_file(f32_path)
    b = load_file(bf16_path)
    total = {"candidates": [0, 0], "keep_mask": [0, 0]}
    for key in sorted(a):
        kind = key.split(".")[0]
        if kind not in total:
            continue
        where = real.expand_as(a[key])
        total[kind][0] += int((a[key] != b[key])[where].sum())
        total[kind][1] += int(where.sum())
    c, k = total["candidates"], total["keep_mask"]
    print(f"{name}: {100 * c[0] / c[1]:.3f} % of {c[1]} candidate decisions differ (bf16 vs f32), "
          f"{100 * k[0] / k[1]:.3f} % of keep decisions; loss f32 {float(a['loss']):.6f} bf16 {float(b['loss']):.6f}")


if __name__ == "__main__":
    if sys.argv[1] == "batch":
        batch(*sys.argv[2:5])
    else:
        compare(*sys.argv[2:6])
