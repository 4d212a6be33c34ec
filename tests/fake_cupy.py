"""A CuPy look-alike for tests: pydl's device="cuda" path runs on it without a GPU.

`ndarray` wraps a NumPy array (host memory standing in for device memory) and
behaves the way CuPy's does where pydl could go wrong:
- no implicit conversion to NumPy: `__array__` raises TypeError, and there is no
  `__array_interface__` or buffer; `asnumpy(a)` / `a.get()` copy explicitly;
- mixing with a NumPy array in arithmetic, ufuncs or NumPy functions raises
  TypeError (NumPy and Python scalars are fine); so does indexing with a NumPy
  array, stricter than CuPy, so that pydl moves index arrays to the device itself;
- reductions give 0-d arrays, not scalars; `flags` has c_contiguous,
  f_contiguous and owndata only (no writeable).
The kernels of pydl._cuda_emu read its memory through `__cuda_array_interface__`
(see cuda/bindings.cpp), as pydl._cuda reads a CuPy array's. Only what pydl
calls is here; everything else on the module or an array is NumPy's, wrapped.
"""
import types

import numpy as np

_IMPLICIT = ("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to "
             "construct a NumPy array explicitly.")


def _unwrap(value):
    """NumPy arrays from ndarrays, recursively through lists and tuples; TypeError for a
    NumPy array (host data where device data is expected)."""
    if isinstance(value, ndarray):
        return value._array
    if isinstance(value, np.ndarray):
        raise TypeError(f"Unsupported type {type(value)}: a numpy.ndarray cannot be mixed "
                        "with a cupy.ndarray; call cupy.asarray first")
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v) for v in value)
    return value


def _wrap(value):
    """ndarrays for NumPy results (scalars become 0-d arrays, as CuPy's reductions give)."""
    if isinstance(value, (np.ndarray, np.generic)):
        return ndarray(np.asarray(value))
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def _call(fn, args, kwargs):
    return _wrap(fn(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}))


class _Flags:
    def __init__(self, array):
        self.c_contiguous = array.flags.c_contiguous
        self.f_contiguous = array.flags.f_contiguous
        self.owndata = array.flags.owndata


class _Device:
    id = 0

    def __init__(self, index=0):
        self.id = index

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False

    def use(self):
        pass


class ndarray(np.lib.mixins.NDArrayOperatorsMixin):
    """An array on the fake device: a NumPy array that refuses to be one."""

    __slots__ = ("_array",)

    def __init__(self, array):
        self._array = array

    # -- what CuPy has and NumPy does not, or has differently --

    @property
    def __cuda_array_interface__(self):
        interface = dict(self._array.__array_interface__)
        interface["version"] = 3
        interface["stream"] = None
        return interface

    @property
    def device(self):
        return _Device()

    @property
    def flags(self):
        return _Flags(self._array)

    def get(self):
        return self._array.copy()

    def __array__(self, dtype=None, copy=None):
        raise TypeError(_IMPLICIT)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return _call(getattr(ufunc, method), inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return _call(func, args, kwargs)

    # -- the rest is NumPy's, on the wrapped array --

    def __getattr__(self, name):
        if name.startswith("__"):  # no __array_interface__, __array_struct__, ...
            raise AttributeError(name)
        attribute = getattr(self._array, name)
        if callable(attribute):
            return lambda *args, **kwargs: _call(attribute, args, kwargs)
        return _wrap(attribute)

    def __getitem__(self, index):
        return _wrap(self._array[_unwrap(index)])

    def __setitem__(self, index, value):
        self._array[_unwrap(index)] = _unwrap(value)

    def __len__(self):
        return len(self._array)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __bool__(self):
        return bool(self._array)

    def __float__(self):
        return float(self._array)

    def __int__(self):
        return int(self._array)

    def __index__(self):
        return self._array.__index__()

    def __repr__(self):
        return repr(self._array).replace("array(", "fake_cupy.array(", 1)

    # Attributes read often enough to spell out (and .T must wrap).
    shape = property(lambda self: self._array.shape)
    ndim = property(lambda self: self._array.ndim)
    dtype = property(lambda self: self._array.dtype)
    size = property(lambda self: self._array.size)
    nbytes = property(lambda self: self._array.nbytes)
    strides = property(lambda self: self._array.strides)
    T = property(lambda self: ndarray(self._array.T))


class _Ufunc:
    """A NumPy ufunc on ndarrays (call, at, reduce, ...)."""

    def __init__(self, ufunc):
        self._ufunc = ufunc

    def __call__(self, *args, **kwargs):
        return _call(self._ufunc, args, kwargs)

    def __getattr__(self, name):
        method = getattr(self._ufunc, name)
        return (lambda *args, **kwargs: _call(method, args, kwargs)) if callable(method) \
            else method


# ---- module functions ------------------------------------------------------------

def asarray(a, dtype=None, order=None):
    """Host data (NumPy arrays, lists, scalars) copied to the device; ndarrays kept."""
    if isinstance(a, ndarray):
        return a if dtype is None or a.dtype == dtype else a.astype(dtype)
    return ndarray(np.array(a, dtype=dtype, order=order or "K"))


def array(a, dtype=None, copy=True, order="K"):
    if isinstance(a, ndarray):
        return ndarray(np.array(a._array, dtype=dtype, copy=copy, order=order))
    return ndarray(np.array(a, dtype=dtype, order=order))


def asnumpy(a):
    return a.get() if isinstance(a, ndarray) else np.asarray(a)


def __getattr__(name):
    attribute = getattr(np, name)
    if isinstance(attribute, np.ufunc):
        return _Ufunc(attribute)
    if callable(attribute) and not isinstance(attribute, type):
        return lambda *args, **kwargs: _call(attribute, args, kwargs)
    return attribute  # dtypes and constants: float32, nan, pi, ...


class _Stream:
    ptr = 0  # the default stream

    def __init__(self, non_blocking=False):
        pass

    def synchronize(self):
        pass  # the emulated kernels have finished when their call returns

    def wait_event(self, event):
        pass


class _Event:
    """An event: it has always happened, since every call has finished when it returns."""
    done = True

    def record(self, stream=None):
        pass

    def synchronize(self):
        pass


cuda = types.SimpleNamespace(
    Device=_Device,
    get_current_stream=lambda: _Stream(),
    Stream=_Stream,
    Event=_Event,
    runtime=types.SimpleNamespace(getDeviceCount=lambda: 1),
)
