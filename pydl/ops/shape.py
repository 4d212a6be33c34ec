"""Shape and indexing ops: reshape, permute, expand, indexing, scatter, padding, cat,
stack.

Forward results are NumPy views where NumPy gives one; backward maps the
gradient back to the input's layout.
"""
import numpy as np

from pydl._device import device_of, to_device
from pydl.autograd import Function
from pydl.ops.common import reshaped, unbroadcast, xp_of


class Reshape(Function):
    def forward(self, a):
        self.source_shape = a.shape
        return reshaped(a, self.shape)

    def backward(self, g):
        return (reshaped(g, self.source_shape),)


class Permute(Function):
    def forward(self, a):
        return a.transpose(self.dims)

    def backward(self, g):
        return (g.transpose(tuple(int(d) for d in np.argsort(self.dims))),)


class Expand(Function):
    def forward(self, a):
        self.source_shape = a.shape
        return xp_of(a).broadcast_to(a, self.shape)

    def backward(self, g):
        return (unbroadcast(g, self.source_shape),)


def _is_basic_index(index):
    """True for ints, slices, None and Ellipsis only: each element is picked at most once."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, (int, np.integer, slice))
               for p in parts)


class GetItem(Function):
    """a[index]. Backward scatters into zeros: plain assignment for basic indexing,
    numpy.add.at for array indices, which may pick an element more than once."""

    def forward(self, a):
        self.source_shape, self.dtype = a.shape, a.dtype
        return a[self.index]

    def backward(self, g):
        xp = xp_of(g)
        grad = xp.zeros(self.source_shape, dtype=self.dtype)
        if _is_basic_index(self.index):
            grad[self.index] = g
        else:
            xp.add.at(grad, self.index, g)
        return (grad,)


class Scatter(Function):
    """a with the elements at `index` (a tuple of index arrays, as for a[index]) replaced
    by b (accumulate=False) or increased by b (accumulate=True); b has the index's shape.
    Backward: b's gradient is g[index]; a's is g, zeroed at index unless accumulating."""

    def forward(self, a, b):
        out = a.copy()
        if self.accumulate:
            xp_of(a).add.at(out, self.index, b)
        else:
            out[self.index] = b
        return out

    def backward(self, g):
        need_a, need_b = self.needs_input_grad
        ga = None
        if need_a:
            ga = g
            if not self.accumulate:
                ga = g.copy()
                ga[self.index] = 0
        return ga, g[self.index] if need_b else None


class Pad(Function):
    """a padded with `value`: widths is ((before, after), ...) per axis, all >= 0; the
    gradient is the unpadded block."""

    def forward(self, a):
        return xp_of(a).pad(a, self.widths, constant_values=self.value)

    def backward(self, g):
        return (g[tuple(slice(lo, g.shape[i] - hi) for i, (lo, hi) in enumerate(self.widths))],)


class Cat(Function):
    def forward(self, *arrays):
        self.sizes = [a.shape[self.dim] for a in arrays]
        return xp_of(arrays[0]).concatenate(arrays, axis=self.dim)

    def backward(self, g):
        bounds = [int(b) for b in np.cumsum(self.sizes)[:-1]]
        return tuple(xp_of(g).split(g, bounds, axis=self.dim))


class Stack(Function):
    def forward(self, *arrays):
        return xp_of(arrays[0]).stack(arrays, axis=self.dim)

    def backward(self, g):
        return tuple(xp_of(g).moveaxis(g, self.dim, 0))


class ToDevice(Function):
    """A copy to another device (setting `device`); the gradient copies back."""

    def forward(self, a):
        self.source = device_of(a)
        return to_device(a, self.device)

    def backward(self, g):
        return (to_device(g, self.source),)
