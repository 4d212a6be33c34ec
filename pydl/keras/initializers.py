"""Weight initializers by their Keras names: each maps a shape to a float32 array drawn
from pydl's global generator (so pydl.manual_seed makes them reproducible).

Fans follow Keras: a kernel (in, out) has fan_in = in, fan_out = out; a convolution
kernel (kh, kw, in, out) multiplies both by the receptive field kh * kw.
"""
import numpy as np

from pydl._random import generator


def _fans(shape):
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


def zeros(shape):
    return np.zeros(shape, np.float32)


def ones(shape):
    return np.ones(shape, np.float32)


def random_uniform(shape, minval=-0.05, maxval=0.05):
    return generator().uniform(minval, maxval, shape).astype(np.float32)


def random_normal(shape, stddev=0.05):
    return (generator().standard_normal(shape) * stddev).astype(np.float32)


def _truncated_normal(shape, stddev):
    """Normal samples redrawn until all lie within two standard deviations."""
    values = generator().standard_normal(shape)
    outside = np.abs(values) > 2
    while outside.any():
        values[outside] = generator().standard_normal(int(outside.sum()))
        outside = np.abs(values) > 2
    return (values * stddev).astype(np.float32)


def glorot_uniform(shape):
    """U(-l, l), l = sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(shape)
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return generator().uniform(-limit, limit, shape).astype(np.float32)


def glorot_normal(shape):
    """Truncated normal with stddev sqrt(2 / (fan_in + fan_out)) / 0.8796 (the std of a
    unit normal truncated at 2 sigma), as Keras."""
    fan_in, fan_out = _fans(shape)
    return _truncated_normal(shape, np.sqrt(2.0 / (fan_in + fan_out)) / 0.87962566103423978)


def he_uniform(shape):
    fan_in, _ = _fans(shape)
    limit = np.sqrt(6.0 / fan_in)
    return generator().uniform(-limit, limit, shape).astype(np.float32)


def he_normal(shape):
    fan_in, _ = _fans(shape)
    return _truncated_normal(shape, np.sqrt(2.0 / fan_in) / 0.87962566103423978)


def orthogonal(shape):
    """A (rows, cols) matrix with orthonormal rows or columns: Q of the QR of a normal
    matrix, signs fixed by R's diagonal so the distribution is uniform."""
    rows, cols = int(np.prod(shape[:-1])), shape[-1]
    flat = generator().standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(flat)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return q.reshape(shape).astype(np.float32)


_BY_NAME = {"zeros": zeros, "ones": ones, "random_uniform": random_uniform,
            "uniform": random_uniform, "random_normal": random_normal, "normal": random_normal,
            "glorot_uniform": glorot_uniform, "glorot_normal": glorot_normal,
            "he_uniform": he_uniform, "he_normal": he_normal, "orthogonal": orthogonal}


def get(identifier):
    """An initializer from a name or a callable shape -> array."""
    if isinstance(identifier, str):
        if identifier not in _BY_NAME:
            raise ValueError(f"Unknown initializer {identifier!r}; expected one of "
                             f"{sorted(_BY_NAME)} or a callable")
        return _BY_NAME[identifier]
    if callable(identifier):
        return identifier
    raise TypeError(f"initializer must be a name or a callable, got {type(identifier).__name__}")


__all__ = ["get", *sorted(_BY_NAME)]
