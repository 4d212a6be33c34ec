"""Stateless activations and losses, named as in torch.nn.functional."""
import numpy as np

from pydl import _device, _random
from pydl.autograd import require_same_device
from pydl.ops import conv as conv_ops
from pydl.ops import dropout as _dropout_ops
from pydl.ops import elementwise as ew
from pydl.ops import embedding as _embedding_ops
from pydl.ops import linear as _linear_ops
from pydl.ops import norm as _norm_ops
from pydl.ops import pool as pool_ops
from pydl.ops import shape as _shape_ops
from pydl.ops.common import xp_of
from pydl.ops.loss import BinaryCrossEntropy, SoftmaxCrossEntropy
from pydl.tensor import Tensor, _as_tensor, ones

_REDUCTIONS = ("mean", "sum", "none")


def relu(input):
    """max(x, 0) elementwise (the relu kernel for float32).

    >>> F.relu(pydl.tensor([-1.0, 0.5]))
    tensor([0. , 0.5])
    """
    return ew.Relu.apply(_as_tensor(input))


def sigmoid(input):
    """1 / (1 + exp(-x)) elementwise.

    >>> F.sigmoid(pydl.tensor([0.0]))
    tensor([0.5])
    """
    return ew.Sigmoid.apply(_as_tensor(input))


def tanh(input):
    """tanh(x) elementwise.

    >>> F.tanh(pydl.tensor([0.0]))
    tensor([0.])
    """
    return ew.Tanh.apply(_as_tensor(input))


def gelu(input):
    """x * Phi(x), the exact (erf) form.

    >>> print(f"{F.gelu(pydl.tensor(1.0)).item():.4f}")
    0.8413
    """
    return ew.Gelu.apply(_as_tensor(input))


def softmax(input, dim=-1):
    """softmax along dim (the softmax kernel).

    >>> F.softmax(pydl.tensor([[1.0, 1.0]]), dim=-1)
    tensor([[0.5, 0.5]])
    """
    return _as_tensor(input).softmax(dim)


def log_softmax(input, dim=-1):
    """log(softmax) along dim, computed stably.

    >>> print(f"{F.log_softmax(pydl.tensor([[0.0, 0.0]]), dim=1)[0, 1].item():.4f}")
    -0.6931
    """
    return _as_tensor(input).log_softmax(dim)


def _same_dtype(op, input, weight, bias=None):
    """RuntimeError naming both dtypes unless input, weight (and bias) share one: pydl,
    like torch, does not convert a layer's input behind the user's back."""
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.dtype != input.dtype:
            raise RuntimeError(
                f"{op}: expected input and {name} to have the same dtype, but got input "
                f"{input.dtype} and {name} {t.dtype}; convert the input (x.float() for a "
                "float32 model) or the model (model.double())")


def _float_target(op, target, input):
    """RuntimeError unless a tensor or array target has a floating dtype (torch refuses
    integer targets for the binary cross-entropies)."""
    dtype = getattr(target, "dtype", None)
    if dtype is not None and np.dtype(dtype).kind != "f":
        raise RuntimeError(f"{op}: found dtype {np.dtype(dtype)} for target but expected a "
                           f"floating dtype like the input's ({input.dtype}); use "
                           "target.float()")


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


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0):
    """Softmax cross-entropy of logits `input` (N, C) or (N, C, d1, ...) against class
    indices (int64, shaped like input without C) or class probabilities (shaped like input).

    One fused kernel computes the loss and its gradient. 'mean' averages over the
    targets that are not ignore_index. Class weights w and label smoothing e follow
    torch: the target becomes (1 - e) one_hot + e / C, each class's term is weighted by
    w_c, and 'mean' divides by the summed weights w[target] of the rows not ignored.
    Both are still one kernel pass: row i's loss is s_i CE(z_i, T_i) for a probability
    row T_i and a scale s_i that this function works out (see _weighted_targets).

    >>> logits = pydl.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    >>> print(f"{F.cross_entropy(logits, pydl.tensor([0, 1])).item():.4f}")
    0.3606
    >>> print(f"{F.cross_entropy(logits, pydl.tensor([0, 1]), label_smoothing=0.1).item():.4f}")
    0.4773
    """
    _check_reduction(reduction)
    input = _as_tensor(input)
    target_array = _data_like(target, input)
    if input.ndim < 2:
        raise ValueError(f"cross_entropy: input must be (N, C) or (N, C, d1, ...), "
                         f"got shape {input.shape}")
    if not 0 <= label_smoothing <= 1:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got "
                         f"{label_smoothing}")
    index_shape = input.shape[:1] + input.shape[2:]
    by_index = target_array.dtype.kind in "iu"
    if not by_index and (target_array.dtype.kind != "f" or target_array.shape == index_shape):
        raise RuntimeError(f"cross_entropy: class-index targets must be int64 (use "
                           f"target.long()), got {target_array.dtype} of shape "
                           f"{target_array.shape}; probability targets are floats shaped like "
                           f"the input, {input.shape}")
    if by_index:
        target_array = target_array.astype(np.int64, copy=False)
        expected = index_shape
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
    if weight is None and label_smoothing == 0:
        loss = SoftmaxCrossEntropy.apply(logits, target=target_array, reduction=reduction,
                                         ignore_index=ignore_index)
    else:
        rows, scale, divisor = _weighted_targets(target_array, by_index, weight, logits,
                                                 ignore_index, label_smoothing)
        losses = SoftmaxCrossEntropy.apply(logits, target=rows, reduction="none",
                                           ignore_index=ignore_index) * Tensor._wrap(scale)
        loss = losses if reduction == "none" else losses.sum()
        if reduction == "mean":
            loss = loss / divisor if divisor > 0 else loss * 0
    if reduction == "none" and input.ndim > 2:
        loss = loss.reshape(input.shape[:1] + input.shape[2:])
    return loss


def _weighted_targets(target, by_index, weight, logits, ignore_index, smoothing):
    """(T, s, divisor) with row i's weighted, smoothed loss = s_i CE(z_i, T_i), T_i a
    probability row, and divisor what 'mean' divides by.

    Class indices y: loss_i = (1 - e) w_y CE(z_i, one_hot(y)) + (e / C) sum_c w_c CE(z_i, e_c)
    = (a + b) CE(z_i, (a one_hot(y) + (e / C) w) / (a + b)) with a = (1 - e) w_y,
    b = e sum(w) / C, since CE is linear in a target that sums to 1; ignored rows get
    s = 0; divisor = sum of w_y over the rows not ignored.
    Probabilities t: u = (1 - e) t + e / C, loss_i = S_i CE(z_i, w u / S_i), S_i = sum w u;
    divisor = the number of rows."""
    xp = xp_of(target)
    rows, classes = logits.shape
    dtype = logits.dtype
    w = xp.ones(classes, dtype) if weight is None else \
        _data_like(weight, logits).astype(dtype, copy=False)
    if w.shape != (classes,):
        raise ValueError(f"cross_entropy: weight must have shape ({classes},), got {w.shape}")
    if by_index:
        valid = target != ignore_index
        bad = valid & ((target < 0) | (target >= classes))
        if bad.any():
            raise ValueError(f"cross_entropy: target {int(target[bad][0])} is not a class "
                             f"index in [0, {classes})")
        safe = xp.where(valid, target, 0)
        a = (1 - smoothing) * w[safe]
        smooth = (smoothing / classes) * w
        total = a + smooth.sum()
        probs = smooth[None, :] + xp.zeros((rows, classes), dtype)
        probs[xp.arange(rows), safe] += a
        probs /= xp.where(total > 0, total, 1)[:, None]
        scale = total * valid
        divisor = float((w[safe] * valid).sum())
    else:
        weighted = ((1 - smoothing) * target + smoothing / classes) * w
        scale = weighted.sum(axis=1)
        probs = weighted / xp.where(scale > 0, scale, 1)[:, None]
        divisor = float(rows)
    return probs.astype(dtype, copy=False), scale.astype(dtype, copy=False), divisor


def mse_loss(input, target, reduction="mean"):
    """Mean (or summed, or per-element) squared error.

    >>> F.mse_loss(pydl.tensor([1.0, 3.0]), pydl.tensor([0.0, 0.0])).item()
    5.0
    """
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



# ---- layers and losses: linear, dropout, embedding, normalization, attention -------

def linear(input, weight, bias=None):
    """input @ weight^T + bias, with weight (out_features, in_features).

    >>> F.linear(pydl.ones(2, 3), pydl.ones(4, 3), pydl.zeros(4)).shape
    (2, 4)
    """
    input, weight = _as_tensor(input), _as_tensor(weight)
    _same_dtype("linear", input, weight, bias)
    if input.shape[-1:] != weight.shape[1:2] or weight.ndim != 2:
        raise ValueError(f"linear: input of shape {input.shape} does not fit weight of shape "
                         f"{weight.shape} (expected input (..., {weight.shape[-1]}))")
    if bias is None:
        return _linear_ops.Linear.apply(input, weight)
    return _linear_ops.Linear.apply(input, weight, _as_tensor(bias))


def leaky_relu(input, negative_slope=0.01):
    """x for x > 0, negative_slope * x otherwise.

    >>> F.leaky_relu(pydl.tensor([-2.0, 3.0]), 0.5)
    tensor([-1.,  3.])
    """
    input = _as_tensor(input)
    return input.where(input > 0, input * negative_slope)


def dropout(input, p=0.5, training=True):
    """Zeroes each element with probability p and scales the rest by 1/(1-p) (training
    only). The mask comes from the Philox stream seeded by pydl.manual_seed.

    >>> pydl.manual_seed(0)
    >>> out = F.dropout(pydl.ones(1000), p=0.25)
    >>> sorted(set(out.tolist())), 0.2 < (out == 0).float().mean().item() < 0.3
    ([0.0, 1.3333333730697632], True)
    >>> F.dropout(pydl.ones(3), training=False).tolist()
    [1.0, 1.0, 1.0]
    """
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
    gradient.

    >>> F.embedding(pydl.tensor([2, 0]), pydl.arange(6.0).reshape(3, 2))
    tensor([[4., 5.],
            [0., 1.]])
    """
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
    statistics and updates running_mean/running_var in place, evaluation uses them.

    >>> x = pydl.randn(16, 3) * 4 + 1
    >>> running_mean, running_var = pydl.zeros(3), pydl.ones(3)
    >>> out = F.batch_norm(x, running_mean, running_var, training=True)
    >>> bool((out.mean(dim=0).abs() < 1e-5).all()), bool((running_mean != 0).all())
    (True, True)
    """
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
    """Normalizes over the trailing dimensions `normalized_shape` of input.

    >>> out = F.layer_norm(pydl.randn(2, 5) * 3, (5,))
    >>> out.std(dim=-1, unbiased=False).sub(1).abs().max().item() < 1e-4
    True
    """
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
    (N, C, d...); 'mean' divides by the summed weights of the targets not ignored.

    >>> loss = F.nll_loss(pydl.tensor([[-0.5, -1.0], [-2.0, -0.1]]), pydl.tensor([0, 1]))
    >>> print(f"{loss.item():.2f}")
    0.30
    """
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
    """The mean (or summed, or per-element) absolute error.

    >>> F.l1_loss(pydl.tensor([1.0, -1.0]), pydl.tensor([0.0, 0.0])).item()
    1.0
    """
    input = _as_tensor(input)
    return _reduce(abs(input - _target_like(target, input, "l1_loss")), reduction)


def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    """-(t log x + (1 - t) log(1 - x)) for probabilities x, each log clamped at -100;
    x or t outside [0, 1] is a ValueError and the gradient at x = 0 or 1 is finite, as in
    PyTorch (pydl.ops.loss.BinaryCrossEntropy).

    >>> print(f"{F.binary_cross_entropy(pydl.tensor([0.5]), pydl.tensor([1.0])).item():.4f}")
    0.6931
    """
    input = _as_tensor(input)
    _float_target("binary_cross_entropy", target, input)
    target = _target_like(target, input, "binary_cross_entropy")
    loss = BinaryCrossEntropy.apply(input, target)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean",
                                     pos_weight=None):
    """BCE of sigmoid(x), stably:
    (1 - t) x + (1 + (pos_weight - 1) t) (log(1 + exp(-|x|)) + max(-x, 0)).

    >>> loss = F.binary_cross_entropy_with_logits(pydl.tensor([0.0]), pydl.tensor([1.0]))
    >>> print(f"{loss.item():.4f}")
    0.6931
    """
    input = _as_tensor(input)
    _float_target("binary_cross_entropy_with_logits", target, input)
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
    scale defaults to 1/sqrt(E). A bool attn_mask is True where attention is allowed.

    >>> q = k = v = pydl.randn(2, 4, 8)
    >>> F.scaled_dot_product_attention(q, k, v, is_causal=True).shape
    (2, 4, 8)
    """
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



# ---- convolution and pooling ------------------------------------------------------

def _pair(value, name, positive=False):
    """An int or a pair of ints as a pair of Python ints (TypeError otherwise); with
    `positive`, a ValueError unless both are >= 1 (kernel sizes, strides)."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                 for v in pair):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if positive and min(pair) < 1:
        raise ValueError(f"{name} must be a positive int or a pair of them, got {value!r}")
    return tuple(int(v) for v in pair)


def _require_4d(name, input):
    if input.ndim != 4:
        raise ValueError(f"{name}: input must be 4-D (N, C, H, W), got shape {input.shape}")


def _conv2d_padding(padding, stride, dilation, kernel_size):
    """(padding pair, crop pair) for conv2d's padding argument: an int, a pair, 'valid',
    or 'same' (stride 1: pad ceil(total/2) on both sides, then crop the extra first
    row/column of the output)."""
    crop = (0, 0)
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            if stride != (1, 1):
                raise ValueError(f"conv2d: padding='same' needs stride 1, got stride {stride}")
            totals = [d * (k - 1) for d, k in zip(dilation, kernel_size)]
            padding = tuple((t + 1) // 2 for t in totals)
            crop = tuple(t % 2 for t in totals)
        else:
            raise ValueError(f"conv2d: padding must be an int, a pair, 'valid' or 'same', "
                             f"got {padding!r}")
    return _pair(padding, "padding"), crop


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D cross-correlation of input (N, C_in, H, W) with weight (C_out, C_in/groups, KH, KW).
    padding: int, pair, 'valid' (none) or 'same' (stride 1; odd totals pad one more
    on the bottom/right, as PyTorch does).

    >>> F.conv2d(pydl.ones(1, 1, 4, 4), pydl.ones(1, 1, 3, 3)).tolist()
    [[[[9.0, 9.0], [9.0, 9.0]]]]
    >>> F.conv2d(pydl.ones(1, 3, 8, 8), pydl.ones(6, 3, 3, 3), padding="same").shape
    (1, 6, 8, 8)
    """
    input, weight = _as_tensor(input), _as_tensor(weight)
    _require_4d("conv2d", input)
    if weight.ndim != 4:
        raise ValueError(f"conv2d: weight must be 4-D (C_out, C_in/groups, KH, KW), "
                         f"got shape {weight.shape}")
    _same_dtype("conv2d", input, weight, bias)
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    padding, crop = _conv2d_padding(padding, stride, dilation, weight.shape[2:])
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"conv2d: groups must be a positive int, got {groups!r}")
    inputs = (input, weight) if bias is None else (input, weight, _as_tensor(bias))
    out = conv_ops.Conv2d.apply(*inputs, stride=stride, padding=padding, dilation=dilation,
                                groups=int(groups))
    return out[:, :, crop[0]:, crop[1]:] if crop != (0, 0) else out


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Max over each window; with return_indices, also the int64 argmax (ih * W + iw).

    >>> x = pydl.arange(16.0).reshape(1, 1, 4, 4)
    >>> F.max_pool2d(x, 2).tolist()
    [[[[5.0, 7.0], [13.0, 15.0]]]]
    >>> F.max_pool2d(x, 2, return_indices=True)[1].tolist()
    [[[[5, 7], [13, 15]]]]
    """
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
    """Mean over each window (the padded zeros count when count_include_pad).

    >>> F.avg_pool2d(pydl.arange(16.0).reshape(1, 1, 4, 4), 2).tolist()
    [[[[2.5, 4.5], [10.5, 12.5]]]]
    """
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
    """Average pooling to output_size (int or pair; None keeps that input size).

    >>> F.adaptive_avg_pool2d(pydl.ones(2, 3, 7, 9), 1).shape
    (2, 3, 1, 1)
    """
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



# ---- 1-D convolution and pooling (the 2-D kernels on H = 1), transposed convolution,
#      nearest upsampling ------------------------------------------------------------

def _single(value, name):
    """An int or a 1-tuple of ints as a Python int."""
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a 1-tuple of ints, got {value!r}")
    return int(value)


def _require_3d(name, input):
    if input.ndim != 3:
        raise ValueError(f"{name}: input must be 3-D (N, C, L), got shape {input.shape}")


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-D cross-correlation of input (N, C_in, L) with weight (C_out, C_in/groups, K): the
    conv2d kernels on (N, C_in, 1, L). padding: int, 'valid' or 'same'.

    >>> F.conv1d(pydl.ones(1, 1, 5), pydl.ones(1, 1, 3)).tolist()
    [[[3.0, 3.0, 3.0]]]
    """
    input, weight = _as_tensor(input), _as_tensor(weight)
    _require_3d("conv1d", input)
    if weight.ndim != 3:
        raise ValueError(f"conv1d: weight must be 3-D (C_out, C_in/groups, K), got shape "
                         f"{weight.shape}")
    padding = padding if isinstance(padding, str) else (0, _single(padding, "padding"))
    out = conv2d(input.unsqueeze(2), weight.unsqueeze(2), bias, (1, _single(stride, "stride")),
                 padding, (1, _single(dilation, "dilation")), groups)
    return out.squeeze(2)


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Max over each window of (N, C, L) input (the 2-D kernel on H = 1); indices are
    positions along L.

    >>> F.max_pool1d(pydl.tensor([[[1.0, 3.0, 2.0, 0.0]]]), 2).tolist()
    [[[3.0, 2.0]]]
    """
    input = _as_tensor(input)
    _require_3d("max_pool1d", input)
    kernel = _single(kernel_size, "kernel_size")
    stride = kernel if stride is None else _single(stride, "stride")
    out = max_pool2d(input.unsqueeze(2), (1, kernel), (1, stride),
                     (0, _single(padding, "padding")), (1, _single(dilation, "dilation")),
                     ceil_mode, return_indices)
    if return_indices:
        return out[0].squeeze(2), out[1].squeeze(2)
    return out.squeeze(2)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True):
    """Mean over each window of (N, C, L) input (the 2-D kernel on H = 1).

    >>> F.avg_pool1d(pydl.tensor([[[1.0, 3.0, 2.0, 0.0]]]), 2).tolist()
    [[[2.0, 1.0]]]
    """
    input = _as_tensor(input)
    _require_3d("avg_pool1d", input)
    kernel = _single(kernel_size, "kernel_size")
    stride = kernel if stride is None else _single(stride, "stride")
    return avg_pool2d(input.unsqueeze(2), (1, kernel), (1, stride),
                      (0, _single(padding, "padding")), ceil_mode,
                      count_include_pad).squeeze(2)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """The transposed 2-D convolution (the adjoint of conv2d, as used to upsample in GAN
    generators) of input (N, C_in, H, W) with weight (C_in, C_out/groups, KH, KW):
    H_out = (H - 1) stride - 2 padding + dilation (KH - 1) + output_padding + 1.
    It runs on the conv2d kernels (forward: the input-gradient kernel).

    >>> F.conv_transpose2d(pydl.ones(1, 1, 2, 2), pydl.ones(1, 1, 2, 2), stride=2).shape
    (1, 1, 4, 4)
    """
    input, weight = _as_tensor(input), _as_tensor(weight)
    _require_4d("conv_transpose2d", input)
    if weight.ndim != 4:
        raise ValueError(f"conv_transpose2d: weight must be 4-D (C_in, C_out/groups, KH, KW), "
                         f"got shape {weight.shape}")
    _same_dtype("conv_transpose2d", input, weight, bias)
    stride, padding = _pair(stride, "stride"), _pair(padding, "padding")
    dilation = _pair(dilation, "dilation")
    output_padding = _pair(output_padding, "output_padding")
    if not isinstance(groups, (int, np.integer)) or groups < 1 or weight.shape[0] % groups:
        raise ValueError(f"conv_transpose2d: groups must be a positive int dividing the "
                         f"weight's {weight.shape[0]} input channels, got {groups!r}")
    if input.shape[1] != weight.shape[0]:
        raise ValueError(f"conv_transpose2d: input of shape {input.shape} has {input.shape[1]} "
                         f"channels but the weight {weight.shape} expects {weight.shape[0]}")
    if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        raise ValueError(f"conv_transpose2d: stride and dilation must be >= 1 and padding >= 0, "
                         f"got stride {stride}, dilation {dilation}, padding {padding}")
    if any(not 0 <= p < s for p, s in zip(output_padding, stride)):
        raise ValueError(f"conv_transpose2d: output_padding {output_padding} must be "
                         f"non-negative and smaller than stride {stride}")
    size = [conv_ops.transposed_output_size(input.shape[2 + a], weight.shape[2 + a], stride[a],
                                            padding[a], dilation[a], output_padding[a])
            for a in range(2)]
    if min(size) < 1:
        raise ValueError(f"conv_transpose2d: the output would be empty ({size}) for input "
                         f"{input.shape}, weight {weight.shape}, stride {stride}, padding "
                         f"{padding}, dilation {dilation}")
    inputs = (input, weight) if bias is None else (input, weight, _as_tensor(bias))
    return conv_ops.ConvTranspose2d.apply(*inputs, stride=stride, padding=padding,
                                          dilation=dilation, groups=int(groups),
                                          output_padding=output_padding)


def _nearest_axis(x, axis, out_size, scale):
    """x resized along axis by nearest neighbour, torch's rule in float32:
    source = min(floor(i * scale), size - 1), scale = 1 / scale_factor or size / out_size.
    A whole-number factor repeats each element (a broadcast view, so the gradient is a
    sum); other sizes gather."""
    size = x.shape[axis]
    factor = out_size // size if size else 0
    if size and out_size == factor * size and np.float32(scale) == np.float32(1 / factor):
        stretched = x.unsqueeze(axis + 1).expand(
            *x.shape[:axis + 1], factor, *x.shape[axis + 1:])
        return stretched.reshape(x.shape[:axis] + (out_size,) + x.shape[axis + 1:])
    source = np.floor(np.arange(out_size, dtype=np.float32) * np.float32(scale))
    source = np.minimum(source.astype(np.int64), size - 1)
    return x[(slice(None),) * axis + (_device.to_device(source, x.device),)]


def interpolate(input, size=None, scale_factor=None, mode="nearest"):
    """Resizes the spatial dimensions of (N, C, L) or (N, C, H, W) input to `size` or by
    `scale_factor` (an int or float, or one per dimension); only mode='nearest'.

    >>> F.interpolate(pydl.tensor([[[1.0, 2.0]]]), scale_factor=2).tolist()
    [[[1.0, 1.0, 2.0, 2.0]]]
    """
    input = _as_tensor(input)
    if mode != "nearest":
        raise NotImplementedError(f"interpolate: mode {mode!r} is not supported; pydl has "
                                  "mode='nearest'")
    spatial = input.ndim - 2
    if spatial not in (1, 2):
        raise ValueError(f"interpolate: input must be 3-D (N, C, L) or 4-D (N, C, H, W), got "
                         f"shape {input.shape}")
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate: pass exactly one of size and scale_factor")

    def per_dim(value, name):
        values = tuple(value) if isinstance(value, (tuple, list)) else (value,) * spatial
        if len(values) != spatial:
            raise ValueError(f"interpolate: {name} {value!r} must have one entry per spatial "
                             f"dimension ({spatial})")
        return values

    shape = input.shape[2:]
    if size is not None:
        sizes = tuple(int(n) for n in per_dim(size, "size"))
        scales = tuple(n / out for n, out in zip(shape, sizes))
    else:
        factors = per_dim(scale_factor, "scale_factor")
        sizes = tuple(int(np.floor(n * f)) for n, f in zip(shape, factors))
        scales = tuple(1 / f for f in factors)
    if min(sizes) < 1:
        raise ValueError(f"interpolate: the output size {sizes} must be positive")
    out = input
    for a in range(spatial):
        out = _nearest_axis(out, 2 + a, sizes[a], scales[a])
    return out



# ---- activations, channel dropout, one-hot --------------------------------------

def silu(input):
    """x sigmoid(x) (swish), from the sigmoid kernel.

    >>> print(f"{F.silu(pydl.tensor(1.0)).item():.4f}")
    0.7311
    """
    input = _as_tensor(input)
    return input * sigmoid(input)


def elu(input, alpha=1.0):
    """x for x > 0, alpha (exp(x) - 1) otherwise (exp taken of min(x, 0), so large x
    cannot overflow into the unused branch's gradient).

    >>> F.elu(pydl.tensor([1.0, 0.0])).tolist()
    [1.0, 0.0]
    """
    input = _as_tensor(input)
    return input.where(input > 0, alpha * (input.clamp(max=0).exp() - 1))


def dropout2d(input, p=0.5, training=True):
    """Zeroes whole channels of (N, C, ...) input with probability p (one draw per
    (n, c)) and scales the rest by 1/(1-p); the identity when not training.

    >>> F.dropout2d(pydl.ones(2, 3, 4, 4), 0.5, training=False).shape
    (2, 3, 4, 4)
    """
    input = _as_tensor(input)
    if input.ndim < 2:
        raise ValueError(f"dropout2d: input must be (N, C, ...), got shape {input.shape}")
    if not 0 <= p <= 1:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0:
        return input
    keep = ones(*input.shape[:2], *(1,) * (input.ndim - 2), dtype=input.dtype,
                device=input.device)
    return input * dropout(keep, p, training=True)


def one_hot(tensor, num_classes=-1):
    """int64 one-hot rows for class indices: shape tensor.shape + (num_classes,), where -1
    means max(tensor) + 1.

    >>> F.one_hot(pydl.tensor([0, 2]), 3)
    tensor([[1, 0, 0],
            [0, 0, 1]])
    """
    tensor = _as_tensor(tensor)
    if tensor.dtype != np.int64:
        raise TypeError(f"one_hot: expects an int64 tensor of class indices, got "
                        f"{tensor.dtype} (use .long())")
    indices = tensor.data
    low = int(indices.min()) if indices.size else 0
    high = int(indices.max()) if indices.size else -1
    classes = high + 1 if num_classes == -1 else int(num_classes)
    if low < 0 or high >= classes:
        raise ValueError(f"one_hot: class values must lie in [0, {classes}), got {low} to "
                         f"{high}")
    xp = xp_of(indices)
    return Tensor._wrap((indices[..., None] == xp.arange(classes)).astype(np.int64))



# ---- more activations, padding, normalization, robust regression losses -------------

def softplus(input, beta=1.0, threshold=20.0):
    """log(1 + exp(beta x)) / beta, and x itself where beta x > threshold (exp is taken
    of min(beta x, threshold), so the unused branch cannot overflow).

    >>> print(f"{F.softplus(pydl.tensor(0.0)).item():.4f}")
    0.6931
    """
    input = _as_tensor(input)
    scaled = input * beta
    smooth = scaled.clamp(max=threshold).exp().log1p() / beta
    return input.where(scaled > threshold, smooth)


def hardtanh(input, min_val=-1.0, max_val=1.0):
    """x clipped to [min_val, max_val].

    >>> F.hardtanh(pydl.tensor([-3.0, 0.5, 3.0]))
    tensor([-1. ,  0.5,  1. ])
    """
    return _as_tensor(input).clamp(min_val, max_val)


def relu6(input):
    """min(max(x, 0), 6).

    >>> F.relu6(pydl.tensor([-1.0, 3.0, 9.0]))
    tensor([0., 3., 6.])
    """
    return hardtanh(input, 0.0, 6.0)


def pad(input, pad, mode="constant", value=0.0):
    """Pads the last len(pad) // 2 dimensions: pad = (left, right) for the last one, then
    (top, bottom) for the one before, and so on, as torch; mode 'constant' only.

    >>> F.pad(pydl.ones(1, 2), (1, 2))
    tensor([[0., 1., 1., 0., 0.]])
    """
    input = _as_tensor(input)
    if mode != "constant":
        raise NotImplementedError(f"pad: mode {mode!r} is not supported; pydl has 'constant'")
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2 or len(pad) // 2 > input.ndim or min(pad, default=0) < 0:
        raise ValueError(f"pad: {pad} must hold non-negative (before, after) pairs for at most "
                         f"the {input.ndim} dimensions of the input")
    pairs = [(pad[i], pad[i + 1]) for i in range(0, len(pad), 2)]
    widths = [(0, 0)] * (input.ndim - len(pairs)) + pairs[::-1]
    return _shape_ops.Pad.apply(input, widths=tuple(widths), value=value)


def normalize(input, p=2.0, dim=1, eps=1e-12):
    """input / max(||input||_p, eps) along dim.

    >>> F.normalize(pydl.tensor([[3.0, 4.0]]))
    tensor([[0.6, 0.8]])
    """
    input = _as_tensor(input)
    return input / input.norm(p, dim, keepdim=True).clamp(min=eps)


def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    """sum(x1 x2) / max(||x1|| ||x2||, eps) along dim.

    >>> F.cosine_similarity(pydl.tensor([[1.0, 0.0]]), pydl.tensor([[1.0, 1.0]]))
    tensor([0.7071])
    """
    x1, x2 = _as_tensor(x1), _as_tensor(x2)
    return (x1 * x2).sum(dim) / (x1.norm(2, dim) * x2.norm(2, dim)).clamp(min=eps)


def huber_loss(input, target, reduction="mean", delta=1.0):
    """0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta), for d = input - target.

    >>> F.huber_loss(pydl.tensor([0.5, 3.0]), pydl.tensor([0.0, 0.0])).item()
    1.3125
    """
    input = _as_tensor(input)
    diff = abs(input - _target_like(target, input, "huber_loss"))
    # Where |d| >= delta, d is clamped to delta in the square: both branches stay finite.
    inside = diff.clamp(max=delta)
    return _reduce(0.5 * inside * inside + delta * (diff - inside), reduction)


def smooth_l1_loss(input, target, reduction="mean", beta=1.0):
    """0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (huber_loss / beta).

    >>> F.smooth_l1_loss(pydl.tensor([0.5, 3.0]), pydl.tensor([0.0, 0.0])).item()
    1.3125
    """
    if beta == 0:
        return l1_loss(input, target, reduction)
    return huber_loss(input, target, reduction, beta) / beta



def distillation_loss(student_logits, teacher_logits, target, temperature=3.0, alpha=0.1,
                      reduction="mean"):
    """Knowledge distillation (Hinton et al., 2015), per sample
        alpha * CE(student, target) + (1 - alpha) * T^2 * KL(p_T(teacher) || p_T(student))
    with p_T(z) = softmax(z / T). The T^2 keeps the soft term's gradient on the same
    scale whatever T. The soft term runs as the fused cross entropy against the
    teacher's probabilities minus their (constant) entropy; the teacher gets no
    gradient. 'mean' averages over the batch (the KL as torch's 'batchmean').

    >>> teacher = pydl.tensor([[2.0, 0.0, -1.0]])
    >>> round(F.distillation_loss(teacher, teacher, pydl.tensor([0]), alpha=0.0).item(), 6)
    0.0
    >>> F.distillation_loss(pydl.zeros(4, 3), teacher.expand(4, 3), pydl.tensor([0, 1, 2, 0])).item() > 0
    True
    """
    _check_reduction(reduction)
    if not temperature > 0:
        raise ValueError(f"distillation_loss: temperature must be > 0, got {temperature}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"distillation_loss: alpha must be in [0, 1], got {alpha}")
    student = _as_tensor(student_logits)
    teacher = _as_tensor(teacher_logits).detach()
    if student.ndim != 2 or teacher.shape != student.shape:
        raise ValueError(f"distillation_loss: student and teacher logits must both be (N, C), "
                         f"got {student.shape} and {teacher.shape}")
    scaled_teacher = teacher / temperature
    soft_targets = softmax(scaled_teacher, 1)
    entropy = -(soft_targets * log_softmax(scaled_teacher, 1)).sum(dim=1)
    kl = cross_entropy(student / temperature, soft_targets, reduction="none") - entropy
    per_sample = (1 - alpha) * temperature ** 2 * kl
    if alpha:
        per_sample = per_sample + alpha * cross_entropy(student, target, reduction="none")
    if reduction == "none":
        return per_sample
    return per_sample.mean() if reduction == "mean" else per_sample.sum()


__all__ = ["relu", "sigmoid", "tanh", "gelu", "softmax", "log_softmax", "cross_entropy",
           "mse_loss", "linear", "leaky_relu", "dropout", "embedding", "batch_norm", "layer_norm",
           "nll_loss", "l1_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
           "scaled_dot_product_attention", "conv2d", "max_pool2d", "avg_pool2d",
           "adaptive_avg_pool2d", "conv1d", "max_pool1d", "avg_pool1d", "conv_transpose2d",
           "interpolate", "silu", "elu", "dropout2d", "one_hot", "softplus", "hardtanh", "relu6",
           "pad", "normalize", "cosine_similarity", "huber_loss", "smooth_l1_loss",
           "distillation_loss"]
