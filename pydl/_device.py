"""Devices and the one place that maps a device to its array module and kernels.

A tensor's storage is a NumPy ndarray on "cpu" and a CuPy ndarray on "cuda".
Everything device-specific (which array module, which kernel module, moving
data) is looked up here, so the CUDA path plugs in without touching the ops.
"""
import contextlib

import numpy as np

from pydl import _kernels


class Device:
    """A device: type "cpu" or "cuda", with an index for "cuda".

    >>> pydl.Device("cuda", 0), pydl.Device("cpu").type
    (device(type='cuda', index=0), 'cpu')
    """

    __slots__ = ("type", "index")

    def __init__(self, type, index=None):
        self.type = type
        self.index = index

    def __eq__(self, other):
        if isinstance(other, str):
            other = device(other)
        return (isinstance(other, Device) and self.type == other.type
                and (self.index or 0) == (other.index or 0))

    def __hash__(self):
        return hash((self.type, self.index or 0))

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self):
        index = "" if self.index is None else f", index={self.index}"
        return f"device(type='{self.type}'{index})"


CPU = Device("cpu")


def device(spec):
    """Parses "cpu", "cuda", "cuda:N" or a Device into a Device.

    >>> pydl.device("cuda:1")
    device(type='cuda', index=1)
    >>> pydl.zeros(2).device == pydl.device("cpu")
    True
    """
    if isinstance(spec, Device):
        return spec
    if spec is None:
        return CPU
    if not isinstance(spec, str):
        raise TypeError(f"device must be a string like 'cpu' or 'cuda:0' or a pydl.device, "
                        f"got {type(spec).__name__}")
    kind, _, index = spec.partition(":")
    if kind == "cpu" and not index:
        return CPU
    if kind == "cuda":
        if not index:
            return Device("cuda", 0)
        if index.isdigit():
            return Device("cuda", int(index))
    raise ValueError(f"unknown device '{spec}'; expected 'cpu', 'cuda' or 'cuda:N'")


_cuda_probe = None


def cuda_is_available():
    """True only if the pydl._cuda kernels and CuPy import and a GPU is present."""
    global _cuda_probe
    if _cuda_probe is None:
        try:
            from pydl import _cuda  # noqa: F401
            import cupy
            _cuda_probe = cupy.cuda.runtime.getDeviceCount() > 0
        except Exception:  # any failure (missing module, driver, no device) means "no"
            _cuda_probe = False
    return _cuda_probe


def require_available(dev):
    if dev.type == "cuda" and not cuda_is_available():
        raise RuntimeError(
            f"device '{dev}' requested but CUDA is not available (pydl.cuda.is_available() is "
            "False: pydl._cuda, CuPy or a GPU is missing); use device='cpu'")
    return dev


def array_module(dev):
    """numpy for "cpu", cupy for "cuda"."""
    if dev.type == "cpu":
        return np
    require_available(dev)
    import cupy
    return cupy


def is_device_array(data):
    """True for a GPU array (CuPy's, or anything with __cuda_array_interface__)."""
    return not isinstance(data, np.ndarray) and hasattr(data, "__cuda_array_interface__")


def device_of(array):
    if isinstance(array, np.ndarray):
        return CPU
    return Device("cuda", array.device.id)


def on(dev):
    """A context in which CuPy allocates on `dev` (does nothing for the CPU)."""
    if dev.type == "cpu":
        return contextlib.nullcontext()
    import cupy
    return cupy.cuda.Device(dev.index)


def to_device(array, dev):
    """Copies `array` to `dev` (returns it unchanged when it is already there)."""
    if device_of(array) == dev:
        return array
    import cupy
    if dev.type == "cpu":
        return cupy.asnumpy(array)
    require_available(dev)
    with on(dev):
        return cupy.asarray(array)


def kernels_for(array):
    """The kernel set (pydl._kernels.KernelSet) that works on `array`'s device."""
    if isinstance(array, np.ndarray):
        return _kernels.cpu
    return _kernels.cuda()
