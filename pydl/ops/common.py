"""Helpers shared by the op modules."""
import contextlib
import sys

import numpy as np

from pydl._device import device_of
from pydl._kernels import DEBUG


def xp_of(array):
    """The array module (numpy or cupy) that `array` belongs to."""
    if isinstance(array, np.ndarray):
        return np
    import cupy
    return cupy


def require_host(array, op):
    """TypeError unless `array` is on the CPU: for the float64 forms written in NumPy
    (conv, pooling, recurrent layers), which the GPU runs in float32 only."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{op}: {array.dtype} input on {device_of(array)} is not supported (the "
                        f"{device_of(array).type} kernels take float32); convert with .float() "
                        "or move it with .cpu()")


def writeable(array):
    """Whether `array` may be written in place (device arrays always may: CuPy's flags
    have no `writeable`)."""
    return array.flags.writeable if isinstance(array, np.ndarray) else True


class CopyCount:
    """The layout copies made while counting_copies() was active: how many, the bytes
    written, and (shape, dtype, the function asking) of each."""

    def __init__(self):
        self.count, self.bytes, self.copies = 0, 0, []

    def __repr__(self):
        return f"<CopyCount {self.count} copies, {self.bytes} bytes>"


_active_counts = []


@contextlib.contextmanager
def counting_copies():
    """Counts the copies contiguous() makes inside the block (every op makes its layout
    copies there), e.g. to check that a training step copies no weights:

    >>> with counting_copies() as counted:
    ...     _ = contiguous(np.ones((3, 4)).T)
    >>> counted.count, counted.bytes
    (1, 96)
    """
    counted = CopyCount()
    _active_counts.append(counted)
    try:
        yield counted
    finally:
        _active_counts.remove(counted)


def _record_copy(array):
    if not (_active_counts or DEBUG):
        return
    caller = sys._getframe(2).f_code.co_qualname
    for counted in _active_counts:
        counted.count += 1
        counted.bytes += array.nbytes
        counted.copies.append((array.shape, array.dtype, caller))
    if DEBUG:
        print(f"pydl: copy {array.shape} {array.dtype} strides {array.strides} "
              f"{array.nbytes} B in {caller}", file=sys.stderr)


def contiguous(array):
    """A C-contiguous version of `array` (no copy when it already is). Each copy is
    counted by counting_copies() and printed under PYDL_DEBUG=1."""
    if array.flags.c_contiguous:
        return array
    _record_copy(array)
    return xp_of(array).ascontiguousarray(array)


def reshaped(array, shape):
    """array.reshape(shape): a view where the strides allow one, else a copy, which is
    counted as contiguous() counts its copies."""
    out = array.reshape(shape)
    if (_active_counts or DEBUG) and out.size and not xp_of(array).may_share_memory(out, array):
        _record_copy(array)
    return out


def memory_order(array):
    """The axes of `array` from outermost to innermost in memory when its elements fill
    one dense block (C-contiguous, or a transposed/permuted view of such a block), so
    that array.transpose(order) is C-contiguous; None when there are gaps."""
    if array.flags.c_contiguous:
        return tuple(range(array.ndim))
    order = tuple(sorted(range(array.ndim), key=lambda axis: -array.strides[axis]))
    return order if array.transpose(order).flags.c_contiguous else None


def unbroadcast(grad, shape):
    """Sums `grad` over the axes broadcasting added or stretched, back to `shape`."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        extra + i for i, n in enumerate(shape) if n == 1 and grad.shape[extra + i] != 1)
    return grad.sum(axis=axes, keepdims=True).reshape(shape)


def normalize_axes(dim, ndim):
    """dim (None, int or sequence of ints, negatives allowed) as a sorted tuple of axes,
    or None for every axis."""
    if dim is None:
        return None
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    axes = []
    for d in dims:
        if not isinstance(d, (int, np.integer)) or isinstance(d, bool):
            raise TypeError(f"dim must be an int or a tuple of ints, got {dim!r}")
        if not -max(ndim, 1) <= d < max(ndim, 1):
            raise IndexError(f"dim {d} is out of range for a tensor with {ndim} dimensions "
                             f"(expected -{max(ndim, 1)} to {max(ndim, 1) - 1})")
        axes.append(int(d) % max(ndim, 1))
    if len(set(axes)) != len(axes):
        raise ValueError(f"dim {dim!r} names an axis more than once")
    return tuple(sorted(axes)) if ndim else ()


def normalize_axis(dim, ndim):
    """One axis (int, negatives allowed) as a non-negative int."""
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
        raise TypeError(f"dim must be an int, got {dim!r}")
    return normalize_axes(dim, ndim)[0] if ndim else 0
