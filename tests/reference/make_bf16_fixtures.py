#!/usr/bin/python3
"""Generate the bf16 mixed-precision golden references in tests/golden/bf16/.

    /usr/bin/python3 tests/reference/make_bf16_fixtures.py [--out DIR] [--check]

For the float64 golden cases `bert_seqcls` and `bert_token` of tests/golden/fixtures/
(model, batch, AD-DROP masks and alpha are read from there, not duplicated), one file
bf16/<case>.safetensors holds three references of the same forward + loss + backward:

  exact.*     float64 computation in which every matrix product (linear layers, Q K^T,
              A V, pooler, classifier; forward and backward) reads its two inputs rounded
              to bfloat16 (round to nearest even, via float32 like addrop's float
              operands) and everything else is exact, starting from the float32 master
              values of the weights, masks and alpha: precisely the semantics of
              addrop's Precision::Bf16Mixed (include/addrop/backend/cpu_bf16.hpp),
              including where alpha enters: context = alpha * (bf16(A) bf16(V)),
              dA = alpha * bf16(dctx) bf16(V)^T, dV = alpha * bf16(A)^T bf16(dctx).
              F64.
  autocast.*  torch.autocast("cpu", dtype=torch.bfloat16) with float32 master weights:
              torch's own bf16 mixed precision (products return bf16 tensors, so
              activations, biases of linear layers, GELU/tanh of a bf16 product and the
              backward's gradients between products are rounded to bf16 too). F32.
  f32.*       plain float32, no autocast, for scale. F32.

Each prefix has `logits`, `loss` (shape []), `attention_probs.layer{l}`,
`attention_probs_grad.layer{l}` (dLoss/dA_l, A_l before alpha) and `grad.<parameter>`
for every parameter. Deterministic: one torch thread, no randomness, so regenerating
gives the same bytes.

--check additionally verifies that the exact reference's forward, with rounding turned
off, reproduces the float64 golden fixture (expected.safetensors) to 1e-12, that the
f32 run matches it to float32 accuracy, and prints the differences between the
references (the numbers quoted in tests/golden/test_golden_bf16.cpp).
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import hf_models as hm  # noqa: E402
import make_fixtures as mf  # noqa: E402
import safetensors_io as st  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(REPO, "tests", "golden", "fixtures")
DEFAULT_OUT = os.path.join(REPO, "tests", "golden", "bf16")
CASES = ["bert_seqcls", "bert_token"]


# --------------------------------------------------------------------------
# the exact reference: float64 with bf16-rounded product inputs
# --------------------------------------------------------------------------

ROUND = True  # False: plain float64 (the --check of the re-implemented forward)


def r(x: torch.Tensor) -> torch.Tensor:
    """x as a bf16 product input sees it: float32 -> bf16 (nearest even) -> exact."""
    if not ROUND:
        return x
    return x.to(torch.float32).to(torch.bfloat16).to(torch.float64)


class Bf16MatMul(torch.autograd.Function):
    """alpha * bf16(a) @ bf16(b) in float64 (exact products, float64 sums); the backward
    rounds its incoming gradient and the saved inputs the same way, as addrop's backward
    gemms do: da = alpha bf16(g) bf16(b)^T, db = alpha bf16(a)^T bf16(g)."""

    @staticmethod
    def forward(ctx, a, b, alpha):
        ctx.save_for_backward(a, b)
        ctx.alpha = alpha
        return alpha * torch.matmul(r(a), r(b))

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        ga = ctx.alpha * torch.matmul(r(g), r(b).transpose(-1, -2))
        gb = ctx.alpha * torch.matmul(r(a).transpose(-1, -2), r(g))
        return ga, gb, None


def linear(x, w, b):
    """y = bf16(x) bf16(W)^T + b (bias added exactly, as addrop's add_bias)."""
    x2 = x.reshape(-1, x.shape[-1])
    y = Bf16MatMul.apply(x2, w.t(), 1.0)
    return y.reshape(*x.shape[:-1], w.shape[0]) + b


def exact_forward(cfg, P, ids, am, tt, labels, extra, alpha):
    """hf_models.forward for BERT (eval mode) with every product through Bf16MatMul."""
    assert cfg.model_type == "bert"
    p = cfg.prefix
    B, L = ids.shape
    pos_ids = torch.arange(L).unsqueeze(0).expand(B, L)
    emb = (F.embedding(ids, P[p + "embeddings.word_embeddings.weight"], padding_idx=cfg.pad_token_id)
           + F.embedding(tt, P[p + "embeddings.token_type_embeddings.weight"])
           + F.embedding(pos_ids, P[p + "embeddings.position_embeddings.weight"]))
    h = F.layer_norm(emb, (cfg.emb_size,), P[p + "embeddings.LayerNorm.weight"],
                     P[p + "embeddings.LayerNorm.bias"], cfg.layer_norm_eps)
    ext = hm.extended_attention_mask(am, torch.float64)
    nh, hd, Hd = cfg.num_attention_heads, cfg.head_dim, cfg.hidden_size
    scale = 1.0 / math.sqrt(hd)

    def split(x):
        return x.view(B, L, nh, hd).permute(0, 2, 1, 3)

    probs = []
    for i in range(cfg.num_hidden_layers):
        q = f"{p}encoder.layer.{i}."
        Q = split(linear(h, P[q + "attention.self.query.weight"], P[q + "attention.self.query.bias"]))
        K = split(linear(h, P[q + "attention.self.key.weight"], P[q + "attention.self.key.bias"]))
        V = split(linear(h, P[q + "attention.self.value.weight"], P[q + "attention.self.value.bias"]))
        scores = Bf16MatMul.apply(Q, K.transpose(-1, -2), 1.0) * scale + ext
        if i in extra:
            scores = scores + extra[i]
        A = F.softmax(scores, dim=-1)
        A.retain_grad()
        probs.append(A)
        ctx = Bf16MatMul.apply(A, V, float(alpha.get(i, 1.0)))
        ctx = ctx.permute(0, 2, 1, 3).contiguous().view(B, L, Hd)
        a = linear(ctx, P[q + "attention.output.dense.weight"], P[q + "attention.output.dense.bias"])
        a = F.layer_norm(a + h, (Hd,), P[q + "attention.output.LayerNorm.weight"],
                         P[q + "attention.output.LayerNorm.bias"], cfg.layer_norm_eps)
        inter = F.gelu(linear(a, P[q + "intermediate.dense.weight"], P[q + "intermediate.dense.bias"]))
        o = linear(inter, P[q + "output.dense.weight"], P[q + "output.dense.bias"])
        h = F.layer_norm(o + a, (Hd,), P[q + "output.LayerNorm.weight"],
                         P[q + "output.LayerNorm.bias"], cfg.layer_norm_eps)
    if cfg.task == "token":
        logits = linear(h, P["classifier.weight"], P["classifier.bias"])
    else:
        pooled = torch.tanh(linear(h[:, 0], P[p + "pooler.dense.weight"], P[p + "pooler.dense.bias"]))
        logits = linear(pooled, P["classifier.weight"], P["classifier.bias"])
    loss = hm.compute_loss(cfg, logits, labels)
    return {"logits": logits, "loss": loss, "attention_probs": probs}


# --------------------------------------------------------------------------
# running the three references
# --------------------------------------------------------------------------

def results(out, params, out_dtype):
    res = {"logits": out["logits"].detach().to(out_dtype),
           "loss": out["loss"].detach().to(out_dtype).reshape(())}
    for l, A in enumerate(out["attention_probs"]):
        res[f"attention_probs.layer{l}"] = A.detach().to(out_dtype)
        res[f"attention_probs_grad.layer{l}"] = A.grad.detach().to(out_dtype)
    for name, t in params.items():
        g = t.grad if t.grad is not None else torch.zeros_like(t)
        res[f"grad.{name}"] = g.detach().to(out_dtype)
    return res


def as_master(t):
    """The float32 master value (what addrop's float model holds), exactly in float64."""
    return t.detach().to(torch.float32).to(torch.float64) if ROUND else t.detach().clone()


def run_exact(cfg, params64, ids, am, tt, labels, extra, alpha):
    P = {k: as_master(v).requires_grad_(True) for k, v in params64.items()}
    ex = {l: as_master(m) for l, m in extra.items()}
    al = {l: float(as_master(torch.tensor(a, dtype=torch.float64))) for l, a in alpha.items()}
    out = exact_forward(cfg, P, ids, am, tt, labels, ex, al)
    out["loss"].backward()
    return results(out, P, torch.float64)


def run_f32(cfg, params64, ids, am, tt, labels, extra, alpha, autocast):
    P = {k: v.detach().to(torch.float32).requires_grad_(True) for k, v in params64.items()}
    ex = {l: m.to(torch.float32) for l, m in extra.items()}
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = hm.forward(cfg, P, ids, am, tt, labels, extra=ex, alpha=alpha,
                         retain_attention=True, training=False)
        if autocast:  # products really ran in bf16 (and the loss in float32)
            assert out["logits"].dtype == torch.bfloat16, out["logits"].dtype
            assert out["loss"].dtype == torch.float32
    out["loss"].backward()
    return results(out, P, torch.float32)


def generate(out_dir, check=False):
    torch.set_num_threads(1)
    os.makedirs(out_dir, exist_ok=True)
    written = {}
    for name in CASES:
        cfg, params, bt, exp, extra, alpha = mf.load_case(os.path.join(FIXTURES, name))
        args = (cfg, params, bt["input_ids"], bt["attention_mask"], bt["token_type_ids"], bt["labels"], extra, alpha)
        ref = {}
        for k, v in run_exact(*args).items():
            ref["exact." + k] = v
        for k, v in run_f32(*args, autocast=True).items():
            ref["autocast." + k] = v
        for k, v in run_f32(*args, autocast=False).items():
            ref["f32." + k] = v
        meta = {"format": "pt", "case": name, "generator": "tests/reference/make_bf16_fixtures.py",
                "fixture": f"tests/golden/fixtures/{name}", "torch": torch.__version__}
        path = os.path.join(out_dir, f"{name}.safetensors")
        st.save_file(ref, path, meta)
        written[name] = path
        print(f"{name}: loss exact {ref['exact.loss'].item():.9g} autocast {ref['autocast.loss'].item():.9g} "
              f"f32 {ref['f32.loss'].item():.9g} -> {path}")
        if check:
            check_case(name, args, exp, ref)
    write_readme(out_dir)
    return written


# --------------------------------------------------------------------------
# checks and the measured differences
# --------------------------------------------------------------------------

def _diff(a, b, scale=None):
    a, b = a.double(), b.double()
    err = (a - b).abs().max().item()
    scale = b.abs().max().item() if scale is None else scale.abs().max().item()
    return err, err / scale if scale > 0 else err


KEY_BIAS = "attention.self.key.bias"


def _scale(store, k):
    """The key bias's gradient is mathematically zero (softmax ignores a per-row
    constant): every value is round-off, measured against the key weight's gradient."""
    return store[k[:-len("bias")] + "weight"] if k.endswith(KEY_BIAS) else None


def check_case(name, args, exp, ref):
    global ROUND
    ROUND = False
    try:
        plain = run_exact(*args)
    finally:
        ROUND = True
    for k, v in plain.items():
        want = exp[k]
        err, rel = _diff(v, want, _scale(exp, k))
        if not rel <= 1e-12:
            raise AssertionError(f"{name}: unrounded exact forward differs from the float64 fixture in {k}: {rel}")
        err, rel = _diff(ref["f32." + k], want, _scale(exp, k))
        if not rel <= 1e-4:
            raise AssertionError(f"{name}: f32 run differs from the float64 fixture in {k}: {rel}")
    print(f"check {name}: exact forward without rounding == float64 fixture (1e-12), f32 == fixture (1e-4)")

    def report(a, b, label):
        worst = {}
        for k in sorted(k[len("exact."):] for k in ref if k.startswith("exact.")):
            group = "grad" if k.startswith("grad.") else k.split(".")[0]
            sc = _scale(ref, b + k)
            err, rel = _diff(ref[a + k], ref[b + k], sc)
            if sc is not None:
                group = "grad key.bias (/|dWk|)"
            if group not in worst or rel > worst[group][1]:
                worst[group] = (err, rel, k)
        print(f"  {label}:")
        for g, (err, rel, k) in sorted(worst.items()):
            print(f"    {g:22s} max abs {err:.3g}  norm-rel {rel:.3g}  ({k})")

    report("exact.", "f32.", "exact (bf16 inputs) vs f32")
    report("autocast.", "exact.", "autocast vs exact")
    report("autocast.", "f32.", "autocast vs f32")


def write_readme(out_dir):
    text = """# bf16 mixed-precision golden references (generated — do not edit by hand)

Made by `tests/reference/make_bf16_fixtures.py` (run `/usr/bin/python3
tests/reference/make_bf16_fixtures.py`, add `--check` to verify the re-implemented
forward against the float64 fixture and print the differences between references),
torch 1.13.0a0, one thread, eval mode: regenerating gives the same bytes. Read by
`tests/golden/test_golden_bf16.cpp`.

One file per case, `<case>.safetensors` (about 150 kB), for the float64 golden cases
`bert_seqcls` and `bert_token` of `../fixtures/` (config, weights, batch, AD-DROP
masks and alpha are read from there, not copied). Three references of the same
forward, loss and backward:

- `exact.*` (F64): float64 where every matrix product (the query, key, value,
  attention output, intermediate and output dense layers, Q K^T, A V, pooler,
  classifier; forward and both backward products) reads its two inputs rounded to
  bfloat16 (float32 -> bf16, round to nearest even) and everything else (sums, bias,
  softmax, layer norm, GELU, tanh, loss) is exact, starting from the float32 values
  of the weights, masks and alpha (what a float model holds). This is addrop's
  `Precision::Bf16Mixed`, including alpha as a factor outside the rounded product:
  context = alpha bf16(A) bf16(V).
- `autocast.*` (F32): `torch.autocast("cpu", dtype=torch.bfloat16)` with float32
  master weights. Its products return bf16 tensors, so their outputs (and linear
  biases, GELU/tanh of them, the logits, and the gradients between products in the
  backward) are rounded to bf16 as well; alpha multiplies A before the rounding.
- `f32.*` (F32): plain float32, for scale.

Each prefix holds `logits`, `loss` (shape []), `attention_probs.layer{l}` and
`attention_probs_grad.layer{l}` (dLoss/dA_l, before alpha scaling, as in
`../fixtures/README.md`) and `grad.<parameter name>` for every parameter.
"""
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    generate(args.out, check=args.check)


if __name__ == "__main__":
    main()
