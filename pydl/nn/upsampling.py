"""Upsample: nearest-neighbour resizing of (N, C, L) or (N, C, H, W) input."""
from pydl.nn import functional as F
from pydl.nn.module import Module


class Upsample(Module):
    """F.interpolate as a layer: to `size` or by `scale_factor`, mode='nearest'.

    >>> nn.Upsample(scale_factor=2)(pydl.ones(1, 3, 4, 4)).shape
    (1, 3, 8, 8)
    """

    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None):
        super().__init__()
        if mode != "nearest":
            raise NotImplementedError(f"Upsample: mode {mode!r} is not supported; pydl has "
                                      "mode='nearest'")
        if (size is None) == (scale_factor is None):
            raise ValueError("Upsample: pass exactly one of size and scale_factor")
        self.size, self.scale_factor, self.mode = size, scale_factor, mode
        self.align_corners = align_corners

    def forward(self, input):
        return F.interpolate(input, self.size, self.scale_factor, self.mode)

    def extra_repr(self):
        if self.size is not None:
            return f"size={self.size}, mode={self.mode!r}"
        return f"scale_factor={self.scale_factor}, mode={self.mode!r}"
