#!/usr/bin/python3
"""Generate the token-level AD-DROP golden files in tests/golden/addrop/<layout>/<variant>.safetensors
for the token-classification layouts (bert_token, electra_token).

    /usr/bin/python3 tests/reference/make_token_addrop_fixture.py [--out DIR] [--check]

One AD-DROP step (docs/algorithm.md, steps 2-6) at the token level (NER), computed
with PyTorch autograd, float64, eval mode, on the model and batch of
tests/golden/fixtures/<layout>/ (labels [B, L] with -100 on special tokens, continuation
sub-tokens and pads). It reuses make_addrop_fixtures.py (loading, candidates, keep rule,
uniform seeds, the reference-style mask, the float32 replay, the file layout) and only
replaces the target F of step 2 by the token-level one:

    c_t = argmax_c z[t, c] (pseudo label per token, first forward),
    F = -CE_mean(z, c) over every position whose attention mask is 1
      = (1 / #attended) * sum_{t attended} log softmax(z_t)[c_t],

so the attribution is -dCE(pseudo)/dA_l. GA takes the gradient for all target layers from
one autograd call (the C++ side: one input-gradient backward stopping at the lowest
target layer). Variants: GA on ALL layers with the reference's CoNLL-2003 setting
(p 0.8, q 0.1), GA on one layer, low side; IGA (fixed target, m 4) on all layers; AA.

Tensors and metadata are those of make_addrop_fixtures.py (its README describes them),
with logits / masked_logits [B, L, C] and metadata `objective` = "token". Regenerating
gives the same bytes.

--check also verifies: byte-identical regeneration; candidates equal the reference-style
computation (pads +100, torch.sort, float32 k); keep rule; padded query rows have exactly
zero GA / IGA attributions; GA / IGA entries against central differences of F w.r.t. A_l;
GA of several layers equals GA of each layer alone (one backward serves all); the second
pass (masked logits, loss, gradients) is reproduced; the float32 replay agrees on every
row whose threshold gap is >= 1e-5.
"""

from __future__ import annotations

import argparse
import filecmp
import math
import os
import shutil
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import make_addrop_fixtures as maf  # noqa: E402
import safetensors_io as st  # noqa: E402

GENERATOR = "tests/reference/make_token_addrop_fixture.py"
LAYOUTS = ["bert_token", "electra_token"]
VARIANTS = {
    "token_ga_lall_high_p0.8_q0.1": maf.V("ga", [0, 1], "high", 0.8, 0.1),
    "token_ga_l1_low_p0.4_q0.5": maf.V("ga", [1], "low", 0.4, 0.5),
    "token_iga_lall_high_p0.8_q0.1_m4_fixed": maf.V("iga", [0, 1], "high", 0.8, 0.1, 4, "fixed"),
    "token_aa_lall_high_p0.8_q0.1": maf.V("aa", [0, 1], "high", 0.8, 0.1),
}

_seq_target_F = maf.target_F


def token_target_F(cfg, out, batch, pseudo):
    """Step 2 for token classification: F = -CE_mean(z, c) over attended positions."""
    if cfg.task != "token":
        return _seq_target_F(cfg, out, batch, pseudo)
    z = out["logits"]  # [B, L, C]
    m = batch["attention_mask"].to(z.dtype)
    logp = torch.log_softmax(z, dim=-1).gather(-1, pseudo.unsqueeze(-1)).squeeze(-1)
    return (logp * m).sum() / m.sum()


def install():
    """Registers the token variants and the token-level F in make_addrop_fixtures."""
    maf.target_F = token_target_F
    maf.VARIANTS.update(VARIANTS)


def attended_margin(T, batch):
    z = T["logits"]
    top2 = torch.topk(z, 2, dim=-1).values
    marg = (top2[..., 0] - top2[..., 1])[batch["attention_mask"] == 1]
    return float(marg.min())


def generate(out_dir, quiet=False):
    torch.set_num_threads(1)
    written = []
    for layout in LAYOUTS:
        d = os.path.join(out_dir, layout)
        os.makedirs(d, exist_ok=True)
        for variant in VARIANTS:
            T, meta, info = maf.addrop_step(layout, variant)
            _, _, batch = maf.load_layout(layout)
            meta["generator"] = GENERATOR
            meta["objective"] = "token"
            meta["min_pseudo_label_margin"] = maf.fmt_float(attended_margin(T, batch))
            path = os.path.join(d, variant + ".safetensors")
            st.save_file(T, path, meta)
            written.append(path)
            if not quiet:
                rows, _, ratio = maf.float32_replay(T, layout, variant)
                print(f"{layout}/{variant}: loss={info['loss']:.12g} min_gap={meta['min_threshold_gap']}"
                      f" near_ties={meta['near_tie_rows']} margin={meta['min_pseudo_label_margin']}"
                      f" f32_rows_differ={rows} f32_err/gap={ratio:.2e} size={os.path.getsize(path)}")
    return written


def _fail(msg):
    raise AssertionError(msg)


def check(path, layout, variant):
    spec = VARIANTS[variant]
    T, meta = st.load_file_with_metadata(path)
    cfg, params, batch = maf.load_layout(layout)
    am = batch["attention_mask"]
    Bn, L = am.shape
    H = cfg.num_attention_heads
    lens = am.sum(-1).tolist()
    tag = f"{layout}/{variant}"
    first = maf.run(cfg, params, batch)
    if not torch.equal(first["logits"].detach(), T["logits"]):
        _fail(f"{tag}: logits not reproduced")
    pseudo = first["logits"].detach().argmax(-1)
    for l in spec["layers"]:
        keep = T[f"keep_mask.layer{l}"]
        pad_keys = (am == 0)[:, None, None, :].expand(Bn, H, L, L)
        if not torch.all(keep[pad_keys] == 1):
            _fail(f"{tag}: pad key dropped")
        Bt = T[f"attribution.layer{l}"]
        cand = T[f"candidates.layer{l}"]
        if not torch.equal(maf.reference_style_mask(Bt, am, spec["p"], spec["side"], H), cand):
            _fail(f"{tag}: candidates differ from the reference-style computation (layer {l})")
        if not torch.equal(keep, maf.keep_from(cand, T[f"uniforms.layer{l}"], spec["q"])):
            _fail(f"{tag}: keep rule (layer {l})")
        if spec["attribution"] in ("ga", "iga"):
            for b in range(Bn):
                if torch.any(Bt[b, :, lens[b]:, :] != 0):
                    _fail(f"{tag}: padded query rows of example {b} not exactly 0 (layer {l})")
            # every attended query row of the last layer reaches the head (unlike sequence
            # classification): some non-zero attribution in each
            if l == cfg.num_hidden_layers - 1:
                for b in range(Bn):
                    if torch.any(Bt[b, :, : lens[b], : lens[b]].abs().sum(-1) == 0):
                        _fail(f"{tag}: an attended last-layer row has an all-zero attribution")
        # finite differences of F w.r.t. A_l
        A = T[f"attention_probs.layer{l}"]
        gen = torch.Generator().manual_seed(maf.uniform_seed(layout, variant) ^ 0x70C)
        idx = [int(j) for j in torch.randint(0, Bt.numel(), (6,), generator=gen)]
        idx.append(int(Bt.abs().flatten().argmax()))

        def F_at(delta, alpha=None):
            with torch.no_grad():
                o = maf.run(cfg, {k: v.detach() for k, v in params.items()}, batch, alpha=alpha,
                            probs_delta=delta, retain=False)
                return token_target_F(cfg, o, batch, pseudo).item()

        eps = 1e-6
        for j in idx:
            if spec["attribution"] not in ("ga", "iga"):
                break
            dl = torch.zeros(Bt.numel(), dtype=torch.float64)
            dl[j] = eps
            dl = dl.view_as(Bt)
            if spec["attribution"] == "ga":
                num = (F_at({l: dl}) - F_at({l: -dl})) / (2 * eps)
            else:
                m = spec["steps"]
                acc = sum((F_at({l: dl}, {l: k / m}) - F_at({l: -dl}, {l: k / m})) / (2 * eps)
                          for k in range(1, m + 1))
                num = A.flatten()[j].item() * acc / m
            ana = Bt.flatten()[j].item()
            if abs(num - ana) > 1e-6 * max(1.0, abs(ana)):
                _fail(f"{tag}: attribution layer {l} entry {j}: numeric {num} vs stored {ana}")
    # one backward for several layers = each layer on its own
    if spec["attribution"] == "ga" and len(spec["layers"]) > 1:
        for l in spec["layers"]:
            o = maf.run(cfg, params, batch)
            (g,) = torch.autograd.grad(token_target_F(cfg, o, batch, pseudo), [o["attention_probs"][l]])
            if not torch.allclose(g, T[f"attribution.layer{l}"], rtol=1e-12, atol=1e-15):
                _fail(f"{tag}: layer {l} alone differs from the joint backward")
    # second pass
    extra = {l: torch.where(T[f"keep_mask.layer{l}"] == 0, torch.tensor(maf.NEG, dtype=torch.float64),
                            torch.tensor(0.0, dtype=torch.float64)) for l in spec["layers"]}
    for t in params.values():
        t.grad = None
    second = maf.run(cfg, params, batch, labels=batch["labels"], extra=extra)
    second["loss"].backward()
    if not torch.equal(second["logits"].detach(), T["masked_logits"]):
        _fail(f"{tag}: masked_logits not reproduced")
    for name, t in params.items():
        if not torch.equal(t.grad, T["grad." + name]):
            _fail(f"{tag}: grad.{name} not reproduced")
    rows, _, ratio = maf.float32_replay(T, layout, variant)
    dropped = sum(int((T[f"keep_mask.layer{l}"] == 0).sum()) for l in spec["layers"])
    print(f"check {tag}: ok (dropped {dropped}; float32 replay: {rows} rows differ, err/gap <= {ratio:.1e})")


README = """# Token-level AD-DROP golden files (generated — do not edit by hand)

Made by `tests/reference/make_token_addrop_fixture.py` (`/usr/bin/python3
tests/reference/make_token_addrop_fixture.py --check`), torch {torch_version}, float64, eval
mode, on `tests/golden/fixtures/{layout}/` (B = 3, L = 7, H = 4, 2 layers, C = 5, lengths
7 / 5 / 3, labels [B, L] with -100). Tensors, metadata, candidate and keep rules are those of
`tests/golden/addrop/README.md` (make_addrop_fixtures.py), except:

- `logits`, `masked_logits` are [B, L, C] (token classification; row-major = the C++ [B*L, C]);
- step 2 is the token-level target: pseudo label per token c_t = argmax z_t of the first
  forward, `F = -CE_mean(z, c)` over every position with attention_mask 1 (special tokens
  included), so B_l = -dCE(pseudo)/dA_l for GA (one autograd call for all target layers);
  IGA uses the same F at every alpha with the fixed c; AA is A_l;
- the loss of the second pass is the token CE over labels != -100;
- metadata `objective` = "token"; `min_pseudo_label_margin` is taken over attended positions.

Unlike sequence classification, every attended query row of the last layer reaches the
head, so its GA rows are not zero; padded query rows (i >= n_b) are exactly zero.

| file | min_threshold_gap | near-tie rows | min pseudo-label margin |
| --- | --- | --- | --- |
{rows}
"""


def write_readmes(out_dir):
    for layout in LAYOUTS:
        rows = []
        for variant in VARIANTS:
            _, meta = st.load_file_with_metadata(os.path.join(out_dir, layout, variant + ".safetensors"))
            rows.append(f"| `{variant}.safetensors` | {meta['min_threshold_gap']} | {meta['near_tie_rows']} | "
                        f"{meta['min_pseudo_label_margin']} |")
        with open(os.path.join(out_dir, layout, "README.md"), "w") as f:
            f.write(README.format(torch_version=torch.__version__, layout=layout, rows="\n".join(rows)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=maf.DEFAULT_OUT)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    install()
    written = generate(args.out)
    write_readmes(args.out)
    if args.check:
        tmp = tempfile.mkdtemp(prefix="addrop_token_regen_")
        try:
            generate(tmp, quiet=True)
            for path in written:
                rel = os.path.relpath(path, args.out)
                if not filecmp.cmp(path, os.path.join(tmp, rel), shallow=False):
                    _fail(f"{rel}: regeneration is not byte-identical")
        finally:
            shutil.rmtree(tmp)
        print(f"regeneration byte-identical: ok ({len(written)} files)")
        for path in written:
            check(path, os.path.basename(os.path.dirname(path)), os.path.basename(path)[: -len(".safetensors")])
        print("all checks passed")


if __name__ == "__main__":
    main()
