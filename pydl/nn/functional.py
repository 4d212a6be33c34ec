"""Stateless activations and losses, named as in torch.nn.functional."""
import numpy as np

from pydl.ops import elementwise as ew
from pydl.ops.loss import SoftmaxCrossEntropy
from pydl.tensor import Tensor, _as_tensor

_REDUCTIONS = ("mean", "sum", "none")


def relu(input):
    return ew.Relu.apply(_as_tensor(input))


def sigmoid(input):
    return ew.Sigmoid.apply(_as_tensor(input))


def tanh(input):
    return ew.Tanh.apply(_as_tensor(input))


def gelu(input):
    """x * Phi(x), the exact (erf) form."""
    return ew.Gelu.apply(_as_tensor(input))


def softmax(input, dim=-1):
    return _as_tensor(input).softmax(dim)


def log_softmax(input, dim=-1):
    return _as_tensor(input).log_softmax(dim)


def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def cross_entropy(input, target, reduction="mean", ignore_index=-100):
    """Softmax cross-entropy of logits `input` (N, C) or (N, C, d1, ...) against class
    indices (int64, shaped like input without C) or class probabilities (shaped like input).

    One fused kernel computes the loss and its gradient. 'mean' averages over the
    targets that are not ignore_index."""
    _check_reduction(reduction)
    input = _as_tensor(input)
    target_array = target.data if isinstance(target, Tensor) else np.asarray(target)
    if input.ndim < 2:
        raise ValueError(f"cross_entropy: input must be (N, C) or (N, C, d1, ...), "
                         f"got shape {input.shape}")
    by_index = target_array.dtype.kind in "iu"
    if by_index:
        target_array = target_array.astype(np.int64, copy=False)
        expected = input.shape[:1] + input.shape[2:]
    else:
        target_array = target_array.astype(input.dtype, copy=False)
        expected = input.shape
    if target_array.shape != expected:
        kind = "class-index" if by_index else "probability"
        raise ValueError(f"cross_entropy: {kind} target must have shape {expected} for input "
                         f"of shape {input.shape}, got {target_array.shape}")
    classes = input.shape[1]
    logits = input
    if input.ndim > 2:  # (N, C, d...) -> (N*d..., C): classes on the last axis
        logits = input.permute(0, *range(2, input.ndim), 1).reshape(-1, classes)
        target_array = (target_array.reshape(-1) if by_index else
                        np.moveaxis(target_array, 1, -1).reshape(-1, classes))
    loss = SoftmaxCrossEntropy.apply(logits, target=target_array, reduction=reduction,
                                     ignore_index=ignore_index)
    if reduction == "none" and input.ndim > 2:
        loss = loss.reshape(input.shape[:1] + input.shape[2:])
    return loss


def mse_loss(input, target, reduction="mean"):
    """Mean (or summed, or per-element) squared error."""
    _check_reduction(reduction)
    input = _as_tensor(input)
    if isinstance(target, Tensor) and target.shape != input.shape:
        raise ValueError(f"mse_loss: input shape {input.shape} and target shape "
                         f"{target.shape} differ")
    squared = (input - target) ** 2
    if reduction == "mean":
        return squared.mean()
    if reduction == "sum":
        return squared.sum()
    return squared


__all__ = ["relu", "sigmoid", "tanh", "gelu", "softmax", "log_softmax", "cross_entropy",
           "mse_loss"]
