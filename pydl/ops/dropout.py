"""Dropout: y = x * mask / (1 - p), with P(mask = 1) = 1 - p.

The mask of each call comes from the counter-based Philox generator under the
(seed, offset) that pydl._random hands out, so it is reproducible from
pydl.manual_seed and independent of the thread count. float32 runs the fused
kernel; float64 takes the same mask from the kernel and applies it in NumPy.
"""
import numpy as np

from pydl._device import kernels_for
from pydl.autograd import Function
from pydl.ops.common import contiguous


def _scale(p):
    return 0.0 if p == 1 else 1.0 / (1.0 - p)


class Dropout(Function):
    """Settings: p, seed, offset."""

    def forward(self, x):
        kernels = kernels_for(x)
        if x.dtype == np.float32:
            y, mask = kernels.dropout_forward(contiguous(x), self.p, self.seed, self.offset)
        else:
            mask = kernels.dropout_mask(list(x.shape), self.p, self.seed, self.offset)
            y = x * mask * _scale(self.p)
        self.save(mask)
        return y

    def backward(self, g):
        (mask,) = self.saved
        if g.dtype == np.float32:
            return (kernels_for(g).dropout_backward(contiguous(g), mask, self.p),)
        return (g * mask * _scale(self.p),)
