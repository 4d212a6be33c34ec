"""Benchmark suite "conv": conv2d and pooling at the seed models' shapes, beside PyTorch CPU.

conv2d rows: "fwd" is the forward pass; "fwd+bwd" adds grad-input, grad-weight
and grad-bias. Flops count 2*N*C_out*H_out*W_out*(C_in/groups)*KH*KW per
forward and three times that for fwd+bwd: the direct convolution's count, so
the 3x3 stride-1 layers that take the Winograd path (2.25x fewer multiplies
at most) can show more than the FMA peak. Pooling rows count bytes: the input
read and the output (plus int64 indices) written forward, the reverse backward.
"""
from __future__ import annotations

import numpy as np

import pydl._C as C

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # the suite still times pydl alone
    torch = None

SUITE = "conv"

# (name, N, C_in, H, W, C_out, kernel, stride, padding)
CONV_SHAPES = [
    ("mnist 1->32 28x28", 64, 1, 28, 28, 32, 3, 1, 0),
    ("mnist 32->64 13x13", 64, 32, 13, 13, 64, 3, 1, 0),
    ("mnist 64->64 5x5", 64, 64, 5, 5, 64, 3, 1, 0),
    ("cifar 3->32 32x32", 64, 3, 32, 32, 32, 3, 1, 0),
    ("cifar 32->64 15x15", 64, 32, 15, 15, 64, 3, 1, 0),
    ("resnet 64->64 56x56", 8, 64, 56, 56, 64, 3, 1, 1),
]
POOL_SHAPE = (64, 32, 26, 26)   # the Keras MNIST CNN's first activation, 2x2 pooled


def _set_threads(t):
    C.set_num_threads(t)
    if torch is not None:
        torch.set_num_threads(t)


def _conv(bench, t):
    rng = np.random.default_rng(0)
    for name, n, cin, h, w, cout, k, stride, pad in CONV_SHAPES:
        x = rng.standard_normal((n, cin, h, w)).astype(np.float32)
        wt = (rng.standard_normal((cout, cin, k, k)) * 0.1).astype(np.float32)
        b = rng.standard_normal(cout).astype(np.float32)
        ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        flops = 2.0 * n * cout * ho * wo * cin * k * k
        gy = rng.standard_normal((n, cout, ho, wo)).astype(np.float32)
        geometry = dict(stride=(stride, stride), padding=(pad, pad))

        def ours_fwd():
            C.conv2d_forward(x, wt, b, **geometry)

        def ours_fwd_bwd():  # as a training step runs it: the weight transformed once
            _, transform = C.conv2d_forward(x, wt, b, **geometry, keep_weight_transform=True)
            C.conv2d_backward(gy, x, wt, **geometry, weight_transform=transform)
        bench.add_pydl(SUITE, "fwd", name, t, ours_fwd, flops=flops)
        bench.add_pydl(SUITE, "fwd+bwd", name, t, ours_fwd_bwd, flops=3 * flops)
        if torch is None:
            continue
        tx, tw, tb, tgy = map(torch.from_numpy, (x, wt, b, gy))

        def theirs_fwd():
            with torch.no_grad():
                F.conv2d(tx, tw, tb, stride, pad)

        def theirs_fwd_bwd():
            xs, ws, bs = (a.detach().requires_grad_(True) for a in (tx, tw, tb))
            F.conv2d(xs, ws, bs, stride, pad).backward(tgy)
        bench.add(SUITE, "fwd", name, "torch", t, bench.timeit(theirs_fwd), flops=flops)
        bench.add(SUITE, "fwd+bwd", name, "torch", t, bench.timeit(theirs_fwd_bwd),
                  flops=3 * flops)


def _max_pool(bench, t):
    n, c, h, w = POOL_SHAPE
    x = np.random.default_rng(1).standard_normal(POOL_SHAPE).astype(np.float32)
    gy = np.random.default_rng(2).standard_normal((n, c, h // 2, w // 2)).astype(np.float32)
    out_elems = n * c * (h // 2) * (w // 2)
    # forward: x read, out + int64 indices written; backward: grad read, indices read, grad_in written
    nbytes = (x.size * 4 + out_elems * 12) + (out_elems * 12 + x.size * 4)
    shape = "x".join(map(str, POOL_SHAPE)) + " k2"

    def ours():
        _, idx = C.max_pool2d_forward(x, kernel_size=(2, 2), stride=(2, 2))
        C.max_pool2d_backward(gy, idx, x.shape, kernel_size=(2, 2), stride=(2, 2))
    bench.add_pydl(SUITE, "maxpool f+b", shape, t, ours, bytes=nbytes)
    if torch is not None:
        tx, tgy = torch.from_numpy(x), torch.from_numpy(gy)

        def theirs():
            xs = tx.detach().requires_grad_(True)
            F.max_pool2d(xs, 2).backward(tgy)
        bench.add(SUITE, "maxpool f+b", shape, "torch", t, bench.timeit(theirs), bytes=nbytes)


def run(bench):
    for t in bench.threads:
        _set_threads(t)
        _conv(bench, t)
        _max_pool(bench, t)
