#!/usr/bin/python3
"""Generate the sequence-to-sequence AD-DROP golden files in
tests/golden/addrop/marian_tied/<variant>.safetensors.

    /usr/bin/python3 tests/reference/make_seq2seq_addrop_fixture.py [--out DIR] [--check]

One AD-DROP step (docs/algorithm.md, steps 1-6, sequence to sequence) on the MarianMTModel
fixture tests/golden/marian/marian_tied/ (config.json, model.safetensors and the
input_ids / attention_mask / labels / decoder_input_ids of batch.safetensors; its
extra_mask / alpha entries are NOT used), float64, eval mode, PyTorch autograd on the
plain-torch model of marian_model.py. It reuses make_addrop_fixtures.py (candidates,
keep rule, uniform seeds, the step itself, the float32 replay, the file layout) the way
make_token_addrop_fixture.py does, replacing for this layout only:

  * the model: teacher forcing with decoder_input_ids; the attention sites are the
    ENCODER self-attention layers (A_l [B, H, Ls, Ls]); `attention_probs.layer{l}` and
    the `layers` metadata count encoder layers;
  * the target F of step 2: c_t = argmax_v z[b, t, v] of the first forward's decoder
    logits, F = -CE_mean(z, c) over the target positions with labels != -100
      = (1 / N) * sum_{labels != -100} log softmax(z[b, t])[c_t];
  * the loss of the second forward: the gold cross-entropy over labels != -100.

Variants: GA on every encoder layer with the reference's WMT16 setting (p 0.2, q 0.2), GA
on encoder layer 0 (low side), IGA (m 20, fixed pseudo labels) on every encoder layer, AA
on every encoder layer. Tensors and metadata are those of make_addrop_fixtures.py, with
logits / masked_logits [B, Lt, V] and metadata `objective` = "seq2seq"; the folder's
README.md (written here) lists the differences. Regenerating gives the same bytes.

--check also verifies: byte-identical regeneration; first forward, second forward (masked
logits, loss, every gradient) reproduced; candidates equal the reference-style computation
(pads +100, torch.sort, float32 k); the keep rule; pad keys never dropped; padded source
query rows have exactly-zero GA / IGA attributions; GA / IGA entries against central
differences of F w.r.t. A_l; the joint GA backward equals each layer's own; dropped keys
have probability exactly 0 in the second pass, except in rows where every non-pad key is
dropped, which (finfo.min pad mask) equal the unmasked row; the directional derivative of
the second-pass loss along the stored gradient; the float32 replay agrees on every row
whose threshold gap is >= 1e-5 (make_addrop_fixtures.float32_replay).
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
import make_marian_fixtures as mf  # noqa: E402
import marian_model as mm  # noqa: E402
import safetensors_io as st  # noqa: E402

GENERATOR = "tests/reference/make_seq2seq_addrop_fixture.py"
MARIAN = os.path.join(maf.REPO, "tests", "golden", "marian")
LAYOUTS = ["marian_tied"]
VARIANTS = {
    "seq2seq_ga_lall_high_p0.2_q0.2": maf.V("ga", [0, 1], "high", 0.2, 0.2),
    "seq2seq_ga_l0_low_p0.4_q0.5": maf.V("ga", [0], "low", 0.4, 0.5),
    "seq2seq_iga_lall_high_p0.2_q0.2_m20_fixed": maf.V("iga", [0, 1], "high", 0.2, 0.2, 20, "fixed"),
    "seq2seq_aa_lall_high_p0.2_q0.2": maf.V("aa", [0, 1], "high", 0.2, 0.2),
}


class Seq2SeqContext:
    """What make_addrop_fixtures passes around as `cfg` for a Marian layout: the config,
    the buffers (final_logits_bias), and the attributes it reads."""

    task = "seq2seq"

    def __init__(self, cfg: mm.MarianConfig, buffers):
        self.cfg = cfg
        self.buffers = buffers

    @property
    def num_attention_heads(self):
        return self.cfg.encoder_attention_heads

    @property
    def num_hidden_layers(self):
        return self.cfg.encoder_layers


def _site(l):
    return f"encoder.layer{l}"


_orig = {}


def load_layout(layout):
    if layout not in LAYOUTS:
        return _orig["load_layout"](layout)
    cfg, params, buffers, batch, _, _ = mf.load_case(os.path.join(MARIAN, layout))
    return Seq2SeqContext(cfg, buffers), params, batch


def run(ctx, params, batch, labels=None, extra=None, alpha=None, probs_delta=None, retain=True):
    if not isinstance(ctx, Seq2SeqContext):
        return _orig["run"](ctx, params, batch, labels=labels, extra=extra, alpha=alpha,
                            probs_delta=probs_delta, retain=retain)
    out = mm.forward(ctx.cfg, params, ctx.buffers, batch["input_ids"], batch["attention_mask"],
                     batch["decoder_input_ids"], labels,
                     extra={_site(l): v for l, v in (extra or {}).items()},
                     alpha={_site(l): v for l, v in (alpha or {}).items()},
                     probs_delta={_site(l): v for l, v in (probs_delta or {}).items()},
                     retain_attention=retain, training=False)
    return {"logits": out["logits"], "loss": out["loss"],
            "attention_probs": [out["attention_probs"][_site(l)] for l in range(ctx.cfg.encoder_layers)],
            "all_probs": out["attention_probs"]}


def seq2seq_target_F(ctx, out, batch, pseudo):
    """Step 2 for sequence to sequence: F = -CE_mean(decoder logits, pseudo) over labels != -100."""
    if not isinstance(ctx, Seq2SeqContext):
        return _orig["target_F"](ctx, out, batch, pseudo)
    z = out["logits"]  # [B, Lt, V]
    m = (batch["labels"] != -100).to(z.dtype)
    logp = torch.log_softmax(z, dim=-1).gather(-1, pseudo.unsqueeze(-1)).squeeze(-1)
    return (logp * m).sum() / m.sum()


def install():
    """Routes make_addrop_fixtures' loader, forward and target to the Marian model for the
    layouts of this script (other layouts keep the original functions)."""
    if _orig:
        return
    _orig["load_layout"], _orig["run"], _orig["target_F"] = maf.load_layout, maf.run, maf.target_F
    maf.load_layout, maf.run, maf.target_F = load_layout, run, seq2seq_target_F
    maf.VARIANTS.update(VARIANTS)


def target_margin(T, batch):
    """Smallest top-1 minus top-2 logit over the target positions with labels != -100."""
    z = T["logits"]
    top2 = torch.topk(z, 2, dim=-1).values
    return float((top2[..., 0] - top2[..., 1])[batch["labels"] != -100].min())


def generate(out_dir, quiet=False):
    torch.set_num_threads(1)
    written = []
    infos = {}
    for layout in LAYOUTS:
        d = os.path.join(out_dir, layout)
        os.makedirs(d, exist_ok=True)
        _, _, batch = load_layout(layout)
        for variant in VARIANTS:
            T, meta, info = maf.addrop_step(layout, variant)
            meta["generator"] = GENERATOR
            meta["fixture"] = f"tests/golden/marian/{layout}"
            meta["objective"] = "seq2seq"
            meta["sites"] = "encoder"
            meta["min_pseudo_label_margin"] = maf.fmt_float(target_margin(T, batch))
            path = os.path.join(d, variant + ".safetensors")
            st.save_file(T, path, meta)
            written.append(path)
            rows, _, ratio = maf.float32_replay(T, layout, variant)
            infos[(layout, variant)] = dict(info, f32=(rows, ratio), size=os.path.getsize(path), meta=meta)
            if not quiet:
                print(f"{layout}/{variant}: loss={info['loss']:.12g} min_gap={meta['min_threshold_gap']}"
                      f" near_ties={meta['near_tie_rows']} margin={meta['min_pseudo_label_margin']}"
                      f" f32_rows_differ={rows} f32_err/gap={ratio:.2e} size={os.path.getsize(path)}")
    write_readmes(out_dir, infos)
    return written


# --------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------

def _fail(msg):
    raise AssertionError(msg)


def check(path, layout, variant):
    spec = VARIANTS[variant]
    T, meta = st.load_file_with_metadata(path)
    ctx, params, batch = load_layout(layout)
    cfg = ctx.cfg
    am = batch["attention_mask"]
    Bn, L = am.shape
    H = ctx.num_attention_heads
    lens = am.sum(-1).tolist()
    tag = f"{layout}/{variant}"
    names = ["logits", "masked_logits", "loss"] + [f"attention_probs.layer{l}" for l in range(cfg.encoder_layers)]
    for l in spec["layers"]:
        names += [f"keep_mask.layer{l}", f"uniforms.layer{l}", f"attribution.layer{l}", f"candidates.layer{l}"]
    names += [f"grad.{n}" for n in mm.param_shapes(cfg)]
    if sorted(T) != sorted(names):
        _fail(f"{tag}: tensor names {sorted(set(T) ^ set(names))}")
    for key in ("attribution", "p", "q", "layers", "side", "steps", "iga_target", "objective", "fixture"):
        if key not in meta:
            _fail(f"{tag}: metadata {key} missing")
    if meta["objective"] != "seq2seq" or meta["layers"] != ",".join(map(str, spec["layers"])):
        _fail(f"{tag}: metadata objective / layers")
    first = run(ctx, params, batch)
    if not torch.equal(first["logits"].detach(), T["logits"]):
        _fail(f"{tag}: logits not reproduced")
    for l in range(cfg.encoder_layers):
        if not torch.equal(first["attention_probs"][l].detach(), T[f"attention_probs.layer{l}"]):
            _fail(f"{tag}: attention_probs.layer{l} not reproduced")
    pseudo = first["logits"].detach().argmax(-1)
    P0 = {k: v.detach() for k, v in params.items()}

    def F_at(delta, alpha=None):
        with torch.no_grad():
            o = run(ctx, P0, batch, alpha=alpha, probs_delta=delta, retain=False)
            return seq2seq_target_F(ctx, o, batch, pseudo).item()

    stats = []
    for l in spec["layers"]:
        keep = T[f"keep_mask.layer{l}"]
        cand = T[f"candidates.layer{l}"]
        Bt = T[f"attribution.layer{l}"]
        A = T[f"attention_probs.layer{l}"]
        pad_keys = (am == 0)[:, None, None, :].expand(Bn, H, L, L)
        if not torch.all(keep[pad_keys] == 1) or torch.any(cand[pad_keys] != 0):
            _fail(f"{tag}: pad key dropped or candidate (layer {l})")
        if Bt.abs().max() >= 100:
            _fail(f"{tag}: |attribution| >= 100 breaks the reference's +100 pad trick")
        if not torch.equal(maf.reference_style_mask(Bt, am, spec["p"], spec["side"], H), cand):
            _fail(f"{tag}: candidates differ from the reference-style computation (layer {l})")
        c2, _, _ = maf.candidates_and_gaps(Bt, am, spec["p"], spec["side"])
        if not torch.equal(c2, cand):
            _fail(f"{tag}: candidates not reproduced from the stored attribution (layer {l})")
        if not torch.equal(keep, maf.keep_from(cand, T[f"uniforms.layer{l}"], spec["q"])):
            _fail(f"{tag}: keep rule (layer {l})")
        if spec["attribution"] == "aa" and not torch.equal(Bt, A):
            _fail(f"{tag}: AA attribution != A")
        if spec["attribution"] in ("ga", "iga"):
            for b in range(Bn):
                if torch.any(Bt[b, :, lens[b]:, :] != 0):
                    _fail(f"{tag}: padded query rows of example {b} not exactly 0 (layer {l})")
                if torch.any(Bt[b, :, : lens[b], : lens[b]].abs().sum(-1) == 0):
                    _fail(f"{tag}: an attended row has an all-zero attribution (layer {l})")
            gen = torch.Generator().manual_seed(maf.uniform_seed(layout, variant) ^ 0x5E25)
            idx = [int(j) for j in torch.randint(0, Bt.numel(), (6,), generator=gen)]
            idx.append(int(Bt.abs().flatten().argmax()))
            eps = 1e-6
            for j in idx:
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
        Nc, kept = int(cand.sum()), int(keep[cand == 1].sum())
        stats.append(f"L{l} cand {Nc} kept {kept}")
    # one backward for several layers = each layer on its own
    if spec["attribution"] == "ga" and len(spec["layers"]) > 1:
        for l in spec["layers"]:
            o = run(ctx, params, batch)
            (g,) = torch.autograd.grad(seq2seq_target_F(ctx, o, batch, pseudo), [o["attention_probs"][l]])
            if not torch.allclose(g, T[f"attribution.layer{l}"], rtol=1e-12, atol=1e-15):
                _fail(f"{tag}: layer {l} alone differs from the joint backward")
    # second pass
    extra = {l: torch.where(T[f"keep_mask.layer{l}"] == 0, torch.tensor(maf.NEG, dtype=torch.float64),
                            torch.tensor(0.0, dtype=torch.float64)) for l in spec["layers"]}
    for t in params.values():
        t.grad = None
    second = run(ctx, params, batch, labels=batch["labels"], extra=extra)
    second["loss"].backward()
    if not torch.equal(second["logits"].detach(), T["masked_logits"]):
        _fail(f"{tag}: masked_logits not reproduced")
    if not torch.equal(second["loss"].detach().reshape(()), T["loss"]):
        _fail(f"{tag}: loss not reproduced")
    for name, t in params.items():
        if not torch.equal(t.grad, T["grad." + name]):
            _fail(f"{tag}: grad.{name} not reproduced")
    full_rows = 0
    for l in spec["layers"]:
        keep = T[f"keep_mask.layer{l}"]
        A2 = second["attention_probs"][l].detach()
        A1 = T[f"attention_probs.layer{l}"]
        for b in range(Bn):
            n = lens[b]
            for h in range(H):
                for i in range(L):
                    if keep[b, h, i, :n].sum() == 0:
                        full_rows += 1
                        # the lowest target layer sees unchanged inputs: the row equals the first pass's
                        if l == min(spec["layers"]) and (A2[b, h, i] - A1[b, h, i]).abs().max() > 1e-9:
                            _fail(f"{tag}: fully dropped row {(b, h, i)} differs from the unmasked row")
                        continue
                    if torch.any(A2[b, h, i, :n][keep[b, h, i, :n] == 0] != 0):
                        _fail(f"{tag}: dropped key has non-zero second-pass attention")
    dropped = sum(int((T[f"keep_mask.layer{l}"] == 0).sum()) for l in spec["layers"])
    if dropped and torch.equal(T["masked_logits"], T["logits"]):
        _fail(f"{tag}: masked_logits equal logits despite {dropped} drops")
    # along the gradient with the embedding pad rows left out: nn.Embedding(padding_idx) gives
    # them no lookup gradient although the forward reads them (the decoder start token is the pad)
    g = mf.direction_without_pad_rows(cfg, {k: T["grad." + k] for k in params})
    gn2 = sum((v * v).sum().item() for v in g.values())

    def loss_at(delta):
        with torch.no_grad():
            P = {k: P0[k] + delta[k] for k in P0}
            return run(ctx, P, batch, labels=batch["labels"], extra=extra, retain=False)["loss"].item()

    tt = 1e-5 / math.sqrt(gn2)
    num = (loss_at({k: tt * v for k, v in g.items()}) - loss_at({k: -tt * v for k, v in g.items()})) / (2 * tt)
    if abs(num - gn2) > 1e-5 * max(1.0, gn2):
        _fail(f"{tag}: directional derivative {num} != |g|^2 {gn2}")
    rows, _, ratio = maf.float32_replay(T, layout, variant)
    print(f"check {tag}: ok ({'; '.join(stats)}; dropped {dropped}; rows with every key dropped {full_rows}; "
          f"float32 replay: {rows} rows differ, err/gap <= {ratio:.1e})")


README = """# Sequence-to-sequence AD-DROP golden files (generated — do not edit by hand)

Made by `tests/reference/make_seq2seq_addrop_fixture.py` (`/usr/bin/python3
tests/reference/make_seq2seq_addrop_fixture.py --check`), torch {torch_version}, float64,
eval mode, PyTorch autograd on the plain-torch MarianMTModel of
`tests/reference/marian_model.py`, on the model and batch of `tests/golden/marian/{layout}/`
(its config.json, model.safetensors and the `input_ids`, `attention_mask`, `labels`,
`decoder_input_ids` of batch.safetensors; its `extra_mask.*` / `alpha.*` are not used):
B = 3, source lengths n_b = 7 / 5 / 3 (Ls = 7), target lengths 6 / 4 / 2 (Lt = 6),
V = 40, 2 encoder layers with H = 4 heads (the AD-DROP sites), 2 decoder layers. The model
semantics (finfo.min masks, sinusoidal positions, tied embeddings, ...) are described in
`tests/golden/marian/README.md`.

Everything else — tensors, metadata, the candidate rule (float32 k, threshold t, high /
low side), the keep rule (`u < float32(1 - q)`), the uniforms (one
`torch.Generator().manual_seed(uniform_seed)` per file, `uniform_seed` = crc32 of
`"addrop/{layout}/<variant>"`, target layers ascending), GA / IGA / AA, the threshold-gap
and float32-replay statistics — is that of `tests/golden/addrop/README.md`
(make_addrop_fixtures.py), except:

- **Sites and layers.** The attention sites are the encoder's self-attention layers; `l`
  in `attention_probs.layer{{l}}`, `attribution.layer{{l}}`, ... and the `layers` metadata
  is the encoder layer. Shapes [B, H, Ls, Ls] = [3, 4, 7, 7]; key j of row (b, h, i) is a
  pad when j >= n_b. `attention_probs.layer{{l}}` is stored for both encoder layers.
- **First forward** (step 1): teacher forcing with `decoder_input_ids` (labels shifted
  right, decoder_start_token_id 39 first), eval mode, no extra mask.
- **Target** (step 2): pseudo label per target position c[b, t] = argmax_v z[b, t, v] of
  the first forward's decoder logits (first maximum), and
  `F = -CE_mean(z, c)` over the N target positions with labels != -100 (here N = 12):
  `F = (1/N) Σ_{{labels != -100}} log_softmax(z[b, t])[c[b, t]]`, so
  dF/dz[b, t] = -(softmax(z[b, t]) - onehot(c[b, t])) / N there and 0 at ignored
  positions. GA takes dF/dA_l of every target layer from one backward; IGA uses the same
  F with the fixed c at every alpha (m = 20, alpha_k = k/m on encoder layer l only);
  AA is A_l.
- **Second forward** (step 6): AD-DROP's mask, -10000 at every (b, h, i, j) with
  keep_mask 0, added to the encoder layer's attention scores after the pad mask; gold
  cross-entropy over labels != -100 (`loss`), full backward: `grad.<name>` for every
  parameter of model.safetensors except the buffer final_logits_bias (the tied table
  `model.shared.weight` has one gradient: encoder embedding + decoder embedding +
  lm_head parts; its pad row 39 only the lm_head part).
- **Shapes**: `logits` and `masked_logits` are [B, Lt, V] = [3, 6, 40] (row-major = the
  C++ [B*Lt, V]); `loss` [].
- **Metadata**: `objective` = "seq2seq", `sites` = "encoder", `fixture` =
  "tests/golden/marian/{layout}", `min_pseudo_label_margin` taken over the target
  positions with labels != -100.

## The pad mask is finfo.min here, not -10000

Marian masks pad keys with torch.finfo(float64).min (docs/algorithm.md step 4's "the padding
mask already gives them -10000" is BERT's case). AD-DROP's value stays -10000. So:
a dropped key of a row that keeps some non-pad key gets probability exactly 0 (as with
BERT), but a row whose every non-pad key is dropped becomes a softmax over the non-pad
keys only, all shifted by -10000 — the same as the unmasked row up to rounding, not a
softmax over all positions, pads included (`--check` verifies it to 1e-9 wherever it
happens; none of these four files drops a whole row, the `full_row` of
tests/golden/marian shows it). Padded query rows (i >= n_b) have
exactly-zero GA / IGA attributions (no path to the decoder: their outputs are only read as
masked keys), so on the high side all their non-pad keys are candidates, as with BERT.

## p = 0.2, q = 0.2 (the reference's WMT16 en-ro setting), p = 0.4 (low side)

n_b = 7 / 5 / 3. High side, p = 0.2: k = int(float32(0.8f * n)) = 5 / 4 / 2, so each
attended row has n_b - k = 2 / 1 / 1 candidates (more on ties) and padded query rows n_b.
Low side, p = 0.4: k = 2 / 2 / 1 (keys with B < t: 2 / 2 / 1 candidates).

| file | attribution | layers | side | p | q | m | min_threshold_gap | near-tie rows | float32 replay | min pseudo-label margin | bytes |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
{rows}
"""


def write_readmes(out_dir, infos):
    for layout in LAYOUTS:
        rows = []
        for variant, sp in VARIANTS.items():
            info = infos[(layout, variant)]
            meta = info["meta"]
            rows_f32, ratio = info["f32"]
            f32 = f"{rows_f32} rows differ, err/gap <= {ratio:.1e}"
            m = str(sp["steps"]) if sp["attribution"] == "iga" else "-"
            gap = meta["min_threshold_gap"]
            if gap != "inf":
                gap = f"{float(gap):.3e}"
            rows.append(f"| `{variant}.safetensors` | {sp['attribution']} | {meta['layers']} | {sp['side']} | "
                        f"{meta['p']} | {meta['q']} | {m} | {gap} | {meta['near_tie_rows']} | {f32} | "
                        f"{float(meta['min_pseudo_label_margin']):.3e} | {info['size']} |")
        with open(os.path.join(out_dir, layout, "README.md"), "w") as f:
            f.write(README.format(torch_version=torch.__version__, layout=layout, rows="\n".join(rows)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=maf.DEFAULT_OUT)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    install()
    written = generate(args.out)
    if args.check:
        tmp = tempfile.mkdtemp(prefix="addrop_seq2seq_regen_")
        try:
            generate(tmp, quiet=True)
            for path in written + [os.path.join(args.out, l, "README.md") for l in LAYOUTS]:
                rel = os.path.relpath(path, args.out)
                if not filecmp.cmp(path, os.path.join(tmp, rel), shallow=False):
                    _fail(f"{rel}: regeneration is not byte-identical")
        finally:
            shutil.rmtree(tmp)
        print(f"regeneration byte-identical: ok ({len(written)} files)")
        maf.check_k_index()
        for path in written:
            check(path, os.path.basename(os.path.dirname(path)), os.path.basename(path)[: -len(".safetensors")])
        print("all checks passed")


if __name__ == "__main__":
    main()
