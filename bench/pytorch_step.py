#!/usr/bin/python3
"""PyTorch side of the training-step benchmark.

One step = forward + backward of a BERT sequence classifier (2 labels,
cross-entropy, gradients of every parameter; no optimizer step), float32,
sequence length 128, torch.set_num_threads(2), train mode with dropout
probabilities 0 (so the work matches the C++ side). The model is
tests/reference/hf_models.py, which is written the way Hugging Face's modules
compute: F.linear per projection, batched matmul for QK^T and AV, F.softmax,
F.layer_norm, exact F.gelu, F.cross_entropy.

    /usr/bin/python3 bench/pytorch_step.py [--shape small|base|all] [--warmup N] [--iters N] [--json]
        [--device cpu|cuda]

--device cuda (default cpu) moves the parameters and inputs to the GPU and brackets
every timed step with torch.cuda.synchronize(); the thread setting does not matter there.
TF32 stays off (torch.backends.cuda.matmul.allow_tf32 = False, cudnn's too), so GEMMs
are plain FP32. It exits with a message when torch.cuda.is_available() is false.

Shapes: small = 4 layers, hidden 256, 4 heads, intermediate 1024, batch 16;
        base  = 12 layers, hidden 768, 12 heads, intermediate 3072, batch 8;
both vocab 30522, max_position_embeddings 512, seq len 128.
FLOPs per step = 3 x forward matmul FLOPs (see step_flops / flop_formula).
"""

from __future__ import annotations

import os

# keep every BLAS / OpenMP pool at 2 threads too (set before torch is imported)
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
    os.environ.setdefault(_v, "2")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "reference"))
import hf_models as hm  # noqa: E402

THREADS = 2
SEQ_LEN = 128
SHAPES = {
    "small": dict(layers=4, hidden=256, heads=4, intermediate=1024, batch=16, iters=10),
    "base": dict(layers=12, hidden=768, heads=12, intermediate=3072, batch=8, iters=5),
}


def make_config(shape: str) -> hm.Config:
    s = SHAPES[shape]
    return hm.Config(model_type="bert", task="seqcls", vocab_size=30522,
                     hidden_size=s["hidden"], num_hidden_layers=s["layers"],
                     num_attention_heads=s["heads"], intermediate_size=s["intermediate"],
                     max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12,
                     pad_token_id=0, num_labels=2,
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def step_flops(layers: int, hidden: int, intermediate: int, batch: int, seq_len: int,
               num_labels: int = 2) -> int:
    """3 x forward matmul FLOPs (2*m*n*k per product), T = batch*seq_len tokens:
    forward = layers * (4*2*T*h*h          [Q, K, V, attention output]
                        + 2*2*T*h*i        [intermediate, output]
                        + 2*2*batch*L*L*h) [QK^T and AV, all heads]
              + 2*batch*h*h                [pooler]
              + 2*batch*h*num_labels       [classifier]
    """
    T = batch * seq_len
    fwd = layers * (8 * T * hidden * hidden + 4 * T * hidden * intermediate
                    + 4 * batch * seq_len * seq_len * hidden)
    fwd += 2 * batch * hidden * hidden + 2 * batch * hidden * num_labels
    return 3 * fwd


def flop_formula() -> str:
    return ("flops/step = 3 * [layers*(8*T*h^2 + 4*T*h*i + 4*B*L^2*h) + 2*B*h^2 + 2*B*h*labels],"
            " T = B*L (every Linear and both attention batched products at 2*m*n*k; elementwise ignored)")


def blas_info() -> str:
    """Which BLAS library the process actually loaded (after a matmul)."""
    a = torch.ones(64, 64)
    (a @ a).sum().item()
    libs = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1] if len(line.split()) >= 6 else ""
                base = os.path.basename(path).lower()
                if any(k in base for k in ("blas", "mkl_", "libmkl", "blis", "flexiblas")):
                    libs.add(os.path.realpath(path))
    except OSError:
        pass
    cfg = torch.__config__.show()
    tag = ""
    for tok in cfg.replace(",", " ").split():
        if tok.startswith("BLAS_INFO="):
            tag = tok
    return ";".join(sorted(libs)) + (f" ({tag})" if tag else "")


def setup_device(device: str) -> None:
    """--device cuda: exit with a clear message when CUDA cannot be used; TF32 off."""
    if device != "cuda":
        return
    if not torch.cuda.is_available():
        sys.exit(f"error: --device cuda, but torch {torch.__version__} reports "
                 "torch.cuda.is_available() == False (CPU-only build or no usable GPU)")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def to_device(params, tensors, device: str):
    """Parameters (leaf tensors that require grad) and input tensors on `device`."""
    if device == "cpu":
        return params, tensors
    params = {k: v.detach().to(device).requires_grad_(v.requires_grad) for k, v in params.items()}
    return params, [t.to(device) for t in tensors]


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def device_info(device: str) -> dict:
    """Extra JSON fields for --device cuda (none for cpu, so its output is unchanged)."""
    if device != "cuda":
        return {}
    return {"device": "cuda", "gpu": torch.cuda.get_device_name(0),
            "tf32": bool(torch.backends.cuda.matmul.allow_tf32)}


def bench(shape: str, warmup: int, iters: int, seed: int = 0, device: str = "cpu"):
    torch.set_num_threads(THREADS)
    torch.manual_seed(seed)
    cfg = make_config(shape)
    s = SHAPES[shape]
    B = s["batch"]
    params = hm.init_params(cfg, seed=seed, dtype=torch.float32, std=0.02, bias_std=0.02,
                            ln_std=0.02, requires_grad=True)
    g = torch.Generator().manual_seed(seed + 1)
    input_ids = torch.randint(1, cfg.vocab_size, (B, SEQ_LEN), generator=g)
    attention_mask = torch.ones(B, SEQ_LEN, dtype=torch.long)
    token_type_ids = torch.zeros(B, SEQ_LEN, dtype=torch.long)
    token_type_ids[:, SEQ_LEN // 2:] = 1
    labels = torch.randint(0, 2, (B,), generator=g)
    params, (input_ids, attention_mask, token_type_ids, labels) = to_device(
        params, [input_ids, attention_mask, token_type_ids, labels], device)

    def step():
        for t in params.values():
            t.grad = None
        out = hm.forward(cfg, params, input_ids, attention_mask, token_type_ids, labels,
                         retain_attention=False, training=True,
                         hidden_dropout=0.0, attention_dropout=0.0)
        out["loss"].backward()
        return out["loss"]

    for _ in range(warmup):
        step()
    sync(device)
    times = []
    for _ in range(iters):
        sync(device)
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
    flops = step_flops(s["layers"], s["hidden"], s["intermediate"], B, SEQ_LEN)
    assert flops == hm.step_flops(cfg, B, SEQ_LEN)
    sec = statistics.median(times)
    return {
        "shape": shape,
        "seconds_per_step": sec,
        "seconds_min": min(times),
        "iters": iters,
        "warmup": warmup,
        "gflop_per_step": flops / 1e9,
        "gflops": flops / 1e9 / sec,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "blas": blas_info(),
        **device_info(device),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=["small", "base", "all"], default="all")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=None,
                    help="timed steps (default 10 for small, 5 for base); the median is reported")
    ap.add_argument("--json", action="store_true", help="one JSON line per shape")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                    help="cuda: parameters and inputs on the GPU, synchronized timing (TF32 off)")
    args = ap.parse_args()
    setup_device(args.device)
    shapes = ["small", "base"] if args.shape == "all" else [args.shape]
    blas = blas_info()
    if "/blas/libblas.so" in blas:
        print("warning: torch is using the reference (netlib) BLAS selected by Debian's "
              "libblas.so.3 alternative; matmuls are single-threaded and slow. Install an "
              "optimized BLAS (e.g. libopenblas0-pthread) for a meaningful baseline.",
              file=sys.stderr, flush=True)
    if not args.json:
        print(flop_formula())
    for sh in shapes:
        iters = args.iters if args.iters is not None else SHAPES[sh]["iters"]
        r = bench(sh, args.warmup, iters, device=args.device)
        if args.json:
            print(json.dumps(r), flush=True)
        else:
            s = SHAPES[sh]
            print(f"{sh}: layers={s['layers']} hidden={s['hidden']} heads={s['heads']} "
                  f"intermediate={s['intermediate']} batch={s['batch']} seq={SEQ_LEN}: "
                  f"{r['seconds_per_step']*1e3:.1f} ms/step (median of {iters}, min "
                  f"{r['seconds_min']*1e3:.1f}), {r['gflop_per_step']:.2f} GFLOP/step, "
                  f"{r['gflops']:.2f} GFLOP/s, torch {r['torch']}, threads {r['threads']}, "
                  f"blas {r['blas']}"
                  + (f", {r['gpu']}" if args.device == "cuda" else ""), flush=True)


if __name__ == "__main__":
    main()
