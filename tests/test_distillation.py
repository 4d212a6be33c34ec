"""pydl.nn.functional.distillation_loss against a float64 NumPy reference and torch."""
import numpy as np
import pytest

import pydl
import pydl.nn.functional as F


def _reference(student, teacher, target, T, alpha):
    """Per-sample loss in float64 from the definition."""
    def log_softmax(z):
        z = z - z.max(1, keepdims=True)
        return z - np.log(np.exp(z).sum(1, keepdims=True))
    p = np.exp(log_softmax(teacher / T))
    kl = (p * (np.log(p) - log_softmax(student / T))).sum(1)
    ce = -log_softmax(student)[np.arange(len(target)), target]
    return alpha * ce + (1 - alpha) * T * T * kl


def _inputs(dtype, n=16, classes=7):
    rng = np.random.default_rng(0)
    student = (rng.standard_normal((n, classes)) * 3).astype(dtype)
    teacher = (rng.standard_normal((n, classes)) * 5).astype(dtype)
    return student, teacher, rng.integers(0, classes, n)


@pytest.mark.parametrize("T,alpha", [(1.0, 0.5), (3.0, 0.1), (8.0, 0.0), (2.0, 1.0)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_matches_the_float64_reference(T, alpha, reduction):
    student, teacher, target = _inputs(np.float64)
    expected = _reference(student, teacher, target, T, alpha)
    expected = {"mean": expected.mean(), "sum": expected.sum(), "none": expected}[reduction]
    got = F.distillation_loss(pydl.tensor(student), pydl.tensor(teacher), pydl.tensor(target),
                              temperature=T, alpha=alpha, reduction=reduction)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-12)


def test_value_and_student_gradient_match_torch_and_teacher_gets_none():
    torch = pytest.importorskip("torch")
    student, teacher, target = _inputs(np.float32)
    T, alpha = 4.0, 0.3
    s = pydl.tensor(student, requires_grad=True)
    t = pydl.tensor(teacher, requires_grad=True)
    loss = F.distillation_loss(s, t, pydl.tensor(target), temperature=T, alpha=alpha)
    loss.backward()
    ts = torch.tensor(student, requires_grad=True)
    tt = torch.tensor(teacher)
    soft = torch.nn.functional.kl_div(torch.log_softmax(ts / T, 1), torch.softmax(tt / T, 1),
                                      reduction="batchmean")
    ref = alpha * torch.nn.functional.cross_entropy(ts, torch.tensor(target)) + \
        (1 - alpha) * T * T * soft
    ref.backward()
    np.testing.assert_allclose(loss.item(), ref.item(), rtol=1e-5)
    np.testing.assert_allclose(s.grad.numpy(), ts.grad.numpy(), rtol=1e-4, atol=1e-6)
    assert t.grad is None


def test_bad_arguments_raise():
    student, teacher, target = _inputs(np.float32)
    s, t, y = pydl.tensor(student), pydl.tensor(teacher), pydl.tensor(target)
    with pytest.raises(ValueError, match="temperature"):
        F.distillation_loss(s, t, y, temperature=0)
    with pytest.raises(ValueError, match="alpha"):
        F.distillation_loss(s, t, y, alpha=1.5)
    with pytest.raises(ValueError, match="both be"):
        F.distillation_loss(s, t[:, :3], y)
