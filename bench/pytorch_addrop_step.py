#!/usr/bin/python3
"""PyTorch side of the AD-DROP training-step benchmark.

Times one AD-DROP training step done the way the reference implementation
(TaoYang225/AD-DROP, trainer.py / utils.py) does it, on the model of
tests/reference/hf_models.py with the shapes, data, float32, 2 threads and
dropout probabilities 0 of bench/pytorch_step.py. Target layer 0, p = q = 0.3.
No optimizer step in any case (gradients only), like pytorch_step.py.

Cases (see docs/algorithm.md, "One AD-DROP training step"):
  plain  forward + CE loss + backward (the plain cross-tuning epoch);
  ga     first forward (train mode, graph kept), pseudo labels = argmax z,
         F = sum_b z[b, c_b], torch.autograd.grad(F, A_0); top-p candidates per
         row (sort with +100 on pad keys, k = int(float32((1-p)*n_b)), B >= t);
         q-sampling (torch.rand < 1-q keeps); additive -10000 at dropped
         positions; second forward with the mask; gold CE; full backward;
  iga    as ga, attribution = integrated gradients, m = 20: 20 more full forward
         passes one after another in eval mode with A_0 scaled by alpha_k = k/20
         (hf_models' alpha), each followed by autograd.grad of F (argmax pseudo
         label re-taken at every alpha, as the reference does) w.r.t. A_0;
         B = A_0 * mean_k grad_k (A_0 of the last, alpha = 1, pass like the
         reference);
  aa     attribution = A_0 of the first forward (which still runs);
  rd     random: the first forward still runs (as in the reference); keep iff
         u1 < 1-p or u2 < 1-q over non-pad keys.

    /usr/bin/python3 bench/pytorch_addrop_step.py [--shape small|base|all]
        [--case plain|ga|iga|aa|rd|all] [--precision f32|bf16|all] [--warmup N]
        [--iters N] [--json] [--selftest] [--device cpu|cuda]

--precision bf16 runs every forward pass of the step under
torch.autocast(device_type=<device>, dtype=torch.bfloat16): the first forward (GA's
attribution differentiates its graph, AA reads its A_0), IGA's 20 alpha passes and the
masked second forward, all made by make_step's fwd(). What autocast records there also
sets the dtypes of the backward and autograd.grad calls (GA's and IGA's attribution
gradients, the final backward), which run outside the context as PyTorch recommends. Weights, gradients and inputs stay float32,
as Hugging Face's Trainer --bf16 runs on the CPU. f32 (the default) is the plain float32
step; all runs f32, then bf16. The JSON lines carry "precision" and, for bf16,
"bf16_matmul": what computed the bf16 matrix products, found by running one bf16
linear layer and batched product (forward and backward) under autocast in a child
process with ONEDNN_VERBOSE=1 (e.g. "oneDNN v2.6.3 matmul brg:avx512_core_bf16").

Peak memory: every result carries peak_rss_mb, the highest resident set of this
process while the case ran (parameter initialization included), and start_rss_mb, the
resident set when it began (the interpreter, torch and what earlier cases left), in MiB
(2^20 bytes). The peak is the kernel's high-water mark VmHWM from /proc/self/status,
reset to the current resident set at the start of the case by writing "5" to
/proc/self/clear_refs (Linux >= 4.0; where that fails, peak_rss_reset is false and the
peak is the process's so far). Memory that earlier cases in the same process left with
the allocator stays resident (more so with MALLOC_TRIM_THRESHOLD_ set high), so run one
case per process for per-case peaks, as bench/compare_addrop.sh does.

--device cuda (default cpu): parameters, inputs and the masks' random numbers on the
GPU, every timed step bracketed by torch.cuda.synchronize(), TF32 off (as
pytorch_step.py --device cuda); exits with a message when CUDA cannot be used.

Defaults: --warmup 1, --iters 3 (small) / 2 (base); the median is reported.
--selftest checks the batched top-p selection against a per-row loop on a small
padded batch (and the float32 k of p = 0.3, n = 90 is 63) and exits.
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
sys.path.insert(0, HERE)
import pytorch_step as ps  # noqa: E402  (also puts tests/reference on sys.path)
import hf_models as hm  # noqa: E402

THREADS = ps.THREADS
SEQ_LEN = ps.SEQ_LEN
CASES = ("plain", "ga", "iga", "aa", "rd")
PRECISIONS = ("f32", "bf16")
DEFAULT_ITERS = {"small": 3, "base": 2}
LAYER = 0
P_RATE = 0.3
Q_RATE = 0.3
IG_STEPS = 20
MASK_VALUE = -10000.0


# --------------------------------------------------------------------------
# mask generation (batched over [B, H, L, L]; no Python loops over rows)
# --------------------------------------------------------------------------

def drop_index_high(attn_mask: torch.Tensor, p: float) -> torch.Tensor:
    """k_b = int(float32((1-p) * n_b)) as the reference computes it: a Python
    float times an int64 tensor is evaluated in float32, then truncated."""
    n = attn_mask.sum(dim=-1)          # int64 [B]
    return ((1 - p) * n).long()        # float32 product, truncation


def candidates_high(attr: torch.Tensor, attn_mask: torch.Tensor, p: float) -> torch.Tensor:
    """Candidate discard region (docs/algorithm.md step 4, high): bool [B, H, L, L].

    attr: attributions [B, H, L, L]; attn_mask: [B, L] 0/1 (1 = real token).
    Pad keys get +100 so they sort last; t = sorted[..., k_b]; candidates are the
    non-pad keys with B >= t. p = 0 (k_b = n_b) gives no candidates.
    """
    Bsz, H, L, _ = attr.shape
    keymask = attn_mask[:, None, None, :].to(torch.bool)            # [B, 1, 1, L]
    padd = (1 - attn_mask[:, None, None, :].to(attr.dtype)) * 100   # reference: +100 on pads
    grad_p = attr + padd
    k = drop_index_high(attn_mask, p)                                # [B]
    valid = k < attn_mask.sum(dim=-1)                                # p = 0 -> k = n_b: none
    kk = k.clamp(max=L - 1)
    if bool((kk == kk[0]).all()):
        # every example has the same k (e.g. no padding): one kthvalue over all rows
        t = torch.kthvalue(grad_p, int(kk[0]) + 1, dim=-1, keepdim=True).values
    else:
        sorted_v = torch.sort(grad_p, dim=-1).values                 # [B, H, L, L]
        idx = kk.view(Bsz, 1, 1, 1).expand(Bsz, H, L, 1)
        t = sorted_v.gather(-1, idx)                                 # [B, H, L, 1]
    cand = (grad_p >= t) & keymask
    return cand & valid.view(Bsz, 1, 1, 1)


def extra_from_keep(keep: torch.Tensor, attn_mask: torch.Tensor, dtype) -> torch.Tensor:
    """Additive [B, H, L, L] term: -10000 at dropped non-pad keys, 0 elsewhere
    (pads already carry -10000 from the padding mask and are never changed)."""
    keymask = attn_mask[:, None, None, :].to(torch.bool)
    dropped = (~keep) & keymask
    return dropped.to(dtype) * MASK_VALUE


def mask_high(attr: torch.Tensor, attn_mask: torch.Tensor, p: float, q: float) -> torch.Tensor:
    cand = candidates_high(attr, attn_mask, p)
    u = torch.rand(attr.shape, dtype=attr.dtype, device=attr.device)
    keep = (~cand) | (u < 1 - q)
    return extra_from_keep(keep, attn_mask, attr.dtype)


def mask_random(shape, attn_mask: torch.Tensor, p: float, q: float, dtype) -> torch.Tensor:
    u1 = torch.rand(shape, dtype=dtype, device=attn_mask.device)
    u2 = torch.rand(shape, dtype=dtype, device=attn_mask.device)
    keep = (u1 < 1 - p) | (u2 < 1 - q)
    return extra_from_keep(keep, attn_mask, dtype)


def pseudo_label_target(logits: torch.Tensor) -> torch.Tensor:
    """F = sum_b z[b, argmax_c z[b, c]]."""
    c = logits.argmax(dim=-1)
    return logits.gather(1, c.view(-1, 1)).sum()


# --------------------------------------------------------------------------
# benchmark
# --------------------------------------------------------------------------

def make_step(case: str, cfg: hm.Config, params, input_ids, attention_mask, token_type_ids,
              labels, p: float = P_RATE, q: float = Q_RATE, layer: int = LAYER,
              m: int = IG_STEPS, precision: str = "f32"):
    if precision not in PRECISIONS:
        raise ValueError(precision)
    bf16 = precision == "bf16"

    def fwd(extra=None, alpha=None, training=True):
        # Every forward pass of every case goes through here: under autocast for bf16.
        with torch.autocast(device_type=input_ids.device.type, dtype=torch.bfloat16, enabled=bf16):
            return hm.forward(cfg, params, input_ids, attention_mask, token_type_ids, labels,
                              extra=extra, alpha=alpha, retain_attention=False,
                              training=training, hidden_dropout=0.0, attention_dropout=0.0)

    def step():
        for t in params.values():
            t.grad = None
        # first forward, train mode, no AD-DROP mask; its graph stays alive through
        # the step as in the reference (`out` is referenced until the end)
        out = fwd()
        if case == "plain":
            out["loss"].backward()
            return out["loss"]
        A = out["attention_probs"][layer]
        if case == "ga":
            F_ = pseudo_label_target(out["logits"])
            (attr,) = torch.autograd.grad(F_, A, retain_graph=True)
            extra = mask_high(attr, attention_mask, p, q)
        elif case == "iga":
            grads = []
            A_last = None
            for k in range(1, m + 1):
                o = fwd(alpha={layer: k / m}, training=False)
                A_k = o["attention_probs"][layer]
                F_k = pseudo_label_target(o["logits"])   # argmax re-taken per alpha
                (g_k,) = torch.autograd.grad(F_k, A_k, retain_graph=True)
                grads.append(g_k)
                A_last = A_k
            attr = A_last * torch.mean(torch.stack(grads), dim=0)
            del grads, o, A_k, F_k
            extra = mask_high(attr, attention_mask, p, q)
        elif case == "aa":
            extra = mask_high(A.detach(), attention_mask, p, q)
        elif case == "rd":
            extra = mask_random(A.shape, attention_mask, p, q, A.dtype)
        else:
            raise ValueError(case)
        out_b = fwd(extra={layer: extra})
        out_b["loss"].backward()
        del out
        return out_b["loss"]

    return step


# --------------------------------------------------------------------------
# peak memory and the bf16 matmul engine
# --------------------------------------------------------------------------

def _status_kib(key: str) -> float:
    """A "Key:   123 kB" line of /proc/self/status, in KiB (-1 if absent)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return -1.0


class PeakRss:
    """The peak resident set of a case: VmHWM, reset to VmRSS at construction by
    writing "5" to /proc/self/clear_refs (CLEAR_REFS_MM_HIWATER_RSS, Linux >= 4.0)."""

    def __init__(self):
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.reset = True
        except OSError:
            self.reset = False
            print("pytorch_addrop_step: cannot reset the peak RSS (/proc/self/clear_refs); "
                  "peak_rss_mb is the process's peak so far", file=sys.stderr, flush=True)
        self.start_kib = _status_kib("VmRSS")

    def result(self) -> dict:
        r = {"peak_rss_mb": round(_status_kib("VmHWM") / 1024, 1),
             "start_rss_mb": round(self.start_kib / 1024, 1)}
        if not self.reset:
            r["peak_rss_reset"] = False
        return r


_BF16_PROBE = r"""
import torch
torch.set_num_threads(1)
x = torch.randn(64, 64, requires_grad=True)
w = torch.randn(64, 64, requires_grad=True)
with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
    y = torch.nn.functional.linear(x, w)
    z = torch.bmm(x.view(4, 16, 64), w.view(4, 64, 16))
(y.float().sum() + z.float().sum()).backward()
"""
_bf16_engine = None


def bf16_matmul_engine(device: str) -> str:
    """What computes torch's bf16 matrix products under CPU autocast: the oneDNN
    primitives a child process's probe runs (ONEDNN_VERBOSE), or ATen's own kernels."""
    global _bf16_engine
    if device != "cpu":
        return f"torch on {device}"
    if _bf16_engine is None:
        import subprocess
        env = dict(os.environ, ONEDNN_VERBOSE="1", DNNL_VERBOSE="1")
        try:
            out = subprocess.run([sys.executable, "-c", _BF16_PROBE], env=env, capture_output=True,
                                 text=True, timeout=120).stdout
        except (OSError, subprocess.SubprocessError) as e:
            return f"unknown (probe failed: {e})"
        version, impls = "", []
        for line in out.splitlines():
            f = line.split(",")
            if len(f) > 2 and f[1] == "info" and f[2].startswith("oneDNN"):
                version = f[2].split(" (")[0]
            elif len(f) > 4 and f[1] == "exec" and f[3] in ("matmul", "inner_product"):
                impl = f"{f[3]} {f[4]}"
                if impl not in impls:
                    impls.append(impl)
        _bf16_engine = (f"{version or 'oneDNN'} {', '.join(impls)} (torch's mkldnn)" if impls
                        else "ATen's own bf16 kernels (no oneDNN primitive ran)")
    return _bf16_engine


def kernel_table(step, device: str, steps: int = 3, rows: int = 25) -> str:
    """torch.profiler's table of the ops/kernels over `steps` steps, by time on the device."""
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        ps.sync(device)
    averages = prof.key_averages()
    # The sort keys were renamed across torch versions (cuda_* -> device_*).
    keys = ["self_device_time_total", "self_cuda_time_total"] if device == "cuda" else ["self_cpu_time_total"]
    for key in keys:
        try:
            return averages.table(sort_by=key, row_limit=rows)
        except (AttributeError, KeyError, ValueError):
            continue
    return averages.table(row_limit=rows)


def bench(shape: str, case: str, warmup: int, iters: int, seed: int = 0, device: str = "cpu",
          profile_steps: int = 0, precision: str = "f32"):
    engine = bf16_matmul_engine(device) if precision == "bf16" else None  # (child process: before the memory mark)
    rss = PeakRss()  # before the parameters: their memory counts
    torch.set_num_threads(THREADS)
    torch.manual_seed(seed)
    cfg = ps.make_config(shape)
    s = ps.SHAPES[shape]
    B = s["batch"]
    params = hm.init_params(cfg, seed=seed, dtype=torch.float32, std=0.02, bias_std=0.02,
                            ln_std=0.02, requires_grad=True)
    g = torch.Generator().manual_seed(seed + 1)
    input_ids = torch.randint(1, cfg.vocab_size, (B, SEQ_LEN), generator=g)
    attention_mask = torch.ones(B, SEQ_LEN, dtype=torch.long)
    token_type_ids = torch.zeros(B, SEQ_LEN, dtype=torch.long)
    token_type_ids[:, SEQ_LEN // 2:] = 1
    labels = torch.randint(0, 2, (B,), generator=g)
    params, (input_ids, attention_mask, token_type_ids, labels) = ps.to_device(
        params, [input_ids, attention_mask, token_type_ids, labels], device)

    step = make_step(case, cfg, params, input_ids, attention_mask, token_type_ids, labels,
                     precision=precision)
    for _ in range(warmup):
        step()
    ps.sync(device)
    times = []
    for _ in range(iters):
        ps.sync(device)
        t0 = time.perf_counter()
        step()
        ps.sync(device)
        times.append(time.perf_counter() - t0)
    memory = rss.result()  # before the profiler's own allocations
    if profile_steps > 0:  # after the timing, which the profiler would slow
        print(f"# torch.profiler, {shape} {case} {precision}, {profile_steps} steps\n"
              + kernel_table(step, device, profile_steps), file=sys.stderr, flush=True)
    return {
        "shape": shape,
        "case": case,
        "precision": precision,
        "seconds_per_step": statistics.median(times),
        "seconds_min": min(times),
        "iters": iters,
        "warmup": warmup,
        "layer": LAYER,
        "p": P_RATE,
        "q": Q_RATE,
        "m": IG_STEPS,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "blas": ps.blas_info(),
        **({"bf16_matmul": engine} if engine else {}),
        **memory,
        **ps.device_info(device),
    }


# --------------------------------------------------------------------------
# self test of the batched selection against a per-row loop
# --------------------------------------------------------------------------

def selftest() -> int:
    torch.manual_seed(0)
    assert int(drop_index_high(torch.ones(1, 90, dtype=torch.long), 0.3)[0]) == 63
    Bsz, H, L = 3, 2, 9
    lens = [9, 6, 4]
    am = torch.zeros(Bsz, L, dtype=torch.long)
    for b, n in enumerate(lens):
        am[b, :n] = 1
    attr = torch.randn(Bsz, H, L, L)
    attr[0, 0, 0, :3] = attr[0, 0, 0, 3]  # ties at the threshold
    fails = 0
    for p in (0.0, 0.1, 0.3, 0.5, 0.9):
        cand = candidates_high(attr, am, p)
        for b in range(Bsz):
            n = lens[b]
            k = int(((1 - p) * torch.tensor([n])).long()[0])
            for h in range(H):
                for i in range(L):
                    row = attr[b, h, i, :n]
                    exp = torch.zeros(L, dtype=torch.bool)
                    if k < n:
                        t = torch.sort(row).values[k]
                        exp[:n] = row >= t
                    if not torch.equal(cand[b, h, i], exp):
                        fails += 1
    # same-k fast path (kthvalue) against the sort path
    am_full = torch.ones(Bsz, L, dtype=torch.long)
    c1 = candidates_high(attr, am_full, 0.3)
    sv = torch.sort(attr, dim=-1).values[..., int(((1 - 0.3) * torch.tensor([L])).long()[0])]
    if not torch.equal(c1, attr >= sv.unsqueeze(-1)):
        fails += 1
    # masks: pads never dropped
    extra = mask_high(attr, am, 0.3, 0.3)
    if bool((extra[~am[:, None, None, :].bool().expand_as(extra)] != 0).any()):
        fails += 1
    extra = mask_random(attr.shape, am, 0.3, 0.3, attr.dtype)
    if bool((extra[~am[:, None, None, :].bool().expand_as(extra)] != 0).any()):
        fails += 1
    print("selftest:", "ok" if fails == 0 else f"{fails} failures")
    return 1 if fails else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=["small", "base", "all"], default="all")
    ap.add_argument("--case", choices=list(CASES) + ["all"], default="all")
    ap.add_argument("--precision", choices=list(PRECISIONS) + ["all"], default="f32",
                    help="f32: float32; bf16: every forward under torch.autocast(bfloat16); all: both")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--iters", type=int, default=None,
                    help="timed steps (default 3 for small, 2 for base); the median is reported")
    ap.add_argument("--json", action="store_true", help="one JSON line per (shape, case, precision)")
    ap.add_argument("--selftest", action="store_true", help="check the mask selection and exit")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                    help="cuda: parameters and inputs on the GPU, synchronized timing (TF32 off)")
    ap.add_argument("--profile", type=int, default=0, metavar="STEPS",
                    help="after timing, print torch.profiler's table of the most costly ops/kernels over "
                         "STEPS steps to stderr (on cuda: by GPU time)")
    args = ap.parse_args()
    if args.selftest:
        sys.exit(selftest())
    ps.setup_device(args.device)
    shapes = ["small", "base"] if args.shape == "all" else [args.shape]
    cases = list(CASES) if args.case == "all" else [args.case]
    precisions = list(PRECISIONS) if args.precision == "all" else [args.precision]
    blas = ps.blas_info()
    if "/blas/libblas.so" in blas:
        print("warning: torch is using the reference (netlib) BLAS selected by Debian's "
              "libblas.so.3 alternative; matmuls are single-threaded and slow. Install an "
              "optimized BLAS (e.g. libopenblas0-pthread) for a meaningful baseline.",
              file=sys.stderr, flush=True)
    for sh in shapes:
        iters = args.iters if args.iters is not None else DEFAULT_ITERS[sh]
        for case in cases:
            for prec in precisions:
                r = bench(sh, case, args.warmup, iters, device=args.device, profile_steps=args.profile,
                          precision=prec)
                if args.json:
                    print(json.dumps(r), flush=True)
                else:
                    s = ps.SHAPES[sh]
                    print(f"{sh} {case} {prec}: layers={s['layers']} hidden={s['hidden']} heads={s['heads']} "
                          f"batch={s['batch']} seq={SEQ_LEN} layer={LAYER} p={P_RATE} q={Q_RATE}"
                          f"{' m=%d' % IG_STEPS if case == 'iga' else ''}: "
                          f"{r['seconds_per_step']*1e3:.1f} ms/step (median of {iters}, min "
                          f"{r['seconds_min']*1e3:.1f}), peak RSS {r['peak_rss_mb']:.0f} MiB (start "
                          f"{r['start_rss_mb']:.0f}), torch {r['torch']}, threads {r['threads']}, "
                          f"blas {r['blas']}"
                          + (f", bf16 matmul {r['bf16_matmul']}" if "bf16_matmul" in r else "")
                          + (f", {r['gpu']}" if args.device == "cuda" else ""), flush=True)


if __name__ == "__main__":
    main()
