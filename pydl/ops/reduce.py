"""Reductions over axes: sum, mean, amax/amin, var, and the running sum (cumsum).

`axes` is None (every axis) or a tuple of non-negative axes; the gradient is
the output gradient broadcast back over the reduced axes.
"""
import math

from pydl.autograd import Function
from pydl.ops.common import xp_of


def _reduced_count(shape, axes):
    return math.prod(shape) if axes is None else math.prod(shape[a] for a in axes)


def _expand_grad(g, shape, axes, keepdim):
    """The output gradient with the reduced axes put back (size 1), ready to broadcast."""
    if keepdim or axes == ():
        return g
    kept = [1 if axes is None or i in axes else n for i, n in enumerate(shape)]
    return g.reshape(kept)


class Sum(Function):
    def forward(self, a):
        self.shape = a.shape
        return a.sum(axis=self.axes, keepdims=self.keepdim)

    def backward(self, g):
        g = _expand_grad(g, self.shape, self.axes, self.keepdim)
        return (xp_of(g).broadcast_to(g, self.shape),)


class Mean(Function):
    def forward(self, a):
        self.shape = a.shape
        return a.mean(axis=self.axes, keepdims=self.keepdim)

    def backward(self, g):
        g = _expand_grad(g, self.shape, self.axes, self.keepdim)
        count = _reduced_count(self.shape, self.axes)
        return (xp_of(g).broadcast_to(g / count, self.shape),)


class _Extreme(Function):
    """amax/amin; the gradient is shared evenly among the elements that tie for the extreme."""

    largest = True

    def forward(self, a):
        out = (a.max if self.largest else a.min)(axis=self.axes, keepdims=True)
        self.save(a, out)
        return out if self.keepdim else out.reshape(
            [n for i, n in enumerate(a.shape) if self.axes is not None and i not in self.axes])

    def backward(self, g):
        a, out = self.saved
        g = _expand_grad(g, a.shape, self.axes, self.keepdim)
        hit = (a == out).astype(g.dtype)
        return (hit * (g / hit.sum(axis=self.axes, keepdims=True)),)


class Amax(_Extreme):
    largest = True


class Amin(_Extreme):
    largest = False


class SqrtOfVariance(Function):
    # std = sqrt(var); d std / d var = 1 / (2 std), taken as 0 where std is 0 (a constant
    # input), as PyTorch's std_backward does, instead of 0 * inf = NaN.
    def forward(self, var):
        xp = xp_of(var)
        out = xp.asarray(xp.sqrt(var))  # a 0-d array, not a NumPy scalar
        self.save(out)
        return out

    def backward(self, g):
        (std,) = self.saved
        xp = xp_of(std)
        safe = xp.where(std == 0, 1, std)
        return (xp.where(std == 0, 0, g / (2 * safe)).astype(std.dtype, copy=False),)


class Var(Function):
    # var = sum (a - mean)^2 / (n - correction);  d var / d a = 2 (a - mean) / (n - correction)
    def forward(self, a):
        centered = a - a.mean(axis=self.axes, keepdims=True)
        self.divisor = max(_reduced_count(a.shape, self.axes) - self.correction, 0)
        self.save(centered)
        return (centered * centered).sum(axis=self.axes, keepdims=self.keepdim) / self.divisor

    def backward(self, g):
        (centered,) = self.saved
        g = _expand_grad(g, centered.shape, self.axes, self.keepdim)
        scale = 2 / self.divisor if self.divisor else math.nan
        return (g * scale * centered,)


class Cumsum(Function):
    # y_i = sum_{j <= i} a_j along axis;  da_j = sum_{i >= j} dy_i (a reversed running sum)
    def forward(self, a):
        return xp_of(a).cumsum(a, axis=self.axis)

    def backward(self, g):
        xp = xp_of(g)
        return (xp.flip(xp.cumsum(xp.flip(g, self.axis), axis=self.axis), self.axis),)
