"""Optimizers, their fused kernels, lr schedulers and gradient clipping.

Kernels run against the float64 array forms of the same formulas (pydl.optim._updates,
themselves checked against torch.optim in float64); the optimizers against torch.optim
step for step on the same parameters and the same random gradients."""
import math

import numpy as np
import pytest

import pydl
import pydl.nn.functional as F
from pydl import _C, optim
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

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CONFIGS)])
def test_matches_torch(name, kwargs, dtype, isa, rng):
    torch = pytest.importorskip("torch")
    arrays = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    ours, opt, theirs, topt = _pair(name, kwargs, arrays, torch)
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
