"""Loss modules against PyTorch for every reduction (values and input gradients), in
float32 and float64, and finite-difference checks in float64."""
import numpy as np
import pytest

import pydl
from pydl import nn
from pydl.nn import functional as F

from conftest import check_grad

torch = pytest.importorskip("torch")

TOL = {"float32": dict(rtol=1e-4, atol=1e-6), "float64": dict(rtol=1e-10, atol=1e-12)}
REDUCTIONS = ["mean", "sum", "none"]
DTYPES = ["float32", "float64"]


def compare(ours_loss, theirs_loss, input, target, dtype, seed=0):
    """Loss value and d loss / d input (for a random upstream gradient) vs torch."""
    x = pydl.tensor(input, requires_grad=True)
    tx = torch.tensor(input, requires_grad=True)
    t = pydl.tensor(target)
    tt = torch.tensor(target)
    ours, theirs = ours_loss(x, t), theirs_loss(tx, tt)
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), **TOL[dtype])
    g = np.random.default_rng(seed).standard_normal(ours.shape).astype(dtype)
    (ours * pydl.tensor(g)).sum().backward()
    (theirs * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), **TOL[dtype])


def classes_case(rng, dtype, spatial):
    shape = (6, 5) + ((3, 2) if spatial else ())
    logits = (rng.standard_normal(shape) * 2).astype(dtype)
    target = rng.integers(0, 5, (6,) + ((3, 2) if spatial else ()))
    target.reshape(-1)[::4] = 3  # ignored entries (ignore_index=3 below)
    return logits, target


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("spatial", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_and_nll(rng, dtype, reduction, spatial, weighted):
    logits, target = classes_case(rng, dtype, spatial)
    weight = rng.uniform(0.2, 2.0, 5).astype(dtype) if weighted else None
    ours_w = None if weight is None else pydl.tensor(weight)
    theirs_w = None if weight is None else torch.tensor(weight)
    for ignore in (-100, 3):
        compare(nn.CrossEntropyLoss(ours_w, ignore_index=ignore, reduction=reduction),
                torch.nn.CrossEntropyLoss(theirs_w, ignore_index=ignore, reduction=reduction),
                logits, target, dtype)
        log_probs = torch.log_softmax(torch.tensor(logits), 1).numpy()
        compare(nn.NLLLoss(ours_w, ignore_index=ignore, reduction=reduction),
                torch.nn.NLLLoss(theirs_w, ignore_index=ignore, reduction=reduction),
                log_probs, target, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_regression_losses(rng, dtype, reduction):
    x = rng.standard_normal((4, 3, 5)).astype(dtype)
    y = rng.standard_normal((4, 3, 5)).astype(dtype)
    compare(nn.MSELoss(reduction=reduction), torch.nn.MSELoss(reduction=reduction), x, y, dtype)
    compare(nn.L1Loss(reduction=reduction), torch.nn.L1Loss(reduction=reduction), x, y, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_binary_cross_entropy(rng, dtype, reduction, weighted):
    probs = rng.uniform(0.02, 0.98, (7, 4)).astype(dtype)
    logits = (rng.standard_normal((7, 4)) * 4).astype(dtype)
    target = rng.uniform(0, 1, (7, 4)).astype(dtype)
    target[0] = np.round(target[0])
    weight = rng.uniform(0.5, 2, 4).astype(dtype) if weighted else None
    pos = rng.uniform(0.5, 3, 4).astype(dtype) if weighted else None

    def ours(array):
        return None if array is None else pydl.tensor(array)

    def theirs(array):
        return None if array is None else torch.tensor(array)
    compare(nn.BCELoss(ours(weight), reduction=reduction),
            torch.nn.BCELoss(theirs(weight), reduction=reduction), probs, target, dtype)
    compare(nn.BCEWithLogitsLoss(ours(weight), reduction=reduction, pos_weight=ours(pos)),
            torch.nn.BCEWithLogitsLoss(theirs(weight), reduction=reduction,
                                       pos_weight=theirs(pos)), logits, target, dtype)


def test_bce_with_logits_is_stable_for_large_logits():
    x = pydl.tensor(np.array([-200.0, -50.0, 50.0, 200.0], np.float32))
    t = pydl.tensor(np.array([1.0, 0.0, 1.0, 0.0], np.float32))
    loss = F.binary_cross_entropy_with_logits(x, t, reduction="none").numpy()
    np.testing.assert_allclose(loss, [200.0, 0.0, 0.0, 200.0], atol=1e-6)


def test_losses_finite_differences(rng):
    x = rng.standard_normal((5, 4))
    target = rng.integers(0, 4, 5)
    w = rng.uniform(0.5, 2, 4)
    check_grad(lambda x: F.nll_loss(x, target, weight=pydl.tensor(w), ignore_index=2), x)
    y = rng.standard_normal((5, 4))
    check_grad(lambda x: F.l1_loss(x, y, reduction="sum"), x)
    t = rng.uniform(0, 1, (5, 4))
    check_grad(lambda p: F.binary_cross_entropy(p, t), rng.uniform(0.1, 0.9, (5, 4)))
    check_grad(lambda x: F.binary_cross_entropy_with_logits(
        x, t, pos_weight=pydl.tensor(w), reduction="none"), x)


def test_loss_argument_errors(rng):
    with pytest.raises(ValueError, match="reduction must be"):
        nn.L1Loss(reduction="avg")
    with pytest.raises(ValueError, match="not a class index"):
        F.nll_loss(pydl.randn(3, 4), pydl.tensor([0, 4, 1]))
    with pytest.raises(ValueError, match="target shape"):
        F.binary_cross_entropy(pydl.rand(3, 2), pydl.rand(3, 3))
    with pytest.raises(ValueError, match=r"weight must have shape \(4,\)"):
        F.nll_loss(pydl.randn(3, 4), pydl.tensor([0, 1, 1]), weight=pydl.ones(3))
