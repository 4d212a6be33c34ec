"""Softmax cross-entropy over (N, C) logits, fused: one pass gives the loss and
d loss / d logits. float32 runs the compiled kernel; float64 the NumPy form.

Per row i, with t_i one-hot (class-index targets) or a probability row:
    loss_i = logsumexp(z_i) - sum_c t_ic z_ic,   d loss_i / d z_i = softmax(z_i) - t_i
'mean' divides by the number of rows whose target is not ignore_index.
"""
import numpy as np

from pydl._device import kernels_for
from pydl.autograd import Function
from pydl.ops.common import contiguous, xp_of


def _reference(z, target, reduction, ignore_index):
    """(loss, losses, grad) as the kernel returns them, in array code."""
    xp = xp_of(z)
    n, c = z.shape
    shifted = z - z.max(axis=1, keepdims=True)
    log_probs = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
    if target.dtype == np.int64:
        valid = target != ignore_index
        t = xp.zeros_like(z)
        t[xp.arange(n)[valid], target[valid]] = 1
    else:
        valid = xp.ones(n, dtype=bool)
        t = target
    losses = -(t * log_probs).sum(axis=1) * valid
    grad = (xp.exp(log_probs) - t) * valid[:, None]
    if reduction == "mean":
        scale = 1 / xp.maximum(valid.sum(), 1)  # 0 when every row is ignored (sum 0)
        return losses.sum() * scale, losses, grad * scale
    return losses.sum(), losses, grad


class SoftmaxCrossEntropy(Function):
    """Settings: target (int64 (N,) or float (N, C) array), reduction, ignore_index."""

    def forward(self, logits):
        compute_grad = self.needs_input_grad[0]
        if logits.dtype == np.float32:
            loss, losses, grad = kernels_for(logits).softmax_cross_entropy(
                contiguous(logits), contiguous(self.target), reduction=self.reduction,
                ignore_index=self.ignore_index, compute_grad=compute_grad)
        else:
            loss, losses, grad = _reference(logits, self.target, self.reduction,
                                            self.ignore_index)
        self.save(grad)
        if self.reduction == "none":
            return losses
        return xp_of(logits).asarray(loss, dtype=logits.dtype)

    def backward(self, g):
        (grad,) = self.saved
        if self.reduction == "none":
            return (grad * g[:, None],)
        return (grad * g,)


_BCE_EPS = float(np.float32(1e-12))  # PyTorch's EPSILON, a float32 constant even in float64


class BinaryCrossEntropy(Function):
    """Elementwise binary cross-entropy of probabilities x against targets t, PyTorch's:
        loss = -(t log x + (1 - t) log(1 - x)), each log clamped at -100,
        d loss / d x = (x - t) / max(x (1 - x), 1e-12)   (finite at x = 0 and 1),
        d loss / d t = log(1 - x) - log(x)               (unclamped, as PyTorch's).
    x and t outside [0, 1] (or NaN) are a ValueError, as in PyTorch."""

    def forward(self, x, t):
        xp = xp_of(x)
        for name, values in (("input", x), ("target", t)):
            if not bool(((values >= 0) & (values <= 1)).all()):
                raise ValueError(f"binary_cross_entropy: all elements of {name} should be "
                                 f"between 0 and 1")
        with np.errstate(divide="ignore"):
            log_x, log_1mx = xp.log(x), xp.log(1 - x)
        self.save(x, t, log_x, log_1mx)
        return -(t * xp.maximum(log_x, -100) + (1 - t) * xp.maximum(log_1mx, -100))

    def backward(self, g):
        x, t, log_x, log_1mx = self.saved
        xp = xp_of(x)
        gx = g * (x - t) / xp.maximum(x * (1 - x), _BCE_EPS) if self.needs_input_grad[0] else None
        gt = g * (log_1mx - log_x) if self.needs_input_grad[1] else None
        return gx, gt
