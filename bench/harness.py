"""Shared timing and reporting for the kernel benchmark suite (bench/run.py).

A suite module defines ``run(bench)`` and records rows with ``bench.add``; the
harness times callables, keeps every row, and writes JSON and a markdown table.
"""
from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Row:
    suite: str          # "gemm", "softmax_xent", ...
    kernel: str         # what was measured, e.g. "sgemm" or "fwd+bwd"
    shape: str          # e.g. "1024x1024x1024"
    impl: str           # "pydl", "numpy", "torch", "memcpy", ...
    threads: int
    seconds: float      # best of the repeats
    flops: float | None = None
    bytes: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def gflops(self):
        return self.flops / self.seconds / 1e9 if self.flops else None

    @property
    def gbytes(self):
        return self.bytes / self.seconds / 1e9 if self.bytes else None


class Bench:
    def __init__(self, threads=(1, 2), min_time=0.2, repeats=5, quick=False, settle=0.15):
        self.threads = list(threads)
        self.min_time = min_time / (4 if quick else 1)
        self.repeats = repeats if not quick else 3
        self.quick = quick
        # Seconds to wait before timing: thread pools spin for a while after
        # their last call (OpenBLAS for ~2^28 cycles), and a spinning pool of the
        # previous peer would steal a core from the one being timed.
        self.settle = settle
        self.rows: list[Row] = []
        self.peak: dict[int, float] = {}   # threads -> GFLOP/s of the FMA loop (active ISA)
        self.isa = None                    # pydl's instruction set in this run
        # Lower instruction sets pydl is also timed on (add_pydl), e.g. ["avx2"] on an
        # AVX-512 machine, so a regression of the path other machines run shows.
        self.compare_isas: list[str] = []
        self.isa_peak: dict[str, dict[int, float]] = {}  # isa -> threads -> GFLOP/s
        self.info: dict = {}
        self.sections: list[str] = []  # markdown a suite adds below the table
        self._thread_setters = []

    def on_threads(self, setter):
        """Registers setter(n), called by set_threads for one peer's thread pool."""
        self._thread_setters.append(setter)

    def set_threads(self, n):
        """Every peer (pydl, NumPy's BLAS, torch) on n threads from here on."""
        for setter in self._thread_setters:
            setter(n)

    def timeit(self, fn, *, setup=None):
        """Best seconds per call of fn() over `repeats` batches of calls that
        each last at least `min_time` (one warm-up call first)."""
        if setup:
            setup()
        time.sleep(self.settle)
        fn()
        t0 = time.perf_counter()
        fn()
        once = max(time.perf_counter() - t0, 1e-7)
        calls = max(1, int(self.min_time / once))
        best = float("inf")
        for _ in range(self.repeats):
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            best = min(best, (time.perf_counter() - t0) / calls)
        return best

    def add_pydl(self, suite, kernel, shape, threads, fn, *, setup=None, **add_args):
        """Times pydl's fn on the active instruction set (row "pydl") and on each
        of compare_isas (rows "pydl <isa>"), restoring the active one after."""
        from pydl import _C
        row = self.add(suite, kernel, shape, "pydl", threads, self.timeit(fn, setup=setup), **add_args)
        for isa in self.compare_isas:
            _C.set_isa(isa)
            try:
                self.add(suite, kernel, shape, f"pydl {isa}", threads, self.timeit(fn, setup=setup),
                         **add_args)
            finally:
                _C.set_isa(self.isa)
        return row

    def add(self, suite, kernel, shape, impl, threads, seconds, flops=None, bytes=None, **extra):
        row = Row(suite, kernel, shape, impl, threads, seconds, flops, bytes, extra)
        self.rows.append(row)
        rate = (f"{row.gflops:8.1f} GFLOP/s" if row.gflops is not None else
                f"{row.gbytes:8.2f} GB/s" if row.gbytes is not None else "")
        print(f"  {suite:<13} {kernel:<10} {shape:<18} {impl:<7} t={threads} "
              f"{seconds * 1e3:9.3f} ms {rate}", flush=True)
        return row

    # ---- reporting ---------------------------------------------------------

    def table(self):
        """Markdown: one line per (suite, kernel, shape, threads), pydl's rate,
        its ratio to each peer, and (for flops) its fraction of the FMA peak."""
        groups: dict[tuple, dict[str, Row]] = {}
        peers: list[str] = []
        for r in self.rows:
            groups.setdefault((r.suite, r.kernel, r.shape, r.threads), {})[r.impl] = r
            if r.impl != "pydl" and r.impl not in peers:
                peers.append(r.impl)
        head = (["suite", "kernel", "shape", "threads", "isa", "pydl"] + [f"vs {p}" for p in peers]
                + ["peak", "of peak"])
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for (suite, kernel, shape, threads), impls in groups.items():
            ours = impls.get("pydl")
            if ours is None:
                continue
            rate = (f"{ours.gflops:.1f} GFLOP/s" if ours.gflops is not None else
                    f"{ours.gbytes:.2f} GB/s" if ours.gbytes is not None else
                    f"{ours.seconds * 1e3:.3f} ms")
            cells = [suite, kernel, shape, str(threads), self.isa or "", rate]
            for p in peers:
                cells.append(f"{impls[p].seconds / ours.seconds:.2f}x" if p in impls else "")
            peak = self.peak.get(threads)
            cells.append(f"{peak:.0f} GFLOP/s" if peak and ours.gflops else "")
            cells.append(f"{ours.gflops / peak:.0%}" if peak and ours.gflops else "")
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def write(self, out_dir: Path):
        out_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y-%m-%dT%H-%M-%S")
        info = dict(self.info, date=time.strftime("%Y-%m-%d"), machine=platform.machine(),
                    processor=_cpu_name(), peak_gflops=self.peak)
        payload = {"info": info,
                   "rows": [dict(asdict(r), gflops=r.gflops, gbytes=r.gbytes) for r in self.rows]}
        json_path = out_dir / f"{stamp}.json"
        json_path.write_text(json.dumps(payload, indent=1))
        peaks = "; ".join(
            f"{isa} " + ", ".join(f"{t} thread{'s' if t > 1 else ''}: {g:.0f} GFLOP/s"
                                  for t, g in by_threads.items())
            for isa, by_threads in self.isa_peak.items())
        md = (f"{info['date']}, {info['processor']}, pydl ISA {self.isa}, peak FMA loop {peaks}"
              + "\n\nRatios are peer time / pydl time in the same run (>1: pydl faster); "
              "'vs pydl <isa>' is pydl on that lower instruction set, and 'of peak' the\n"
              "active instruction set's FMA-loop peak.\n\n"
              + self.table() + "\n" + "".join(f"\n{section}\n" for section in self.sections))
        md_path = out_dir / "latest.md"
        md_path.write_text(md)
        return json_path, md_path


def plot_rates(bench, path, suites=("gemm", "conv")):
    """A PNG of GFLOP/s by shape, one panel per suite and thread count: pydl on
    each instruction set timed, its peers, and the FMA-loop peak of each
    instruction set as dashed lines. Returns the path, or None without
    matplotlib (pip install .[plot]) or without rows to plot."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    panels = [(suite, t) for suite in suites for t in bench.threads
              if any(r.suite == suite and r.threads == t and r.gflops for r in bench.rows)]
    if not panels:
        return None
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 4 * len(panels)), squeeze=False)
    for ax, (suite, t) in zip(axes[:, 0], panels):
        rows = [r for r in bench.rows if r.suite == suite and r.threads == t and r.gflops]
        labels = list(dict.fromkeys(f"{r.kernel} {r.shape}" for r in rows))
        for impl in dict.fromkeys(r.impl for r in rows):
            rate = {f"{r.kernel} {r.shape}": r.gflops for r in rows if r.impl == impl}
            ax.plot(range(len(labels)), [rate.get(label, float("nan")) for label in labels],
                    marker="o", label=impl if impl != "pydl" else f"pydl {bench.isa}")
        for isa, peaks in bench.isa_peak.items():
            if t in peaks:
                ax.axhline(peaks[t], linestyle="--", linewidth=1, color="gray")
                ax.annotate(f"{isa} FMA peak", (0, peaks[t]), fontsize=8, color="gray")
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel("GFLOP/s")
        ax.set_title(f"{suite}, {t} thread{'s' if t > 1 else ''}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
