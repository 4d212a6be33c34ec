"""Batch normalization and layer normalization.

Both compute xhat = (x - mean) * invstd and y = gamma * xhat + beta.
Batch norm takes the statistics per channel over (N, H, W) (training: the
batch's, updating the running ones in place; evaluation: the running ones);
layer norm per row over the trailing normalized shape. float32 runs the
kernels; float64 uses the NumPy forms below, which give the same math:
  batch statistics:  dx = gamma invstd (dy - mean(dy) - xhat mean(dy xhat))
  fixed statistics:  dx = gamma invstd dy
  dgamma = sum dy xhat,  dbeta = sum dy
"""
import numpy as np

from pydl._device import kernels_for
from pydl.autograd import Function
from pydl.ops.common import contiguous


def _channel_view(a, channels):
    """(C,) -> (1, C, 1, ...) broadcasting against (N, C, d...) of ndim `channels`."""
    return a.reshape((1, -1) + (1,) * (channels - 2))


class BatchNorm(Function):
    """Inputs: x (N, C, ...), then weight and bias (C,) when affine.
    Settings: running_mean, running_var (arrays updated in place, or None), training,
    momentum, eps."""

    def forward(self, x, weight=None, bias=None):
        self.affine = weight is not None
        if x.dtype == np.float32:
            y, mean, invstd = kernels_for(x).batch_norm_forward(
                contiguous(x), weight, bias, self.running_mean, self.running_var,
                self.training, self.momentum, self.eps)
        else:
            y, mean, invstd = self._reference(x, weight, bias)
        self.save(x, mean, invstd, weight)
        return y

    def _reference(self, x, weight, bias):
        axes = (0,) + tuple(range(2, x.ndim))
        if self.training:
            mean = x.mean(axis=axes)
            var = x.var(axis=axes)
            if self.running_mean is not None:
                count = x.size // x.shape[1]
                m = self.momentum
                self.running_mean[...] = (1 - m) * self.running_mean + m * mean
                self.running_var[...] = (1 - m) * self.running_var + m * var * count / (count - 1)
        else:
            mean, var = self.running_mean.copy(), self.running_var
        invstd = 1 / np.sqrt(var + self.eps)
        y = (x - _channel_view(mean, x.ndim)) * _channel_view(invstd, x.ndim)
        if weight is not None:
            y = y * _channel_view(weight, x.ndim) + _channel_view(bias, x.ndim)
        return y, mean, invstd

    def backward(self, g):
        x, mean, invstd, weight = self.saved
        need_x = self.needs_input_grad[0]
        need_affine = self.affine and any(self.needs_input_grad[1:])
        if x.dtype == np.float32:
            dx, dw, db = kernels_for(x).batch_norm_backward(
                contiguous(g), x, mean, invstd, weight, self.training, input_grad=need_x,
                affine_grad=need_affine)
        else:
            axes = (0,) + tuple(range(2, x.ndim))
            xhat = (x - _channel_view(mean, x.ndim)) * _channel_view(invstd, x.ndim)
            dw, db = (g * xhat).sum(axis=axes), g.sum(axis=axes)
            scale = _channel_view(invstd * (weight if weight is not None else 1), x.ndim)
            count = x.size // x.shape[1]
            dx = scale * g
            if self.training:
                dx = scale * (g - _channel_view(db / count, x.ndim)
                              - xhat * _channel_view(dw / count, x.ndim))
        return (dx, dw, db) if self.affine else (dx,)


class LayerNorm(Function):
    """Inputs: x (..., *normalized_shape), then weight and bias (normalized_shape) when
    elementwise_affine. Settings: normalized_ndim, eps."""

    def forward(self, x, weight=None, bias=None):
        self.affine = weight is not None
        size = int(np.prod(x.shape[x.ndim - self.normalized_ndim:]))
        rows = contiguous(x).reshape(-1, size)
        w = None if weight is None else contiguous(weight).reshape(-1)
        b = None if bias is None else contiguous(bias).reshape(-1)
        if x.dtype == np.float32:
            y, mean, rstd = kernels_for(x).layer_norm_forward(rows, w, b, self.eps)
        else:
            mean = rows.mean(axis=1)
            rstd = 1 / np.sqrt(rows.var(axis=1) + self.eps)
            y = (rows - mean[:, None]) * rstd[:, None]
            if w is not None:
                y = y * w + b
        self.save(rows, mean, rstd, w)
        return y.reshape(x.shape)

    def backward(self, g):
        rows, mean, rstd, w = self.saved
        g_rows = contiguous(g).reshape(rows.shape)
        need_x = self.needs_input_grad[0]
        need_affine = self.affine and any(self.needs_input_grad[1:])
        if rows.dtype == np.float32:
            dx, dw, db = kernels_for(rows).layer_norm_backward(
                g_rows, rows, mean, rstd, w, input_grad=need_x, affine_grad=need_affine)
        else:
            xhat = (rows - mean[:, None]) * rstd[:, None]
            dw, db = (g_rows * xhat).sum(axis=0), g_rows.sum(axis=0)
            gx = g_rows * (w if w is not None else 1)
            dx = rstd[:, None] * (gx - gx.mean(axis=1, keepdims=True)
                                  - xhat * (gx * xhat).mean(axis=1, keepdims=True))
        dx = None if dx is None else dx.reshape(g.shape)
        if not self.affine:
            return (dx,)
        shape = g.shape[g.ndim - self.normalized_ndim:]
        return (dx, None if dw is None else dw.reshape(shape),
                None if db is None else db.reshape(shape))
