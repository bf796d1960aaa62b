#!/usr/bin/env python3
"""Golden fixture for the optimizer: AdamW (two variants) + linear warmup/decay + clipping.

Writes tests/golden/fixtures/optimizer.safetensors (all F64):
  init.<name>              initial parameter values
  grad.<k>.<name>          the raw gradient of step k (k = 0..K-1), before clipping
  <variant>.final.<name>   parameters after K steps
  <variant>.exp_avg.<name>, <variant>.exp_avg_sq.<name>   moments after K steps
  <variant>.lr             [K] learning rate used by step k
  <variant>.clip_norm      [K] total gradient norm returned by clip_grad_norm_ at step k
with variant "hf" (transformers 2.9's AdamW, written out below) and "torch"
(torch.optim.AdamW). Both variants: no decay for names containing "bias" or
"LayerNorm.weight"; the schedule is transformers' get_linear_schedule_with_warmup
through torch.optim.lr_scheduler.LambdaLR; clip_grad_norm_(max_norm) before each step.
Hyper-parameters are in __metadata__. Deterministic: same bytes on every run.

Run: /usr/bin/python3 tests/reference/make_optimizer_fixture.py [--out FILE]
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import save_file  # noqa: E402

K = 5
LR = 1e-2
BETAS = (0.9, 0.999)
WEIGHT_DECAY = 0.1
WARMUP = 2
TOTAL = 8
MAX_NORM = 1.0
EPS = {"hf": 1e-6, "torch": 1e-8}
# Gradient scales per step: steps 0, 2 and 4 are not clipped, 1 and 3 are.
GRAD_SCALE = [0.05, 3.0, 0.09, 8.0, 0.07]

SHAPES = {
    "encoder.dense.weight": (4, 3),
    "encoder.dense.bias": (4,),
    "encoder.LayerNorm.weight": (4,),
    "encoder.LayerNorm.bias": (4,),
    "classifier.weight": (2, 4),
}


def decays(name: str) -> bool:
    return "bias" not in name and "LayerNorm.weight" not in name


class HfAdamW(torch.optim.Optimizer):
    """transformers 2.9's AdamW (optimization.py), as docs/algorithm.md describes it."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0, correct_bias=True):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      correct_bias=correct_bias))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                beta1, beta2 = group["betas"]
                state["step"] += 1
                exp_avg.mul_(beta1).add_(grad, alpha=1.0 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
                denom = exp_avg_sq.sqrt().add_(group["eps"])
                step_size = group["lr"]
                if group["correct_bias"]:
                    bias_correction1 = 1.0 - beta1 ** state["step"]
                    bias_correction2 = 1.0 - beta2 ** state["step"]
                    step_size = step_size * math.sqrt(bias_correction2) / bias_correction1
                p.addcdiv_(exp_avg, denom, value=-step_size)
                if group["weight_decay"] > 0.0:
                    p.add_(p, alpha=-group["lr"] * group["weight_decay"])


def linear_schedule_with_warmup(optimizer, num_warmup_steps, num_training_steps):
    """transformers' get_linear_schedule_with_warmup."""

    def lr_lambda(current_step: int):
        if current_step < num_warmup_steps:
            return float(current_step) / float(max(1, num_warmup_steps))
        return max(0.0, float(num_training_steps - current_step) / float(max(1, num_training_steps - num_warmup_steps)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(here, "..", "golden", "fixtures", "optimizer.safetensors"))
    args = ap.parse_args()

    torch.manual_seed(1234)
    init = {n: torch.randn(s, dtype=torch.float64) * 0.5 for n, s in SHAPES.items()}
    grads = []
    for k in range(K):
        g = {n: torch.randn(s, dtype=torch.float64) for n, s in SHAPES.items()}
        total = math.sqrt(sum(float((t * t).sum()) for t in g.values()))
        grads.append({n: t * (GRAD_SCALE[k] / total * 10.0) for n, t in g.items()})

    out = {f"init.{n}": t.clone() for n, t in init.items()}
    for k in range(K):
        for n, t in grads[k].items():
            out[f"grad.{k}.{n}"] = t.clone()

    for variant in ("hf", "torch"):
        params = {n: torch.nn.Parameter(t.clone()) for n, t in init.items()}
        groups = [
            {"params": [p for n, p in params.items() if decays(n)], "weight_decay": WEIGHT_DECAY},
            {"params": [p for n, p in params.items() if not decays(n)], "weight_decay": 0.0},
        ]
        if variant == "hf":
            opt = HfAdamW(groups, lr=LR, betas=BETAS, eps=EPS[variant], correct_bias=True)
        else:
            opt = torch.optim.AdamW(groups, lr=LR, betas=BETAS, eps=EPS[variant])
        sched = linear_schedule_with_warmup(opt, WARMUP, TOTAL)
        lrs, norms = [], []
        for k in range(K):
            for n, p in params.items():
                p.grad = grads[k][n].clone()
            norm = torch.nn.utils.clip_grad_norm_(list(params.values()), MAX_NORM)
            norms.append(float(norm))
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        for n, p in params.items():
            out[f"{variant}.final.{n}"] = p.detach().clone()
            st = opt.state[p]
            out[f"{variant}.exp_avg.{n}"] = st["exp_avg"].clone()
            out[f"{variant}.exp_avg_sq.{n}"] = st["exp_avg_sq"].clone()
        out[f"{variant}.lr"] = torch.tensor(lrs, dtype=torch.float64)
        out[f"{variant}.clip_norm"] = torch.tensor(norms, dtype=torch.float64)

    meta = {
        "format": "pt", "generator": "tests/reference/make_optimizer_fixture.py", "torch": torch.__version__,
        "steps": str(K), "lr": repr(LR), "beta1": repr(BETAS[0]), "beta2": repr(BETAS[1]),
        "weight_decay": repr(WEIGHT_DECAY), "warmup": str(WARMUP), "total": str(TOTAL),
        "max_norm": repr(MAX_NORM), "eps.hf": repr(EPS["hf"]), "eps.torch": repr(EPS["torch"]),
        "parameters": ",".join(SHAPES),
    }
    save_file(out, args.out, meta)
    print(f"wrote {args.out}: {len(out)} tensors; clip norms hf {out['hf.clip_norm'].tolist()}, "
          f"lr {out['hf.lr'].tolist()}")


if __name__ == "__main__":
    main()
