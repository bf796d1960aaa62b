"""What the summaries of bench/compare_addrop.sh and bench/compare_marian.sh share.

Their embedded Python imports this (compare_common.sh's summarize puts bench/ on its path):
reading the raw per-run outputs, the merged outputs, the header lines (machine, load,
environments, the peak-memory check), the main table's header and rows and the cells
common to both scripts' tables. Standard library only.
"""
import json
import os
import subprocess
import sys

PRECS = ["f32", "bf16"]


class Results:
    """The raw outputs of one invocation, read by read_results."""

    def __init__(self):
        self.context = None  # ours' Google Benchmark context (the first run's)
        self.ours = []       # ours' records, in run order
        self.pytorch = []    # PyTorch's records, in run order
        self.res = {}        # (side, shape, case, precision) -> the run's record
        self.problems = []   # one line per run without a usable output

    def get(self, side, sh, c, p):
        return self.res.get((side, sh, c, p))

    def shapes(self, order):
        """The shapes of order that have a run, in that order."""
        return [s for s in order if any(k[1] == s for k in self.res)]

    def rows(self, shapes, cases):
        """(shape, case, (ours f32, ours bf16, PyTorch f32, PyTorch bf16)) per shape and case
        with a run; None where a run is missing."""
        for sh in shapes:
            for c in cases:
                four = tuple(self.get(s, sh, c, p) for s in ("ours", "pytorch") for p in PRECS)
                if any(four):
                    yield sh, c, four


def read_results(raw, run_list, tag=False):
    """Reads raw/<shape>_<case>_<side>_<precision>.{json,rss,runs} of every run_list item
    ("side shape case precision"). Each record gets gnu_time_maxrss_mb (from .rss), runs (from
    .runs, 1 where absent), with tag side and precision, and seconds (ours: seconds_median;
    PyTorch: seconds_per_step). A missing or failed run becomes a line of problems."""
    out = Results()
    for item in run_list:
        side, sh, c, p = item.split()
        prefix = f"{raw}/{sh}_{c}_{side}_{p}"
        try:
            text = open(prefix + ".json").read()
            if side == "ours":
                doc = json.loads(text)
                out.context = out.context or doc.get("context")
                r = doc["benchmarks"][0]
                if r.get("error_occurred"):
                    raise ValueError(r.get("error_message", "error"))
            else:
                r = json.loads(text.splitlines()[0])
            r["gnu_time_maxrss_mb"] = round(int(open(prefix + ".rss").read().split()[-1]) / 1024, 1)
        except (OSError, ValueError, KeyError, IndexError) as e:
            out.problems.append(f"{side} {sh} {c} {p}: missing ({type(e).__name__}: {e})")
            continue
        r["runs"] = int(open(prefix + ".runs").read()) if os.path.exists(prefix + ".runs") else 1
        if tag:
            r["side"], r["precision"] = side, p
        (out.ours if side == "ours" else out.pytorch).append(r)
        r["seconds"] = r.get("seconds_median") if side == "ours" else r.get("seconds_per_step")
        out.res[side, sh, c, p] = r
    return out


def start(tag=False):
    """The summary's arguments (compare_common.sh's summarize): raw, out, the script's own
    argument, OURS_ENV, and the results of the runs that follow (read_results)."""
    raw, out, arg, ours_env, *run_list = sys.argv[1:]
    return raw, out, arg, ours_env, read_results(raw, run_list, tag)


def write_merged(results, ours_path, pytorch_path):
    """ours' records as one Google Benchmark JSON, PyTorch's as JSON lines."""
    json.dump({"context": results.context or {}, "benchmarks": results.ours}, open(ours_path, "w"), indent=1)
    open(pytorch_path, "w").write("".join(json.dumps(r) + "\n" for r in results.pytorch))


def cpu_model():
    return subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                          capture_output=True, text=True).stdout.strip()


def load_average(raw):
    """The load average before and after the runs, as run_all recorded it in raw/loadavg;
    "not recorded" where it did not (raw outputs of a run before loadavg was kept)."""
    try:
        before, after = open(f"{raw}/loadavg").read().splitlines()[:2]
        return f"before {before}, after {after}"
    except (OSError, ValueError):
        return "not recorded"


def span(v):
    return f"{v[0]:.0f}" if round(v[0]) == round(v[-1]) else f"{v[0]:.0f}-{v[-1]:.0f}"


def header_lines(results, raw, threads, ours_env, cell, faster, peak_note=""):
    """The lines above the table, the last one empty. cell: what a cell gives before its peak
    memory; faster: which of a speedup's two is faster when it is > 1 ("first", "second");
    peak_note: appended to the peak check line."""
    ours_all, pytorch_all = results.ours, results.pytorch
    # in-process peak (peak_rss_mb) against GNU time's maximum resident set of the same process
    diffs = {side: [r["gnu_time_maxrss_mb"] - r["peak_rss_mb"] for r in rs if "peak_rss_mb" in r]
             for side, rs in (("ours", ours_all), ("PyTorch", pytorch_all))}
    not_reset = [r for r in ours_all + pytorch_all if r.get("peak_rss_reset") in (0, False)]
    engine_ours = (results.context or {}).get("bf16_matmul_engine", "?")
    engine_pt = next((r["bf16_matmul"] for r in pytorch_all if "bf16_matmul" in r), "?")
    torch_v = next((r["torch"] for r in pytorch_all), "?")
    start_pt = sorted(r["start_rss_mb"] for r in pytorch_all if "start_rss_mb" in r)
    start_ours = sorted(r["start_rss_mb"] for r in ours_all if "start_rss_mb" in r)
    lines = [f"CPU: {cpu_model()}; {threads} threads each; load average (1/5/15 min) {load_average(raw)}",
             f"bf16 matrix products: ours {engine_ours}; PyTorch {torch_v} autocast: {engine_pt}",
             f"ours run with {ours_env or 'the plain environment'}; PyTorch with "
             + os.environ.get("COMPARE_PYTORCH_ENV", "?"),
             f"each cell: {cell}, peak resident set of the case's own process in MiB (peak_rss_mb; before the "
             "case began the process held "
             + (f"{span(start_ours)} MiB (ours), " if start_ours else "")
             + (f"{span(start_pt)} MiB (PyTorch: interpreter and torch)" if start_pt else "")
             + f"); speedups are time ratios (> 1: the {faster} named is faster); other cores = cores other "
             "processes kept busy during the kept run (above "
             f"{float(os.environ.get('DISTURBED', '0.1')):g} it was disturbed), "
             "order ours f32 / ours bf16 / PyTorch f32 / PyTorch bf16, likewise runs", ""]
    if any(diffs.values()):
        lines.insert(3, "peak check, GNU time's maximum resident set of the process - its in-process peak_rss_mb: "
                     + "; ".join(f"{side} {min(d):+.1f} to {max(d):+.1f} MiB over {len(d)} runs"
                                 for side, d in diffs.items() if d)
                     + peak_note)
    if not_reset:
        lines.insert(3, f"WARNING: {len(not_reset)} runs could not reset the peak mark (peak_rss_reset = 0)")
    return lines


def table_head(speedups):
    """The main table's header and rule: shape, case, the four runs, the speedup columns, other
    cores, runs."""
    cols = ["shape", "case", "ours f32", "ours bf16", "PyTorch f32", "PyTorch bf16", *speedups, "other cores", "runs"]
    return ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]


def table_row(sh, c, four, fmt, speedups):
    """A row of the main table: four as results.rows gives it, each formatted with fmt."""
    return "| " + " | ".join([sh, c, *map(fmt, four), *speedups, cores(four), nruns(four)]) + " |"


def ratio(slow, fast):
    """slow's seconds / fast's, "—" where either is missing."""
    return "—" if slow is None or fast is None else f"{slow['seconds'] / fast['seconds']:.2f}"


def cores(rs):
    return " / ".join("—" if r is None else f"{r['other_cores']:.2f}" for r in rs)


def nruns(rs):
    return " / ".join("—" if r is None else str(r["runs"]) for r in rs)


def finish(lines, results, path):
    """Adds the missing runs, writes the summary to path and prints it."""
    if results.problems:
        lines += ["", "Missing runs:"] + [f"- {x}" for x in results.problems]
    text = "\n".join(lines)
    open(path, "w").write(text + "\n")
    print(text)
