"""Benchmark suite "gemm": SGEMM at square sizes and at the seed models' shapes.

pydl._C.gemm beside np.matmul into a preallocated out (OpenBLAS) and torch.mm
with out= on tensors sharing the same NumPy buffers (when torch is installed);
flops = 2 M N K per product. Shapes read M x K x N. Each product is checked
against NumPy before it is timed.

Also "alloc": a training-shaped loop that allocates a few MiB of outputs, writes
them and drops them, with fresh np.empty arrays (new pages, first touch) against
pydl._C.empty (the caching allocator hands the same blocks back).
"""
from __future__ import annotations

import numpy as np

from pydl import _C

try:
    import torch
except ImportError:
    torch = None

SUITE = "gemm"
SQUARE = [64, 128, 256, 512, 1024, 2048]

# (label, M, K, N, trans_a, trans_b, batch). Linear layers keep W as (out, in),
# so the forward is X @ W^T (trans_b); its backward has dX = dY @ W and
# dW = X^T dY (trans_a). Convolutions run as im2col GEMMs: (pixels, Cin*9) @
# (Cin*9, Cout) for a batch of 64 MNIST-sized images.
SEED = [
    ("mlp fc1 fwd", 64, 784, 512, False, True, None),
    ("mlp fc1 dX", 64, 512, 784, False, False, None),
    ("mlp fc1 dW", 784, 64, 512, True, False, None),
    ("mlp fc2 fwd", 64, 512, 512, False, True, None),
    ("mlp out fwd", 64, 512, 10, False, True, None),
    ("conv 64ch 3x3", 64, 576, 64, False, False, None),
    ("conv1 im2col", 43264, 9, 32, False, False, None),      # 64 x 26x26 px, 1 -> 32 ch
    ("conv2 im2col", 10816, 288, 64, False, False, None),    # 64 x 13x13 px, 32 -> 64 ch
    ("attn scores", 50, 64, 50, False, True, 64),            # 64 x (50x64 @ 64x50)
]
SEED_FULL_ONLY = [
    ("conv2 im2col", 43264, 288, 64, False, False, None),    # 64 x 26x26 px, 32 -> 64 ch
]


def _operands(rng, M, K, N, trans_a, trans_b, batch):
    lead = () if batch is None else (batch,)
    a = rng.standard_normal(lead + ((K, M) if trans_a else (M, K))).astype(np.float32)
    b = rng.standard_normal(lead + ((N, K) if trans_b else (K, N))).astype(np.float32)
    out = np.empty(lead + (M, N), np.float32)
    return a, b, out


def _op(x, trans):
    return np.swapaxes(x, -1, -2) if trans else x


def _product(bench, t, label, M, K, N, trans_a, trans_b, batch, rng):
    a, b, out = _operands(rng, M, K, N, trans_a, trans_b, batch)
    flops = 2.0 * M * N * K * (batch or 1)
    shape = f"{M}x{K}x{N}" + (f" x{batch}" if batch else "")
    kernel = label if label else "sgemm"
    extra = {"trans_a": trans_a, "trans_b": trans_b}

    a_op, b_op = _op(a, trans_a), _op(b, trans_b)
    ref = np.matmul(a_op.astype(np.float64), b_op.astype(np.float64))
    ours = _C.gemm(a, b, trans_a=trans_a, trans_b=trans_b, out=out)
    assert np.allclose(ours, ref, rtol=1e-3, atol=1e-4 * np.sqrt(K)), f"pydl gemm wrong at {shape}"

    def pydl_call():
        _C.gemm(a, b, trans_a=trans_a, trans_b=trans_b, out=out)

    def numpy_call():
        np.matmul(a_op, b_op, out=out)

    bench.add_pydl(SUITE, kernel, shape, t, pydl_call, flops=flops, **extra)
    bench.add(SUITE, kernel, shape, "numpy", t, bench.timeit(numpy_call), flops=flops, **extra)
    if torch is not None:
        ta, tb, tout = _op(torch.from_numpy(a), trans_a), _op(torch.from_numpy(b), trans_b), \
            torch.from_numpy(out)
        mm = torch.bmm if batch else torch.mm

        def torch_call():
            mm(ta, tb, out=tout)

        bench.add(SUITE, kernel, shape, "torch", t, bench.timeit(torch_call), flops=flops, **extra)


# Training-step output sets: MiB-sized outputs (which glibc's malloc also
# recycles once warm) and one 64 MiB output, above the size malloc keeps
# (32 MiB), where every step of a plain np.empty loop pays for fresh pages.
ALLOCATION_CASES = [
    ("4 outputs, 1-4 MiB", [(256, 1024), (512, 1024), (768, 1024), (1024, 1024)]),
    ("1 output, 64 MiB", [(16384, 1024)]),
]


def _allocation(bench, label, sizes):
    """ms per step of a loop shaped like a training step: make the outputs,
    write each once, keep them all until the step ends (as the activations are
    kept for backward), then drop them."""
    src = np.random.default_rng(0).standard_normal(max(s[0] for s in sizes) * 1024).astype(np.float32)

    def step(empty):
        kept = []
        for rows, cols in sizes:
            out = empty((rows, cols))
            np.multiply(src[: rows * cols].reshape(rows, cols), 2.0, out=out)
            kept.append(out)
        del kept

    before = _C.allocator_stats()
    seconds = bench.timeit(lambda: step(lambda shape: _C.empty(list(shape), "float32")))
    after = _C.allocator_stats()
    hits, misses = after["hits"] - before["hits"], after["misses"] - before["misses"]
    hit_rate = hits / max(hits + misses, 1)
    bench.add("alloc", "train step", label, "pydl", 1, seconds, hit_rate=round(hit_rate, 4))
    bench.add("alloc", "train step", label, "numpy", 1,
              bench.timeit(lambda: step(lambda shape: np.empty(shape, np.float32))))
    print(f"  caching allocator hit rate over the timed loop: {hit_rate:.1%}")


def run(bench):
    rng = np.random.default_rng(0)
    square = SQUARE[:-1] if bench.quick else SQUARE
    seed = SEED + ([] if bench.quick else SEED_FULL_ONLY)
    for t in bench.threads:
        bench.set_threads(t)
        for n in square:
            _product(bench, t, None, n, n, n, False, False, None, rng)
        for label, M, K, N, trans_a, trans_b, batch in seed:
            _product(bench, t, label, M, K, N, trans_a, trans_b, batch, rng)
    bench.set_threads(1)
    for label, sizes in ALLOCATION_CASES:
        _allocation(bench, label, sizes)
