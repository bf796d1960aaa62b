#!/usr/bin/python3
"""Generate the golden fixtures in tests/golden/fixtures/<case>/.

    /usr/bin/python3 tests/reference/make_fixtures.py [--out DIR] [--check] [--only CASE ...]

Everything is float64, eval mode (no dropout), fixed seeds: the output is
deterministic. See tests/golden/fixtures/README.md (also written by this script)
for what each tensor means.

--check additionally
  * runs torch.autograd.gradcheck on tiny float64 models of every kind (all
    non-embedding parameters, plus the extra mask and alpha inputs), a
    central-difference check of the embedding tables (padding rows must have
    exactly zero gradient) and of dLoss/dA_l;
  * reloads every written fixture, re-runs the forward from the files and checks
    it reproduces expected.safetensors bit for bit; checks softmax rows sum to 1,
    dLoss/dA_l against central differences on a sample of entries, the loss's
    directional derivative along the gradient equals |g|^2, and that the loss
    decreases along the negative gradient.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import hf_models as hm  # noqa: E402
import safetensors_io as st  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_OUT = os.path.join(REPO, "tests", "golden", "fixtures")

B, L = 3, 7
LENGTHS = [7, 5, 3]  # example 0 has no padding

# case name -> description
CASES = {
    "bert_seqcls": dict(model_type="bert", task="seqcls", num_labels=3, seed=101,
                        extra_layers=[0], alpha={1: 0.6}, full_row=(1, 2, 1)),
    "bert_regression": dict(model_type="bert", task="seqcls", num_labels=1, seed=102,
                            extra_layers=[0], alpha={0: 0.35}),
    "bert_token": dict(model_type="bert", task="token", num_labels=5, seed=103,
                       extra_layers=[0, 1], alpha={}),
    "roberta_seqcls": dict(model_type="roberta", task="seqcls", num_labels=2, seed=104,
                           extra_layers=[1], alpha={0: 0.8}),
    "electra_seqcls": dict(model_type="electra", task="seqcls", num_labels=2, seed=105,
                           extra_layers=[0], alpha={}, embedding_size=8),
    "electra_token": dict(model_type="electra", task="token", num_labels=5, seed=106,
                          extra_layers=[0, 1], alpha={1: 0.5}, embedding_size=8,
                          full_row=(0, 1, 4)),
}


def make_config(spec, **over) -> hm.Config:
    mt = spec["model_type"]
    kw = dict(
        model_type=mt, task=spec["task"], vocab_size=60, hidden_size=16,
        num_hidden_layers=2, num_attention_heads=4, intermediate_size=32,
        max_position_embeddings=24,
        type_vocab_size=1 if mt == "roberta" else 2,
        layer_norm_eps=1e-5 if mt == "roberta" else 1e-12,
        pad_token_id=1 if mt == "roberta" else 0,
        embedding_size=spec.get("embedding_size"),
        num_labels=spec["num_labels"],
    )
    kw.update(over)
    return hm.Config(**kw)


def make_batch(cfg: hm.Config, spec, g: torch.Generator, Bn=B, Ln=L, lengths=LENGTHS):
    """input_ids, attention_mask, token_type_ids, labels, extra, alpha."""
    pad = cfg.pad_token_id
    if cfg.model_type == "roberta":
        bos, eos, first_free = 0, 2, 4
    else:
        bos, eos, first_free = 2, 3, 4  # [CLS]-like, [SEP]-like
    ids = torch.full((Bn, Ln), pad, dtype=torch.int64)
    am = torch.zeros((Bn, Ln), dtype=torch.int64)
    tt = torch.zeros((Bn, Ln), dtype=torch.int64)
    for b, n in enumerate(lengths):
        body = torch.randint(first_free, cfg.vocab_size, (n,), generator=g)
        body[0] = bos
        body[n - 1] = eos
        ids[b, :n] = body
        am[b, :n] = 1
        if cfg.type_vocab_size > 1 and b < len(lengths) - 1:  # pairs; last example single
            split = (n + 1) // 2
            tt[b, split:n] = 1
    if cfg.task == "token":
        labels = torch.randint(0, cfg.num_labels, (Bn, Ln), generator=g)
        labels[am == 0] = -100
        labels[:, 0] = -100  # special token
        labels[0, 3] = -100  # e.g. a sub-word continuation
    elif cfg.num_labels == 1:
        labels = 5.0 * torch.rand(Bn, generator=g, dtype=torch.float64)
    else:
        labels = torch.randint(0, cfg.num_labels, (Bn,), generator=g)
    H = cfg.num_attention_heads
    extra = {}
    for l in spec.get("extra_layers", []):
        u = torch.rand((Bn, H, Ln, Ln), generator=g, dtype=torch.float64)
        keynp = am[:, None, None, :].bool().expand(Bn, H, Ln, Ln)
        m = torch.zeros((Bn, H, Ln, Ln), dtype=torch.float64)
        m[(u < 0.2) & keynp] = -10000.0
        if "full_row" in spec and l == spec["extra_layers"][0]:
            b, h, i = spec["full_row"]
            m[b, h, i, : lengths[b]] = -10000.0  # every non-pad key of one row dropped
        extra[l] = m
    alpha = {l: float(a) for l, a in spec.get("alpha", {}).items()}
    return ids, am, tt, labels, extra, alpha


def run_case(cfg, params, ids, am, tt, labels, extra, alpha):
    for t in params.values():
        t.grad = None
    out = hm.forward(cfg, params, ids, am, tt, labels, extra=extra, alpha=alpha,
                     retain_attention=True, training=False)
    out["loss"].backward()
    return out


def expected_tensors(cfg, params, out):
    exp = {"logits": out["logits"].detach().clone(),
           "loss": out["loss"].detach().clone().reshape(()),
           "embedding_output": out["embedding_output"].detach().clone()}
    for l, A in enumerate(out["attention_probs"]):
        exp[f"attention_probs.layer{l}"] = A.detach().clone()
        exp[f"attention_probs_grad.layer{l}"] = A.grad.detach().clone()
    for l, h in enumerate(out["hidden_states"]):
        exp[f"hidden_states.layer{l}"] = h.detach().clone()
    for name, t in params.items():
        exp[f"grad.{name}"] = t.grad.detach().clone() if t.grad is not None else torch.zeros_like(t)
    return exp


def batch_tensors(ids, am, tt, labels, extra, alpha):
    bt = {"input_ids": ids, "attention_mask": am, "token_type_ids": tt, "labels": labels}
    for l, m in extra.items():
        bt[f"extra_mask.layer{l}"] = m
    for l, a in alpha.items():
        bt[f"alpha.layer{l}"] = torch.tensor(a, dtype=torch.float64)
    return bt


def generate(out_dir, only=None):
    written = {}
    for name, spec in CASES.items():
        if only and name not in only:
            continue
        cfg = make_config(spec)
        g = torch.Generator().manual_seed(spec["seed"])
        params = hm.init_params(cfg, seed=spec["seed"] * 7 + 1, dtype=torch.float64)
        ids, am, tt, labels, extra, alpha = make_batch(cfg, spec, g)
        out = run_case(cfg, params, ids, am, tt, labels, extra, alpha)
        d = os.path.join(out_dir, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg.to_hf_json(), f, indent=2, sort_keys=True)
            f.write("\n")
        meta = {"format": "pt", "case": name, "generator": "tests/reference/make_fixtures.py"}
        st.save_file({k: v.detach() for k, v in params.items()},
                     os.path.join(d, "model.safetensors"), meta)
        st.save_file(batch_tensors(ids, am, tt, labels, extra, alpha),
                     os.path.join(d, "batch.safetensors"), meta)
        st.save_file(expected_tensors(cfg, params, out),
                     os.path.join(d, "expected.safetensors"), meta)
        written[name] = d
        print(f"{name}: loss={out['loss'].item():.12g} -> {d}")
    write_readme(out_dir)
    return written


# --------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------

def _fail(msg):
    raise AssertionError(msg)


def load_case(d):
    with open(os.path.join(d, "config.json")) as f:
        cfg = hm.Config.from_hf_json(json.load(f))
    params = {k: v.clone().requires_grad_(True) for k, v in st.load_file(os.path.join(d, "model.safetensors")).items()}
    bt = st.load_file(os.path.join(d, "batch.safetensors"))
    exp = st.load_file(os.path.join(d, "expected.safetensors"))
    extra = {int(k.split("layer")[1]): v for k, v in bt.items() if k.startswith("extra_mask.layer")}
    alpha = {int(k.split("layer")[1]): float(v.reshape(())) for k, v in bt.items() if k.startswith("alpha.layer")}
    return cfg, params, bt, exp, extra, alpha


def check_fixture(d):
    cfg, params, bt, exp, extra, alpha = load_case(d)
    names = list(hm.param_shapes(cfg).keys())
    if sorted(names) != sorted(params.keys()):
        _fail(f"{d}: parameter names differ from hf_models.param_shapes")
    for n in names:
        if "grad." + n not in exp:
            _fail(f"{d}: missing grad.{n}")
    ids, am, tt, labels = bt["input_ids"], bt["attention_mask"], bt["token_type_ids"], bt["labels"]
    out = run_case(cfg, params, ids, am, tt, labels, extra, alpha)
    got = expected_tensors(cfg, params, out)
    if sorted(got) != sorted(exp):
        _fail(f"{d}: tensor name sets differ")
    for k in exp:
        if got[k].shape != exp[k].shape or not torch.equal(got[k], exp[k]):
            _fail(f"{d}: {k} not reproduced from files (max diff {(got[k]-exp[k]).abs().max()})")
    # softmax rows
    for l in range(cfg.num_hidden_layers):
        A = exp[f"attention_probs.layer{l}"]
        if (A.sum(-1) - 1).abs().max() > 1e-12:
            _fail(f"{d}: attention rows do not sum to 1")
    # padding rows of embeddings have zero grad
    p = cfg.prefix
    if exp[f"grad.{p}embeddings.word_embeddings.weight"][cfg.pad_token_id].abs().max() != 0:
        _fail(f"{d}: pad word-embedding row has non-zero grad")
    if cfg.model_type == "roberta" and exp[f"grad.{p}embeddings.position_embeddings.weight"][cfg.pad_token_id].abs().max() != 0:
        _fail(f"{d}: pad position-embedding row has non-zero grad")

    def loss_at(delta_params=None, probs_delta=None):
        with torch.no_grad():
            P = {k: (v + delta_params[k] if delta_params else v).detach() for k, v in params.items()}
            o = hm.forward(cfg, P, ids, am, tt, labels, extra=extra, alpha=alpha,
                           retain_attention=False, probs_delta=probs_delta)
            return o["loss"].item()

    # dLoss/dA_l by central differences on a sample of entries
    gen = torch.Generator().manual_seed(5)
    eps = 1e-6
    for l in range(cfg.num_hidden_layers):
        G = exp[f"attention_probs_grad.layer{l}"]
        flat = G.numel()
        idx = torch.randint(0, flat, (12,), generator=gen).tolist()
        idx.append(int(G.abs().flatten().argmax()))
        for j in idx:
            dl = torch.zeros(flat, dtype=torch.float64)
            dl[j] = eps
            dl = dl.view_as(G)
            num = (loss_at(probs_delta={l: dl}) - loss_at(probs_delta={l: -dl})) / (2 * eps)
            ana = G.flatten()[j].item()
            if abs(num - ana) > 1e-6 * max(1.0, abs(ana)):
                _fail(f"{d}: dLoss/dA layer {l} entry {j}: numeric {num} vs stored {ana}")
    # directional derivative along g and descent
    g = {k: exp["grad." + k] for k in params}
    gn2 = sum((v * v).sum().item() for v in g.values())
    L0 = exp["loss"].item()
    t = 1e-5 / max(gn2 ** 0.5, 1e-30)
    num = (loss_at({k: t * v for k, v in g.items()}) - loss_at({k: -t * v for k, v in g.items()})) / (2 * t)
    if abs(num - gn2) > 1e-5 * max(1.0, gn2):
        _fail(f"{d}: directional derivative {num} != |g|^2 {gn2}")
    step = 1e-3 / max(gn2 ** 0.5, 1e-30)
    L1 = loss_at({k: -step * v for k, v in g.items()})
    if not L1 < L0:
        _fail(f"{d}: loss does not decrease along -grad ({L0} -> {L1})")
    print(f"check {os.path.basename(d)}: ok (loss {L0:.6g} -> {L1:.6g} along -g, |g|^2={gn2:.6g})")


def gradcheck_tiny():
    combos = [("bert", "seqcls", 3, None), ("bert", "seqcls", 1, None), ("bert", "token", 3, None),
              ("roberta", "seqcls", 2, None), ("roberta", "token", 3, None),
              ("electra", "seqcls", 2, 4), ("electra", "token", 3, 4), ("electra", "seqcls", 2, None)]
    for mt, task, nl, es in combos:
        spec = dict(model_type=mt, task=task, num_labels=nl, embedding_size=es,
                    extra_layers=[0], alpha={1: 0.7})
        cfg = make_config(spec, vocab_size=12, hidden_size=8, num_attention_heads=2,
                          intermediate_size=8, max_position_embeddings=10)
        g = torch.Generator().manual_seed(11)
        params = hm.init_params(cfg, seed=12)
        ids, am, tt, labels, extra, alpha = make_batch(cfg, spec, g, Bn=2, Ln=5, lengths=[5, 3])
        names = list(params.keys())
        emb_names = [n for n in names if "embeddings." in n and n.endswith("_embeddings.weight")]
        dense_names = [n for n in names if n not in emb_names]

        def f(*args):
            P = dict(params)
            P.update({n: a for n, a in zip(dense_names, args[:len(dense_names)])})
            ex = {0: args[len(dense_names)]}
            al = {1: args[len(dense_names) + 1]}
            return hm.forward(cfg, P, ids, am, tt, labels, extra=ex, alpha=al,
                              retain_attention=False)["loss"]

        inputs = [params[n].detach().clone().requires_grad_(True) for n in dense_names]
        inputs.append(extra[0].clone().requires_grad_(True))
        inputs.append(torch.tensor(0.7, dtype=torch.float64, requires_grad=True))
        if not torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-5):
            _fail(f"gradcheck failed for {mt}/{task}")

        # embedding tables: central differences; padding rows must be exactly 0
        for t in params.values():
            t.grad = None
        out = hm.forward(cfg, params, ids, am, tt, labels, extra=extra, alpha=alpha)
        out["loss"].backward()
        for n in emb_names:
            W = params[n]
            pad_row = None
            if n.endswith("word_embeddings.weight") or (mt == "roberta" and n.endswith("position_embeddings.weight")):
                pad_row = cfg.pad_token_id
            for r in range(W.shape[0]):
                for c in range(W.shape[1]):
                    ana = W.grad[r, c].item()
                    if r == pad_row:
                        if ana != 0.0:
                            _fail(f"{mt}/{task}: {n}[{r}] padding row grad not zero")
                        continue
                    with torch.no_grad():
                        W[r, c] += 1e-6
                        lp = hm.forward(cfg, params, ids, am, tt, labels, extra=extra, alpha=alpha)["loss"].item()
                        W[r, c] -= 2e-6
                        lm = hm.forward(cfg, params, ids, am, tt, labels, extra=extra, alpha=alpha)["loss"].item()
                        W[r, c] += 1e-6
                    num = (lp - lm) / 2e-6
                    if abs(num - ana) > 1e-6 * max(1.0, abs(ana)):
                        _fail(f"{mt}/{task}: {n}[{r},{c}] numeric {num} vs autograd {ana}")
        # dLoss/dA (retained) vs central differences, every entry
        for l, A in enumerate(out["attention_probs"]):
            G = A.grad
            for j in range(G.numel()):
                dl = torch.zeros(G.numel(), dtype=torch.float64)
                dl[j] = 1e-6
                dl = dl.view_as(G)
                with torch.no_grad():
                    lp = hm.forward(cfg, params, ids, am, tt, labels, extra=extra, alpha=alpha, probs_delta={l: dl})["loss"].item()
                    lm = hm.forward(cfg, params, ids, am, tt, labels, extra=extra, alpha=alpha, probs_delta={l: -dl})["loss"].item()
                num = (lp - lm) / 2e-6
                ana = G.flatten()[j].item()
                if abs(num - ana) > 1e-6 * max(1.0, abs(ana)):
                    _fail(f"{mt}/{task}: dLoss/dA layer {l} entry {j}: {num} vs {ana}")
        print(f"gradcheck tiny {mt}/{task}/labels={nl}/emb={es}: ok")


def check_io():
    t = {"b": torch.arange(6, dtype=torch.int64).reshape(2, 3), "a": torch.tensor(1.5, dtype=torch.float64),
         "c": torch.randn(3, 2, dtype=torch.float32), "z": torch.zeros(0, 4, dtype=torch.float64)}
    blob = st.serialize(t, {"k": "v"})
    n = int.from_bytes(blob[:8], "little")
    if n % 8:
        _fail("header not padded to 8")
    hdr = json.loads(blob[8:8 + n])
    order = sorted((v["data_offsets"][0], k) for k, v in hdr.items() if k != "__metadata__")
    if [k for _, k in order] != sorted(t):
        _fail("tensors not laid out in sorted name order")
    back, meta = st.deserialize(blob)
    if meta != {"k": "v"}:
        _fail("metadata round trip")
    for k in t:
        if back[k].dtype != t[k].dtype or back[k].shape != t[k].shape or not torch.equal(back[k], t[k]):
            _fail(f"round trip {k}")
    print("safetensors io: ok")


# --------------------------------------------------------------------------

README = """# Golden fixtures (generated — do not edit by hand)

Made by `tests/reference/make_fixtures.py` (run `/usr/bin/python3
tests/reference/make_fixtures.py`, add `--check` for the self-consistency checks)
with the plain-torch models of `tests/reference/hf_models.py` (a re-implementation of
Hugging Face's BERT / RoBERTa / ELECTRA modules that keeps their parameter names), torch
{torch_version}, float64, eval mode (no dropout), fixed seeds: regenerating gives the
same bytes. Files are written by the hand-made `tests/reference/safetensors_io.py`
(header padded with spaces to a multiple of 8, tensors in sorted name order,
little-endian, `__metadata__` = format/case/generator).

## Cases

| case | architecture | labels | extra_mask layers | alpha |
| --- | --- | --- | --- | --- |
{case_rows}

All: vocab 60, hidden 16, 2 layers, 4 heads (head_dim 4), intermediate 32,
max_position_embeddings 24, B = 3, L = 7, example lengths 7 / 5 / 3 (example 0 has no
padding). BERT/ELECTRA: pad_token_id 0, layer_norm_eps 1e-12, type_vocab_size 2;
examples 0 and 1 are pairs (token_type_ids 1 on the second half of the real tokens),
example 2 is a single sentence (all 0). RoBERTa: pad_token_id 1, layer_norm_eps 1e-5,
type_vocab_size 1, token_type_ids all 0, position ids cumsum(ids != pad) + pad (pads
keep position 1). ELECTRA: embedding_size 8, so `electra.embeddings_project` maps
8 -> 16. Parameters are random (matrices N(0, 0.3), LayerNorm weights 1 + N(0, 0.2),
biases N(0, 0.1)); embedding rows at the padding index are random too (not zero).

## config.json
Hugging Face form (`model_type`, `architectures`, sizes, `hidden_act` "gelu",
`layer_norm_eps`, `pad_token_id`, `embedding_size` for electra, `id2label`/`label2id`
giving num_labels, `problem_type` "single_label_classification" / "regression", absent
for token classification).

## model.safetensors
Every parameter, F64, exact Hugging Face names (`bert.encoder.layer.0.attention.self.query.weight`,
`classifier.out_proj.bias`, ...). Linear weights are [out, in].

## batch.safetensors
- `input_ids`, `attention_mask`, `token_type_ids`: I64 [B, L]; pads are pad_token_id
  with attention_mask 0.
- `labels`: I64 [B] (classification), F64 [B] (regression, num_labels 1), I64 [B, L]
  (token classification; -100 on pads, on position 0 and on (0, 3)).
- `extra_mask.layer{{l}}`: F64 [B, H, L, L], the AD-DROP mask of layer l, 0 or -10000,
  added to that layer's attention logits after the usual padding mask. About 20% of the
  non-pad keys are -10000; pad keys are always 0 here (they are masked by attention_mask).
  In `bert_seqcls` (layer 0, row b=1 h=2 i=1) and `electra_token` (layer 0, row b=0 h=1
  i=4) every non-pad key of one row is -10000, so that row becomes a softmax over all
  positions, pads included. Absent: no extra mask for that layer.
- `alpha.layer{{l}}`: F64 shape [] — layer l's attention probabilities are multiplied by
  alpha in the product with V (integrated-gradients scaling): context = (alpha A_l) V.
  Absent: alpha = 1.

## expected.safetensors (all F64)
- `logits`: [B, num_labels] (sequence) or [B, L, num_labels] (token).
- `loss`: shape []. Cross-entropy mean (classification), MSE mean of logits[:, 0] vs
  labels (regression), cross-entropy mean over labels != -100 (token). Gold labels.
- `embedding_output`: [B, L, hidden], word + position + token_type embeddings after
  the embedding LayerNorm (and after `embeddings_project` for electra): the input of
  layer 0.
- `hidden_states.layer{{l}}`: [B, L, hidden], output of encoder layer l (after its
  output LayerNorm).
- `attention_probs.layer{{l}}`: [B, H, L, L], A_l = softmax(QK^T/sqrt(d) + ext + extra_l),
  ext[b, j] = (1 - attention_mask[b, j]) * -10000; *before* alpha scaling.
- `attention_probs_grad.layer{{l}}`: [B, H, L, L], dLoss/dA_l for that unscaled A_l (so it
  includes the factor alpha_l by the chain rule, and is exactly 0 on padded query rows).
- `grad.<parameter name>`: dLoss/dparameter for every parameter in model.safetensors
  (same shape). Embedding rows at the padding index have zero gradient (BERT/ELECTRA
  word row pad_token_id; RoBERTa word and position rows 1), like nn.Embedding(padding_idx).

Model semantics: post-LayerNorm transformer, exact (erf) GELU, BERT pooler tanh(dense(h[:, 0]))
then `classifier`; RoBERTa head dense -> tanh -> out_proj on h[:, 0]; ELECTRA head
dense -> gelu -> out_proj on h[:, 0]; token classification `classifier` on every token.

## Sizes on disk
{sizes}
"""


def write_readme(out_dir):
    rows = []
    for name, spec in CASES.items():
        cfg = make_config(spec)
        al = ", ".join(f"layer {l}: {a}" for l, a in spec.get("alpha", {}).items()) or "-"
        ex = ", ".join(str(l) for l in spec.get("extra_layers", [])) or "-"
        rows.append(f"| `{name}` | {cfg.architecture} | {cfg.num_labels} | {ex} | {al} |")
    sizes = []
    total = 0
    for name in CASES:
        d = os.path.join(out_dir, name)
        if not os.path.isdir(d):
            continue
        s = sum(os.path.getsize(os.path.join(d, f)) for f in sorted(os.listdir(d)))
        total += s
        sizes.append(f"- `{name}`: {s} bytes")
    sizes.append(f"- total: {total} bytes")
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write(README.format(torch_version=torch.__version__, case_rows="\n".join(rows),
                              sizes="\n".join(sizes)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="run the self-consistency checks too")
    ap.add_argument("--only", nargs="*", help="generate only these cases")
    args = ap.parse_args()
    torch.set_num_threads(1)  # bit-for-bit reproducibility
    os.makedirs(args.out, exist_ok=True)
    written = generate(args.out, args.only)
    if args.check:
        check_io()
        for d in written.values():
            check_fixture(d)
        gradcheck_tiny()
        print("all checks passed")


if __name__ == "__main__":
    main()
