"""Benchmark suite "loss": the fused softmax cross-entropy and the activations.

Each kernel runs beside PyTorch CPU (when importable) and beside "memcpy", a
copy of the same number of bytes with np.copyto: the floor for a kernel that
has to read its input and write its output once. Rates are GB/s of the bytes
the kernel must move.
"""
from __future__ import annotations

import numpy as np

import pydl._C as C

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # the suite still times pydl against the copy floor
    torch = None

SUITE = "loss"
XENT_SHAPES = [(4096, 1000), (64, 10)]   # a large classifier batch; a seed-model batch
ACTIVATION_SIZE = 1 << 22                # 4M floats = 16 MB in, 16 MB out


def _memcpy_once(n):
    """One np.copyto of n floats: reads n floats and writes n floats, the bytes a
    kernel moves that reads its input once and writes its output once."""
    src, dst = np.random.rand(n).astype(np.float32), np.empty(n, np.float32)
    return lambda: np.copyto(dst, src)


def _set_threads(t):
    C.set_num_threads(t)
    if torch is not None:
        torch.set_num_threads(t)


def _cross_entropy(bench, t):
    rng = np.random.default_rng(0)
    for n, c in XENT_SHAPES:
        logits = (rng.standard_normal((n, c)) * 3).astype(np.float32)
        target = rng.integers(0, c, n).astype(np.int64)
        shape, nbytes = f"{n}x{c}", 2 * n * c * 4   # logits read + grad written

        def ours():
            C.softmax_cross_entropy(logits, target, reduction="mean")
        bench.add_pydl(SUITE, "xent f+b", shape, t, ours, bytes=nbytes)

        if torch is not None:
            tl, tt = torch.from_numpy(logits), torch.from_numpy(target)

            def theirs():
                z = tl.detach().requires_grad_(True)
                F.cross_entropy(z, tt).backward()
            bench.add(SUITE, "xent f+b", shape, "torch", t, bench.timeit(theirs), bytes=nbytes)
        # The logits read plus the grad written (np.copyto runs on one thread).
        bench.add(SUITE, "xent f+b", shape, "memcpy", t, bench.timeit(_memcpy_once(n * c)),
                  bytes=nbytes)


def _activations(bench, t):
    n = ACTIVATION_SIZE
    x = (np.random.default_rng(1).standard_normal(n) * 3).astype(np.float32)
    copy_seconds = bench.timeit(_memcpy_once(n))
    for name in ("relu", "sigmoid", "tanh", "gelu"):
        fwd = getattr(C, f"{name}_forward")
        shape, nbytes = f"{n}", 2 * n * 4
        bench.add_pydl(SUITE, f"{name} fwd", shape, t, lambda: fwd(x), bytes=nbytes)
        if torch is not None:
            tx = torch.from_numpy(x)
            op = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "gelu": F.gelu}[name]
            bench.add(SUITE, f"{name} fwd", shape, "torch", t, bench.timeit(lambda: op(tx)), bytes=nbytes)
        bench.add(SUITE, f"{name} fwd", shape, "memcpy", t, copy_seconds, bytes=nbytes)


def run(bench):
    for t in bench.threads:
        _set_threads(t)
        _cross_entropy(bench, t)
        _activations(bench, t)
