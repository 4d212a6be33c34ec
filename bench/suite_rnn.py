"""Benchmark suite "rnn": LSTM and GRU layers, forward and forward+backward.

pydl.nn.LSTM / GRU beside torch.nn.LSTM / GRU (same weights, same threads) at
seq 50, batch 64, input 128, hidden 256, through each library's module and
autograd, as a user runs them. The forward runs without recording a graph
(inference); forward+backward takes the gradient of out.sum() with respect to
every weight (the input needs none, as for a first layer).

GFLOP/s count the matrix products only: forward 2*T*B*(I+H)*G*H (input
projection and recurrent products, G = 4 gates for LSTM, 3 for GRU); backward
twice that (dh and dW_hh, dX and dW_ih), so forward+backward is 3x forward.
"""
from __future__ import annotations

import numpy as np

import pydl
from pydl import nn

try:
    import torch
except ImportError:  # the suite still times pydl alone
    torch = None

SUITE = "rnn"
T, B, I, H = 50, 64, 128, 256
GATES = {"LSTM": 4, "GRU": 3}


def _pair(kind):
    ours = getattr(nn, kind)(I, H)
    theirs = None
    if torch is not None:
        theirs = getattr(torch.nn, kind)(I, H)
        ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    return ours, theirs


def _layer(bench, t, kind):
    ours, theirs = _pair(kind)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    shape = f"T{T} B{B} I{I} H{H}"
    fwd_flops = 2.0 * T * B * (I + H) * GATES[kind] * H
    xo = pydl.tensor(x)

    def ours_forward():
        with pydl.no_grad():
            ours(xo)

    def ours_train():
        out, _ = ours(xo)
        out.sum().backward()
    bench.add_pydl(SUITE, f"{kind} fwd", shape, t, ours_forward, flops=fwd_flops)
    bench.add_pydl(SUITE, f"{kind} f+b", shape, t, ours_train, flops=3 * fwd_flops)
    if theirs is None:
        return
    xt = torch.from_numpy(x)

    def theirs_forward():
        with torch.no_grad():
            theirs(xt)

    def theirs_train():
        out, _ = theirs(xt)
        out.sum().backward()
    bench.add(SUITE, f"{kind} fwd", shape, "torch", t, bench.timeit(theirs_forward),
              flops=fwd_flops)
    bench.add(SUITE, f"{kind} f+b", shape, "torch", t, bench.timeit(theirs_train),
              flops=3 * fwd_flops)


def run(bench):
    for t in bench.threads:
        bench.set_threads(t)
        for kind in ("LSTM", "GRU"):
            _layer(bench, t, kind)
