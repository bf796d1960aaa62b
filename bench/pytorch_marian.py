#!/usr/bin/python3
"""PyTorch side of the Marian (translation) benchmark: the cases bench/bench_marian.cpp times.

The model is tests/reference/marian_model.py, a plain-torch MarianMTModel with Hugging
Face's semantics (eager float32, F.linear per projection, batched matmul attention,
F.softmax, F.layer_norm, F.silu; its KV-cache `decoder_step`, `greedy` and `beam_search`).
One change for speed, which is what Hugging Face does too: the static sinusoidal position
table is built once per (size, dtype) instead of on every encode / decode / decoder step.

Shapes: small = OPUS-MT en-ro (6+6 layers, d_model 512, 8 heads, FFN 2048, vocabulary
59,543, tied and shared embeddings, swish); mini = 3+3 layers, d 256, 4 heads, FFN 1024,
vocabulary 8000. pad = vocabulary - 1 (also the decoder start), eos = 0, dropout 0.1,
attention / activation dropout 0, parameters N(0, 0.02), biases 0, layer norms 1 / 0.

Cases:
  plain   one training step in train mode: zero_grad (set_to_none), forward, label-smoothed
          CE 0.1 (Hugging Face's LabelSmoother), backward, torch.optim.AdamW step (lr 5e-5,
          eps 1e-8, weight decay 0.01 except biases and layer norms); batch 16 pairs,
          source and target length 32;
  ga      the AD-DROP GA step on every encoder self-attention site, p = q = 0.2, the way
          bench/pytorch_addrop_step.py does it: first forward (train mode, graph kept),
          pseudo labels = argmax of the decoder logits, F = -CE_mean(logits, pseudo) over
          the non-pad target positions, torch.autograd.grad(F, [A_0 .. A_{L-1}]); per site
          top-p candidates per row, q-sampling (torch.rand < 1-q keeps), -10000 at dropped
          keys; second forward with the additive masks, label-smoothed CE, backward, AdamW;
  greedy  marian_model.greedy under torch.no_grad(): 32 sources of length 24,
          max_new_tokens 32, no forced eos;
  beam4   marian_model.beam_search: 4 beams, early_stopping True, length_penalty 1.0,
          otherwise as greedy.
A random model practically never emits eos, so each decoding run takes exactly 32 decoder
steps (checked: decoder_steps), the work bench_marian.cpp does with forced_eos_token_id -1.
Token ids come from the 64-bit LCG bench_marian.cpp uses (the same ids on both sides).

Precision (--precision): f32 runs everything in float32; bf16 runs under
torch.autocast("cpu", dtype=torch.bfloat16) what Hugging Face's Trainer (--bf16) and
generate() run under it: the training step's forwards with their losses (plain: forward and
label-smoothed loss; ga: the attribution forward with its pseudo-label loss, and the masked
second forward with its loss), not the backward passes, the attribution's selection or the
optimizer (parameters, gradients and AdamW stay float32), and the whole decoding loop. Under
torch 1.13's CPU autocast the matrix products (F.linear, matmul) take bf16 inputs and give
bf16 outputs; ops outside its lists (softmax, log_softmax, layer_norm) follow their inputs'
dtype, so some run in bf16. Parameters that do not require gradients (decoding) are cast to
bf16 at every product (autocast caches only the casts of leaf tensors that require grad).
bf16_matmul in the output says what computed torch's bf16 products (a oneDNN probe, as
bench/pytorch_addrop_step.py does).

Memory: peak_rss_mb, the highest resident set of the process while the case ran (its
parameters, optimizer state, warm-up and timed runs), and start_rss_mb, the resident set when
it began (the interpreter and torch), in MiB: VmHWM reset through /proc/self/clear_refs at
the start of the case (pytorch_addrop_step.PeakRss, as bench_marian.cpp does); with several
cases in one process, run one case per process for per-case peaks (compare_marian.sh does).

    /usr/bin/python3 bench/pytorch_marian.py [--shape mini|small|all] [--case plain|ga|greedy|beam4|all]
        [--precision f32|bf16|all] [--warmup N] [--iters N] [--threads N] [--json]

Defaults: --precision f32; --warmup 1; --iters 5 (mini; beam4 3), 3 (small; beam4 2); --threads 2. The
median of the timed runs is reported, with the phases (medians, seconds): training
forward_s, loss_s, backward_s (plain) or addrop_s (ga: everything before the optimizer),
optimizer_s; decoding encode_s (encoder + cross keys/values), decoder_s (decoder_step calls),
reorder_s (beam: cache reordering) and search_s (the rest of the loop), and other_cores (cores
other processes kept busy during the case, from /proc/stat).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time

_threads = "2"
for i, a in enumerate(sys.argv):
    if a == "--threads" and i + 1 < len(sys.argv):
        _threads = sys.argv[i + 1]
    elif a.startswith("--threads="):
        _threads = a.split("=", 1)[1]
# keep every BLAS / OpenMP pool at the same thread count (set before torch is imported)
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
    os.environ.setdefault(_v, _threads)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "reference"))
import marian_model as mm  # noqa: E402
import pytorch_addrop_step as pas  # noqa: E402  (mask_high: top-p + q-sampling, -10000)
import pytorch_step as ps  # noqa: E402  (blas_info)

SHAPES = {
    "mini": dict(vocab=8000, d=256, layers=3, heads=4, ffn=1024, iters=5, beam_iters=3),
    "small": dict(vocab=59543, d=512, layers=6, heads=8, ffn=2048, iters=3, beam_iters=2),
}
CASES = ("plain", "ga", "greedy", "beam4")
PRECISIONS = ("f32", "bf16")
TRAIN_BATCH, SOURCE_LEN, TARGET_LEN = 16, 32, 32
DECODE_SOURCES, DECODE_LEN, NEW_TOKENS = 32, 24, 32
LABEL_SMOOTHING, P_RATE, Q_RATE = 0.1, 0.2, 0.2
TRAIN_SEED, DECODE_SEED = 1, 2

# Hugging Face keeps the sinusoid table as a module weight, built once.
_sinusoids = functools.lru_cache(maxsize=None)(mm.sinusoidal_positions)
mm.sinusoidal_positions = _sinusoids

# Decoding phases: wrap the reference's decoder step, cache and reorder.
_PH = {"decoder": 0.0, "reorder": 0.0, "encode": 0.0, "steps": 0}
_decoder_step, _reorder, _prepare = mm.decoder_step, mm.DecoderCache.reorder, mm._prepare
_cache_init = mm.DecoderCache.__init__


def _timed(key, fn, count=False):
    def wrapper(*a, **kw):
        t0 = time.perf_counter()
        out = fn(*a, **kw)
        _PH[key] += time.perf_counter() - t0
        if count:
            _PH["steps"] += 1
        return out
    return wrapper


mm.decoder_step = _timed("decoder", _decoder_step, count=True)
mm.DecoderCache.reorder = _timed("reorder", _reorder)
mm._prepare = _timed("encode", _prepare)                    # the encoder
mm.DecoderCache.__init__ = _timed("encode", _cache_init)   # cross-attention keys / values


class Ids:
    """The 64-bit LCG of bench_marian.cpp: ids 1 .. vocab-2, each sentence ends with eos 0."""

    def __init__(self, seed: int):
        self.x = seed

    def sentence(self, length: int, vocab: int):
        s = []
        for _ in range(length - 1):
            self.x = (self.x * 6364136223846793005 + 1442695040888963407) & ((1 << 64) - 1)
            s.append(1 + (self.x >> 33) % (vocab - 2))
        return s + [0]


def make_config(shape: str) -> mm.MarianConfig:
    s = SHAPES[shape]
    V = s["vocab"]
    return mm.MarianConfig(vocab_size=V, d_model=s["d"], encoder_layers=s["layers"], decoder_layers=s["layers"],
                           encoder_attention_heads=s["heads"], decoder_attention_heads=s["heads"],
                           encoder_ffn_dim=s["ffn"], decoder_ffn_dim=s["ffn"], max_position_embeddings=512,
                           activation_function="swish", pad_token_id=V - 1, eos_token_id=0,
                           decoder_start_token_id=V - 1, forced_eos_token_id=None, dropout=0.1,
                           attention_dropout=0.0, activation_dropout=0.0, bad_words_ids=[[V - 1]])


def make_model(cfg: mm.MarianConfig, requires_grad: bool):
    params = mm.init_params(cfg, seed=0, dtype=torch.float32, std=0.02, bias_std=0.0, ln_std=0.0,
                            requires_grad=False)
    params["model.shared.weight"][cfg.pad_token_id] = 0.0  # Hugging Face zeroes the pad row
    if requires_grad:
        for t in params.values():
            t.requires_grad_(True)
    buffers = {"final_logits_bias": torch.zeros(1, cfg.target_vocab_size)}
    return params, buffers


def decays(name: str) -> bool:  # addrop's Parameter::decays(): Hugging Face's rule
    return "bias" not in name and "LayerNorm.weight" not in name and "layer_norm.weight" not in name


def other_load():
    """Returns a function giving the cores other processes kept busy since this call."""
    hz = os.sysconf("SC_CLK_TCK")

    def busy():
        f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / hz
    b0, o0, t0 = busy(), time.process_time(), time.perf_counter()
    return lambda: max(0.0, (busy() - b0) - (time.process_time() - o0)) / (time.perf_counter() - t0)


def autocast(precision: str):
    """bf16: torch.autocast("cpu", dtype=torch.bfloat16); f32: a no-op context."""
    return torch.autocast(device_type="cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


def bench_train(shape: str, case: str, warmup: int, iters: int, precision: str = "f32"):
    cfg = make_config(shape)
    torch.manual_seed(0)
    P, buf = make_model(cfg, True)
    ids = Ids(TRAIN_SEED)
    src = torch.tensor([ids.sentence(SOURCE_LEN, cfg.vocab_size) for _ in range(TRAIN_BATCH)])
    labels = torch.tensor([ids.sentence(TARGET_LEN, cfg.vocab_size) for _ in range(TRAIN_BATCH)])
    attention_mask = torch.ones_like(src)
    dec_in = mm.shift_tokens_right(labels, cfg.pad_token_id, cfg.decoder_start_token_id)
    opt = torch.optim.AdamW([{"params": [t for n, t in P.items() if decays(n)], "weight_decay": 0.01},
                             {"params": [t for n, t in P.items() if not decays(n)], "weight_decay": 0.0}],
                            lr=5e-5, betas=(0.9, 0.999), eps=1e-8)
    sites = [f"encoder.layer{l}" for l in range(cfg.encoder_layers)]

    def fwd(extra=None):
        return mm.forward(cfg, P, buf, src, attention_mask, decoder_input_ids=dec_in, extra=extra,
                          retain_attention=False, training=True)

    def step(ph):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        if case == "plain":
            with autocast(precision):
                out = fwd()
            t1 = time.perf_counter()
            with autocast(precision):
                loss = mm.label_smoothed_loss(out["logits"], labels, LABEL_SMOOTHING)
            t2 = time.perf_counter()
            loss.backward()
            t3 = time.perf_counter()
            ph["forward_s"].append(t1 - t0)
            ph["loss_s"].append(t2 - t1)
            ph["backward_s"].append(t3 - t2)
        else:
            with autocast(precision):
                out = fwd()  # its graph stays alive through the step, as in the reference
                logits = out["logits"]
                A = [out["attention_probs"][s] for s in sites]
                pseudo = logits.argmax(-1).masked_fill(labels == -100, -100)
                F_ = -F.cross_entropy(logits.reshape(-1, logits.shape[-1]), pseudo.reshape(-1), ignore_index=-100)
            grads = torch.autograd.grad(F_, A, retain_graph=True)
            extra = {s: pas.mask_high(g, attention_mask, P_RATE, Q_RATE) for s, g in zip(sites, grads)}
            with autocast(precision):
                out_b = fwd(extra)
                loss = mm.label_smoothed_loss(out_b["logits"], labels, LABEL_SMOOTHING)
            loss.backward()
            del out, A, grads
            t3 = time.perf_counter()
            ph["addrop_s"].append(t3 - t0)
        opt.step()
        t4 = time.perf_counter()
        ph["optimizer_s"].append(t4 - t3)
        ph["seconds"].append(t4 - t0)
        return float(loss)

    for _ in range(warmup):
        step({k: [] for k in ("forward_s", "loss_s", "backward_s", "addrop_s", "optimizer_s", "seconds")})
    ph = {k: [] for k in ("forward_s", "loss_s", "backward_s", "addrop_s", "optimizer_s", "seconds")}
    load = other_load()
    loss = 0.0
    for _ in range(iters):
        loss = step(ph)
    r = {k: statistics.median(v) for k, v in ph.items() if v and k != "seconds"}
    r.update(seconds_per_step=statistics.median(ph["seconds"]), seconds_min=min(ph["seconds"]),
             other_cores=round(load(), 3), loss=loss)
    return r


def with_memory(fn, shape: str, case: str, warmup: int, iters: int, precision: str):
    """Runs a case between the peak-memory marks: the oneDNN probe (a child process) first."""
    engine = pas.bf16_matmul_engine("cpu") if precision == "bf16" else None
    rss = pas.PeakRss()  # before the parameters: their memory counts
    r = fn(shape, case, warmup, iters, precision)
    r.update(rss.result())
    if engine:
        r["bf16_matmul"] = engine
    return r


def bench_decode(shape: str, case: str, warmup: int, iters: int, precision: str = "f32"):
    cfg = make_config(shape)
    P, buf = make_model(cfg, False)
    ids = Ids(DECODE_SEED)
    src = torch.tensor([ids.sentence(DECODE_LEN, cfg.vocab_size) for _ in range(DECODE_SOURCES)])
    attention_mask = torch.ones_like(src)
    if case == "greedy":
        settings = mm.GenerationSettings(num_beams=1, max_new_tokens=NEW_TOKENS, forced_eos=False)
        run = lambda: mm.greedy(cfg, P, buf, src, attention_mask, settings)  # noqa: E731
    else:
        settings = mm.GenerationSettings(num_beams=4, max_new_tokens=NEW_TOKENS, length_penalty=1.0,
                                         early_stopping=True, forced_eos=False)
        run = lambda: mm.beam_search(cfg, P, buf, src, attention_mask, settings)[0]  # noqa: E731
    for _ in range(warmup):
        with torch.no_grad(), autocast(precision):
            run()
    times, phases, steps = [], {k: [] for k in ("encode_s", "decoder_s", "reorder_s", "search_s")}, []
    width = 0
    load = other_load()
    for _ in range(iters):
        _PH.update(decoder=0.0, reorder=0.0, encode=0.0, steps=0)
        t0 = time.perf_counter()
        with torch.no_grad(), autocast(precision):
            seqs = run()
        t = time.perf_counter() - t0
        times.append(t)
        for k in ("encode", "decoder", "reorder"):
            phases[k + "_s"].append(_PH[k])
        phases["search_s"].append(t - _PH["encode"] - _PH["decoder"] - _PH["reorder"])
        steps.append(_PH["steps"])
        width = seqs.shape[1]
    sec = statistics.median(times)
    r = {k: statistics.median(v) for k, v in phases.items()}
    r.update(seconds_per_step=sec, seconds_min=min(times), sentences_per_s=DECODE_SOURCES / sec,
             decoder_steps=min(steps), output_length=int(width), other_cores=round(load(), 3))
    if min(steps) != NEW_TOKENS:
        print(f"warning: {shape} {case}: a run took {min(steps)} decoder steps, not {NEW_TOKENS}",
              file=sys.stderr, flush=True)
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=list(SHAPES) + ["all"], default="all")
    ap.add_argument("--case", choices=list(CASES) + ["all"], default="all")
    ap.add_argument("--precision", choices=list(PRECISIONS) + ["all"], default="f32",
                    help="f32: float32; bf16: forwards, losses and decoding under torch.autocast(bfloat16); all: both")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--iters", type=int, default=None, help="timed runs (default: see above); median reported")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true", help="one JSON line per (shape, case, precision)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    shapes = list(SHAPES) if args.shape == "all" else [args.shape]
    cases = list(CASES) if args.case == "all" else [args.case]
    precisions = list(PRECISIONS) if args.precision == "all" else [args.precision]
    blas = ps.blas_info()
    for sh in shapes:
        for case in cases:
            default = SHAPES[sh]["beam_iters"] if case == "beam4" else SHAPES[sh]["iters"]
            iters = args.iters if args.iters is not None else default
            fn = bench_train if case in ("plain", "ga") else bench_decode
            for prec in precisions:
                r = {"shape": sh, "case": case, "precision": prec,
                     **with_memory(fn, sh, case, args.warmup, iters, prec), "iters": iters,
                     "warmup": args.warmup, "torch": torch.__version__, "threads": torch.get_num_threads(),
                     "blas": blas}
                if args.json:
                    print(json.dumps(r), flush=True)
                else:
                    extra = (f", {r['sentences_per_s']:.1f} sentences/s, {r['decoder_steps']} decoder steps"
                             if "sentences_per_s" in r else f", loss {r['loss']:.4f}")
                    phases = " ".join(f"{k}={v:.4f}" for k, v in r.items()
                                      if k.endswith("_s") and k != "seconds_per_step")
                    print(f"{sh} {case} {prec}: {r['seconds_per_step'] * 1e3:.1f} ms (median of {iters}, min "
                          f"{r['seconds_min'] * 1e3:.1f}){extra}; {phases}; peak RSS {r['peak_rss_mb']:.0f} MiB "
                          f"(start {r['start_rss_mb']:.0f}); other cores {r['other_cores']:.2f}; "
                          f"torch {r['torch']}, threads {r['threads']}"
                          + (f"; bf16 matmul {r['bf16_matmul']}" if "bf16_matmul" in r else ""), flush=True)


if __name__ == "__main__":
    main()
