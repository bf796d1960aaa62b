#!/usr/bin/python3
"""Generate the MarianMTModel golden fixtures in tests/golden/marian/<case>/.

    /usr/bin/python3 tests/reference/make_marian_fixtures.py [--out DIR] [--check] [--only CASE ...]

Uses the plain-torch MarianMTModel of tests/reference/marian_model.py: float64, eval mode
(no dropout), fixed seeds, torch.set_num_threads(1); the output is byte-reproducible.
Each case folder gets config.json, model.safetensors (what save_pretrained writes),
batch.safetensors and expected.safetensors; tests/golden/marian/README.md (also written
by this script) describes every tensor.

--check additionally
  * regenerates everything into a temporary folder and compares the bytes;
  * reloads every fixture, re-runs the forward passes and generation from the files and
    checks they reproduce expected.safetensors bit for bit; checks what model.safetensors
    holds (tied copies and embed_positions absent), softmax rows, exact zeros at pad keys
    and future keys, the fully dropped row, dLoss/dA of every site against central
    differences, the directional derivative of the loss along the stored gradient;
  * the incremental KV-cache decoder against full teacher forcing (every position);
  * generation: cache / no cache identical, float32 logits (as Hugging Face casts them)
    give the same sequences, greedy sequences are the argmax of the teacher-forced
    processed logits, beam scores recomputed from teacher forcing, and an independent
    per-sentence list-based beam search gives the same sequences and scores;
  * the label-smoothed loss against a loop written out independently;
  * torch.autograd.gradcheck of tiny tied / untied models (every dense parameter, the
    extra masks and alphas of encoder, decoder and cross sites), central differences of
    the embedding tables (pad rows: zero embedding gradient; the tied table's pad row
    keeps its lm_head gradient).
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

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import marian_model as mm  # noqa: E402
import safetensors_io as st  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_OUT = os.path.join(REPO, "tests", "golden", "marian")
GENERATOR = "tests/reference/make_marian_fixtures.py"

B = 3
SRC_LENGTHS = [7, 5, 3]
TGT_LENGTHS = [6, 4, 2]
LS, LT = max(SRC_LENGTHS), max(TGT_LENGTHS)
FIRST_FREE = 2  # ids 0 (eos) and 1 (unk) are special; the pad is the last id
NEG = -10000.0  # AD-DROP's additive value in extra masks

CASES = {
    "marian_tied": dict(
        seed=3, eos_bias=2.0,
        config=dict(vocab_size=40, d_model=16, encoder_layers=2, decoder_layers=2,
                    encoder_attention_heads=4, decoder_attention_heads=4,
                    encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=32,
                    activation_function="swish", scale_embedding=True,
                    share_encoder_decoder_embeddings=True, tie_word_embeddings=True,
                    pad_token_id=39, eos_token_id=0, decoder_start_token_id=39,
                    forced_eos_token_id=0, num_beams=4, max_length=10),
        extra_layers=[0], full_row=(1, 2, 1), alpha={1: 0.6}),
    "marian_untied": dict(
        seed=17, eos_bias=1.5,
        config=dict(vocab_size=40, decoder_vocab_size=40, d_model=16, encoder_layers=3, decoder_layers=1,
                    encoder_attention_heads=4, decoder_attention_heads=2,
                    encoder_ffn_dim=24, decoder_ffn_dim=40, max_position_embeddings=32,
                    activation_function="relu", scale_embedding=False,
                    share_encoder_decoder_embeddings=False, tie_word_embeddings=False,
                    pad_token_id=39, eos_token_id=0, decoder_start_token_id=39,
                    forced_eos_token_id=None, num_beams=4, max_length=10),
        extra_layers=[0, 2], full_row=(0, 3, 2), alpha={1: 0.5}),
}

# name -> generation settings (written to the metadata of expected.safetensors)
GENERATIONS = {
    "greedy": mm.GenerationSettings(num_beams=1, max_length=10),
    "greedy_new4": mm.GenerationSettings(num_beams=1, max_new_tokens=4),
    "beam4": mm.GenerationSettings(num_beams=4, max_length=10, early_stopping=True, length_penalty=1.0),
    "beam4_lp06": mm.GenerationSettings(num_beams=4, max_length=10, early_stopping=False, length_penalty=0.6),
    "beam3_never": mm.GenerationSettings(num_beams=3, max_length=10, early_stopping="never", length_penalty=1.0),
}


def settings_json(s: mm.GenerationSettings) -> str:
    d = {"num_beams": s.num_beams, "max_length": s.max_length, "max_new_tokens": s.max_new_tokens,
         "min_length": s.min_length, "length_penalty": s.length_penalty, "early_stopping": s.early_stopping,
         "do_sample": False, "num_return_sequences": 1, "use_config_bad_words_ids": True,
         "use_config_forced_eos_token_id": s.forced_eos}
    return json.dumps(d, sort_keys=True)


# --------------------------------------------------------------------------
# building a case
# --------------------------------------------------------------------------

def make_case(spec):
    """cfg, params, buffers, batch dict (input_ids, attention_mask, labels,
    decoder_input_ids), extra {site: mask}, alpha {site: float}."""
    cfg = mm.MarianConfig(**spec["config"])
    seed = spec["seed"]
    params = mm.init_params(cfg, seed)
    g = torch.Generator().manual_seed(seed + 1000)
    fb = 0.1 * torch.randn(1, cfg.target_vocab_size, generator=g, dtype=torch.float64)
    fb[0, cfg.eos_token_id] += spec["eos_bias"]
    buffers = {"final_logits_bias": fb}
    pad, eos = cfg.pad_token_id, cfg.eos_token_id
    ids = torch.full((B, LS), pad, dtype=torch.int64)
    am = torch.zeros((B, LS), dtype=torch.int64)
    for b, n in enumerate(SRC_LENGTHS):
        ids[b, : n - 1] = torch.randint(FIRST_FREE, pad, (n - 1,), generator=g)
        ids[b, n - 1] = eos
        am[b, :n] = 1
    labels = torch.full((B, LT), -100, dtype=torch.int64)
    for b, n in enumerate(TGT_LENGTHS):
        labels[b, : n - 1] = torch.randint(FIRST_FREE, pad, (n - 1,), generator=g)
        labels[b, n - 1] = eos
    dec = mm.shift_tokens_right(labels, pad, cfg.decoder_start_token_id)
    H = cfg.encoder_attention_heads
    extra = {}
    for l in spec["extra_layers"]:
        u = torch.rand((B, H, LS, LS), generator=g, dtype=torch.float64)
        keynp = am[:, None, None, :].bool().expand(B, H, LS, LS)
        m = torch.zeros((B, H, LS, LS), dtype=torch.float64)
        m[(u < 0.2) & keynp] = NEG
        if l == spec["extra_layers"][0]:
            b, h, i = spec["full_row"]
            m[b, h, i, : SRC_LENGTHS[b]] = NEG
        extra[f"encoder.layer{l}"] = m
    alpha = {f"encoder.layer{l}": float(a) for l, a in spec["alpha"].items()}
    batch = {"input_ids": ids, "attention_mask": am, "labels": labels, "decoder_input_ids": dec}
    return cfg, params, buffers, batch, extra, alpha


def site_names(cfg):
    return ([f"encoder.layer{l}" for l in range(cfg.encoder_layers)]
            + [f"decoder.layer{l}" for l in range(cfg.decoder_layers)]
            + [f"cross.layer{l}" for l in range(cfg.decoder_layers)])


def run_forward(cfg, params, buffers, batch, extra=None, alpha=None):
    for t in params.values():
        t.grad = None
    out = mm.forward(cfg, params, buffers, batch["input_ids"], batch["attention_mask"],
                     batch["decoder_input_ids"], batch["labels"], extra=extra, alpha=alpha)
    out["loss"].backward()
    return out


def run_generations(cfg, params, buffers, batch, **kw):
    res = {}
    P = {k: v.detach() for k, v in params.items()}
    for name, s in GENERATIONS.items():
        seqs, scores = mm.generate(cfg, P, buffers, batch["input_ids"], batch["attention_mask"], s, **kw)
        res[name] = (seqs, scores)
    return res


def expected_tensors(cfg, params, buffers, batch, extra, alpha):
    exp = {}
    out = run_forward(cfg, params, buffers, batch)
    exp["logits"] = out["logits"].detach().clone()
    exp["loss"] = out["loss"].detach().clone().reshape(())
    exp["loss_label_smoothed"] = mm.label_smoothed_loss(out["logits"].detach(), batch["labels"], 0.1).reshape(())
    exp["embed_positions"] = mm.sinusoidal_positions(cfg.max_position_embeddings, cfg.d_model, torch.float64)
    for i, h in enumerate(out["encoder_hidden_states"]):
        exp["encoder_embedding_output" if i == 0 else f"encoder_hidden_states.layer{i - 1}"] = h.detach().clone()
    for i, h in enumerate(out["decoder_hidden_states"]):
        exp["decoder_embedding_output" if i == 0 else f"decoder_hidden_states.layer{i - 1}"] = h.detach().clone()
    for site in site_names(cfg):
        A = out["attention_probs"][site]
        exp[f"attention_probs.{site}"] = A.detach().clone()
        exp[f"attention_probs_grad.{site}"] = A.grad.detach().clone()
    for name, t in params.items():
        exp[f"grad.{name}"] = t.grad.detach().clone()
    masked = run_forward(cfg, params, buffers, batch, extra=extra, alpha=alpha)
    exp["masked.logits"] = masked["logits"].detach().clone()
    exp["masked.loss"] = masked["loss"].detach().clone().reshape(())
    for site in site_names(cfg):
        A = masked["attention_probs"][site]
        exp[f"masked.attention_probs.{site}"] = A.detach().clone()
        if site.startswith("encoder."):
            exp[f"masked.attention_probs_grad.{site}"] = A.grad.detach().clone()
    for t in params.values():
        t.grad = None
    for name, (seqs, scores) in run_generations(cfg, params, buffers, batch).items():
        exp[f"{name}.sequences"] = seqs
        if scores is not None:
            exp[f"{name}.sequences_scores"] = scores
    return exp


def batch_tensors(batch, extra, alpha):
    bt = dict(batch)
    for site, m in extra.items():
        bt[f"extra_mask.{site}"] = m
    for site, a in alpha.items():
        bt[f"alpha.{site}"] = torch.tensor(a, dtype=torch.float64)
    return bt


def metadata(name):
    meta = {"format": "pt", "case": name, "generator": GENERATOR}
    for g, s in GENERATIONS.items():
        meta[f"generation.{g}"] = settings_json(s)
    return meta


def generate(out_dir, only=None, quiet=False):
    torch.set_num_threads(1)
    written = {}
    for name, spec in CASES.items():
        if only and name not in only:
            continue
        cfg, params, buffers, batch, extra, alpha = make_case(spec)
        d = os.path.join(out_dir, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg.to_hf_json(), f, indent=2, sort_keys=True)
            f.write("\n")
        meta = metadata(name)
        st.save_file(mm.save_pretrained_state(cfg, params, buffers), os.path.join(d, "model.safetensors"),
                     {"format": "pt"})
        st.save_file(batch_tensors(batch, extra, alpha), os.path.join(d, "batch.safetensors"), meta)
        exp = expected_tensors(cfg, params, buffers, batch, extra, alpha)
        st.save_file(exp, os.path.join(d, "expected.safetensors"), meta)
        written[name] = d
        if not quiet:
            print(f"{name}: loss={exp['loss'].item():.12g} ls={exp['loss_label_smoothed'].item():.12g}")
            for g in GENERATIONS:
                sc = exp.get(f"{g}.sequences_scores")
                print(f"  {g}: {exp[f'{g}.sequences'].tolist()}" + (f" scores {sc.tolist()}" if sc is not None else ""))
    write_readme(out_dir)
    return written


# --------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------

def load_case(d, requires_grad=True):
    cfg = mm.MarianConfig.load(os.path.join(d, "config.json"))
    sd = st.load_file(os.path.join(d, "model.safetensors"))
    params, buffers = mm.load_state(cfg, sd, requires_grad=requires_grad)
    bt = st.load_file(os.path.join(d, "batch.safetensors"))
    batch = {k: bt[k] for k in ("input_ids", "attention_mask", "labels", "decoder_input_ids")}
    extra = {k[len("extra_mask."):]: v for k, v in bt.items() if k.startswith("extra_mask.")}
    alpha = {k[len("alpha."):]: float(v.reshape(())) for k, v in bt.items() if k.startswith("alpha.")}
    return cfg, params, buffers, batch, extra, alpha


# --------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------

def _fail(msg):
    raise AssertionError(msg)


def _rel(a, b):
    return (a - b).abs().max().item() / max(1.0, b.abs().max().item())


def generated_length(row, eos):
    """Generated tokens of a sequence row (start token excluded, eos included)."""
    for t in range(1, len(row)):
        if row[t] == eos:
            return t
    return len(row) - 1


def simple_beam_search(cfg, P, buffers, ids, am, s: mm.GenerationSettings):
    """Independent per-sentence beam search over Python lists (no cache, full decoder
    recomputation, sorted lists instead of top-k tensors), same semantics as
    marian_model.beam_search. Returns (list of token lists, list of scores)."""
    max_length = s.resolved_max_length(cfg)
    nb, lp, es = s.num_beams, s.length_penalty, s.early_stopping
    proc = mm._logits_processors(cfg, s, max_length)
    seqs_out, scores_out = [], []
    for b in range(ids.shape[0]):
        n = int(am[b].sum())
        src, srcm = ids[b:b + 1, :n], am[b:b + 1, :n]
        enc = mm._prepare(cfg, P, src, srcm)
        running = [([cfg.decoder_start_token_id], 0.0 if k == 0 else mm.NEG_SENTINEL) for k in range(nb)]
        finished = []  # (score, tokens)
        improvable = True
        cur_len = 1
        while True:
            cands = []
            for k, (toks, sc) in enumerate(running):
                lg = mm._full_last_logits(cfg, P, buffers, enc, srcm, torch.tensor([toks]))
                lpv = proc(cur_len, F.log_softmax(lg, -1))[0].tolist()
                for v, x in enumerate(lpv):
                    cands.append((sc + x, k * len(lpv) + v, toks + [v]))
            cands.sort(key=lambda c: (-c[0], c[1]))
            top = cands[: 2 * nb]
            hit = [c[2][-1] == cfg.eos_token_id or len(c[2]) >= max_length for c in top]
            nxt = sorted([(c[0] + (mm.NEG_SENTINEL if h else 0.0), r, c[2]) for r, (c, h) in enumerate(zip(top, hit))],
                         key=lambda c: (-c[0], c[1]))[:nb]
            full = len(finished) == nb and es is True
            if improvable and not full:
                for r in range(nb):
                    if hit[r]:
                        finished.append((top[r][0] / float(len(top[r][2]) - 1) ** lp, top[r][2]))
                finished = sorted(finished, key=lambda c: -c[0])[:nb]
            running = [(c[2], c[0]) for c in nxt]
            cur_len += 1
            g_best = (max_length - 1) if (es == "never" and lp > 0) else (cur_len - 1)
            best_possible = running[0][1] / float(g_best) ** lp
            if len(finished) == nb and best_possible <= min(f[0] for f in finished):
                improvable = False
            all_done_es = len(finished) == nb and es is True
            if not improvable or all_done_es or all(hit):
                break
        best = max(finished, key=lambda c: c[0])
        seqs_out.append(best[1])
        scores_out.append(best[0])
    return seqs_out, scores_out


def teacher_forced_scores(cfg, P, buffers, ids, am, seqs, s: mm.GenerationSettings):
    """For each row: sum of the processed log-probabilities of its generated tokens (under
    the processors as applied at each length), divided by g^length_penalty."""
    max_length = s.resolved_max_length(cfg)
    proc = mm._logits_processors(cfg, s, max_length)
    out = []
    with torch.no_grad():
        for b in range(seqs.shape[0]):
            g = generated_length(seqs[b].tolist(), cfg.eos_token_id)
            toks = seqs[b:b + 1, : g + 1]
            o = mm.forward(cfg, P, buffers, ids[b:b + 1], am[b:b + 1], toks[:, :-1], retain_attention=False)
            tot = 0.0
            for t in range(g):
                lpv = proc(t + 1, F.log_softmax(o["logits"][:, t], -1))
                tot += lpv[0, toks[0, t + 1]].item()
            out.append(tot / float(g) ** s.length_penalty)
    return out


def direction_without_pad_rows(cfg, grads):
    """The gradient with the pad rows of the embedding tables set to 0: the lookup through
    nn.Embedding(padding_idx=pad) gives those rows no gradient although the forward reads
    them (source pads, and the decoder start token, which is the pad), so the stored
    gradient is not the derivative along them; along this direction it is."""
    out = dict(grads)
    for name in set(mm.table_names(cfg)[:2]):
        t = out[name].clone()
        t[cfg.pad_token_id] = 0.0
        out[name] = t
    return out


def check_fixture(d):
    name = os.path.basename(d)
    cfg, params, buffers, batch, extra, alpha = load_case(d)
    exp, meta = st.load_file_with_metadata(os.path.join(d, "expected.safetensors"))
    sd = st.load_file(os.path.join(d, "model.safetensors"))
    # what save_pretrained wrote
    want = sorted(list(mm.param_shapes(cfg)) + ["final_logits_bias"])
    if sorted(sd) != want:
        _fail(f"{name}: model.safetensors keys {sorted(sd)}")
    if cfg.share_encoder_decoder_embeddings and cfg.tie_word_embeddings:
        for k in ("lm_head.weight", "model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight"):
            if k in sd:
                _fail(f"{name}: tied copy {k} written")
    if any("embed_positions" in k for k in sd):
        _fail(f"{name}: embed_positions written")
    # reproduce from the files
    got = expected_tensors(cfg, params, buffers, batch, extra, alpha)
    if sorted(got) != sorted(exp):
        _fail(f"{name}: tensor name sets differ: {sorted(set(got) ^ set(exp))}")
    for k in exp:
        if got[k].shape != exp[k].shape or got[k].dtype != exp[k].dtype or not torch.equal(got[k], exp[k]):
            _fail(f"{name}: {k} not reproduced from the files")
    for g, s in GENERATIONS.items():
        if meta.get(f"generation.{g}") != settings_json(s):
            _fail(f"{name}: metadata generation.{g}")
    am = batch["attention_mask"]
    lens = am.sum(-1).tolist()
    # attention probabilities: rows, pad keys, causal keys, fully dropped row
    for pre in ("", "masked."):
        for site in site_names(cfg):
            A = exp[f"{pre}attention_probs.{site}"]
            if (A.sum(-1) - 1).abs().max() > 1e-12:
                _fail(f"{name}: {pre}{site} rows do not sum to 1")
            if site.startswith(("encoder.", "cross.")):
                for b, n in enumerate(lens):
                    if torch.any(A[b, :, :, n:] != 0):
                        _fail(f"{name}: {pre}{site} pad keys not exactly 0")
            else:
                Lt = A.shape[-1]
                fut = torch.ones(Lt, Lt, dtype=torch.bool).triu(1)
                if torch.any(A[:, :, fut] != 0):
                    _fail(f"{name}: {pre}{site} future keys not exactly 0")
    # no-path rows of d loss / d A are exactly 0
    ntgt = (batch["labels"] != -100).sum(-1).tolist()
    for k, G in exp.items():
        if "attention_probs_grad." not in k:
            continue
        site = k.split("attention_probs_grad.")[1]
        for bb in range(G.shape[0]):
            first = lens[bb] if site.startswith("encoder.") else ntgt[bb]
            if torch.any(G[bb, :, first:, :] != 0):
                _fail(f"{name}: {k} rows without a path to the loss are not exactly 0")
    spec = CASES[name]
    b, h, i = spec["full_row"]
    site = f"encoder.layer{spec['extra_layers'][0]}"
    r0, r1 = exp[f"attention_probs.{site}"][b, h, i], exp[f"masked.attention_probs.{site}"][b, h, i]
    if (r0 - r1).abs().max() > 1e-9:
        _fail(f"{name}: fully dropped row differs from the unmasked row by {(r0 - r1).abs().max()}")
    full_row_diff = (r0 - r1).abs().max().item()
    # label smoothing, independent loop
    logits, labels = exp["logits"], batch["labels"]
    V = logits.shape[-1]
    nll, smooth, n = 0.0, 0.0, 0
    for bb in range(labels.shape[0]):
        for t in range(labels.shape[1]):
            y = int(labels[bb, t])
            if y == -100:
                continue
            z = logits[bb, t].tolist()
            mx = max(z)
            lse = mx + math.log(sum(math.exp(v - mx) for v in z))
            nll += lse - z[y]
            smooth += sum(lse - v for v in z)
            n += 1
    ls = 0.9 * nll / n + 0.1 * smooth / (n * V)
    if abs(ls - exp["loss_label_smoothed"].item()) > 1e-12 * max(1.0, abs(ls)):
        _fail(f"{name}: label-smoothed loss {exp['loss_label_smoothed'].item()} vs loop {ls}")
    if abs(nll / n - exp["loss"].item()) > 1e-12 * max(1.0, nll / n):
        _fail(f"{name}: CE loss vs loop")
    # embedding pad rows
    enc_t, dec_t, lm_t = mm.table_names(cfg)
    pad = cfg.pad_token_id
    if cfg.share_encoder_decoder_embeddings:
        gpad = exp[f"grad.{enc_t}"][pad]
        if lm_t == enc_t:
            # only the lm_head part: d loss / d W_lm[pad] = sum_t (softmax_t[pad]) h_t / n over active t
            h = exp[f"decoder_hidden_states.layer{cfg.decoder_layers - 1}"]
            p = torch.softmax(logits, -1)[..., pad]
            act = (labels != -100).to(torch.float64)
            want_row = ((p * act)[..., None] * h).sum((0, 1)) / act.sum()
            if _rel(gpad, want_row) > 1e-12:
                _fail(f"{name}: tied pad row gradient is not the lm_head part alone")
    else:
        for tname in (enc_t, dec_t):
            if torch.any(exp[f"grad.{tname}"][pad] != 0):
                _fail(f"{name}: {tname} pad row gradient not exactly 0")
    # central differences of dLoss/dA (no mask) and the directional derivative
    P0 = {k: v.detach() for k, v in params.items()}

    def loss_at(P=None, probs_delta=None):
        with torch.no_grad():
            o = mm.forward(cfg, P or P0, buffers, batch["input_ids"], am, batch["decoder_input_ids"],
                           batch["labels"], probs_delta=probs_delta, retain_attention=False)
            return o["loss"].item()

    gen = torch.Generator().manual_seed(7)
    for site in site_names(cfg):
        G = exp[f"attention_probs_grad.{site}"]
        idx = torch.randint(0, G.numel(), (6,), generator=gen).tolist() + [int(G.abs().flatten().argmax())]
        for j in idx:
            dl = torch.zeros(G.numel(), dtype=torch.float64)
            dl[j] = 1e-6
            dl = dl.view_as(G)
            num = (loss_at(probs_delta={site: dl}) - loss_at(probs_delta={site: -dl})) / 2e-6
            ana = G.flatten()[j].item()
            if abs(num - ana) > 1e-6 * max(1.0, abs(ana)):
                _fail(f"{name}: dLoss/dA {site} entry {j}: numeric {num} vs stored {ana}")
    g = direction_without_pad_rows(cfg, {k: exp["grad." + k] for k in params})
    gn2 = sum((v * v).sum().item() for v in g.values())
    tt = 1e-5 / math.sqrt(gn2)
    num = (loss_at({k: P0[k] + tt * g[k] for k in g}) - loss_at({k: P0[k] - tt * g[k] for k in g})) / (2 * tt)
    if abs(num - gn2) > 1e-5 * max(1.0, gn2):
        _fail(f"{name}: directional derivative {num} vs |g|^2 {gn2}")
    # KV cache vs full teacher forcing
    inc = mm.incremental_logits(cfg, P0, buffers, batch["input_ids"], am, batch["decoder_input_ids"])
    kv_err = _rel(inc, exp["logits"])
    if kv_err > 1e-12:
        _fail(f"{name}: incremental decoding differs from teacher forcing by {kv_err}")
    # generation
    margins = {}
    for gname, s in GENERATIONS.items():
        seqs = exp[f"{gname}.sequences"]
        sc = exp.get(f"{gname}.sequences_scores")
        nc = mm.generate(cfg, P0, buffers, batch["input_ids"], am, s, use_cache=False)
        if not torch.equal(nc[0], seqs) or (sc is not None and _rel(nc[1], sc) > 1e-12):
            _fail(f"{name}: {gname} without cache differs")
        f32 = mm.generate(cfg, P0, buffers, batch["input_ids"], am, s, score_dtype=torch.float32)
        if not torch.equal(f32[0], seqs):
            _fail(f"{name}: {gname} with float32 scores gives other sequences")
        max_length = s.resolved_max_length(cfg)
        if seqs.shape[1] > max_length or torch.any(seqs[:, 0] != cfg.decoder_start_token_id):
            _fail(f"{name}: {gname} shape / start token")
        for row in seqs.tolist():
            gl = generated_length(row, cfg.eos_token_id)
            if any(t != cfg.pad_token_id for t in row[gl + 1:]) or cfg.pad_token_id in row[1:gl + 1]:
                _fail(f"{name}: {gname} padding / banned pad in {row}")
            if cfg.forced_eos_token_id is not None and s.forced_eos and row[gl] != cfg.eos_token_id:
                _fail(f"{name}: {gname} row without eos despite forced_eos: {row}")
        if s.num_beams == 1:
            # argmax of the processed teacher-forced logits, with its margin
            proc = mm._logits_processors(cfg, s, max_length)
            mg = math.inf
            for bb in range(seqs.shape[0]):
                row = seqs[bb].tolist()
                gl = generated_length(row, cfg.eos_token_id)
                with torch.no_grad():
                    o = mm.forward(cfg, P0, buffers, batch["input_ids"][bb:bb + 1], am[bb:bb + 1],
                                   seqs[bb:bb + 1, :gl], retain_attention=False)
                for t in range(gl):
                    z = proc(t + 1, o["logits"][:, t])[0]
                    if int(z.argmax()) != row[t + 1]:
                        _fail(f"{name}: {gname} row {bb} step {t}: not the argmax")
                    top2 = torch.topk(z, 2).values
                    if torch.isfinite(top2[1]):
                        mg = min(mg, (top2[0] - top2[1]).item())
            margins[gname] = mg
        else:
            tf = teacher_forced_scores(cfg, P0, buffers, batch["input_ids"], am, seqs, s)
            if _rel(torch.tensor(tf, dtype=torch.float64), sc) > 1e-12:
                _fail(f"{name}: {gname} scores {sc.tolist()} vs teacher forcing {tf}")
            ss, sscore = simple_beam_search(cfg, P0, buffers, batch["input_ids"], am, s)
            for bb, row in enumerate(ss):
                gl = generated_length(seqs[bb].tolist(), cfg.eos_token_id)
                if seqs[bb, : gl + 1].tolist() != row:
                    _fail(f"{name}: {gname} row {bb}: list beam search gives {row}, tensor one {seqs[bb].tolist()}")
            if _rel(torch.tensor(sscore, dtype=torch.float64), sc) > 1e-12:
                _fail(f"{name}: {gname} list beam search scores {sscore} vs {sc.tolist()}")
    print(f"check {name}: ok (KV cache rel err {kv_err:.1e}; fully dropped row changes by {full_row_diff:.1e}; "
          f"greedy margins {', '.join(f'{k} {v:.3g}' for k, v in margins.items())})")
    return {"kv_err": kv_err, "full_row_diff": full_row_diff, "margins": margins}


def tiny_case(tied: bool):
    over = dict(vocab_size=12, d_model=8, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                decoder_attention_heads=2, encoder_ffn_dim=8, decoder_ffn_dim=6, max_position_embeddings=10,
                pad_token_id=11, decoder_start_token_id=11, eos_token_id=0, forced_eos_token_id=0)
    if tied:
        over.update(activation_function="swish", scale_embedding=True)
    else:
        over.update(activation_function="gelu", scale_embedding=False, share_encoder_decoder_embeddings=False,
                    tie_word_embeddings=False)
    cfg = mm.MarianConfig(**over)
    params = mm.init_params(cfg, 21 if tied else 22)
    g = torch.Generator().manual_seed(23)
    buffers = {"final_logits_bias": 0.1 * torch.randn(1, cfg.target_vocab_size, generator=g, dtype=torch.float64)}
    ids = torch.tensor([[3, 5, 7, 2, 0], [4, 6, 0, 11, 11]])
    am = (ids != 11).long()
    labels = torch.tensor([[5, 3, 9, 0], [8, 0, -100, -100]])
    dec = mm.shift_tokens_right(labels, 11, 11)
    extra = {"encoder.layer0": -3.0 * torch.rand(2, 2, 5, 5, generator=g, dtype=torch.float64),
             "decoder.layer0": -3.0 * torch.rand(2, 2, 4, 4, generator=g, dtype=torch.float64),
             "cross.layer0": -3.0 * torch.rand(2, 2, 4, 5, generator=g, dtype=torch.float64)}
    alpha = {"encoder.layer1": 0.7, "decoder.layer0": 0.8, "cross.layer0": 1.3}
    return cfg, params, buffers, ids, am, labels, dec, extra, alpha


def gradcheck_tiny():
    for tied in (True, False):
        cfg, params, buffers, ids, am, labels, dec, extra, alpha = tiny_case(tied)
        names = list(params)
        tables = set(mm.table_names(cfg))
        dense = [n for n in names if n not in tables]
        sites = list(extra)
        asites = list(alpha)

        def f(*args):
            P = dict(params)
            P.update(dict(zip(dense, args[: len(dense)])))
            ex = dict(zip(sites, args[len(dense): len(dense) + len(sites)]))
            al = dict(zip(asites, args[len(dense) + len(sites):]))
            return mm.forward(cfg, P, buffers, ids, am, dec, labels, extra=ex, alpha=al, retain_attention=False)["loss"]

        inputs = [params[n].detach().clone().requires_grad_(True) for n in dense]
        inputs += [extra[s].clone().requires_grad_(True) for s in sites]
        inputs += [torch.tensor(alpha[s], dtype=torch.float64, requires_grad=True) for s in asites]
        if not torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-5):
            _fail(f"gradcheck failed (tied={tied})")
        # embedding tables: central differences; pad rows per nn.Embedding(padding_idx)
        for t in params.values():
            t.grad = None
        out = mm.forward(cfg, params, buffers, ids, am, dec, labels, extra=extra, alpha=alpha)
        out["loss"].backward()
        enc_t, dec_t, lm_t = mm.table_names(cfg)
        pad = cfg.pad_token_id
        for n in sorted(tables):
            W = params[n]
            for r in range(W.shape[0]):
                for c in range(W.shape[1]):
                    ana = W.grad[r, c].item()
                    if r == pad and n in (enc_t, dec_t):
                        if n != lm_t and ana != 0.0:
                            _fail(f"tiny {n}[{pad}] embedding pad row gradient not zero")
                        continue  # the forward uses the pad row, the embedding gradient does not
                    with torch.no_grad():
                        W[r, c] += 1e-6
                        lp = mm.forward(cfg, params, buffers, ids, am, dec, labels, extra=extra, alpha=alpha)["loss"].item()
                        W[r, c] -= 2e-6
                        lm = mm.forward(cfg, params, buffers, ids, am, dec, labels, extra=extra, alpha=alpha)["loss"].item()
                        W[r, c] += 1e-6
                    num = (lp - lm) / 2e-6
                    if abs(num - ana) > 1e-6 * max(1.0, abs(ana)):
                        _fail(f"tiny {n}[{r},{c}]: numeric {num} vs autograd {ana}")
        if tied:
            # tied pad row: exactly the lm_head contribution, d CE(h W^T + b) / d W[pad] with h fixed
            h = out["decoder_hidden_states"][-1].detach()
            W = params[lm_t].detach().clone().requires_grad_(True)
            z = F.linear(h, W) + buffers["final_logits_bias"]
            (gl,) = torch.autograd.grad(F.cross_entropy(z.reshape(-1, z.shape[-1]), labels.reshape(-1),
                                                        ignore_index=-100), [W])
            if _rel(params[lm_t].grad[pad], gl[pad]) > 1e-12:
                _fail("tiny tied pad row is not the lm_head gradient")
        # KV cache
        P0 = {k: v.detach() for k, v in params.items()}
        full = mm.forward(cfg, P0, buffers, ids, am, dec, retain_attention=False)["logits"]
        inc = mm.incremental_logits(cfg, P0, buffers, ids, am, dec)
        if _rel(inc, full) > 1e-12:
            _fail("tiny KV cache")
        print(f"gradcheck tiny marian (tied={tied}): ok")


def check_positions():
    t = mm.sinusoidal_positions(32, 16)
    if not torch.equal(t.float().double(), t):
        _fail("positions are not float32 values")
    for p in (0, 1, 7, 31):
        for k in range(8):
            a = p / 10000 ** (2 * k / 16)
            if abs(t[p, k].item() - math.sin(a)) > 1e-7 or abs(t[p, 8 + k].item() - math.cos(a)) > 1e-7:
                _fail(f"position {p} feature {k}")
    if not torch.equal(t[0, :8], torch.zeros(8, dtype=torch.float64)) or not torch.equal(t[0, 8:], torch.ones(8, dtype=torch.float64)):
        _fail("position 0 must be sines 0 and cosines 1")
    print("sinusoidal positions (sines first half, cosines second half, float32 values): ok")


# --------------------------------------------------------------------------

README = """# MarianMTModel golden fixtures (generated — do not edit by hand)

Made by `tests/reference/make_marian_fixtures.py` (`/usr/bin/python3
tests/reference/make_marian_fixtures.py --check`) with the plain-torch MarianMTModel of
`tests/reference/marian_model.py`, torch {torch_version}, float64, eval mode (no dropout),
fixed seeds, `torch.set_num_threads(1)`: regenerating gives the same bytes. Files are
written by `tests/reference/safetensors_io.py` (tensors in sorted name order, header
padded to a multiple of 8). The AD-DROP step on `marian_tied` is in
`tests/golden/addrop/marian_tied/` (its own README).

## Which Hugging Face semantics

Written from Hugging Face transformers' sources as stored in this workplace's mirror,
which holds many versions of each file (its `__init__.py` / `setup.py` snapshots are old,
so no single version number applies); the semantics followed are those of the recent
v4.5x line:
- the model: `models/marian/modeling_marian.py` at commit 00b676f8 (`eager_attention_forward`,
  `EncoderDecoderCache`; its deprecation warnings name v4.58) and
  `configuration_marian.py` (with `decoder_vocab_size`, `share_encoder_decoder_embeddings`);
- generation: the vectorised beam search of `generation/utils.py` (after the beam-search
  refactor: `_get_top_k_continuations`, `_update_finished_beams`,
  `_check_early_stop_heuristic`; no BeamSearchScorer), greedy `_sample`,
  `logits_process.py`, `stopping_criteria.py`; the older BeamSearchScorer / BeamHypotheses
  of `generation/beam_search.py` where versions differ (below);
- label smoothing: `trainer_pt_utils.LabelSmoother`.
No transformers code is copied; config.json carries no `transformers_version`.

## Cases

| case | embeddings | activation | scale_embedding | layers enc/dec | heads enc/dec | ffn enc/dec | forced_eos_token_id | extra_mask (encoder layers) | alpha | eos bias |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
{case_rows}

Both: vocab_size 40 (= decoder_vocab_size), eos_token_id 0, unk 1 (the tokenizer's; not a
config field), pad_token_id 39 = decoder_start_token_id, d_model 16 (head_dim 4 with 4
heads, 8 with 2), max_position_embeddings 32, LayerNorm eps 1e-5, config generation
defaults num_beams 4, max_length 10, bad_words_ids [[39]], length_penalty 1.0,
early_stopping false. Parameters random: matrices and embedding tables N(0, 0.3)
(pad rows included, not zero), LayerNorm weights 1 + N(0, 0.2), biases N(0, 0.1);
`final_logits_bias` N(0, 0.1) plus the "eos bias" on column 0, so that generation ends
early for some sentences and runs to max_length for others.

B = 3. Source lengths 7 / 5 / 3 (Ls = 7): random ids in [2, 39) then eos (0), pads 39 with
attention_mask 0. Target lengths 6 / 4 / 2 (Lt = 6): labels = random ids in [2, 39) then
eos, -100 after.

## Model semantics (what the C++ side must match)

- **Embeddings.** Encoder: `embed_tokens(input_ids) * s + P[0:Ls]`; decoder:
  `embed_tokens(decoder_input_ids) * s + P[0:Lt]` (a decoding step at position t adds
  P[t]); s = sqrt(d_model) = 4.0 when `scale_embedding` (marian_tied), 1.0 otherwise.
  Position ids are 0..L-1 for every row (no padding offset, pads included).
- **Sinusoidal table P** [max_position_embeddings, d_model] (stored here as
  `embed_positions`): angle(pos, k) = pos / 10000^(2k/d) computed in double (numpy
  `pos / np.power(10000, 2 * (j // 2) / d)`), P[pos, k] = sin(angle), P[pos, d/2 + k] =
  cos(angle) for k < d/2: sines in the first half, cosines in the second, not
  interleaved. Hugging Face builds it through `torch.FloatTensor`, so every value is the
  float32 rounding of the double result, also in a float64 model; the fixture values are
  exactly those (compare bit for bit after rounding your double sin/cos to float). Not
  trainable (`requires_grad=False`), never saved (see model.safetensors).
- **Layers** (post-LN, as Hugging Face's MarianEncoderLayer / MarianDecoderLayer):
  encoder `x = LN(x + out_proj(SelfAttn(x)))`, `x = LN(x + fc2(act(fc1(x))))`; decoder
  `x = LN(x + SelfAttn)`, `x = LN(x + CrossAttn(x, encoder_out))`, `x = LN(x + FFN)`
  (LN names: `self_attn_layer_norm`, `encoder_attn_layer_norm`, `final_layer_norm`).
  No embedding LayerNorm, no final LayerNorm. Dropout (p 0.1) sits after the embedding
  sum, after each out_proj and after fc2; activation_dropout 0 after act; attention
  dropout 0; none is active here (eval mode). `act`: "swish" = SiLU x·sigmoid(x), "relu",
  "gelu" = exact erf GELU.
- **Attention.** Q, K, V = q_proj/k_proj/v_proj (with biases) split into heads;
  `S = (Q Kᵀ) · head_dim^-0.5` (this version scales the product; older releases, before
  the 2025 attention refactor, multiplied the q_proj output by the scale before the
  product: the same value up to rounding), `S += mask`, (AD-DROP: `S += extra`), `A = softmax(S)`, context `(α·A) V`,
  then out_proj.
- **Mask value.** Additive, `torch.finfo(dtype).min` at masked keys and exactly 0
  elsewhere: -1.7976931348623157e308 in float64 (-3.4028234663852886e38 in float32), not
  -10000 and not -inf. Encoder self-attention and decoder cross-attention: the source
  pads (`attention_mask` 0), the same for every query row. Decoder self-attention:
  causal, key j > query i masked; no decoder padding mask (Hugging Face builds none when
  `decoder_attention_mask` is not passed, and training / generation pass none; with one,
  its 0 keys would also get finfo.min). Masked keys come out with probability exactly 0.
  Adding AD-DROP's -10000 on top of finfo.min stays finfo.min (no overflow to -inf).
  Consequence: a row whose every non-pad key carries -10000 is a softmax over the
  non-pad keys only, i.e. (up to rounding) the unmasked row — unlike BERT's -10000 pad
  mask, where such a row spreads over the pads too (`full_row` below shows it).
  (Older releases built the causal part with float("-inf") and the padding part with
  finfo.min; the probabilities are the same.)
- **Logits** `= h_dec Wᵀ + final_logits_bias`, W = lm_head.weight (= model.shared.weight
  when tied). **Loss** = cross-entropy mean over the positions with labels != -100.
- **decoder_input_ids** = labels shifted right: position 0 = decoder_start_token_id (39),
  position t = labels[t-1], -100 replaced by pad (39).
- **Label smoothing** (Trainer's LabelSmoother, epsilon 0.1): with n = #(labels != -100),
  V = 40, nlp = -log_softmax(logits): `0.9 · Σ_active nlp[t, y_t] / n + 0.1 · Σ_active Σ_v
  nlp[t, v] / (n·V)`. Hugging Face sums the second term with `dtype=torch.float32`; the
  fixture computes it in float64 (the difference is float32 rounding).
- **Embedding pad rows.** Every embedding module has `padding_idx = pad_token_id`, so
  the embedding lookup gives no gradient to row 39 although it is used: source pads and
  the decoder start token (= pad!) read it, and the decoder start token's embedding does
  change the loss. The stored gradient is therefore not the derivative of the loss along
  that row (it is what PyTorch / Hugging Face compute and train with). Untied: `grad.model.encoder.embed_tokens.weight[39]`
  and `grad.model.decoder.embed_tokens.weight[39]` are exactly 0. Tied: row 39 of
  `grad.model.shared.weight` holds only the lm_head part (the pad logit's softmax
  gradient: the row is also the pad's output embedding in the lm_head).
- **Tied / shared tables.** share_encoder_decoder_embeddings true: one table
  `model.shared.weight` for encoder and decoder inputs; with tie_word_embeddings also the
  lm_head. false (marian_untied): Hugging Face deep-copies the vocab_size-row table for
  the encoder and the decoder (`model.shared` is None), so the decoder table has
  vocab_size rows (decoder_vocab_size only sizes lm_head / final_logits_bias; here both
  are 40); tie_word_embeddings false: a separate `lm_head.weight` [40, 16].

## config.json
Hugging Face's MarianConfig form: every MarianConfig field (vocab_size, decoder_vocab_size,
d_model, encoder/decoder layers, attention heads, ffn dims, layerdrops, dropouts,
activation_function, init_std, max_position_embeddings, scale_embedding,
share_encoder_decoder_embeddings, pad/eos/decoder_start/forced_eos token ids, use_cache,
is_encoder_decoder), the PretrainedConfig fields of OPUS-MT configs (architectures
["MarianMTModel"], model_type "marian", tie_word_embeddings, bos_token_id null,
num_hidden_layers = encoder_layers, static_position_embeddings true, torch_dtype) and the
generation defaults (num_beams 4, max_length 10, min_length 0, length_penalty 1.0,
early_stopping false, bad_words_ids [[39]]). `forced_eos_token_id` is 0 (tied) or null
(untied: no forced eos).

## model.safetensors (F64) — what `save_pretrained` writes
- Every trainable parameter once under its Hugging Face name. With shared + tied
  embeddings only `model.shared.weight` [40, 16] is written: `lm_head.weight`,
  `model.encoder.embed_tokens.weight` and `model.decoder.embed_tokens.weight` are the
  same tensor and save_pretrained drops them (they match `_tied_weights_keys`; of a group
  of tensors sharing storage it removes the names matching those patterns and keeps the
  rest). Loading re-ties them. marian_untied writes `model.encoder.embed_tokens.weight`,
  `model.decoder.embed_tokens.weight` and `lm_head.weight` (no `model.shared.weight`).
- `final_logits_bias` [1, 40]: a persistent buffer, so it is saved (missing on load: zeros).
- NOT `model.encoder.embed_positions.weight` / `model.decoder.embed_positions.weight`
  (`_keys_to_ignore_on_save`; also ignored when missing on load, rebuilt from the
  formula). Checkpoints written by older releases may contain them (the same float32
  values); a loader should accept them.
- Per layer (l = layer index), Linear weights [out, in]:
  `model.encoder.layers.{{l}}.self_attn.{{k,v,q,out}}_proj.{{weight,bias}}`,
  `model.encoder.layers.{{l}}.self_attn_layer_norm.{{weight,bias}}`,
  `model.encoder.layers.{{l}}.fc1.{{weight,bias}}` [ffn, 16] / [ffn],
  `model.encoder.layers.{{l}}.fc2.{{weight,bias}}` [16, ffn] / [16],
  `model.encoder.layers.{{l}}.final_layer_norm.{{weight,bias}}`;
  `model.decoder.layers.{{l}}.self_attn.*`, `.self_attn_layer_norm.*`,
  `.encoder_attn.{{k,v,q,out}}_proj.*`, `.encoder_attn_layer_norm.*`, `.fc1.*`, `.fc2.*`,
  `.final_layer_norm.*`.

## batch.safetensors
- `input_ids`, `attention_mask`: I64 [B, Ls].
- `labels`: I64 [B, Lt], -100 after each target's eos.
- `decoder_input_ids`: I64 [B, Lt] = labels shifted right (above).
- `extra_mask.encoder.layer{{l}}`: F64 [B, H_enc, Ls, Ls], 0 or -10000, added to encoder
  layer l's attention scores after the pad mask. About 20% of the non-pad keys are
  -10000, pad keys 0; in the first listed layer one row (`full_row` in the table:
  b, h, i) has all its non-pad keys at -10000.
- `alpha.encoder.layer{{l}}`: F64 [], the scale of that layer's probabilities in the
  product with V (integrated gradients): context = (alpha A) V.

## expected.safetensors (F64 unless said)
Sites: `encoder.layer{{l}}` (self-attention, [B, H_enc, Ls, Ls]), `decoder.layer{{l}}`
(decoder self-attention, [B, H_dec, Lt, Lt]), `cross.layer{{l}}` (cross-attention,
[B, H_dec, Lt, Ls]).

Plain run (teacher forcing with `decoder_input_ids`, no extra mask, alpha 1):
- `logits` [B, Lt, 40]; `loss` []: CE mean over labels != -100; `loss_label_smoothed` [].
- `embed_positions` [32, 16]: the sinusoidal table (float32 values).
- `encoder_embedding_output` [B, Ls, 16] (scaled token embeddings + positions),
  `encoder_hidden_states.layer{{l}}` [B, Ls, 16] (layer l's output),
  `decoder_embedding_output` [B, Lt, 16], `decoder_hidden_states.layer{{l}}` [B, Lt, 16].
- `attention_probs.<site>`: A = softmax(S + mask) of every site (after attention
  dropout, none here; before alpha). Pad keys and future keys exactly 0. Padded source
  query rows (i >= n_b) are a softmax over the non-pad keys, as HF computes them.
- `attention_probs_grad.<site>`: d loss / d A. Exactly 0 on rows without a path to the
  loss: padded source query rows (i >= n_b) of every encoder layer (their outputs are
  only ever read as masked keys), and the rows of target positions whose label is -100
  in the decoder and cross sites (their logits are ignored and, the mask being causal,
  only later ignored positions read them).
- `grad.<parameter>`: d loss / d parameter for every tensor of model.safetensors except
  `final_logits_bias` (a buffer): tied tables have one gradient (the sum of the encoder
  embedding, decoder embedding and lm_head parts).

Masked run (the batch's `extra_mask.*` and `alpha.*` on the encoder sites, gold loss):
- `masked.logits`, `masked.loss`, `masked.attention_probs.<site>` for every site,
  `masked.attention_probs_grad.encoder.layer{{l}}` for every encoder layer (carries the
  alpha factor by the chain rule).

Generation (I64 sequences [B, width], start token 39 first; F64 scores [B]); settings in the
metadata `generation.<name>` (JSON), all with the config's bad_words_ids [[39]] and
forced_eos_token_id:

| name | num_beams | max_length | early_stopping | length_penalty |
| --- | --- | --- | --- | --- |
| `greedy` | 1 | 10 | - | - |
| `greedy_new4` | 1 | max_new_tokens 4 (= max_length 5) | - | - |
| `beam4` | 4 | 10 | true | 1.0 |
| `beam4_lp06` | 4 | 10 | false | 0.6 |
| `beam3_never` | 3 | 10 | "never" | 1.0 |

- `<name>.sequences` I64: the output of generate(); `<beam>.sequences_scores` F64 [B]:
  the returned hypothesis' score (Hugging Face returns it with output_scores=True).

Sequences per case:

{gen_rows}

## Generation semantics (Hugging Face's, for this encoder-decoder)

- Start: one token, decoder_start_token_id (39). max_length counts it: at most
  max_length - 1 generated tokens; `max_new_tokens` n means max_length = 1 + n.
- Logits processors, per step, with `cur_len` = current length (start included):
  bad_words_ids [[39]] sets the pad's score to -inf at every step (pad is never
  generated); min_length (0 here) would set eos to -inf while cur_len < min_length;
  forced_eos_token_id sets every score to -inf and eos to 0 when cur_len == max_length - 1
  (the last generated token is eos). Greedy applies them to the raw logits; beam search
  to log_softmax(logits) (so a forced eos contributes 0 to the beam score, not its
  log-probability; the pad ban does not renormalise).
- Greedy: argmax (first maximum); a row that has produced eos continues with pad; stop
  when every row has produced eos or the length reaches max_length. Output width =
  1 + the number of steps run.
- Beam search, with K = 2·num_beams candidates per source per step:
  running scores start at 0 for beam 0 and -1e9 for the others; each step adds the
  processed log-probs, takes the top K over (beam, token); a candidate "hits" when its
  token is eos or its length reaches max_length. The next running beams are the top
  num_beams candidates after adding -1e9 to the hits. The hits among the first
  num_beams candidates are offered to the source's list of num_beams finished
  hypotheses with score `sum_logprobs / g^length_penalty`, g = number of generated
  tokens including the eos (= hypothesis length - 1); an offer is refused when
  early_stopping is true and the list is already full, or when the early-stop heuristic
  has said no improvement is possible; the list keeps its best num_beams.
  Heuristic after each step (g_run = tokens generated so far): best possible =
  best running score / g^lp with g = max_length - 1 when early_stopping is "never" and
  lp > 0, else g_run; a source stays improvable while its list has an empty slot or the
  best possible exceeds its worst finished score (once not, never again).
  Stop when no source is improvable, or (early_stopping true) every list is full, or
  every candidate of the step hit (max_length). The best finished hypothesis per source
  is returned, padded with pad to the longest; width = 1 + longest g.
- Version differences in the length penalty, for a hypothesis of g generated tokens
  (boundaries approximate, read from the stored versions of `beam_search.py`):
  BeamHypotheses before `decoder_prompt_len` existed (about <= 4.35) divided by the
  hypothesis length, start token included, eos excluded (eos-ended: g; ended at
  max_length without eos: g + 1); the first releases with `generated_len = cur_len -
  decoder_prompt_len` (about 4.36-4.37) by g - 1 for eos-ended hypotheses (g at
  max_length); after the `cur_len = input_ids.shape[-1] + 1` fix (about 4.38 until the
  refactor) and in the vectorised beam search (followed here) by g in both cases. So with
  forced_eos_token_id (every hypothesis ends with eos) all but 4.36-4.37 agree on the
  denominator. The early-stop heuristic for early_stopping false used, before the
  refactor, the best candidate score of the step (eos candidates included) over the
  current length; after it, the best running score over the generated length.
- Precision: Hugging Face casts each step's logits to float32 before log_softmax; the
  fixture keeps float64 (scores are float64). `--check` re-runs every generation with
  float32 logits and gets the same sequences.

## Checks run by `--check`
{check_text}

## Sizes on disk
{sizes}
"""


def case_row(name, spec):
    c = spec["config"]
    emb = "shared + tied" if c["share_encoder_decoder_embeddings"] and c["tie_word_embeddings"] else \
        ("separate, untied lm_head" if not c["share_encoder_decoder_embeddings"] else "shared, untied lm_head")
    al = ", ".join(f"layer {l}: {a}" for l, a in spec["alpha"].items()) or "-"
    fr = spec["full_row"]
    return (f"| `{name}` | {emb} | {c['activation_function']} | {str(c['scale_embedding']).lower()} | "
            f"{c['encoder_layers']}/{c['decoder_layers']} | {c['encoder_attention_heads']}/{c['decoder_attention_heads']} | "
            f"{c['encoder_ffn_dim']}/{c['decoder_ffn_dim']} | {json.dumps(c['forced_eos_token_id'])} | "
            f"{', '.join(map(str, spec['extra_layers']))} (full_row b={fr[0]} h={fr[1]} i={fr[2]}) | {al} | "
            f"{spec['eos_bias']} |")


CHECK_TEXT = """- regeneration byte-identical; every tensor reproduced bit for bit from the files;
- model.safetensors holds exactly param_shapes + final_logits_bias (no tied copies, no
  embed_positions);
- softmax rows sum to 1; pad keys (encoder, cross) and future keys (decoder) exactly 0;
  d loss / d A exactly 0 on padded source query rows and on ignored target rows;
  the fully dropped row of the masked run equals the unmasked row to 1e-9;
- loss and label-smoothed loss against a Python loop; pad-row gradients (untied exactly
  0, tied = the lm_head part computed by hand);
- d loss / d A of every site against central differences (7 entries per site); the
  loss's directional derivative along the stored gradient (embedding pad rows left out,
  see above) equals |g|^2;
- incremental KV-cache decoding equals teacher forcing (relative 1e-12);
- every generation: same result without the cache and with float32 logits; sequences
  padded with pad after eos, no generated pad, eos last when forced; greedy = argmax of
  the teacher-forced processed logits; beam scores = teacher-forced processed
  log-probs / g^lp; an independent list-based beam search returns the same hypotheses
  and scores;
- gradcheck of tiny tied and untied models (dense parameters, extra masks and alphas of
  encoder, decoder and cross sites) and central differences of their embedding tables.
"""


def write_readme(out_dir):
    rows = [case_row(n, s) for n, s in CASES.items()]
    gen_rows = []
    sizes = []
    total = 0
    for name in CASES:
        d = os.path.join(out_dir, name)
        if not os.path.isdir(d):
            continue
        exp = st.load_file(os.path.join(d, "expected.safetensors"))
        gen_rows.append(f"`{name}`:\n")
        for g in GENERATIONS:
            seqs = exp[f"{g}.sequences"].tolist()
            sc = exp.get(f"{g}.sequences_scores")
            sc_s = "" if sc is None else " scores " + ", ".join(f"{x:.6f}" for x in sc.tolist())
            gen_rows.append(f"- `{g}`: " + " / ".join(" ".join(map(str, r)) for r in seqs) + sc_s)
        gen_rows.append("")
        s = sum(os.path.getsize(os.path.join(d, f)) for f in sorted(os.listdir(d)))
        total += s
        sizes.append(f"- `{name}`: {s} bytes")
    sizes.append(f"- total: {total} bytes")
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write(README.format(torch_version=torch.__version__, case_rows="\n".join(rows),
                              gen_rows="\n".join(gen_rows).rstrip() + "\n", check_text=CHECK_TEXT.rstrip(),
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
        tmp = tempfile.mkdtemp(prefix="marian_regen_")
        try:
            generate(tmp, args.only, quiet=True)
            for name, d in written.items():
                for f in sorted(os.listdir(d)):
                    if not filecmp.cmp(os.path.join(d, f), os.path.join(tmp, name, f), shallow=False):
                        _fail(f"{name}/{f}: regeneration is not byte-identical")
            if not filecmp.cmp(os.path.join(args.out, "README.md"), os.path.join(tmp, "README.md"), shallow=False):
                _fail("README.md: regeneration is not byte-identical")
        finally:
            shutil.rmtree(tmp)
        print(f"regeneration byte-identical: ok ({len(written)} cases)")
        check_positions()
        for d in written.values():
            check_fixture(d)
        gradcheck_tiny()
        print("all checks passed")


if __name__ == "__main__":
    main()
