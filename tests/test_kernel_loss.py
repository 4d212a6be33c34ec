"""Fused softmax cross-entropy against a float64 NumPy reference, on both
instruction-set paths and on 1 and 2 threads."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import pydl._C as C
from conftest import ISAS, kernel_settings

REDUCTIONS = ["mean", "sum", "none"]


# ---- float64 reference --------------------------------------------------------

def log_softmax64(z):
    m = z.max(axis=1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


def reference(logits, target, reduction="mean", ignore_index=-100):
    """(loss, per-row losses, d loss / d logits) as PyTorch defines them:
    loss_i = -sum_c t_ic log softmax(z_i)_c, ignored rows count for nothing."""
    z = logits.astype(np.float64)
    n, c = z.shape
    logp = log_softmax64(z) if n else z
    if target.dtype == np.int64:
        keep = target != ignore_index
        t = np.zeros((n, c))
        t[np.nonzero(keep)[0], target[keep]] = 1
        count = keep.sum()
    else:
        t = target.astype(np.float64)
        count = n
    losses = -(t * logp).sum(axis=1)
    grad = np.exp(logp) * t.sum(axis=1, keepdims=True) - t
    if reduction == "mean":
        return (losses.sum() / count if count else np.nan), losses, (grad / count if count else grad * 0)
    return losses.sum(), losses, grad


def make_logits(n, c, seed, spread=3.0):
    return (np.random.default_rng(seed).standard_normal((n, c)) * spread).astype(np.float32)


def class_targets(n, c, seed, ignore_index=-100, ignored_fraction=0.0):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, c, n).astype(np.int64)
    t[rng.random(n) < ignored_fraction] = ignore_index
    return t


def prob_targets(n, c, seed, total=1.0):
    rng = np.random.default_rng(seed)
    p = rng.random((n, c)) ** 3
    return (p / p.sum(axis=1, keepdims=True) * total).astype(np.float32)


def check(logits, target, reduction="mean", ignore_index=-100, rtol=1e-5):
    loss, losses, grad = C.softmax_cross_entropy(logits, target, reduction=reduction,
                                                 ignore_index=ignore_index)
    ref_loss, ref_losses, ref_grad = reference(logits, target, reduction, ignore_index)
    assert losses.dtype == np.float32 and losses.shape == (logits.shape[0],)
    assert grad.dtype == np.float32 and grad.shape == logits.shape
    scale = max(1.0, np.abs(ref_losses).max(initial=0))
    np.testing.assert_allclose(loss, ref_loss, rtol=rtol, atol=1e-6 * scale)
    np.testing.assert_allclose(losses, ref_losses, rtol=rtol, atol=1e-6 * scale)
    gscale = np.abs(ref_grad).max(initial=0)
    np.testing.assert_allclose(grad, ref_grad, rtol=rtol, atol=1e-6 * gscale)
    return loss, losses, grad


# Includes class counts that are not multiples of 8 or 16 (vector tails); 2100 x
# 1000 is big enough for two threads and for the streamed gradient path on ymm,
# 1030 x 2048 on zmm (which streams only rows of a multiple of 16).
SHAPES = [(1, 1), (1, 7), (7, 33), (33, 255), (64, 10), (5, 1000), (40, 1003), (2100, 1000),
          (1030, 2048)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_class_index_targets(config, shape):
    assert C.isa() == config[0]
    n, c = shape
    logits = make_logits(n, c, seed=n + c)
    target = class_targets(n, c, seed=n, ignored_fraction=0.2)
    for reduction in REDUCTIONS if n * c < 10**6 else ["mean"]:
        check(logits, target, reduction)


@pytest.mark.parametrize("shape", SHAPES[:-1], ids=lambda s: f"{s[0]}x{s[1]}")
def test_probability_targets(config, shape):
    n, c = shape
    logits = make_logits(n, c, seed=n * c)
    for reduction in REDUCTIONS:
        check(logits, prob_targets(n, c, seed=c), reduction)
    # Targets that do not sum to 1 follow -sum t log softmax (PyTorch's definition).
    check(logits, prob_targets(n, c, seed=c + 1, total=2.5), "sum")


def test_ignore_index(config):
    logits = make_logits(50, 12, seed=3)
    target = class_targets(50, 12, seed=4)
    target[::4] = 5                       # a real class index used as ignore_index
    loss, losses, grad = check(logits, target, "mean", ignore_index=5)
    assert np.all(losses[::4] == 0) and np.all(grad[::4] == 0)
    target[:] = -100                      # every row ignored: the mean is 0/0 = NaN, as PyTorch
    loss, losses, grad = C.softmax_cross_entropy(logits, target)
    assert np.isnan(loss) and not np.any(losses) and not np.any(grad)


def test_empty_batch(config):
    for target in (np.zeros(0, np.int64), np.zeros((0, 4), np.float32)):
        loss, losses, grad = C.softmax_cross_entropy(np.zeros((0, 4), np.float32), target)
        assert np.isnan(loss) and losses.shape == (0,) and grad.shape == (0, 4)  # 0/0


def test_extreme_logits_stay_finite(config):
    logits = make_logits(16, 40, seed=8, spread=1.0)
    logits[:, 0] = 1e4
    logits[:, 1] = -1e4
    logits[3] = -5e3                      # all equal and very negative
    logits[5, 7] = 1e4                    # a tie at the top
    target = class_targets(16, 40, seed=9)
    target[0] = 1                         # the -1e4 class: loss 2e4
    loss, losses, grad = check(logits, target, "sum")
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    check(logits, prob_targets(16, 40, seed=10), "mean")


def test_gradient_matches_finite_differences(config):
    logits = make_logits(4, 9, seed=12, spread=2.0)
    h = 1e-6
    for target in (class_targets(4, 9, seed=13), prob_targets(4, 9, seed=14)):
        _, _, grad = C.softmax_cross_entropy(logits, target, reduction="mean")
        z = logits.astype(np.float64)
        numeric = np.zeros_like(z)
        for idx in np.ndindex(z.shape):
            e = np.zeros_like(z)
            e[idx] = h
            numeric[idx] = (reference(z + e, target)[0] - reference(z - e, target)[0]) / (2 * h)
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7)


def test_no_grad_gives_the_same_loss(config):
    logits = make_logits(30, 17, seed=15)
    target = class_targets(30, 17, seed=16, ignored_fraction=0.3)
    with_grad = C.softmax_cross_entropy(logits, target)
    loss, losses, grad = C.softmax_cross_entropy(logits, target, compute_grad=False)
    assert grad is None and loss == with_grad[0]
    np.testing.assert_array_equal(losses, with_grad[1])


def test_reduction_does_not_depend_on_thread_count():
    logits = make_logits(3000, 100, seed=17, spread=5.0)
    target = class_targets(3000, 100, seed=18)
    old = C.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            C.set_num_threads(threads)
            results.append(C.softmax_cross_entropy(logits, target, reduction="sum")[0])
    finally:
        C.set_num_threads(old)
    assert results[0] == results[1] == results[2]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), c=st.integers(1, 70), spread=st.sampled_from([0.1, 3.0, 100.0]),
       probs=st.booleans(), reduction=st.sampled_from(REDUCTIONS), seed=st.integers(0, 2**31))
def test_shapes(n, c, spread, probs, reduction, seed):
    logits = make_logits(n, c, seed, spread)
    target = prob_targets(n, c, seed) if probs else class_targets(n, c, seed, ignored_fraction=0.2)
    for isa in ISAS:
        with kernel_settings(isa, C.get_num_threads()):
            check(logits, target, reduction)


# ---- bad arguments ------------------------------------------------------------

def test_bad_arguments_raise():
    logits = make_logits(6, 5, seed=0)
    target = class_targets(6, 5, seed=0)
    xent = C.softmax_cross_entropy
    with pytest.raises(TypeError, match="logits must be float32"):
        xent(logits.astype(np.float64), target)
    with pytest.raises(ValueError, match="C-contiguous"):
        xent(np.asfortranarray(logits), target)
    with pytest.raises(ValueError, match="2-D"):
        xent(logits[0], target)
    with pytest.raises(ValueError, match=r"target\[2\] = 5 is not a class index"):
        xent(logits, np.array([0, 1, 5, 0, 0, 0], np.int64))
    with pytest.raises(ValueError, match="not a class index"):
        xent(logits, np.array([0, 1, -1, 0, 0, 0], np.int64))
    with pytest.raises(ValueError, match=r"must have shape \(6,\)"):
        xent(logits, target[:5])
    with pytest.raises(ValueError, match="must match"):
        xent(logits, np.ones((6, 4), np.float32))
    with pytest.raises(TypeError, match="float32"):
        xent(logits, target.astype(np.int32))
    with pytest.raises(TypeError, match="numpy array"):
        xent(logits, [0, 1, 2, 3, 4, 0])
    with pytest.raises(ValueError, match="reduction must be"):
        xent(logits, target, reduction="average")


# ---- against PyTorch ------------------------------------------------------------

@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_matches_torch(reduction):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    logits = make_logits(37, 23, seed=21, spread=4.0)
    targets = [class_targets(37, 23, seed=22, ignored_fraction=0.2), prob_targets(37, 23, seed=23)]
    for target in targets:
        z = torch.from_numpy(logits).requires_grad_(True)
        ref = F.cross_entropy(z, torch.from_numpy(target), reduction=reduction, ignore_index=-100)
        ref.sum().backward()
        loss, losses, grad = C.softmax_cross_entropy(logits, target, reduction=reduction)
        if reduction == "none":
            np.testing.assert_allclose(losses, ref.detach().numpy(), rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_allclose(loss, ref.item(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(grad, z.grad.numpy(), rtol=1e-5, atol=1e-7)
