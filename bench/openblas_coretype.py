"""Prints the OPENBLAS_CORETYPE under which PyTorch's float32 products run fastest on this
CPU, or nothing where OpenBLAS's own choice is fastest (sourced by bench/pytorch_env.sh).

Debian's OpenBLAS 0.3.21 does not know every recent CPU: it falls back to SSE3 "Prescott"
kernels on an Intel Xeon of family 6 model 207 and to AVX2 "Haswell" kernels on an AMD EPYC
of family 26 (Zen 5), where its AVX-512 kernels are faster. Which kernels are best is
measured, not assumed: each candidate that this CPU's instructions allow runs a 1024x768x3072
product (the BERT-base FFN) in its own process (OpenBLAS reads the variable when it loads),
best of 5, on the threads of the comparison (2). Progress goes to stderr.
"""
import os
import subprocess
import sys

PROBE = r"""
import time, torch
torch.set_num_threads(int(__import__("os").environ.get("PROBE_THREADS", "2")))
a, b = torch.randn(1024, 3072), torch.randn(768, 3072)
best = float("inf")
for _ in range(7):
    t = time.perf_counter(); a @ b.t(); best = min(best, time.perf_counter() - t)
print(2 * 1024 * 768 * 3072 / best / 1e9)
"""


def cpu_flags():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def rate(coretype):
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def main():
    flags = cpu_flags()
    candidates = [""]  # OpenBLAS's own choice
    if "avx2" in flags and "fma" in flags:
        candidates += ["Haswell", "Zen"]
    if "avx512f" in flags:
        candidates.append("SkylakeX")
    if "avx512_bf16" in flags:
        candidates.append("Cooperlake")
    rates = {c: rate(c) for c in candidates}
    best = max(rates, key=rates.get)
    # OpenBLAS's own choice stays unless another is clearly (5 %) faster: timings move.
    if rates[best] < 1.05 * rates[""]:
        best = ""
    print("openblas_coretype: " + ", ".join(f"{c or 'default'} {r:.0f} GFLOP/s" for c, r in rates.items())
          + f" -> {best or 'default'}", file=sys.stderr)
    print(best)


if __name__ == "__main__":
    main()
