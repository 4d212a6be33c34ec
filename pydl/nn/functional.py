"""Stateless activations and losses, named as in torch.nn.functional."""
import numpy as np

from pydl import _device
from pydl.autograd import require_same_device
from pydl.ops import conv as conv_ops
from pydl.ops import elementwise as ew
from pydl.ops import pool as pool_ops
from pydl.ops.common import xp_of
from pydl.ops.loss import BinaryCrossEntropy, SoftmaxCrossEntropy
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


def _data_like(value, like):
    """The array of `value` for use with tensor `like`: a tensor's own array (on like's
    device, else RuntimeError naming both), or host data (lists, NumPy arrays) copied to
    like's device."""
    if isinstance(value, Tensor):
        require_same_device([like.data, value.data])
        return value.data
    return _device.to_device(np.asarray(value), like.device)


def cross_entropy(input, target, reduction="mean", ignore_index=-100):
    """Softmax cross-entropy of logits `input` (N, C) or (N, C, d1, ...) against class
    indices (int64, shaped like input without C) or class probabilities (shaped like input).

    One fused kernel computes the loss and its gradient. 'mean' averages over the
    targets that are not ignore_index."""
    _check_reduction(reduction)
    input = _as_tensor(input)
    target_array = _data_like(target, input)
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
                        xp_of(target_array).moveaxis(target_array, 1, -1).reshape(-1, classes))
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


# ---- layers and losses: linear, dropout, embedding, normalization, attention -------

from pydl import _random  # noqa: E402
from pydl.ops import dropout as _dropout_ops  # noqa: E402
from pydl.ops import embedding as _embedding_ops  # noqa: E402
from pydl.ops import linear as _linear_ops  # noqa: E402
from pydl.ops import norm as _norm_ops  # noqa: E402


def linear(input, weight, bias=None):
    """input @ weight^T + bias, with weight (out_features, in_features)."""
    input, weight = _as_tensor(input), _as_tensor(weight)
    if input.shape[-1:] != weight.shape[1:2] or weight.ndim != 2:
        raise ValueError(f"linear: input of shape {input.shape} does not fit weight of shape "
                         f"{weight.shape} (expected input (..., {weight.shape[-1]}))")
    if bias is None:
        return _linear_ops.Linear.apply(input, weight)
    return _linear_ops.Linear.apply(input, weight, _as_tensor(bias))


def leaky_relu(input, negative_slope=0.01):
    input = _as_tensor(input)
    return input.where(input > 0, input * negative_slope)


def dropout(input, p=0.5, training=True):
    """Zeroes each element with probability p and scales the rest by 1/(1-p) (training
    only). The mask comes from the Philox stream seeded by pydl.manual_seed."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    input = _as_tensor(input)
    if not training or p == 0:
        return input
    seed, offset = _random.philox_next()
    return _dropout_ops.Dropout.apply(input, p=float(p), seed=seed, offset=offset)


def _index_array(indices, name, like):
    """int64 indices on `like`'s device (see _data_like)."""
    array = _data_like(indices, like)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer indices, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def embedding(input, weight, padding_idx=None):
    """weight[input]: rows of the (num_embeddings, dim) table; padding_idx's row gets no
    gradient."""
    weight = _as_tensor(weight)
    indices = _index_array(input, "embedding input", weight)
    num = weight.shape[0]
    if padding_idx is None:
        padding_idx = -1
    elif not -num <= padding_idx < num:
        raise ValueError(f"padding_idx {padding_idx} must be within num_embeddings {num}")
    else:
        padding_idx %= num
    return _embedding_ops.Embedding.apply(weight, indices=indices, padding_idx=padding_idx)


def _affine(weight, bias):
    if (weight is None) != (bias is None):
        raise ValueError("pass both weight and bias, or neither")
    return () if weight is None else (_as_tensor(weight), _as_tensor(bias))


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Normalizes each channel of (N, C) or (N, C, ...) input; training uses the batch's
    statistics and updates running_mean/running_var in place, evaluation uses them."""
    input = _as_tensor(input)
    if input.ndim < 2:
        raise ValueError(f"batch_norm: input must be (N, C) or (N, C, ...), got {input.shape}")
    stats = []
    for name, t in (("running_mean", running_mean), ("running_var", running_var)):
        if t is None:
            stats.append(None)
            continue
        array = t.data if isinstance(t, Tensor) else t
        if array.shape != (input.shape[1],) or array.dtype != input.dtype:
            raise ValueError(f"batch_norm: {name} must be {input.dtype} of shape "
                             f"({input.shape[1]},), got {array.dtype} {array.shape}")
        stats.append(array)
    if not training and stats[0] is None:
        raise ValueError("batch_norm: evaluation (training=False) needs running_mean and "
                         "running_var")
    return _norm_ops.BatchNorm.apply(input, *_affine(weight, bias), running_mean=stats[0],
                                     running_var=stats[1], training=bool(training),
                                     momentum=float(momentum), eps=float(eps))


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalizes over the trailing dimensions `normalized_shape` of input."""
    input = _as_tensor(input)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if input.shape[input.ndim - len(shape):] != shape or len(shape) > input.ndim:
        raise ValueError(f"layer_norm: input of shape {input.shape} does not end in "
                         f"normalized_shape {shape}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != shape:
            raise ValueError(f"layer_norm: {name} must have shape {shape}, got {tuple(t.shape)}")
    return _norm_ops.LayerNorm.apply(input, *_affine(weight, bias), normalized_ndim=len(shape),
                                     eps=float(eps))


def _reduce(loss, reduction):
    _check_reduction(reduction)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _target_like(target, input, op):
    target = target if isinstance(target, Tensor) else Tensor._wrap(
        _data_like(target, input).astype(input.dtype, copy=False))
    if target.shape != input.shape:
        raise ValueError(f"{op}: target shape {target.shape} differs from input shape "
                         f"{input.shape}")
    return target


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """-input[i, target_i] * weight[target_i] for log-probabilities input (N, C) or
    (N, C, d...); 'mean' divides by the summed weights of the targets not ignored."""
    _check_reduction(reduction)
    input = _as_tensor(input)
    t = _index_array(target, "nll_loss target", input)
    if input.ndim < 2 or t.shape != input.shape[:1] + input.shape[2:]:
        raise ValueError(f"nll_loss: expected input (N, C) or (N, C, d...) and target shaped "
                         f"like input without C; got input {input.shape}, target {t.shape}")
    classes = input.shape[1]
    log_probs = input
    if input.ndim > 2:
        log_probs = input.permute(0, *range(2, input.ndim), 1).reshape(-1, classes)
    xp = xp_of(t)
    flat = t.reshape(-1)
    valid = flat != ignore_index
    bad = valid & ((flat < 0) | (flat >= classes))
    if bad.any():
        raise ValueError(f"nll_loss: target {int(flat[bad][0])} is not a class index in "
                         f"[0, {classes})")
    safe = xp.where(valid, flat, 0)
    w = xp.ones(classes) if weight is None else _data_like(weight, input)
    if w.shape != (classes,):
        raise ValueError(f"nll_loss: weight must have shape ({classes},), got {w.shape}")
    row_weight = Tensor._wrap((w[safe] * valid).astype(input.dtype))
    losses = -(log_probs[xp.arange(flat.size), safe] * row_weight)
    if reduction == "none":
        return losses.reshape(t.shape)
    if reduction == "sum":
        return losses.sum()
    return losses.sum() / row_weight.sum()


def l1_loss(input, target, reduction="mean"):
    input = _as_tensor(input)
    return _reduce(abs(input - _target_like(target, input, "l1_loss")), reduction)


def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    """-(t log x + (1 - t) log(1 - x)) for probabilities x, each log clamped at -100;
    x or t outside [0, 1] is a ValueError and the gradient at x = 0 or 1 is finite, as in
    PyTorch (pydl.ops.loss.BinaryCrossEntropy)."""
    input = _as_tensor(input)
    target = _target_like(target, input, "binary_cross_entropy")
    loss = BinaryCrossEntropy.apply(input, target)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean",
                                     pos_weight=None):
    """BCE of sigmoid(x), stably:
    (1 - t) x + (1 + (pos_weight - 1) t) (log(1 + exp(-|x|)) + max(-x, 0))."""
    input = _as_tensor(input)
    target = _target_like(target, input, "binary_cross_entropy_with_logits")
    softplus_neg = (1 + (-abs(input)).exp()).log() + (-input).clamp(min=0)
    log_weight = 1 if pos_weight is None else 1 + (pos_weight - 1) * target
    loss = (1 - target) * input + log_weight * softplus_neg
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def _additive_mask(mask, like, allowed_when_true):
    """A float mask to add to attention scores `like` (on its device, in its dtype): bool
    masks become 0 / -inf (True means 'attend' when allowed_when_true, 'masked'
    otherwise); float masks pass through."""
    array = _data_like(mask, like)
    if array.dtype == np.bool_:
        blocked = ~array if allowed_when_true else array
        return xp_of(array).where(blocked, -np.inf, 0.0).astype(like.dtype)
    return array.astype(like.dtype, copy=False)


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                                 is_causal=False, scale=None):
    """softmax(q k^T * scale + mask) v over (..., L, E) queries and (..., S, E) keys;
    scale defaults to 1/sqrt(E). A bool attn_mask is True where attention is allowed."""
    query, key, value = _as_tensor(query), _as_tensor(key), _as_tensor(value)
    scale = 1 / np.sqrt(query.shape[-1]) if scale is None else scale
    scores = query.matmul(key.transpose(-2, -1)) * scale
    length, source = query.shape[-2], key.shape[-2]
    if is_causal:
        causal = np.triu(np.ones((length, source), bool), k=1)
        scores = scores + Tensor._wrap(_additive_mask(causal, scores, False))
    if attn_mask is not None:
        scores = scores + Tensor._wrap(_additive_mask(attn_mask, scores, True))
    weights = dropout(scores.softmax(-1), dropout_p, training=dropout_p > 0)
    return weights.matmul(value)


__all__ += ["linear", "leaky_relu", "dropout", "embedding", "batch_norm", "layer_norm",
            "nll_loss", "l1_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
            "scaled_dot_product_attention"]


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
