"""Gradient clipping, as in torch.nn.utils."""
import math

import numpy as np

from pydl.ops.common import writeable, xp_of
from pydl.tensor import Tensor


def _grads(parameters):
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


def _scale_(grad, factor):
    data = grad.data
    if writeable(data):
        data *= factor
    else:
        grad.data = data * factor


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scales the gradients together so that the norm of all of them (as one vector) is
    at most max_norm: g *= min(1, max_norm / (total + 1e-6)). Returns the total norm
    before clipping, a 0-d Tensor. norm_type is any p > 0 or inf."""
    norm_type = float(norm_type)
    if not norm_type > 0:
        raise ValueError(f"norm_type must be > 0 or inf, got {norm_type}")
    grads = _grads(parameters)
    if not grads:
        return Tensor(0.0)
    xp = xp_of(grads[0].data)
    dtype = grads[0].data.dtype
    # Per-gradient norms in float64, then the norm of those norms; all on the gradients'
    # device (no sync unless error_if_nonfinite asks for the value).
    magnitudes = [xp.abs(g.data.astype(np.float64)).reshape(-1) for g in grads]
    if math.isinf(norm_type):
        total = xp.concatenate([xp.zeros(1)] + magnitudes).max()
    else:
        total = xp.stack([(m ** norm_type).sum() for m in magnitudes]).sum() ** (1.0 / norm_type)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(f"the total norm of order {norm_type} of the gradients is "
                           f"{float(total)}; set error_if_nonfinite=False to clip anyway")
    coef = xp.minimum(float(max_norm) / (total + 1e-6), 1.0).astype(dtype)
    for g in grads:
        _scale_(g, coef)
    return Tensor._wrap(xp.asarray(total, dtype=dtype))  # NumPy reductions give scalars


def clip_grad_value_(parameters, clip_value):
    """Clamps every gradient element into [-clip_value, clip_value], in place."""
    clip_value = float(clip_value)
    if clip_value < 0:
        raise ValueError(f"clip_value must be >= 0, got {clip_value}")
    for g in _grads(parameters):
        clipped = xp_of(g.data).clip(g.data, -clip_value, clip_value)
        if writeable(g.data):
            g.data[...] = clipped
        else:
            g.data = clipped
