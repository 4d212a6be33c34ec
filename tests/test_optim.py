"""Optimizers, their fused kernels, lr schedulers and gradient clipping.

Kernels run against the float64 array forms of the same formulas (pydl.optim._updates,
themselves checked against torch.optim in float64); the optimizers against torch.optim
step for step on the same parameters and the same random gradients."""
import itertools
import math

import numpy as np
import pytest

import pydl
import pydl.nn.functional as F
from pydl import _C, _kernels, optim
from pydl.nn import Parameter
from pydl.nn.utils import clip_grad_norm_, clip_grad_value_
from pydl.optim import _updates, lr_scheduler

from conftest import kernel_settings

SHAPES = [(7, 5), (33,), (3, 4, 5), (1,)]
STEPS = 20

CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.5, maximize=True)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, weight_decay=0.1, centered=True)),
    ("RMSprop", dict(lr=0.01, momentum=0.9)),
    ("RMSprop", dict(lr=0.003, momentum=0.5, centered=True, eps=1e-3, maximize=True)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05, weight_decay=0.1, initial_accumulator_value=0.3)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1)),
    ("Adam", dict(lr=0.01, amsgrad=True, eps=1e-6)),
    ("Adam", dict(lr=0.01, betas=(0.3, 0.6), amsgrad=True, weight_decay=0.05, maximize=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.02, weight_decay=0.3, amsgrad=True)),
]


def _pair(name, kwargs, arrays, torch):
    """The same parameters in pydl and torch, and an optimizer over each."""
    ours = [Parameter(a.copy()) for a in arrays]
    theirs = [torch.tensor(a.copy(), requires_grad=True) for a in arrays]
    return (ours, getattr(optim, name)(ours, **kwargs),
            theirs, getattr(torch.optim, name)(theirs, **kwargs))


def _give_grads(rng, ours, theirs, torch, skip=None):
    for i, (p, t) in enumerate(zip(ours, theirs)):
        if i == skip:
            p.grad = t.grad = None
            continue
        g = rng.standard_normal(p.shape).astype(p.dtype)
        p.grad = pydl.tensor(g.copy(), dtype=p.dtype)
        t.grad = torch.tensor(g.copy())


def _assert_close(ours, theirs, dtype):
    for p, t in zip(ours, theirs):
        expected = t.detach().numpy()
        scale = max(np.abs(expected).max(), 1.0)
        tol = 1e-6 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(p.data, expected, rtol=tol, atol=tol * scale)


# ---- optimizers against torch.optim ---------------------------------------------

@pytest.mark.parametrize("foreach", [None, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CONFIGS)])
def test_matches_torch(name, kwargs, dtype, foreach, isa, rng):
    """foreach=None takes the multi-tensor kernels (one call per group), False one call per
    parameter; torch runs with the same setting."""
    torch = pytest.importorskip("torch")
    arrays = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    ours, opt, theirs, topt = _pair(name, dict(kwargs, foreach=foreach), arrays, torch)
    for step in range(STEPS):
        # Parameter 1 has no gradient every third step: both skip it.
        _give_grads(rng, ours, theirs, torch, skip=1 if step % 3 == 2 else None)
        opt.step()
        topt.step()
    _assert_close(ours, theirs, dtype)
    assert all(p.data.dtype == dtype for p in ours)


def test_param_groups_with_their_own_options(rng):
    torch = pytest.importorskip("torch")
    arrays = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    ours = [Parameter(a.copy()) for a in arrays]
    theirs = [torch.tensor(a.copy(), requires_grad=True) for a in arrays]

    def groups(ps):
        return [{"params": ps[:2]}, {"params": ps[2:3], "lr": 0.1, "momentum": 0.5},
                {"params": ps[3:], "lr": 0.001, "nesterov": True}]
    opt = optim.SGD(groups(ours), lr=0.03, momentum=0.9)
    topt = torch.optim.SGD(groups(theirs), lr=0.03, momentum=0.9)
    assert [g["lr"] for g in opt.param_groups] == [0.03, 0.1, 0.001]
    for _ in range(STEPS):
        _give_grads(rng, ours, theirs, torch)
        opt.step()
        topt.step()
    _assert_close(ours, theirs, np.float32)


def test_add_param_group_later(rng):
    a, b = Parameter(rng.standard_normal(4).astype(np.float32)), Parameter(rng.standard_normal(3).astype(np.float32))
    opt = optim.Adam([a], lr=0.1)
    opt.add_param_group({"params": b, "lr": 0.5})
    assert opt.param_groups[1]["lr"] == 0.5 and opt.param_groups[1]["betas"] == (0.9, 0.999)
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [a]})


@pytest.mark.parametrize("name,kwargs", [CONFIGS[3], CONFIGS[8], CONFIGS[10], CONFIGS[14], CONFIGS[16]])
def test_state_dict_round_trip(name, kwargs, rng):
    torch = pytest.importorskip("torch")
    arrays = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    ours, opt, theirs, topt = _pair(name, kwargs, arrays, torch)
    for _ in range(5):
        _give_grads(rng, ours, theirs, torch)
        opt.step()
        topt.step()
    saved = opt.state_dict()
    # torch's structure: the same state names per index and the same group options.
    tsaved = topt.state_dict()
    assert saved["state"].keys() == tsaved["state"].keys()
    for i in saved["state"]:
        assert saved["state"][i].keys() == tsaved["state"][i].keys()
        assert all(isinstance(v, (int, np.ndarray)) for v in saved["state"][i].values())
    assert saved["param_groups"][0]["params"] == tsaved["param_groups"][0]["params"]
    assert saved["param_groups"][0].keys() <= tsaved["param_groups"][0].keys()

    # A fresh optimizer over copies of the parameters continues exactly as the old one.
    copies = [Parameter(p.data.copy()) for p in ours]
    resumed = getattr(optim, name)(copies, lr=123.0)
    resumed.load_state_dict(saved)
    assert resumed.param_groups[0]["lr"] == kwargs["lr"]
    for _ in range(5):
        grads = [rng.standard_normal(p.shape).astype(np.float32) for p in ours]
        for p, q, g in zip(ours, copies, grads):
            p.grad, q.grad = pydl.tensor(g), pydl.tensor(g.copy())
        opt.step()
        resumed.step()
    for p, q in zip(ours, copies):
        np.testing.assert_array_equal(p.data, q.data)
    # The saved dict did not move with training.
    assert saved["state"][0] is not opt.state_dict()["state"][0]


def test_load_state_dict_rejects_mismatches(rng):
    p = Parameter(rng.standard_normal((3, 2)).astype(np.float32))
    opt = optim.Adam([p])
    p.grad = pydl.tensor(rng.standard_normal((3, 2)).astype(np.float32))
    opt.step()
    saved = opt.state_dict()
    with pytest.raises(ValueError, match="parameter group 0 has 1 parameters"):
        optim.Adam([Parameter(np.zeros(6, np.float32)), Parameter(np.zeros(1, np.float32))]).load_state_dict(saved)
    with pytest.raises(ValueError, match=r"'exp_avg' has shape \(3, 2\)"):
        optim.Adam([Parameter(np.zeros(6, np.float32))]).load_state_dict(saved)


def test_zero_grad_and_closure(rng):
    p = Parameter(rng.standard_normal(5).astype(np.float32))
    opt = optim.SGD([p], lr=0.1)
    p.grad = pydl.tensor(np.ones(5, np.float32))
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(p.grad.numpy(), np.zeros(5))
    opt.zero_grad()
    assert p.grad is None
    before = p.data.copy()

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss
    loss = opt.step(closure)
    assert float(loss) == pytest.approx(float((before.astype(np.float64) ** 2).sum()), rel=1e-6)
    np.testing.assert_allclose(p.data, before - 0.1 * 2 * before, rtol=1e-6)


# ---- kernels against the float64 formulas -------------------------------------------

def _random_case(rng, n, kernel):
    """param, grad, state arrays (float32) and keyword options for one kernel call."""
    def r(scale=1.0):
        return (rng.standard_normal(n) * scale).astype(np.float32)

    def positive():
        return rng.uniform(0.1, 2.0, n).astype(np.float32)
    if kernel == "sgd_step":
        first, nesterov = bool(rng.integers(2)), bool(rng.integers(2))
        # Nesterov needs zero dampening (PyTorch's rule, checked by the kernel).
        return [r(), r(), r()], dict(lr=0.1, momentum=0.9, dampening=0.0 if nesterov else 0.2,
                                     weight_decay=0.05, nesterov=nesterov, first_step=first)
    if kernel == "rmsprop_step":
        centered = bool(rng.integers(2))
        grad_avg = r(0.1) if centered else None
        # square_avg >= grad_avg^2, as a running mean of g^2 is, keeps the centered root real.
        square_avg = positive() + (grad_avg ** 2 if centered else 0)
        return [r(), r(), square_avg, grad_avg, r()], dict(
            lr=0.01, alpha=0.9, eps=1e-6, weight_decay=0.1, momentum=0.7, centered=centered)
    if kernel == "adagrad_step":
        return [r(), r(), positive()], dict(lr=0.1, lr_decay=0.1, weight_decay=0.2, eps=1e-8,
                                            step=int(rng.integers(1, 10)))
    amsgrad = bool(rng.integers(2))
    return [r(), r(), r(0.1), positive(), positive() if amsgrad else None], dict(
        lr=0.01, beta1=0.85, beta2=0.99, eps=1e-6, weight_decay=0.05,
        step=int(rng.integers(1, 10)), amsgrad=amsgrad,
        decoupled_weight_decay=bool(rng.integers(2)), maximize=bool(rng.integers(2)))


@pytest.mark.parametrize("kernel", ["sgd_step", "rmsprop_step", "adagrad_step", "adam_step"])
@pytest.mark.parametrize("n", [1, 13, 100_003])
def test_kernel_vs_float64_formula(kernel, n, config, rng):
    arrays, options = _random_case(rng, n, kernel)
    expected = [None if a is None else a.astype(np.float64) for a in arrays]
    getattr(_C, kernel)(*arrays, **options)
    getattr(_updates, kernel)(*expected, **options)
    for got, want in zip(arrays, expected):
        if got is not None:
            np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)  # inputs are O(1)


def test_kernel_threads_agree_bitwise(rng):
    arrays, options = _random_case(rng, 300_001, "adam_step")
    copies = [None if a is None else a.copy() for a in arrays]
    with kernel_settings(_C.isa(), 1):
        _C.adam_step(*arrays, **options)
    with kernel_settings(_C.isa(), 2):
        _C.adam_step(*copies, **options)
    for a, b in zip(arrays, copies):
        if a is not None:
            np.testing.assert_array_equal(a, b)


def test_kernel_argument_errors():
    p, g, m, v = (np.ones(6, np.float32) for _ in range(4))
    with pytest.raises(ValueError, match=r"exp_avg has shape \(5,\) but param has shape \(6,\)"):
        _C.adam_step(p, g, np.ones(5, np.float32), v, lr=0.1, step=1)
    with pytest.raises(TypeError, match="exp_avg_sq must be float32, got float64"):
        _C.adam_step(p, g, m, np.ones(6), lr=0.1, step=1)
    with pytest.raises(ValueError, match="momentum_buffer must be C-contiguous"):
        _C.sgd_step(p, g, np.ones(12, np.float32)[::2], lr=0.1, momentum=0.9)
    readonly = np.ones(6, np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="state_sum must be writable"):
        _C.adagrad_step(p, g, readonly, lr=0.1, step=1)
    with pytest.raises(ValueError, match="param must be writable"):
        _C.sgd_step(readonly, g, lr=0.1)
    with pytest.raises(ValueError, match="max_exp_avg_sq is required"):
        _C.adam_step(p, g, m, v, lr=0.1, step=1, amsgrad=True)
    with pytest.raises(ValueError, match="grad_avg is required"):
        _C.rmsprop_step(p, g, v, lr=0.1, centered=True)
    with pytest.raises(ValueError, match="step must be >= 1"):
        _C.adam_step(p, g, m, v, lr=0.1, step=0)
    with pytest.raises(ValueError, match="exp_avg_sq shares memory with another state"):
        _C.adam_step(p, g, m, m, lr=0.1, step=1)
    with pytest.raises(ValueError, match="shares memory with grad"):
        _C.sgd_step(p, g, g, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"grad has shape \(2, 3\) but param has shape \(6,\)"):
        _C.sgd_step(p, np.ones((2, 3), np.float32), lr=0.1)


def test_optimizer_argument_errors():
    p = Parameter(np.ones(3, np.float32))
    with pytest.raises(ValueError, match="Invalid learning rate: -0.1"):
        optim.SGD([p], lr=-0.1)
    with pytest.raises(ValueError, match="Invalid beta parameter at index 1: 1.0"):
        optim.Adam([p], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="betas must be a pair"):
        optim.AdamW([p], betas=(0.9,))
    with pytest.raises(ValueError, match="Nesterov momentum requires"):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="Invalid eps value"):
        optim.RMSprop([p], eps=-1.0)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        optim.Adagrad([{"params": [p], "lr": -1.0}])
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Adam([])
    with pytest.raises(TypeError, match="got a Tensor"):
        optim.Adam(p)
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([p * 2], lr=0.1)
    q = Parameter(np.ones(3, np.float32))
    opt = optim.SGD([q], lr=0.1)
    q.grad = pydl.tensor(np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"gradient has shape \(4,\)"):
        opt.step()


# ---- multi-tensor calls: one call for a list of parameters ---------------------------

KERNELS = ["sgd_step", "rmsprop_step", "adagrad_step", "adam_step"]
# Sizes around the vector width, the cache line a thread's share is aligned to and the
# threading grain (2^15 elements), so that on two threads the shares split parameters
# and run across them; empty and one-element parameters too.
MULTI_SHAPES = [(70_001,), (0,), (1,), (13, 3), (40_000,), (5,), (16,), (33_000,)]


def _option_grid(kernel):
    """Every combination of the kernel's switches, with its rates at zero and not."""
    flags = [False, True]
    if kernel == "sgd_step":
        for momentum, dampening, weight_decay, nesterov, maximize, first_step in itertools.product(
                [0.0, 0.9], [0.0, 0.3], [0.0, 0.1], flags, flags, flags):
            if not nesterov or (momentum > 0 and dampening == 0):  # PyTorch's Nesterov rule
                yield dict(lr=0.1, momentum=momentum, dampening=dampening,
                           weight_decay=weight_decay, nesterov=nesterov, maximize=maximize,
                           first_step=first_step)
    elif kernel == "rmsprop_step":
        for momentum, weight_decay, centered, maximize in itertools.product(
                [0.0, 0.7], [0.0, 0.1], flags, flags):
            yield dict(lr=0.01, alpha=0.9, eps=1e-6, weight_decay=weight_decay,
                       momentum=momentum, centered=centered, maximize=maximize)
    elif kernel == "adagrad_step":
        for lr_decay, weight_decay, maximize, step in itertools.product(
                [0.0, 0.1], [0.0, 0.2], flags, [1, 7]):
            yield dict(lr=0.1, lr_decay=lr_decay, weight_decay=weight_decay, eps=1e-8,
                       step=step, maximize=maximize)
    else:
        for weight_decay, amsgrad, decoupled, maximize, step in itertools.product(
                [0.0, 0.05], flags, flags, flags, [1, 9]):
            yield dict(lr=0.01, beta1=0.85, beta2=0.99, eps=1e-6, weight_decay=weight_decay,
                       step=step, amsgrad=amsgrad, decoupled_weight_decay=decoupled,
                       maximize=maximize)


def _update_arrays(rng, kernel, options, shape):
    """[param, grad, states...] (float32) for one parameter of a call with `options`,
    None for the states they leave unused."""
    def r(scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    def positive():
        return rng.uniform(0.1, 2.0, shape).astype(np.float32)
    if kernel == "sgd_step":
        return [r(), r(), r() if options["momentum"] else None]
    if kernel == "rmsprop_step":
        grad_avg = r(0.1) if options["centered"] else None
        square_avg = positive() + (grad_avg ** 2 if options["centered"] else 0)
        return [r(), r(), square_avg, grad_avg, r() if options["momentum"] > 0 else None]
    if kernel == "adagrad_step":
        return [r(), r(), positive()]
    return [r(), r(), r(0.1), positive(), positive() if options["amsgrad"] else None]


def _copies(per_param):
    return [[None if a is None else a.copy() for a in arrays] for arrays in per_param]


def _as_lists(per_param):
    """The arguments of one multi-tensor call: a list per argument (None where unused)."""
    return [None if column[0] is None else list(column) for column in zip(*per_param)]


def _assert_same_bits(got, want, options):
    for got_arrays, want_arrays in zip(got, want):
        for a, b in zip(got_arrays, want_arrays):
            if b is not None:
                np.testing.assert_array_equal(a, b, err_msg=str(options))


@pytest.mark.parametrize("kernel", KERNELS)
def test_multi_tensor_call_equals_per_parameter_calls(kernel, config, rng):
    """One call over a list of parameters gives the bits of one call per parameter, on
    every instruction set and thread count, for every combination of options."""
    for options in _option_grid(kernel):
        per_param = [_update_arrays(rng, kernel, options, s) for s in MULTI_SHAPES]
        listed = _copies(per_param)
        for arrays in per_param:
            getattr(_C, kernel)(*arrays, **options)
        getattr(_C, kernel)(*_as_lists(listed), **options)
        _assert_same_bits(listed, per_param, options)


def test_multi_tensor_call_is_the_same_on_any_thread_count(rng):
    options = dict(lr=0.01, step=3, amsgrad=True, weight_decay=0.1)
    one = [_update_arrays(rng, "adam_step", options, s) for s in MULTI_SHAPES]
    two = _copies(one)
    with kernel_settings(_C.isa(), 1):
        _C.adam_step(*_as_lists(one), **options)
    with kernel_settings(_C.isa(), 2):
        _C.adam_step(*_as_lists(two), **options)
    _assert_same_bits(two, one, options)


@pytest.mark.parametrize("kernel", KERNELS)
def test_multi_tensor_call_on_the_cuda_emulation(kernel, rng):
    """pydl._cuda_emu's list call (one launch) against its per-parameter calls, bit for
    bit, and against pydl._C's (bit for bit on the vector paths, whose multiply-adds are
    fused as the CUDA kernels' are). Small sizes: the emulator is slow."""
    emu = pytest.importorskip("pydl._cuda_emu", reason="built without PYDL_CUDA_EMULATION")
    shapes = [(37,), (0,), (1,), (5, 3), (300,)]
    grid = list(_option_grid(kernel))
    for options in [grid[0], grid[-1], grid[len(grid) // 2]]:
        on_cpu = [_update_arrays(rng, kernel, options, s) for s in shapes]
        per_param, listed = _copies(on_cpu), _copies(on_cpu)
        for cpu_arrays, emu_arrays in zip(on_cpu, per_param):
            getattr(_C, kernel)(*cpu_arrays, **options)
            getattr(emu, kernel)(*emu_arrays, **options)
        getattr(emu, kernel)(*_as_lists(listed), **options)
        _assert_same_bits(listed, per_param, options)
        if _C.isa() != "portable":
            _assert_same_bits(listed, on_cpu, options)


def _kernel_modules():
    modules = [pytest.param(_C, id="_C")]
    try:
        from pydl import _cuda_emu
        modules.append(pytest.param(_cuda_emu, id="_cuda_emu"))
    except ImportError:
        pass
    return modules


@pytest.mark.parametrize("module", _kernel_modules())
def test_multi_tensor_argument_errors(module):
    def ones(n, dtype=np.float32):
        return np.ones(n, dtype)
    p, g = [ones(4), ones(2)], [ones(4), ones(2)]
    m, v = [ones(4), ones(2)], [ones(4), ones(2)]
    with pytest.raises(ValueError, match="grad has 1 arrays but param has 2"):
        module.adam_step(p, g[:1], m, v, lr=0.1, step=1)
    with pytest.raises(ValueError, match="exp_avg_sq has 3 arrays but param has 2"):
        module.adam_step(p, g, m, v + [ones(1)], lr=0.1, step=1)
    with pytest.raises(TypeError, match="grad must be a list of arrays, as param is"):
        module.sgd_step(p, g[0], lr=0.1)
    with pytest.raises(TypeError, match="exp_avg must be one array, as param is"):
        module.adam_step(p[0], g[0], m, v[0], lr=0.1, step=1)
    with pytest.raises(ValueError, match=r"exp_avg_sq\[1\] has shape \(3,\) but param\[1\] has "
                                         r"shape \(2,\)"):
        module.adam_step(p, g, m, [ones(4), ones(3)], lr=0.1, step=1)
    with pytest.raises(ValueError, match=r"grad\[1\] has shape \(1, 2\) but param\[1\] has "
                                         r"shape \(2,\)"):
        module.sgd_step(p, [g[0], np.ones((1, 2), np.float32)], lr=0.1)
    with pytest.raises(TypeError, match=r"grad\[1\] must be float32, got float64"):
        module.sgd_step(p, [g[0], ones(2, np.float64)], lr=0.1)
    with pytest.raises(TypeError, match=r"param\[0\] must be float32, got float64"):
        module.sgd_step([ones(4, np.float64), p[1]], g, lr=0.1)
    with pytest.raises(ValueError, match=r"max_exp_avg_sq\[1\] is required with these options"):
        module.adam_step(p, g, m, v, [ones(4), None], lr=0.1, step=1, amsgrad=True)
    with pytest.raises(ValueError, match=r"momentum_buffer is required with these options"):
        module.sgd_step(p, g, None, lr=0.1, momentum=0.9)
    # Aliasing: a written array (a param or a state) may share memory with nothing else.
    buffer = ones(8)
    with pytest.raises(ValueError, match=r"param\[1\] shares memory with param\[0\]"):
        module.sgd_step([buffer[:4], buffer[2:4]], g, lr=0.1)
    with pytest.raises(ValueError, match=r"param\[0\] shares memory with grad\[1\]"):
        module.sgd_step(p, [g[0], p[0][:2]], lr=0.1)
    with pytest.raises(ValueError, match=r"exp_avg_sq\[1\] shares memory with another state "
                                         r"array \(exp_avg\[0\]\)"):
        module.adam_step(p, g, [buffer[:4], ones(2)], [ones(4), buffer[:2]], lr=0.1, step=1)
    with pytest.raises(ValueError, match=r"momentum_buffer\[0\] shares memory with param\[1\]"):
        module.sgd_step([ones(4), buffer[4:6]], g, [buffer[4:8], ones(2)], lr=0.1, momentum=0.9)
    before = [a.copy() for a in p]
    with pytest.raises(ValueError, match="lr must be >= 0"):
        module.adam_step(p, g, m, v, lr=-1.0, step=1)
    # Gradients are only read: one array may serve as several (and no call changed p).
    for a, b in zip(p, before):
        np.testing.assert_array_equal(a, b)
    shared = ones(4)
    module.sgd_step([ones(4), ones(4)], [shared, shared], lr=0.1)
    module.sgd_step([], [], lr=0.1)  # no parameters, nothing to do


# ---- optimizers: one kernel call per group ---------------------------------------------

def _steps_on(device, name, kwargs, arrays, grads, foreach):
    """The parameters and state after an optimizer steps through `grads` (a list per
    step, None for a parameter without a gradient that step) on `device`."""
    params = [Parameter(pydl.tensor(a.copy(), device=device)) for a in arrays]
    opt = getattr(optim, name)(params, foreach=foreach, **kwargs)
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = None if g is None else pydl.tensor(g, device=device)
        opt.step()
    state = [{k: v for k, v in opt.state[p].items()} for p in params]
    return ([p.detach().cpu().numpy() for p in params],
            [{k: (v if isinstance(v, int) else pydl.Tensor._wrap(v).cpu().numpy())
              for k, v in s.items()} for s in state])


def _random_grads(rng, shapes, steps):
    """Fresh gradients per step; parameter 1 has none every third step, so its step count
    falls behind the others' (its own bucket from then on)."""
    return [[None if (i == 1 and step % 3 == 2) else
             rng.standard_normal(s).astype(np.float32) for i, s in enumerate(shapes)]
            for step in range(8)]


@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CONFIGS)])
def test_foreach_step_equals_the_per_parameter_loop(name, kwargs, isa, rng):
    arrays = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    grads = _random_grads(rng, SHAPES, 8)
    loop = _steps_on("cpu", name, kwargs, arrays, grads, foreach=False)
    for foreach in (None, True):
        params, state = _steps_on("cpu", name, kwargs, arrays, grads, foreach=foreach)
        _assert_same_bits([params], [loop[0]], kwargs)
        for got, want in zip(state, loop[1]):
            assert got.keys() == want.keys()
            for key in want:
                np.testing.assert_array_equal(got[key], want[key])


@pytest.mark.parametrize("name,kwargs", [CONFIGS[2], CONFIGS[8], CONFIGS[10], CONFIGS[14], CONFIGS[16]],
                         ids=lambda c: c if isinstance(c, str) else "")
def test_foreach_step_on_cuda_equals_the_per_parameter_loop(name, kwargs, fake_cuda, rng):
    arrays = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    grads = _random_grads(rng, SHAPES, 8)[:4]
    loop = _steps_on("cuda", name, kwargs, arrays, grads, foreach=False)
    params, state = _steps_on("cuda", name, kwargs, arrays, grads, foreach=None)
    _assert_same_bits([params], [loop[0]], kwargs)
    for got, want in zip(state, loop[1]):
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])
    on_cpu = _steps_on("cpu", name, kwargs, arrays, grads, foreach=None)
    for got, want in zip(params, on_cpu[0]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _kernel_calls(opt, steps, set_grads):
    """The compiled kernel calls each of `steps` optimizer steps makes."""
    calls = []
    _kernels.add_recorder(calls.append)
    try:
        counts = []
        for step in range(steps):
            set_grads(step)
            before = len(calls)
            opt.step()
            counts.append([c.name for c in calls[before:]])
    finally:
        _kernels.remove_recorder(calls.append)
    return counts


def test_one_kernel_call_per_group_and_bucket(rng):
    """A group's float32 parameters share one call; float64 ones take the array forms
    (no compiled kernel), a parameter whose step count differs its own call, and
    foreach=False one call per parameter."""
    shapes = [(3, 4), (5,), (2, 2), (7,)]

    def make(foreach):
        params = [Parameter(rng.standard_normal(s).astype(np.float32)) for s in shapes]
        params.append(Parameter(rng.standard_normal(3)))  # float64
        groups = [{"params": params[:2]}, {"params": params[2:], "lr": 0.1}]
        return params, optim.Adam(groups, lr=0.01, foreach=foreach)

    for foreach, first, lagging in [(None, 2, 3), (True, 2, 3), (False, 4, 4)]:
        params, opt = make(foreach)

        def set_grads(step):
            for i, p in enumerate(params):
                # Parameter 0 has no gradient on step 1: from step 2 on it is a step behind.
                p.grad = None if (i == 0 and step == 1) else pydl.tensor(
                    rng.standard_normal(p.shape).astype(p.dtype))
        counts = _kernel_calls(opt, 3, set_grads)
        assert all(name == "adam_step" for step in counts for name in step)
        assert [len(step) for step in counts] == [first, first - (foreach is False), lagging]
    assert opt.param_groups[0]["foreach"] is False


def test_foreach_mixes_devices_and_dtypes_in_one_group(fake_cuda, rng):
    """A group with parameters on both devices and in both float types steps each as it
    would alone."""
    arrays = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    devices = ["cpu", "cuda", "cpu", "cuda"]
    dtypes = [pydl.float32, pydl.float32, pydl.float64, pydl.float32]
    params = [Parameter(pydl.tensor(a, device=d, dtype=t)) for a, d, t in zip(arrays, devices, dtypes)]
    alone = [Parameter(pydl.tensor(a, device=d, dtype=t)) for a, d, t in zip(arrays, devices, dtypes)]
    opt = optim.Adam(params, lr=0.01, amsgrad=True)
    singles = [optim.Adam([p], lr=0.01, amsgrad=True, foreach=False) for p in alone]
    for _ in range(3):
        for p, q in zip(params, alone):
            g = rng.standard_normal(p.shape)
            p.grad = pydl.tensor(g, device=p.device, dtype=p.dtype)
            q.grad = pydl.tensor(g, device=q.device, dtype=q.dtype)
        opt.step()
        for single in singles:
            single.step()
    for p, q in zip(params, alone):
        assert p.device == q.device and p.dtype == q.dtype
        np.testing.assert_array_equal(p.detach().cpu().numpy(), q.detach().cpu().numpy())


def test_foreach_option():
    p = Parameter(np.ones(3, np.float32))
    assert optim.SGD([p], lr=0.1).param_groups[0]["foreach"] is None
    assert optim.AdamW([p], foreach=True).defaults["foreach"] is True
    with pytest.raises(ValueError, match="foreach must be None, True or False, got 'yes'"):
        optim.RMSprop([p], foreach="yes")
    opt = optim.Adagrad([p])
    with pytest.raises(ValueError, match="foreach must be None, True or False, got 1"):
        opt.add_param_group({"params": [Parameter(np.ones(2, np.float32))], "foreach": 1})


# ---- lr schedulers against torch's ------------------------------------------------

SCHEDULERS = [
    ("StepLR", dict(step_size=4, gamma=0.5)),
    ("MultiStepLR", dict(milestones=[3, 8, 8, 20], gamma=0.3)),
    ("ExponentialLR", dict(gamma=0.9)),
    ("CosineAnnealingLR", dict(T_max=7, eta_min=0.001)),
    ("LambdaLR", dict(lr_lambda=lambda epoch: 1.0 / (1 + epoch) ** 0.5)),
]


def _two_group_optimizers(torch):
    ours = optim.SGD([{"params": [Parameter(np.ones(2, np.float32))]},
                      {"params": [Parameter(np.ones(2, np.float32))], "lr": 0.5}], lr=0.1)
    theirs = torch.optim.SGD([{"params": [torch.ones(2, requires_grad=True)]},
                              {"params": [torch.ones(2, requires_grad=True)], "lr": 0.5}], lr=0.1)
    return ours, theirs


@pytest.mark.parametrize("name,kwargs", SCHEDULERS, ids=[s[0] for s in SCHEDULERS])
def test_scheduler_matches_torch(name, kwargs):
    torch = pytest.importorskip("torch")
    opt, topt = _two_group_optimizers(torch)
    ours = getattr(lr_scheduler, name)(opt, **kwargs)
    theirs = getattr(torch.optim.lr_scheduler, name)(topt, **kwargs)
    for epoch in range(30):
        np.testing.assert_allclose(ours.get_last_lr(), theirs.get_last_lr(), rtol=1e-12)
        np.testing.assert_allclose([g["lr"] for g in opt.param_groups],
                                   [g["lr"] for g in topt.param_groups], rtol=1e-12)
        if epoch == 12:  # a scheduler restored from its state_dict carries on identically
            state = ours.state_dict()
            assert "optimizer" not in state and "lr_lambdas" not in state
            restored = getattr(lr_scheduler, name)(opt, **kwargs)
            restored.load_state_dict(state)
            ours = restored
        opt.step()
        topt.step()
        ours.step()
        theirs.step()


@pytest.mark.parametrize("kwargs", [
    dict(mode="min", patience=2, factor=0.5, cooldown=1, min_lr=0.02),
    dict(mode="max", patience=1, threshold=0.05, threshold_mode="abs", min_lr=[0.0, 0.1]),
    dict(mode="min", patience=0, threshold=0.1),
])
def test_reduce_on_plateau_matches_torch(kwargs, rng):
    torch = pytest.importorskip("torch")
    opt, topt = _two_group_optimizers(torch)
    ours = lr_scheduler.ReduceLROnPlateau(opt, **kwargs)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **kwargs)
    metrics = 1.0 + np.cumsum(rng.normal(0.0, 0.1, 30)) * rng.choice([-1, 1])
    changed = False
    for metric in metrics:
        ours.step(metric)
        theirs.step(float(metric))
        np.testing.assert_allclose(ours.get_last_lr(), theirs.get_last_lr(), rtol=1e-12)
        changed |= ours.get_last_lr() != [0.1, 0.5]
    assert changed, "the metric sequence never triggered a reduction"
    with pytest.raises(ValueError, match="factor must be < 1.0"):
        lr_scheduler.ReduceLROnPlateau(opt, factor=1.5)


# ---- gradient clipping -------------------------------------------------------------

@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_torch(norm_type, max_norm, rng):
    torch = pytest.importorskip("torch")
    grads = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    ours = [Parameter(np.zeros(s, np.float32)) for s in SHAPES]
    theirs = [torch.zeros(s, requires_grad=True) for s in SHAPES]
    for p, t, g in zip(ours, theirs, grads):
        p.grad, t.grad = pydl.tensor(g.copy()), torch.tensor(g.copy())
    ours.append(Parameter(np.zeros(3, np.float32)))  # no grad: ignored
    total = clip_grad_norm_(ours, max_norm, norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)
    assert float(total) == pytest.approx(float(ttotal), rel=1e-6)
    for p, t in zip(ours, theirs):
        np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy(), rtol=2e-6, atol=1e-7)


def test_clip_grad_value(rng):
    torch = pytest.importorskip("torch")
    g = rng.standard_normal((4, 5)).astype(np.float32)
    p, t = Parameter(np.zeros((4, 5), np.float32)), torch.zeros(4, 5, requires_grad=True)
    p.grad, t.grad = pydl.tensor(g.copy()), torch.tensor(g.copy())
    clip_grad_value_(p, 0.3)
    torch.nn.utils.clip_grad_value_(t, 0.3)
    np.testing.assert_array_equal(p.grad.numpy(), t.grad.numpy())
    assert np.abs(p.grad.numpy()).max() == np.float32(0.3)


# ---- training ----------------------------------------------------------------------

def test_mlp_trains_to_zero_loss_with_adam(rng):
    x = pydl.tensor(rng.standard_normal((64, 10)).astype(np.float32))
    y = pydl.tensor(rng.integers(0, 4, 64).astype(np.int64))
    w1 = Parameter((rng.standard_normal((10, 32)) / np.sqrt(10)).astype(np.float32))
    w2 = Parameter((rng.standard_normal((32, 4)) / np.sqrt(32)).astype(np.float32))
    opt = optim.Adam([w1, w2], lr=0.02)
    losses = []
    for _ in range(300):
        opt.zero_grad()
        loss = F.cross_entropy(F.relu(x @ w1) @ w2, y)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[0] > 1.0
    assert losses[-1] < 0.01, losses[-10:]
