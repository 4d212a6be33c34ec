"""Helpers shared by the op modules."""
import numpy as np

from pydl._device import device_of


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


def contiguous(array):
    """A C-contiguous version of `array` (no copy when it already is)."""
    return array if array.flags.c_contiguous else xp_of(array).ascontiguousarray(array)


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
