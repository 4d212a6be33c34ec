"""pydl.backends.cuda: settings of the CUDA kernels.

``pydl.backends.cuda.matmul.allow_tf32 = True`` lets float32 matrix products
on the GPU run on the tensor cores with their operands rounded to TF32 (10
mantissa bits, float32 accumulation; sm_80 and newer): several times faster,
with about 1e-3 relative error per product instead of 1e-7. False by default,
as in PyTorch.
"""


class _MatmulSettings:
    __slots__ = ("_allow_tf32",)

    def __init__(self):
        self._allow_tf32 = False

    @property
    def allow_tf32(self):
        return self._allow_tf32

    @allow_tf32.setter
    def allow_tf32(self, value):
        if not isinstance(value, bool):
            raise TypeError(f"pydl.backends.cuda.matmul.allow_tf32 must be a bool, "
                            f"got {type(value).__name__}")
        self._allow_tf32 = value

    def __repr__(self):
        return f"matmul(allow_tf32={self._allow_tf32})"


matmul = _MatmulSettings()
