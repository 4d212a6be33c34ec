"""Automatic mixed precision on the CPU: `with pydl.autocast("cpu", dtype="bfloat16"):`.

Inside the block, the float32 GEMMs of matmul, Linear and Conv2d (forward, and the
backward of ops recorded inside it) run with bfloat16 operands and float32
accumulation (pydl._C.gemm_bf16; vdpbf16ps where the CPU has AVX512_BF16). Weights,
gradients and every output stay float32, as with torch.autocast on the CPU: only the
operands of the products are rounded (to nearest, ties to even). Other ops are
unchanged. The setting is per thread, and blocks nest (the innermost one wins).
"""
import functools
import threading

import numpy as np

_state = threading.local()
DTYPES = ("bfloat16",)


def is_autocast_enabled(device_type="cpu"):
    """Whether autocast to bfloat16 is on for `device_type` ("cpu") in this thread."""
    return device_type == "cpu" and getattr(_state, "enabled", False)


def bf16_for(array):
    """Whether an op on `array` runs its products in bfloat16: autocast is on and the
    array is a float32 CPU array."""
    return is_autocast_enabled() and isinstance(array, np.ndarray) and array.dtype == np.float32


class autocast:
    """Context manager (and decorator) that runs float32 CPU GEMMs and convolutions
    with bfloat16 operands. device_type must be "cpu" and dtype "bfloat16" (the
    string, or any object whose name ends in bfloat16, e.g. torch.bfloat16);
    enabled=False turns autocast off inside the block.

    >>> w = pydl.randn(8, 4)
    >>> with pydl.autocast("cpu", dtype="bfloat16"):
    ...     y = pydl.randn(2, 8) @ w          # bfloat16 operands, float32 sums
    >>> y.dtype, y.shape
    (dtype('float32'), (2, 4))
    """

    def __init__(self, device_type="cpu", dtype="bfloat16", enabled=True, cache_enabled=None):
        if device_type != "cpu":
            raise ValueError(f"autocast: only device_type 'cpu' is supported, got "
                             f"{device_type!r}")
        name = str(dtype).rsplit(".", 1)[-1]
        if name not in DTYPES:
            raise ValueError(f"autocast: dtype must be 'bfloat16' on the CPU, got {dtype!r}")
        self.device_type, self.dtype, self.enabled = device_type, name, bool(enabled)

    def __enter__(self):
        self._previous = getattr(_state, "enabled", False)
        _state.enabled = self.enabled
        return self

    def __exit__(self, *exc):
        _state.enabled = self._previous
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            with autocast(self.device_type, self.dtype, self.enabled):
                return fn(*args, **kwargs)
        return wrapped
