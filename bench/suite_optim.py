"""Benchmark suite "optim": one optimizer step over 1M float32 parameters.

pydl's fused kernel (called directly, and through pydl.optim.Adam/SGD) runs beside
torch.optim (the default single-tensor loop, foreach=True, and fused=True where the
CPU build has it) and beside "memcpy": np.copyto of the bytes the update must move
(Adam reads param, grad, m, v and writes param, m, v: 7 x 4 MB; SGD with momentum
reads param, grad, buf and writes param, buf: 5 x 4 MB). That copy is the floor of a
memory-bound update; the target is Adam within 2x of it.

The model rows step Adam over whole models' parameters (bench/train.py's MLP, a
20-layer MLP of 128 with biases, the LSTM text classifier): pydl's default, one
multi-tensor call per group, beside "per-param" (foreach=False: one kernel call per
parameter, as pydl did before), torch's loop and foreach, and the memcpy floor of
the 28 bytes Adam moves per element.
"""
from __future__ import annotations

import numpy as np

import pydl
import pydl._C as C
from pydl import optim

try:
    import torch
except ImportError:
    torch = None

SUITE = "optim"
N = 1 << 20
CASES = {  # name: (floats moved per parameter, pydl optimizer, torch optimizer, options)
    "adam": (7, "Adam", dict(lr=1e-3)),
    "sgd mom": (5, "SGD", dict(lr=1e-2, momentum=0.9)),
}


# Whole models' parameter shapes: many tensors in one optimizer group.
MODELS = {
    "mlp 6 tensors": [(512, 784), (512,), (512, 512), (512,), (10, 512), (10,)],
    "deep20 40 tensors": [(128, 128), (128,)] * 20,
    "lstm 11 tensors": ([(20000, 128)] + [(512, 128), (512, 128), (512,), (512,)] * 2
                        + [(4, 128), (4,)]),
}


def _memcpy(floats):
    # Copying floats/2 floats reads floats/2 and writes floats/2: `floats` moved in all.
    src = np.random.rand(floats // 2).astype(np.float32)
    dst = np.empty_like(src)
    return lambda: np.copyto(dst, src)


def _pydl_optimizer(name, options, rng):
    p = pydl.nn.Parameter(rng.standard_normal(N).astype(np.float32))
    p.grad = pydl.tensor(rng.standard_normal(N).astype(np.float32))
    opt = getattr(optim, name)([p], **options)
    opt.step()  # creates the state
    return opt


def _torch_optimizer(name, options, rng, **flags):
    p = torch.from_numpy(rng.standard_normal(N).astype(np.float32)).requires_grad_()
    p.grad = torch.from_numpy(rng.standard_normal(N).astype(np.float32))
    opt = getattr(torch.optim, name)([p], **options, **flags)
    opt.step()
    return opt


def _model_optimizers(shapes, rng):
    """{impl: step function} of Adam over parameters of `shapes` with gradients set."""
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    steps = {}
    for impl, foreach in (("pydl", None), ("per-param", False)):
        params = [pydl.nn.Parameter(a.copy()) for a in arrays]
        for p, g in zip(params, grads):
            p.grad = pydl.tensor(g)
        steps[impl] = optim.Adam(params, lr=1e-3, foreach=foreach).step
    if torch is not None:
        for impl, foreach in (("torch", False), ("t-foreach", True)):
            params = [torch.from_numpy(a.copy()).requires_grad_() for a in arrays]
            for p, g in zip(params, grads):
                p.grad = torch.from_numpy(g)
            steps[impl] = torch.optim.Adam(params, lr=1e-3, foreach=foreach).step
    return steps


def _raw_kernel(case, rng):
    """The compiled kernel alone, on arrays the optimizer would hold."""
    p, g, a, b = (rng.standard_normal(N).astype(np.float32) for _ in range(4))
    if case == "adam":
        b = np.abs(b)
        return lambda: C.adam_step(p, g, a, b, lr=1e-3, step=10)
    return lambda: C.sgd_step(p, g, a, lr=1e-2, momentum=0.9)


def run(bench):
    rng = np.random.default_rng(0)
    shape = f"{N}"
    for t in bench.threads:
        bench.set_threads(t)
        for case, (floats, name, options) in CASES.items():
            nbytes = floats * N * 4
            copy_seconds = bench.timeit(_memcpy(floats * N))
            ours = _pydl_optimizer(name, options, rng)
            bench.add_pydl(SUITE, case, shape, t, ours.step, bytes=nbytes)
            bench.add(SUITE, case, shape, "kernel", t, bench.timeit(_raw_kernel(case, rng)),
                      bytes=nbytes)
            bench.add(SUITE, case, shape, "memcpy", t, copy_seconds, bytes=nbytes)
            if torch is None:
                continue
            for impl, flags in (("torch", {}), ("t-foreach", dict(foreach=True)),
                                ("t-fused", dict(fused=True))):
                try:
                    theirs = _torch_optimizer(name, options, rng, **flags)
                except (RuntimeError, ValueError) as err:  # fused may not exist on CPU
                    print(f"  {impl} skipped: {err}")
                    continue
                bench.add(SUITE, case, shape, impl, t, bench.timeit(theirs.step), bytes=nbytes)
        for model, shapes in MODELS.items():
            n = sum(int(np.prod(s)) for s in shapes)
            nbytes = 28 * n
            for impl, step in _model_optimizers(shapes, rng).items():
                if impl == "pydl":
                    bench.add_pydl(SUITE, "adam model", model, t, step, bytes=nbytes)
                else:
                    bench.add(SUITE, "adam model", model, impl, t, bench.timeit(step),
                              bytes=nbytes)
            bench.add(SUITE, "adam model", model, "memcpy", t, bench.timeit(_memcpy(7 * n)),
                      bytes=nbytes)
