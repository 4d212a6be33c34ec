"""Batch normalization with statistics over every rank's batch (SyncBatchNorm).

Each rank sends its count n_r, per-channel mean m_r and sum of squared deviations
M2_r; all ranks combine them the same way (Chan et al.), in float64:
  N = sum n_r,  mean = sum n_r m_r / N,  var = (sum M2_r + sum n_r (m_r - mean)^2) / N
Backward needs the batch-wide sums of dy and dy * xhat, one all-reduce:
  dx = gamma invstd (dy - sum(dy) / N - xhat sum(dy xhat) / N)
dgamma and dbeta stay this rank's sums; data parallelism averages them across ranks.
The arithmetic is NumPy's or CuPy's (the array's module), so it runs on either device.
"""
import numpy as np

from pydl.autograd import Function
from pydl.ops.common import xp_of


def _channel_view(a, ndim):
    return a.reshape((1, -1) + (1,) * (ndim - 2))


class SyncBatchNorm(Function):
    """Inputs: x (N, C, ...), then weight and bias (C,) when affine. Settings: group (a
    pydl.distributed ProcessGroup), running_mean and running_var (updated in place, or
    None), momentum, eps."""

    def forward(self, x, weight=None, bias=None):
        xp, ndim, channels = xp_of(x), x.ndim, x.shape[1]
        self.axes = (0,) + tuple(range(2, ndim))
        count = x.size // channels
        mean = x.mean(axis=self.axes, dtype=np.float64)
        m2 = ((x - _channel_view(mean, ndim)) ** 2).sum(axis=self.axes)
        local = xp.concatenate([xp.full(1, float(count)), mean, m2])
        every = xp.empty((self.group.size, local.size), np.float64)
        self.group.allgather(local, every).wait()
        counts, means, m2s = every[:, :1], every[:, 1:channels + 1], every[:, channels + 1:]
        total = float(counts.sum())
        mean = (counts * means).sum(axis=0) / total
        m2 = m2s.sum(axis=0) + (counts * (means - mean) ** 2).sum(axis=0)
        if self.running_mean is not None:
            m = self.momentum
            self.running_mean[...] = (1 - m) * self.running_mean + m * mean
            self.running_var[...] = (1 - m) * self.running_var + m * m2 / max(total - 1, 1)
        invstd = (1 / xp.sqrt(m2 / total + self.eps)).astype(x.dtype)
        xhat = (x - _channel_view(mean.astype(x.dtype), ndim)) * _channel_view(invstd, ndim)
        self.affine, self.total = weight is not None, total
        self.save(xhat, invstd, weight)
        if weight is None:
            return xhat
        return xhat * _channel_view(weight, ndim) + _channel_view(bias, ndim)

    def backward(self, g):
        xhat, invstd, weight = self.saved
        xp, ndim = xp_of(g), g.ndim
        sum_dy, sum_dy_xhat = g.sum(axis=self.axes), (g * xhat).sum(axis=self.axes)
        sums = xp.concatenate([sum_dy, sum_dy_xhat])
        self.group.allreduce(sums).wait()
        channels = sum_dy.size
        scale = invstd if weight is None else invstd * weight
        dx = _channel_view(scale, ndim) * (
            g - _channel_view(sums[:channels] / self.total, ndim)
            - xhat * _channel_view(sums[channels:] / self.total, ndim))
        return (dx.astype(g.dtype, copy=False), sum_dy_xhat, sum_dy) if self.affine else \
            (dx.astype(g.dtype, copy=False),)
