"""The kernel benchmark suite: python bench/run.py [--quick] [--threads 1 2] [--only gemm,loss]

Measures this machine's FMA peak, then runs each suite module (bench/suite_<name>.py,
which defines run(bench)) with pydl beside NumPy and PyTorch CPU (when installed), all
on the same thread counts, and writes bench/results/<date>.json and latest.md.
"""
from __future__ import annotations

import os
import sys

# NumPy's OpenBLAS reads these when it loads; a value left in the environment
# (e.g. a core type forced for another machine) would make it run a kernel that
# is not its best here. Drop them and start again before NumPy is imported.
_OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
if any(name in os.environ for name in _OPENBLAS_OVERRIDES):
    for name in _OPENBLAS_OVERRIDES:
        os.environ.pop(name, None)
    os.execv(sys.executable, [sys.executable] + sys.argv)

import argparse  # noqa: E402
import importlib  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import pydl  # noqa: E402,F401  (package-level settings apply before the kernels load)
from pydl import _C  # noqa: E402

from harness import Bench, plot_rates  # noqa: E402

SUITES = ["gemm", "loss", "conv", "rnn", "optim", "cuda", "lowp"]


def _numpy_blas(bench):
    """NumPy's BLAS: report which kernel it runs and put it under set_threads."""
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        print("threadpoolctl not installed (pip install .[bench]): NumPy's BLAS threads are "
              "not controlled and its kernel is not reported")
        return
    blas = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    for p in blas:
        print(f"NumPy BLAS: {p.get('internal_api')} {p.get('version')}, kernel "
              f"{p.get('architecture')}, {p.get('num_threads')} threads")
    bench.info["numpy_blas"] = [{k: p.get(k) for k in ("internal_api", "version", "architecture",
                                                       "num_threads", "threading_layer")}
                                for p in blas]
    bench.on_threads(lambda n: threadpool_limits(limits=n, user_api="blas"))


def _torch(bench):
    try:
        import torch
    except ImportError:
        print("torch not installed: no PyTorch column")
        return
    bench.info["torch"] = torch.__version__
    bench.on_threads(torch.set_num_threads)


def _peak(bench, seconds):
    """The FMA-loop peak on each thread count and instruction set timed (the
    active one first): the best of this try and any earlier one (other work on
    the machine only ever lowers it), so calling it before and after the suites
    guards the fractions of peak against a busy moment."""
    for isa in [bench.isa] + bench.compare_isas:
        _C.set_isa(isa)
        peaks = bench.isa_peak.setdefault(isa, {})
        for t in bench.threads:
            tries = [_C.fma_peak_gflops(t, seconds) for _ in range(2)]
            bench.info.setdefault("peak_tries", {}).setdefault(isa, {}).setdefault(t, []).extend(
                round(g, 1) for g in tries)
            peaks[t] = max([peaks.get(t, 0.0)] + tries)
            print(f"FMA peak, {isa}, {t} thread{'s' if t > 1 else ''}: {peaks[t]:.1f} GFLOP/s "
                  f"(tries: {', '.join(f'{g:.1f}' for g in tries)})")
    _C.set_isa(bench.isa)
    bench.peak = dict(bench.isa_peak[bench.isa])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer shapes and repeats")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--only", default=",".join(SUITES),
                    help=f"comma-separated suites out of {','.join(SUITES)}")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in only if s not in SUITES]
    if unknown:
        ap.error(f"unknown suite(s) {unknown}; choose from {SUITES}")

    bench = Bench(threads=args.threads, quick=args.quick)
    bench.isa = _C.isa()
    # The AVX2 path beside an AVX-512 one (PYDL_ISA=avx2 picks it for a whole run).
    bench.compare_isas = ["avx2"] if bench.isa == "avx512" else []
    bench.info.update(pydl_isa=bench.isa, compare_isas=bench.compare_isas, numpy=np.__version__,
                      threads=args.threads, quick=args.quick)
    print(f"pydl ISA: {bench.isa} (CPU's best {_C.best_isa()}; also timed on "
          f"{bench.compare_isas or 'nothing else'}), numpy {np.__version__}")
    bench.on_threads(_C.set_num_threads)
    _numpy_blas(bench)
    _torch(bench)
    _peak(bench, 0.1 if args.quick else 0.3)

    for name in (s for s in SUITES if s in only):
        print(f"\n== suite {name}", flush=True)
        importlib.import_module(f"suite_{name}").run(bench)

    print()
    _peak(bench, 0.1 if args.quick else 0.3)
    bench.set_threads(max(args.threads))
    print()
    print(bench.table())
    json_path, md_path = bench.write(args.out)
    print(f"\nwrote {json_path} and {md_path}")
    png_path = plot_rates(bench, args.out / "rates.png")
    print(f"wrote {png_path}" if png_path else "no plot (needs matplotlib and gemm/conv rows)")


if __name__ == "__main__":
    main()
