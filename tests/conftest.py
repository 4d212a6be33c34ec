"""Shared test helpers: fresh random inputs, the kernel settings every kernel test
runs under (instruction set x threads), a finite-difference gradient checker, and
fake_cuda: device="cuda" on the emulated CUDA kernels, without a GPU."""
import contextlib
import sys
import zlib

import numpy as np
import pytest

import pydl
from pydl import _C

# The kernel paths from the lowest up; this CPU runs those up to BEST_ISA (ISAS).
ALL_ISAS = ["portable", "avx2", "avx512"]
BEST_ISA = _C.best_isa()
ISAS = ALL_ISAS[:ALL_ISAS.index(BEST_ISA) + 1]


@contextlib.contextmanager
def kernel_settings(isa, threads):
    """Runs the block on the given instruction set and thread count, then restores both."""
    before = _C.isa(), _C.get_num_threads()
    _C.set_isa(isa)
    _C.set_num_threads(threads)
    try:
        yield
    finally:
        _C.set_isa(before[0])
        _C.set_num_threads(before[1])


@pytest.fixture(params=[
    pytest.param(name, marks=pytest.mark.skipif(
        name not in ISAS, reason=f"this CPU has no {name} path (its best is {BEST_ISA})"))
    for name in ALL_ISAS])
def isa(request):
    with kernel_settings(request.param, _C.get_num_threads()):
        yield request.param


@pytest.fixture(params=[1, 2])
def threads(request):
    with kernel_settings(_C.isa(), request.param):
        yield request.param


@pytest.fixture
def config(isa, threads):
    """Both settings at once: every (instruction set, threads) pair."""
    return isa, threads


@pytest.fixture
def rng(request):
    """A NumPy Generator seeded from the test's id: fresh random inputs for every test,
    the same ones each run (so a failure reproduces)."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def numerical_grad(f, x, eps):
    """Central differences of the scalar function f() with respect to array x (in place)."""
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + eps
        up = f()
        flat[i] = saved - eps
        down = f()
        flat[i] = saved
        gflat[i] = (up - down) / (2 * eps)
    return grad


def check_grad(fn, *inputs, eps=1e-6, atol=1e-6, rtol=1e-5, seed=0):
    """Checks autograd against central differences for fn(*tensors).

    Float inputs (NumPy arrays or pydl tensors) become float64 leaf tensors that
    require grad; anything else (int indices, Python values) is passed through.
    A non-scalar output is reduced as sum(out * w) with fixed random weights w,
    so every output element's gradient is checked. Returns the autograd grads.
    """
    leaves = []
    args = []
    for x in inputs:
        array = x.detach().numpy() if isinstance(x, pydl.Tensor) else x
        if isinstance(array, np.ndarray) and array.dtype.kind == "f":
            leaf = pydl.tensor(array.astype(np.float64), requires_grad=True)
            leaves.append(leaf)
            args.append(leaf)
        else:
            args.append(x)
    out = fn(*args)
    weights = pydl.tensor(np.random.default_rng(seed).standard_normal(out.shape))

    def objective():
        return (fn(*args) * weights).sum()

    objective().backward()
    grads = []
    for leaf in leaves:
        assert leaf.grad is not None, "no gradient reached an input"
        with pydl.no_grad():
            expected = numerical_grad(lambda: objective().item(), leaf.data, eps)
        np.testing.assert_allclose(leaf.grad.numpy(), expected, atol=atol, rtol=rtol)
        grads.append(leaf.grad.numpy())
    return grads


@pytest.fixture
def grad_check():
    """check_grad as a fixture, for test files that prefer fixtures to imports."""
    return check_grad


@pytest.fixture
def fake_cuda(monkeypatch):
    """device="cuda" without a GPU: CuPy is tests/fake_cupy.py, CUDA counts as available,
    and the cuda kernels are the emulated ones (pydl._cuda_emu); all undone after the test.
    Yields the fake CuPy module."""
    emu = pytest.importorskip("pydl._cuda_emu", reason="built without PYDL_CUDA_EMULATION")
    import fake_cupy
    from pydl import _device, _kernels
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    monkeypatch.setattr(_device, "_cuda_probe", True)
    monkeypatch.setattr(_kernels, "_cuda_set", _kernels.cuda_kernel_set(emu))
    yield fake_cupy
