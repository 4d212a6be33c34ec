"""Conv2d: a 2-D convolution layer with PyTorch's arguments, defaults and init."""
import math

import numpy as np

from pydl import _random
from pydl.nn import functional as F
from pydl.nn.module import Module, Parameter


def uniform_parameter(shape, bound):
    """A float32 Parameter drawn from U(-bound, bound) with pydl's global generator."""
    return Parameter(_random.generator().uniform(-bound, bound, shape).astype(np.float32))


class Conv2d(Module):
    """y = conv2d(x, weight, bias): input (N, in_channels, H, W), weight
    (out_channels, in_channels / groups, KH, KW), bias (out_channels,).

    Init as PyTorch: weight and bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
    fan_in = in_channels / groups * KH * KW (kaiming_uniform with a = sqrt(5))."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros"):
        super().__init__()
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: in_channels {in_channels} and out_channels "
                             f"{out_channels} must be divisible by groups {groups}")
        if padding_mode != "zeros":
            raise NotImplementedError(f"Conv2d: padding_mode {padding_mode!r} is not supported "
                                      "(only 'zeros')")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = F._pair(kernel_size, "kernel_size")
        self.stride, self.dilation = F._pair(stride, "stride"), F._pair(dilation, "dilation")
        self.padding = padding if isinstance(padding, str) else F._pair(padding, "padding")
        self.padding_mode = padding_mode
        fan_in = in_channels // groups * self.kernel_size[0] * self.kernel_size[1]
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0  # no inputs: an empty weight
        self.weight = uniform_parameter((out_channels, in_channels // groups) + self.kernel_size,
                                        bound)
        if bias:
            self.bias = uniform_parameter((out_channels,), bound)
        else:
            self.register_parameter("bias", None)

    def forward(self, input):
        return F.conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)

    def extra_repr(self):
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}")
        if self.padding not in ((0, 0), "valid"):
            text += f", padding={self.padding!r}" if isinstance(self.padding, str) else \
                f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        return text + ("" if self.bias is not None else ", bias=False")
