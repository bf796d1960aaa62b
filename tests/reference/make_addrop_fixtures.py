#!/usr/bin/python3
"""Generate the AD-DROP step golden files in tests/golden/addrop/<layout>/<variant>.safetensors.

    /usr/bin/python3 tests/reference/make_addrop_fixtures.py [--out DIR] [--check]
        [--only LAYOUT ...]

One AD-DROP step (docs/algorithm.md, steps 2-6) computed with PyTorch
autograd on the plain-torch models of hf_models.py, float64, eval mode (no dropout
anywhere), reusing config.json + model.safetensors + the input_ids / attention_mask /
token_type_ids / labels of tests/golden/fixtures/<layout>/ (that folder's extra_mask /
alpha entries are NOT used). Every file holds exactly the tensors the C++
`addrop-inspect` tool writes; see tests/golden/addrop/README.md (written by this
script) for their meaning. Regenerating gives the same bytes (fixed seeds,
torch.set_num_threads(1), deterministic file writer).

--check additionally
  * regenerates everything into a temporary folder and compares the bytes;
  * reloads every file and checks: the tensor name set, dtypes and shapes; the masks
    against an independent re-implementation in the reference's own style (pads +100,
    torch.sort, k from a float32 torch product, >= / <); candidate counts per row
    (n_b - k for high and k for low when t is not tied; more when tied); keep rules
    (pads and non-candidates kept, q = 1 keeps no candidate) and keep rates near 1 - q
    (RD: 1 - p q); padded query rows have exactly-zero GA / IGA attributions (and in
    high mode all their non-pad keys are candidates, in low mode none); the masks do
    not depend on how the keep threshold 1 - q is rounded to float32; GA / IGA
    attributions against central differences of F w.r.t. A_l on a sample of entries;
    masked_logits / loss / grads reproduced by a fresh second forward, dropped keys
    have exactly-zero second-pass attention, and the loss's directional derivative
    along the stored gradient equals |g|^2.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import math
import os
import shutil
import sys
import tempfile
import zlib
from typing import Dict, List, Optional

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import hf_models as hm  # noqa: E402
import safetensors_io as st  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(REPO, "tests", "golden", "fixtures")
DEFAULT_OUT = os.path.join(REPO, "tests", "golden", "addrop")
GENERATOR = "tests/reference/make_addrop_fixtures.py"

NEG = -10000.0          # additive value of a dropped key (same as a pad key)
NEAR_TIE = 1e-4         # relative threshold gap below which a row counts as a near tie
DEFAULT_STEPS = 20      # m, written to the metadata of non-IGA files too
DEFAULT_IGA_TARGET = "fixed"


def V(attribution, layers, side, p, q, steps=DEFAULT_STEPS, iga_target=DEFAULT_IGA_TARGET):
    return dict(attribution=attribution, layers=list(layers), side=side, p=p, q=q,
                steps=steps, iga_target=iga_target)


VARIANTS = {
    "ga_l0_high_p0.3_q0.3": V("ga", [0], "high", 0.3, 0.3),
    "ga_l01_low_p0.4_q0.5": V("ga", [0, 1], "low", 0.4, 0.5),
    "ga_l1_high_p0.9_q1.0": V("ga", [1], "high", 0.9, 1.0),
    "iga_l0_high_p0.3_q0.3_m20_fixed": V("iga", [0], "high", 0.3, 0.3, 20, "fixed"),
    "iga_l01_high_p0.5_q0.5_m4_perstep": V("iga", [0, 1], "high", 0.5, 0.5, 4, "per-step"),
    "aa_l0_high_p0.3_q0.6": V("aa", [0], "high", 0.3, 0.6),
    "rd_l0_p0.3_q0.3": V("rd", [0], "high", 0.3, 0.3),
}

LAYOUTS = {
    "bert_seqcls": list(VARIANTS),
    "roberta_seqcls": list(VARIANTS),
    "bert_regression": ["ga_l0_high_p0.3_q0.3", "iga_l0_high_p0.3_q0.3_m20_fixed",
                        "aa_l0_high_p0.3_q0.6"],
}


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------

def fmt_float(x: float) -> str:
    if math.isinf(x):
        return "inf"
    return repr(float(x))


def f32_threshold(x: float) -> np.float32:
    """np.float32(x) with x computed in double (e.g. 1 - q), as docs/algorithm.md step 5."""
    return np.float32(x)


def k_index(p: float, n: int, side: str) -> int:
    """docs/algorithm.md step 4: the product in float32, then truncated."""
    f = (1.0 - p) if side == "high" else p
    return int(np.float32(np.float32(f) * np.float32(n)))


def uniform_seed(layout: str, variant: str) -> int:
    return zlib.crc32(f"addrop/{layout}/{variant}".encode("ascii"))


def load_layout(layout: str):
    d = os.path.join(FIXTURES, layout)
    with open(os.path.join(d, "config.json")) as f:
        cfg = hm.Config.from_hf_json(json.load(f))
    params = {k: v.clone().requires_grad_(True)
              for k, v in st.load_file(os.path.join(d, "model.safetensors")).items()}
    bt = st.load_file(os.path.join(d, "batch.safetensors"))
    batch = {k: bt[k] for k in ("input_ids", "attention_mask", "token_type_ids", "labels")}
    return cfg, params, batch


def is_regression(cfg) -> bool:
    return cfg.task == "seqcls" and cfg.num_labels == 1


def run(cfg, params, batch, labels=None, extra=None, alpha=None, probs_delta=None,
        retain=True):
    return hm.forward(cfg, params, batch["input_ids"], batch["attention_mask"],
                      batch["token_type_ids"], labels, extra=extra, alpha=alpha,
                      retain_attention=retain, training=False, probs_delta=probs_delta)


def target_F(cfg, out, batch, pseudo: Optional[torch.Tensor]):
    """F of step 2: sum_b z[b, c_b] (classification), -MSE(gold) (regression)."""
    if is_regression(cfg):
        return -hm.compute_loss(cfg, out["logits"], batch["labels"])
    z = out["logits"]
    return z.gather(1, pseudo.view(-1, 1)).sum()


def pseudo_labels(z: torch.Tensor):
    """argmax per row and its margin over the runner-up."""
    c = z.argmax(dim=-1)
    top2 = torch.topk(z, 2, dim=-1).values
    return c, (top2[:, 0] - top2[:, 1]).min().item()


# --------------------------------------------------------------------------
# attribution, candidates, keep
# --------------------------------------------------------------------------

def attributions(cfg, params, batch, spec, first) -> Dict[int, torch.Tensor]:
    """B_l for every target layer (float64, [B, H, L, L], raw values on every (i, j))."""
    layers = spec["layers"]
    kind = spec["attribution"]
    reg = is_regression(cfg)
    A = first["attention_probs"]
    out: Dict[int, torch.Tensor] = {}
    if kind == "aa":
        for l in layers:
            out[l] = (-A[l] if reg else A[l]).detach().clone()
    elif kind == "ga":
        F = target_F(cfg, first, batch, first["pseudo"])
        grads = torch.autograd.grad(F, [A[l] for l in layers], retain_graph=True)
        for l, g in zip(layers, grads):
            out[l] = g.detach().clone()
    elif kind == "iga":
        m = spec["steps"]
        for l in layers:
            acc = torch.zeros_like(A[l])
            for k in range(1, m + 1):
                o = run(cfg, params, batch, alpha={l: k / m})
                if reg:
                    c = None
                elif spec["iga_target"] == "fixed":
                    c = first["pseudo"]
                else:
                    c, marg = pseudo_labels(o["logits"].detach())
                    first["margins"].append(marg)
                F = target_F(cfg, o, batch, c)
                (g,) = torch.autograd.grad(F, [o["attention_probs"][l]])
                acc = acc + g
            out[l] = (A[l].detach() * (acc / m)).clone()
    elif kind == "rd":
        pass
    else:
        raise ValueError(kind)
    return out


def candidates_and_gaps(Bt: torch.Tensor, am: torch.Tensor, p: float, side: str):
    """Candidate mask (float64 0/1) and per-row relative threshold gaps.

    gap[b, h, i] = (t - max{B_j < t}) / max_j |B_j| over the non-pad keys j of the
    row: how far t is from the nearest value that sits on the other side of the
    decision (inf when no such value, when k >= n_b, or when the row is all zero)."""
    Bn, H, L, _ = Bt.shape
    Bnp = Bt.detach().numpy()
    cand = np.zeros((Bn, H, L, L), dtype=np.float64)
    gaps = np.full((Bn, H, L), np.inf)
    ks = []
    for b in range(Bn):
        keys = np.nonzero(am[b].numpy() == 1)[0]
        n = len(keys)
        k = k_index(p, n, side)
        ks.append(k)
        for h in range(H):
            for i in range(L):
                vals = Bnp[b, h, i, keys]
                if k >= n:
                    if side == "low":
                        cand[b, h, i, keys] = 1.0
                    continue
                t = np.sort(vals, kind="stable")[k]
                sel = vals >= t if side == "high" else vals < t
                cand[b, h, i, keys[sel]] = 1.0
                below = vals[vals < t]
                rowmax = np.abs(vals).max()
                if below.size and rowmax > 0:
                    gaps[b, h, i] = (t - below.max()) / rowmax
    return torch.from_numpy(cand), gaps, ks


def keep_from(cand: torch.Tensor, u: torch.Tensor, q: float) -> torch.Tensor:
    thr = torch.tensor(f32_threshold(1.0 - q), dtype=torch.float32)
    keep = (cand == 0) | (u < thr)
    return keep.to(torch.float64)


def keep_rd(am: torch.Tensor, u1: torch.Tensor, u2: torch.Tensor, p: float, q: float, H: int):
    t1 = torch.tensor(f32_threshold(1.0 - p), dtype=torch.float32)
    t2 = torch.tensor(f32_threshold(1.0 - q), dtype=torch.float32)
    Bn, L = am.shape
    pad = (am == 0)[:, None, None, :].expand(Bn, H, L, L)
    keep = pad | (u1 < t1) | (u2 < t2)
    return keep.to(torch.float64)


# --------------------------------------------------------------------------
# one step
# --------------------------------------------------------------------------

def addrop_step(layout: str, variant: str):
    spec = VARIANTS[variant]
    cfg, params, batch = load_layout(layout)
    reg = is_regression(cfg)
    Bn, L = batch["input_ids"].shape
    H = cfg.num_attention_heads
    am = batch["attention_mask"]
    layers = spec["layers"]
    p, q, side = spec["p"], spec["q"], spec["side"]

    # step 1-2: first forward (eval mode), pseudo labels
    first = run(cfg, params, batch)
    first["margins"] = []
    if reg:
        first["pseudo"] = None
    else:
        first["pseudo"], marg = pseudo_labels(first["logits"].detach())
        first["margins"].append(marg)

    # uniforms (inputs): one generator per file, layers ascending, RD: u1 then u2
    seed = uniform_seed(layout, variant)
    g = torch.Generator().manual_seed(seed)
    uni: Dict[int, torch.Tensor] = {}
    uni2: Dict[int, torch.Tensor] = {}
    for l in layers:
        uni[l] = torch.rand((Bn, H, L, L), generator=g, dtype=torch.float32)
        if spec["attribution"] == "rd":
            uni2[l] = torch.rand((Bn, H, L, L), generator=g, dtype=torch.float32)

    # step 3-5
    attr = attributions(cfg, params, batch, spec, first)
    cands: Dict[int, torch.Tensor] = {}
    keeps: Dict[int, torch.Tensor] = {}
    min_gap = math.inf
    near_ties = 0
    gaps_by_layer = {}
    ks = None
    for l in layers:
        if spec["attribution"] == "rd":
            keeps[l] = keep_rd(am, uni[l], uni2[l], p, q, H)
            continue
        cands[l], gaps, ks = candidates_and_gaps(attr[l], am, p, side)
        keeps[l] = keep_from(cands[l], uni[l], q)
        gaps_by_layer[l] = float(gaps.min())
        min_gap = min(min_gap, float(gaps.min()))
        near_ties += int((gaps < NEAR_TIE).sum())

    # step 6: second forward with the masks, gold loss, full backward
    extra = {l: torch.where(keeps[l] == 0, torch.tensor(NEG, dtype=torch.float64),
                            torch.tensor(0.0, dtype=torch.float64)) for l in layers}
    for t in params.values():
        t.grad = None
    second = run(cfg, params, batch, labels=batch["labels"], extra=extra)
    second["loss"].backward()

    T: Dict[str, torch.Tensor] = {"logits": first["logits"].detach().clone()}
    for l, A in enumerate(first["attention_probs"]):
        T[f"attention_probs.layer{l}"] = A.detach().clone()
    for l in layers:
        if spec["attribution"] != "rd":
            T[f"attribution.layer{l}"] = attr[l].contiguous()
            T[f"candidates.layer{l}"] = cands[l].contiguous()
        T[f"keep_mask.layer{l}"] = keeps[l].contiguous()
        T[f"uniforms.layer{l}"] = uni[l]
        if l in uni2:
            T[f"uniforms2.layer{l}"] = uni2[l]
    T["masked_logits"] = second["logits"].detach().clone()
    T["loss"] = second["loss"].detach().clone().reshape(())
    for name, t in params.items():
        T[f"grad.{name}"] = t.grad.detach().clone() if t.grad is not None else torch.zeros_like(t.detach())

    meta = {
        "format": "pt",
        "generator": GENERATOR,
        "layout": layout,
        "variant": variant,
        "fixture": f"tests/golden/fixtures/{layout}",
        "attribution": spec["attribution"],
        "p": fmt_float(p),
        "q": fmt_float(q),
        "layers": ",".join(str(l) for l in layers),
        "side": side,
        "steps": str(spec["steps"]),
        "iga_target": spec["iga_target"],
        "uniform_seed": str(seed),
        "keep_threshold": repr(float(f32_threshold(1.0 - q))),
        "min_threshold_gap": fmt_float(min_gap),
        "near_tie_rows": str(near_ties),
        "min_pseudo_label_margin": (fmt_float(min(first["margins"])) if first["margins"] else "n/a"),
    }
    info = dict(min_gap=min_gap, near_ties=near_ties, gaps_by_layer=gaps_by_layer, ks=ks,
                loss=T["loss"].item(), margin=meta["min_pseudo_label_margin"],
                max_abs_attr=max((attr[l].abs().max().item() for l in attr), default=0.0))
    return T, meta, info


def expected_names(cfg, spec) -> List[str]:
    names = ["logits", "masked_logits", "loss"]
    names += [f"attention_probs.layer{l}" for l in range(cfg.num_hidden_layers)]
    for l in spec["layers"]:
        names.append(f"keep_mask.layer{l}")
        names.append(f"uniforms.layer{l}")
        if spec["attribution"] == "rd":
            names.append(f"uniforms2.layer{l}")
        else:
            names += [f"attribution.layer{l}", f"candidates.layer{l}"]
    names += [f"grad.{n}" for n in hm.param_shapes(cfg)]
    return sorted(names)


def generate(out_dir, only=None, quiet=False):
    torch.set_num_threads(1)
    written = []
    infos = {}
    for layout, variants in LAYOUTS.items():
        if only and layout not in only:
            continue
        d = os.path.join(out_dir, layout)
        os.makedirs(d, exist_ok=True)
        for variant in variants:
            T, meta, info = addrop_step(layout, variant)
            path = os.path.join(d, variant + ".safetensors")
            st.save_file(T, path, meta)
            written.append(path)
            info["size"] = os.path.getsize(path)
            info["f32"] = float32_replay(T, layout, variant)
            infos[(layout, variant)] = info
            if not quiet:
                print(f"{layout}/{variant}: loss={info['loss']:.12g} min_gap={meta['min_threshold_gap']}"
                      f" near_ties={info['near_ties']} margin={meta['min_pseudo_label_margin']}"
                      f" size={info['size']}")
    write_readme(out_dir, infos)
    return written, infos


# --------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------

def _fail(msg):
    raise AssertionError(msg)


def reference_style_mask(Bt: torch.Tensor, am: torch.Tensor, p: float, side: str, H: int):
    """The candidate region written the way TaoYang225/AD-DROP's utils.py does it
    (pads +100, torch.sort, threshold picked by a one-hot at k = (rate * n).long()
    where the product is a float32 torch op), independent of candidates_and_gaps."""
    Bn, L = am.shape
    ext = am[:, None, None, :].expand(Bn, H, L, L).to(torch.float64)
    n = am.sum(-1)  # int64 tensor
    rate = (1 - p) if side == "high" else p
    k = (rate * n).long()  # python float * int64 tensor: float32 in torch
    if (rate * n).dtype != torch.float32:
        _fail("torch did not evaluate float * int64 in float32")
    grad_p = Bt + (1 - ext) * 100
    srt = torch.sort(grad_p, dim=-1)[0]
    cand = torch.zeros_like(Bt)
    for b in range(Bn):
        if k[b] >= n[b]:
            if side == "low":
                cand[b] = ext[b]
            continue
        t = srt[b, :, :, int(k[b])].unsqueeze(-1)
        ge = torch.ge(grad_p[b], t).to(torch.float64)
        cand[b] = (ge if side == "high" else 1 - ge) * ext[b]
    return cand


def check_file(path, layout, variant):
    spec = VARIANTS[variant]
    T, meta = st.load_file_with_metadata(path)
    cfg, params, batch = load_layout(layout)
    reg = is_regression(cfg)
    am = batch["attention_mask"]
    Bn, L = am.shape
    H = cfg.num_attention_heads
    C = cfg.num_labels
    p, q, side = spec["p"], spec["q"], spec["side"]
    lens = am.sum(-1).tolist()
    tag = f"{layout}/{variant}"

    # names, dtypes, shapes, metadata
    if sorted(T) != expected_names(cfg, spec):
        _fail(f"{tag}: tensor names {sorted(T)}")
    shapes = hm.param_shapes(cfg)
    for k, t in T.items():
        want_dt = torch.float32 if k.startswith("uniforms") else torch.float64
        if t.dtype != want_dt:
            _fail(f"{tag}: {k} dtype {t.dtype}")
        if k in ("logits", "masked_logits"):
            ws = (Bn, C)
        elif k == "loss":
            ws = ()
        elif k.startswith("grad."):
            ws = shapes[k[5:]]
        else:
            ws = (Bn, H, L, L)
        if tuple(t.shape) != tuple(ws):
            _fail(f"{tag}: {k} shape {tuple(t.shape)} != {ws}")
    for key in ("attribution", "p", "q", "layers", "side", "steps", "iga_target", "min_threshold_gap"):
        if key not in meta:
            _fail(f"{tag}: metadata {key} missing")
    if meta["layers"] != ",".join(map(str, spec["layers"])) or meta["attribution"] != spec["attribution"]:
        _fail(f"{tag}: metadata layers/attribution")

    # first forward reproduced
    first = run(cfg, params, batch)
    if not torch.equal(first["logits"].detach(), T["logits"]):
        _fail(f"{tag}: logits not reproduced")
    for l in range(cfg.num_hidden_layers):
        A = T[f"attention_probs.layer{l}"]
        if not torch.equal(first["attention_probs"][l].detach(), A):
            _fail(f"{tag}: attention_probs.layer{l} not reproduced")
        if (A.sum(-1) - 1).abs().max() > 1e-12:
            _fail(f"{tag}: softmax rows")
    pseudo = None if reg else first["logits"].detach().argmax(-1)

    def F_at(probs_delta=None, alpha=None, c=None):
        with torch.no_grad():
            o = run(cfg, {k: v.detach() for k, v in params.items()}, batch, alpha=alpha,
                    probs_delta=probs_delta, retain=False)
            return target_F(cfg, o, batch, c).item()

    gen = torch.Generator().manual_seed(uniform_seed(layout, variant) ^ 0x5A5A)
    eps = 1e-6
    stats = []
    for l in spec["layers"]:
        u = T[f"uniforms.layer{l}"]
        keep = T[f"keep_mask.layer{l}"]
        pad_keys = (am == 0)[:, None, None, :].expand(Bn, H, L, L)
        if not torch.all(keep[pad_keys] == 1):
            _fail(f"{tag}: pad key dropped in layer {l}")
        if not torch.all((keep == 0) | (keep == 1)):
            _fail(f"{tag}: keep_mask not 0/1")
        if spec["attribution"] == "rd":
            u2 = T[f"uniforms2.layer{l}"]
            if not torch.equal(keep, keep_rd(am, u, u2, p, q, H)):
                _fail(f"{tag}: RD keep rule")
            # threshold rounding conventions agree
            for thr1, thr2 in ((np.float32(1) - np.float32(p), np.float32(1) - np.float32(q)),
                               (1.0 - p, 1.0 - q)):
                alt = pad_keys | (u.double() < float(thr1)) | (u2.double() < float(thr2))
                if not torch.equal(keep, alt.double()):
                    _fail(f"{tag}: RD keep depends on threshold rounding")
            npk = ~pad_keys
            rate = keep[npk].mean().item()
            N = int(npk.sum())
            want = 1 - p * q
            if abs(rate - want) > 4 * math.sqrt(want * (1 - want) / N) + 1e-12:
                _fail(f"{tag}: RD keep rate {rate} vs {want}")
            stats.append(f"L{l} keep {rate:.3f} (1-pq={want:.3f}, N={N})")
            continue

        Bt = T[f"attribution.layer{l}"]
        cand = T[f"candidates.layer{l}"]
        if not torch.all((cand == 0) | (cand == 1)):
            _fail(f"{tag}: candidates not 0/1")
        if torch.any(cand[pad_keys] != 0):
            _fail(f"{tag}: pad key is a candidate")
        if Bt.abs().max() >= 100:
            _fail(f"{tag}: |attribution| >= 100 breaks the reference's +100 pad trick")
        ref = reference_style_mask(Bt, am, p, side, H)
        if not torch.equal(ref, cand):
            _fail(f"{tag}: candidates differ from the reference-style computation (layer {l})")
        c2, _, ks = candidates_and_gaps(Bt, am, p, side)
        if not torch.equal(c2, cand):
            _fail(f"{tag}: candidates not reproduced from the stored attribution")
        # counts per row
        for b in range(Bn):
            n, k = lens[b], ks[b]
            for h in range(H):
                for i in range(L):
                    cnt = int(cand[b, h, i].sum())
                    vals = Bt[b, h, i, :n]
                    if k >= n:
                        want = 0 if side == "high" else n
                        if cnt != want:
                            _fail(f"{tag}: row {(b, h, i)} count {cnt} != {want} (k >= n)")
                        continue
                    t = torch.sort(vals)[0][k]
                    tied = int((vals == t).sum()) > 1
                    want = n - k if side == "high" else k
                    if (not tied and cnt != want) or (tied and side == "high" and cnt < want) \
                            or (tied and side == "low" and cnt > want):
                        _fail(f"{tag}: row {(b, h, i)} count {cnt} vs {want} (tied={tied})")
                    # padded query rows
                    if i >= n and spec["attribution"] in ("ga", "iga"):
                        if torch.any(Bt[b, h, i] != 0):
                            _fail(f"{tag}: padded query row {(b, h, i)} attribution not exactly 0")
                        if cnt != (n if side == "high" else 0):
                            _fail(f"{tag}: padded query row {(b, h, i)} candidates {cnt}")
        if spec["attribution"] in ("ga", "iga"):
            for b in range(Bn):
                if torch.any(Bt[b, :, lens[b]:, :] != 0):
                    _fail(f"{tag}: padded query rows of example {b} not exactly 0")
            if l == cfg.num_hidden_layers - 1 and cfg.task == "seqcls":
                # only query row 0 of the last layer reaches the sequence head
                if torch.any(Bt[:, :, 1:, :] != 0):
                    _fail(f"{tag}: last-layer rows i != 0 not exactly 0")
                if side == "high" and not torch.equal(cand[:, :, 1:, :], (~pad_keys).double()[:, :, 1:, :]):
                    _fail(f"{tag}: last-layer rows i != 0 must have every non-pad key as candidate")
                if side == "low" and torch.any(cand[:, :, 1:, :] != 0):
                    _fail(f"{tag}: last-layer rows i != 0 must have no candidate (low)")
        # keep rule, rounding conventions, rate
        if not torch.equal(keep, keep_from(cand, u, q)):
            _fail(f"{tag}: keep rule")
        for thr in (np.float32(1) - np.float32(q), 1.0 - q):
            alt = ((cand == 0) | (u.double() < float(thr))).double()
            if not torch.equal(keep, alt):
                _fail(f"{tag}: keep depends on threshold rounding")
        if torch.any(keep[cand == 0] != 1):
            _fail(f"{tag}: a non-candidate was dropped")
        Nc = int(cand.sum())
        kept = int(keep[cand == 1].sum())
        if q >= 1.0 and kept != 0:
            _fail(f"{tag}: q = 1 kept a candidate")
        if 0 < q < 1:
            rate = kept / Nc
            if abs(rate - (1 - q)) > 4 * math.sqrt(q * (1 - q) / Nc):
                _fail(f"{tag}: keep rate {rate} vs {1 - q} over {Nc} candidates")
        stats.append(f"L{l} cand {Nc} kept {kept} ({kept / max(Nc, 1):.3f} vs {1 - q:.3f})")

        # attribution values
        A = T[f"attention_probs.layer{l}"]
        if spec["attribution"] == "aa":
            if not torch.equal(Bt, -A if reg else A):
                _fail(f"{tag}: AA attribution != {'-' if reg else ''}A")
        flat = Bt.numel()
        # sample non-padded-query entries, plus the largest
        idx = [int(j) for j in torch.randint(0, flat, (6,), generator=gen)]
        idx.append(int(Bt.abs().flatten().argmax()))
        for j in idx:
            dl = torch.zeros(flat, dtype=torch.float64)
            dl[j] = eps
            dl = dl.view_as(Bt)
            ana = Bt.flatten()[j].item()
            if spec["attribution"] == "ga":
                num = (F_at({l: dl}, c=pseudo) - F_at({l: -dl}, c=pseudo)) / (2 * eps)
            elif spec["attribution"] == "iga":
                m = spec["steps"]
                acc = 0.0
                for k in range(1, m + 1):
                    al = {l: k / m}
                    c = pseudo
                    if not reg and spec["iga_target"] == "per-step":
                        with torch.no_grad():
                            c = run(cfg, {kk: v.detach() for kk, v in params.items()}, batch,
                                    alpha=al, retain=False)["logits"].argmax(-1)
                    acc += (F_at({l: dl}, al, c) - F_at({l: -dl}, al, c)) / (2 * eps)
                num = A.flatten()[j].item() * acc / m
            else:
                continue
            if abs(num - ana) > 1e-6 * max(1.0, abs(ana)):
                _fail(f"{tag}: attribution layer {l} entry {j}: numeric {num} vs stored {ana}")

    # second forward
    extra = {l: torch.where(T[f"keep_mask.layer{l}"] == 0, torch.tensor(NEG, dtype=torch.float64),
                            torch.tensor(0.0, dtype=torch.float64)) for l in spec["layers"]}
    for t in params.values():
        t.grad = None
    second = run(cfg, params, batch, labels=batch["labels"], extra=extra)
    second["loss"].backward()
    if not torch.equal(second["logits"].detach(), T["masked_logits"]):
        _fail(f"{tag}: masked_logits not reproduced")
    if not torch.equal(second["loss"].detach().reshape(()), T["loss"]):
        _fail(f"{tag}: loss not reproduced")
    for name, t in params.items():
        if not torch.equal(t.grad, T["grad." + name]):
            _fail(f"{tag}: grad.{name} not reproduced")
    p_ = cfg.prefix
    if T[f"grad.{p_}embeddings.word_embeddings.weight"][cfg.pad_token_id].abs().max() != 0:
        _fail(f"{tag}: pad word-embedding row has non-zero grad")
    for l in spec["layers"]:
        keep = T[f"keep_mask.layer{l}"]
        A2 = second["attention_probs"][l].detach()
        for b in range(Bn):
            n = lens[b]
            for h in range(H):
                for i in range(L):
                    if keep[b, h, i, :n].sum() == 0:  # every key dropped: softmax over all
                        continue
                    if torch.any(A2[b, h, i, :n][keep[b, h, i, :n] == 0] != 0):
                        _fail(f"{tag}: dropped key has non-zero second-pass attention")
    # the masks changed something (unless nothing was dropped)
    dropped = sum(int((T[f"keep_mask.layer{l}"] == 0).sum()) for l in spec["layers"])
    if dropped and torch.equal(T["masked_logits"], T["logits"]):
        _fail(f"{tag}: masked_logits equal logits despite {dropped} drops")

    # directional derivative along the stored gradient
    g = {k: T["grad." + k] for k in params}
    gn2 = sum((v * v).sum().item() for v in g.values())

    def loss_at(delta):
        with torch.no_grad():
            P = {k: v.detach() + delta[k] for k, v in params.items()}
            return run(cfg, P, batch, labels=batch["labels"], extra=extra, retain=False)["loss"].item()

    tt = 1e-5 / max(gn2 ** 0.5, 1e-30)
    num = (loss_at({k: tt * v for k, v in g.items()}) - loss_at({k: -tt * v for k, v in g.items()})) / (2 * tt)
    if abs(num - gn2) > 1e-5 * max(1.0, gn2):
        _fail(f"{tag}: directional derivative {num} != |g|^2 {gn2}")
    print(f"check {tag}: ok ({'; '.join(stats)}; dropped {dropped})")


def float32_replay(T, layout, variant):
    """The same step in float32 (parameters cast, same uniforms): do the candidate
    regions agree with the float64 ones in T? A differing row must be a near tie
    (gap < 1e-5). Returns (differing rows, max over rows of err / row max, max over
    rows of err / gap), err = max_j |B32 - B64| over the row's non-pad keys."""
    spec = VARIANTS[variant]
    if spec["attribution"] == "rd":
        return 0, 0.0, 0.0
    cfg, params, batch = load_layout(layout)
    P32 = {k: v.detach().float().requires_grad_(True) for k, v in params.items()}
    first = run(cfg, P32, batch)
    first["margins"] = []
    if is_regression(cfg):
        first["pseudo"] = None
    else:
        first["pseudo"], _ = pseudo_labels(first["logits"].detach())
        if not torch.equal(first["pseudo"], T["logits"].argmax(-1)):
            _fail(f"{layout}/{variant}: float32 pseudo labels differ")
    attr = attributions(cfg, P32, batch, spec, first)
    am = batch["attention_mask"]
    lens = am.sum(-1).tolist()
    diff_rows, max_rel, max_ratio = 0, 0.0, 0.0
    for l in spec["layers"]:
        B64 = T[f"attribution.layer{l}"]
        c32, _, _ = candidates_and_gaps(attr[l], am, spec["p"], spec["side"])
        _, gaps, _ = candidates_and_gaps(B64, am, spec["p"], spec["side"])
        for b, n in enumerate(lens):
            rowmax = B64[b, :, :, :n].abs().amax(-1).numpy()
            err = (attr[l].double()[b, :, :, :n] - B64[b, :, :, :n]).abs().amax(-1).numpy()
            rel = np.where(rowmax > 0, err / np.where(rowmax > 0, rowmax, 1.0), 0.0)
            max_rel = max(max_rel, float(rel.max()))
            fin = np.isfinite(gaps[b])
            if fin.any():
                max_ratio = max(max_ratio, float((rel[fin] / gaps[b][fin]).max()))
        rows = (c32 != T[f"candidates.layer{l}"]).any(-1).numpy()
        diff_rows += int(rows.sum())
        if np.any(rows & (gaps >= 1e-5)):
            _fail(f"{layout}/{variant}: float32 candidates differ in a row with gap >= 1e-5")
    return diff_rows, max_rel, max_ratio


def check_k_index():
    if k_index(0.3, 90, "high") != 63:
        _fail("k_index(0.3, 90) must be 63 (float32 product)")
    # agrees with torch's float * int64 tensor for the whole grid
    n = torch.arange(0, 513, dtype=torch.int64)
    for i in range(0, 11):
        p = i / 10
        for side in ("high", "low"):
            rate = (1 - p) if side == "high" else p
            tk = (rate * n).long()
            for nn in range(0, 513):
                if tk[nn].item() != k_index(p, nn, side):
                    _fail(f"k_index({p}, {nn}, {side}) disagrees with torch")
    print("k index (float32 product, truncated): ok")


# --------------------------------------------------------------------------

README = """# AD-DROP step golden files (generated — do not edit by hand)

Made by `tests/reference/make_addrop_fixtures.py` (run `/usr/bin/python3
tests/reference/make_addrop_fixtures.py`, add `--check` for the self-consistency
checks) with torch {torch_version}, PyTorch autograd on the plain-torch models of
`tests/reference/hf_models.py`, float64, **eval mode** (no dropout anywhere). Regenerating
gives the same bytes. Each file is one AD-DROP step (docs/algorithm.md steps 2-6)
on the model and batch of `tests/golden/fixtures/<layout>/`: its `config.json`,
`model.safetensors` and the `input_ids`, `attention_mask`, `token_type_ids`, `labels` of
its `batch.safetensors`. That folder's `extra_mask.*` / `alpha.*` entries are **not**
used: the first forward has no extra mask and alpha 1. B = 3, L = 7, H = 4, 2 layers,
example lengths n_b = 7 / 5 / 3. Files are written by `tests/reference/safetensors_io.py`
(tensors in sorted name order, header padded to a multiple of 8).

## Files

`tests/golden/addrop/<layout>/<variant>.safetensors`:

| file | attribution | layers | side | p | q | m | iga_target | min_threshold_gap | near-tie rows | float32 replay | min pseudo-label margin | bytes |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
{rows}

Total: {total} bytes.

## Tensors

- `logits` F64 [B, C]: the first forward (no mask). `attention_probs.layer{{l}}` F64
  [B, H, L, L] for **every** layer l: that forward's A_l (post-softmax, as multiplied with V).
- Per target layer l (the `layers` metadata):
  - `attribution.layer{{l}}` F64 [B, H, L, L]: B_l, raw values on every (i, j), pad keys
    included (no +100 added; GA has non-zero values at pad keys, IGA and AA have exact
    zeros there because A_l is exactly 0). Absent for RD.
  - `candidates.layer{{l}}` F64 0/1 [B, H, L, L]: the candidate discard region. Absent for RD.
  - `keep_mask.layer{{l}}` F64 0/1 [B, H, L, L]: 1 = kept, 0 = dropped. Pad keys are 1.
  - `uniforms.layer{{l}}` F32 [B, H, L, L] (input): u of step 5. RD also has
    `uniforms2.layer{{l}}` (u2). Drawn with `torch.rand(..., dtype=float32)` from one
    `torch.Generator().manual_seed(uniform_seed)` per file, target layers ascending, RD:
    u1 then u2 of a layer before the next layer. Draws exist at pad keys and padded
    queries too (unused there).
- `masked_logits` F64 [B, C]: the second forward, where layer l gets `extra = -10000` at
  every (b, h, i, j) with keep_mask 0 (added to the attention logits after the usual pad
  mask), other layers unchanged.
- `loss` F64 []: gold loss of the second forward (CE mean; MSE mean of logits[:, 0] for
  `bert_regression`).
- `grad.<HF parameter name>` F64: d loss / d parameter of that second forward, for every
  parameter in the fixture's `model.safetensors` (pad embedding rows exactly 0).

## Semantics

- F (step 2): classification `F = sum_b z[b, c_b]`, c_b = argmax of the first forward's
  logits (sum, not mean). Regression (`bert_regression`, num_labels 1): `F = -MSE(gold)`,
  so every attribution is the negated gold-loss one (the reference's quirk: GA = -dLoss/dA,
  IGA = -(A ⊙ mean_k dLoss_k/dA), AA = -A).
- GA: `B_l = dF/dA_l`, one backward for all target layers.
- IGA: per target layer l separately, m passes k = 1..m with alpha_k = k/m (double)
  multiplying layer l's attention probabilities only (context = (alpha_k A_l) V), eval
  mode; `B_l = A_l ⊙ ((sum_k dF_k/dA_l) / m)` with A_l the first forward's (identical to
  each pass's, alpha acts after the softmax) and the derivative taken w.r.t. the unscaled
  A_l (it carries alpha_k). `iga_target` fixed: c_b of step 2 for every k; per-step:
  argmax of each alpha pass's own logits. Regression: always the gold loss.
- AA: `B_l = A_l` (regression `-A_l`). RD: no attribution.
- Candidates per row (b, h, i) over the n_b non-pad keys of example b:
  `k = int(np.float32(np.float32(r) * np.float32(n_b)))` with r = 1 - p (high) or p (low),
  r computed in double first; t = the k-th smallest non-pad attribution (0-based).
  high: candidates = non-pad keys with B >= t (none if k >= n_b, so none for p = 0);
  low: non-pad keys with B < t (all non-pad keys if k >= n_b). Pads never. For
  n_b = 7 / 5 / 3: p = 0.3 high k = 4 / 3 / 2; p = 0.4 low k = 2 / 2 / 1; p = 0.5 high
  k = 3 / 2 / 1; p = 0.9 high k = 0 / 0 / 0 (every non-pad key is a candidate).
- Keep: a candidate is kept iff `u < np.float32(1 - q)` (`keep_threshold` metadata);
  non-candidates and pads always kept. q = 1: every candidate dropped, so in
  `ga_l1_high_p0.9_q1.0` every non-pad key of every layer-1 row is dropped and each row
  becomes a softmax over all positions, pads included. RD: a non-pad key is kept iff
  `u1 < np.float32(1 - p)` or `u2 < np.float32(1 - q)`; pads kept. In every file the masks
  come out the same with the thresholds `np.float32(1) - np.float32(q)` or in double
  (checked), so that rounding choice does not matter here.
- Rows of padded queries (i >= n_b): GA / IGA attributions are exactly 0 there, so t = 0
  and (high) every non-pad key is a candidate, (low) none. The same holds for every row
  i != 0 of the **last** layer (layer 1) in these sequence-level models: only the first
  token's output reaches the head, so dF/dA_1[b, h, i, :] is exactly 0 for i != 0 (this is
  why `ga_l01_low_p0.4_q0.5` has only 20 layer-1 candidates and
  `iga_l01_high_p0.5_q0.5_m4_perstep` 396). These exact ties are part of the expected
  masks: an implementation must produce exact zeros there (no-path rows, exp(-10000)
  underflowing to 0), which float32 does too.

## Metadata (`__metadata__`, all strings)

`attribution` (ga | iga | aa | rd), `p`, `q` (Python repr, e.g. "0.3", "1.0"), `layers`
(e.g. "0,1"), `side` (high | low; "high" for RD, unused), `steps` (m; "20" and unused for
non-IGA), `iga_target` (fixed | per-step; "fixed" and unused for non-IGA), plus
`format` "pt", `generator`, `layout`, `variant`, `fixture` (the folder with config,
model and batch), `uniform_seed`, `keep_threshold` (repr of the float32 1 - q as a
double), `min_threshold_gap`, `near_tie_rows`, `min_pseudo_label_margin`.

## Threshold robustness (for float32 runs)

A float32 implementation computes slightly different attributions; a row whose threshold
t sits very close to a value on the other side of the decision can flip. Per row,
`gap = (t - max{{B_j < t}}) / max_j |B_j|` over the non-pad keys j (inf when nothing lies
below t, when k >= n_b, or when the row is all zero; exact ties at t do not count: the
tied keys are all on the same side). Only this gap matters: a value just above t is on
the same side as t. `min_threshold_gap` is the minimum over all target rows of the file
("inf" for RD), `near_tie_rows` the number of rows with gap < {near_tie}. "float32 replay": the same step
re-run by this script with the parameters cast to float32 (PyTorch CPU): how many
candidate rows differ from the float64 ones, and the worst ratio, over rows with a finite
gap, of the row's float32 attribution error (relative to its row max) to its gap; a
ratio well below 1 means the float32 masks are safe. A C++ test
should recompute the per-row gap from `attribution.layer{{l}}` and skip the float
mask comparison only for rows with gap < 1e-5 (and say so); the double-precision run
must match every row exactly. `min_pseudo_label_margin` is the smallest top-1 minus
top-2 logit over the batch for every argmax taken (first forward; plus every alpha
pass for per-step IGA): a float run picks the same pseudo labels if its logit error
stays below it ("n/a" for regression).
"""


def write_readme(out_dir, infos):
    rows = []
    total = 0
    for layout, variants in LAYOUTS.items():
        for variant in variants:
            path = os.path.join(out_dir, layout, variant + ".safetensors")
            if not os.path.exists(path):
                continue
            _, meta = st.load_file_with_metadata(path)
            size = os.path.getsize(path)
            total += size
            sp = VARIANTS[variant]
            m = str(sp["steps"]) if sp["attribution"] == "iga" else "-"
            tgt = sp["iga_target"] if sp["attribution"] == "iga" else "-"
            gap = meta["min_threshold_gap"]
            if gap != "inf":
                gap = f"{float(gap):.3e}"
            marg = meta["min_pseudo_label_margin"]
            if marg != "n/a":
                marg = f"{float(marg):.3e}"
            f32 = "-"
            if sp["attribution"] != "rd":
                if (layout, variant) in infos:
                    dr, _, ratio = infos[(layout, variant)]["f32"]
                else:  # not regenerated in this run (--only): replay from the file
                    dr, _, ratio = float32_replay(st.load_file(path), layout, variant)
                f32 = f"{dr} rows differ, err/gap <= {ratio:.1e}"
            rows.append(f"| `{layout}/{variant}.safetensors` | {sp['attribution']} | {meta['layers']} | "
                        f"{sp['side'] if sp['attribution'] != 'rd' else '-'} | {meta['p']} | {meta['q']} | "
                        f"{m} | {tgt} | {gap} | {meta['near_tie_rows']} | {f32} | {marg} | {size} |")
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write(README.format(torch_version=torch.__version__, rows="\n".join(rows), total=total,
                              near_tie=NEAR_TIE))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="run the self-consistency checks too")
    ap.add_argument("--only", nargs="*", help="generate only these layouts")
    args = ap.parse_args()
    torch.set_num_threads(1)  # bit-for-bit reproducibility
    os.makedirs(args.out, exist_ok=True)
    written, _ = generate(args.out, args.only)
    if args.check:
        check_k_index()
        tmp = tempfile.mkdtemp(prefix="addrop_regen_")
        try:
            generate(tmp, args.only, quiet=True)
            for path in written + [os.path.join(args.out, "README.md")]:
                rel = os.path.relpath(path, args.out)
                if not filecmp.cmp(path, os.path.join(tmp, rel), shallow=False):
                    _fail(f"{rel}: regeneration is not byte-identical")
        finally:
            shutil.rmtree(tmp)
        print(f"regeneration byte-identical: ok ({len(written)} files)")
        for path in written:
            layout = os.path.basename(os.path.dirname(path))
            variant = os.path.basename(path)[: -len(".safetensors")]
            check_file(path, layout, variant)
            rows, rel, ratio = float32_replay(st.load_file(path), layout, variant)
            print(f"  float32 replay: {rows} candidate rows differ; attribution error <= {rel:.2e} of"
                  f" row max, <= {ratio:.2e} of the row's gap")
        print("all checks passed")


if __name__ == "__main__":
    main()
