"""Stateless activations and losses, named as in torch.nn.functional."""
import numpy as np

from pydl.ops import conv as conv_ops
from pydl.ops import elementwise as ew
from pydl.ops import pool as pool_ops
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


# ---- convolution and pooling ------------------------------------------------------

def _pair(value, name):
    """An int or a pair of ints as a pair of Python ints."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                 for v in pair):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    return tuple(int(v) for v in pair)


def _require_4d(name, input):
    if input.ndim != 4:
        raise ValueError(f"{name}: input must be 4-D (N, C, H, W), got shape {input.shape}")


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D cross-correlation of input (N, C_in, H, W) with weight (C_out, C_in/groups, KH, KW).
    padding: int, pair, 'valid' (none) or 'same' (stride 1; odd totals pad one more
    on the bottom/right, as PyTorch does)."""
    input, weight = _as_tensor(input), _as_tensor(weight)
    _require_4d("conv2d", input)
    if weight.ndim != 4:
        raise ValueError(f"conv2d: weight must be 4-D (C_out, C_in/groups, KH, KW), "
                         f"got shape {weight.shape}")
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    crop = (0, 0)
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            if stride != (1, 1):
                raise ValueError(f"conv2d: padding='same' needs stride 1, got stride {stride}")
            totals = [d * (k - 1) for d, k in zip(dilation, weight.shape[2:])]
            # Pad ceil(total/2) on both sides, then drop the extra first row/column.
            padding = tuple((t + 1) // 2 for t in totals)
            crop = tuple(t % 2 for t in totals)
        else:
            raise ValueError(f"conv2d: padding must be an int, a pair, 'valid' or 'same', "
                             f"got {padding!r}")
    padding = _pair(padding, "padding")
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"conv2d: groups must be a positive int, got {groups!r}")
    inputs = (input, weight) if bias is None else (input, weight, _as_tensor(bias))
    out = conv_ops.Conv2d.apply(*inputs, stride=stride, padding=padding, dilation=dilation,
                                groups=int(groups))
    return out[:, :, crop[0]:, crop[1]:] if crop != (0, 0) else out


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Max over each window; with return_indices, also the int64 argmax (ih * W + iw)."""
    input = _as_tensor(input)
    kernel = _pair(kernel_size, "kernel_size")
    stride = kernel if stride is None else _pair(stride, "stride")
    padding, dilation = _pair(padding, "padding"), _pair(dilation, "dilation")
    pool_ops.check_pool_args("max_pool2d", input.shape, kernel, stride, padding, dilation,
                             ceil_mode)
    indices = [] if return_indices else None
    out = pool_ops.MaxPool2d.apply(input, kernel=kernel, stride=stride, padding=padding,
                                   dilation=dilation, ceil_mode=bool(ceil_mode),
                                   indices_out=indices)
    return (out, Tensor._wrap(indices[0])) if return_indices else out


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True):
    """Mean over each window (the padded zeros count when count_include_pad)."""
    input = _as_tensor(input)
    kernel = _pair(kernel_size, "kernel_size")
    stride = kernel if stride is None else _pair(stride, "stride")
    padding = _pair(padding, "padding")
    pool_ops.check_pool_args("avg_pool2d", input.shape, kernel, stride, padding, (1, 1),
                             ceil_mode)
    return pool_ops.AvgPool2d.apply(input, kernel=kernel, stride=stride, padding=padding,
                                    ceil_mode=bool(ceil_mode),
                                    count_include_pad=bool(count_include_pad))


def adaptive_avg_pool2d(input, output_size):
    """Average pooling to output_size (int or pair; None keeps that input size)."""
    input = _as_tensor(input)
    _require_4d("adaptive_avg_pool2d", input)
    size = (output_size, output_size) if not isinstance(output_size, (tuple, list)) else output_size
    if len(size) != 2:
        raise ValueError(f"adaptive_avg_pool2d: output_size must be an int or a pair, "
                         f"got {output_size!r}")
    size = tuple(input.shape[2 + a] if s is None else s for a, s in enumerate(size))
    size = _pair(size, "output_size")
    if min(size) < 1:
        raise ValueError(f"adaptive_avg_pool2d: output_size must be positive, got {size}")
    h, w = input.shape[2:]
    if h % size[0] == 0 and w % size[1] == 0:  # even tiling: plain average pooling
        kernel = (h // size[0], w // size[1])
        return avg_pool2d(input, kernel, kernel)
    return pool_ops.AdaptiveAvgPool2d.apply(input, output_size=size)


__all__ += ["conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d"]
