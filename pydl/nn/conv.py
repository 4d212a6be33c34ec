"""Convolution layers (Conv1d, Conv2d, ConvTranspose2d) with PyTorch's arguments,
defaults and init."""
import math

from pydl.nn import functional as F
from pydl.nn.init import uniform_parameter
from pydl.nn.module import Module

def _init_weight_and_bias(module, weight_shape, fan_in, out_channels, bias):
    """PyTorch's default for every convolution: weight and bias from U(-b, b) with
    b = 1/sqrt(fan_in) (zero for a layer with no inputs: its weight is empty)."""
    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
    module.weight = uniform_parameter(weight_shape, bound)
    if bias:
        module.bias = uniform_parameter((out_channels,), bound)
    else:
        module.register_parameter("bias", None)


def _check_channels(layer, in_channels, out_channels, groups, padding_mode):
    if groups < 1 or in_channels % groups or out_channels % groups:
        raise ValueError(f"{layer}: in_channels {in_channels} and out_channels "
                         f"{out_channels} must be divisible by groups {groups}")
    if padding_mode != "zeros":
        raise NotImplementedError(f"{layer}: padding_mode {padding_mode!r} is not supported "
                                  "(only 'zeros')")


class Conv2d(Module):
    """y = conv2d(x, weight, bias): input (N, in_channels, H, W), weight
    (out_channels, in_channels / groups, KH, KW), bias (out_channels,).

    Init as PyTorch: weight and bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
    fan_in = in_channels / groups * KH * KW (kaiming_uniform with a = sqrt(5)).

    >>> conv = nn.Conv2d(3, 8, kernel_size=3, padding=1)
    >>> conv(pydl.randn(2, 3, 16, 16)).shape
    (2, 8, 16, 16)
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros"):
        super().__init__()
        _check_channels("Conv2d", in_channels, out_channels, groups, padding_mode)
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = F._pair(kernel_size, "kernel_size")
        self.stride, self.dilation = F._pair(stride, "stride"), F._pair(dilation, "dilation")
        self.padding = padding if isinstance(padding, str) else F._pair(padding, "padding")
        self.padding_mode = padding_mode
        _init_weight_and_bias(self, (out_channels, in_channels // groups) + self.kernel_size,
                              in_channels // groups * self.kernel_size[0] * self.kernel_size[1],
                              out_channels, bias)

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


class Conv1d(Module):
    """y = conv1d(x, weight, bias) on input (N, in_channels, L) with weight
    (out_channels, in_channels / groups, K): the conv2d kernels on H = 1. Init as
    PyTorch (fan_in = in_channels / groups * K).

    >>> nn.Conv1d(4, 6, kernel_size=3, padding="same")(pydl.randn(2, 4, 10)).shape
    (2, 6, 10)
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros"):
        super().__init__()
        _check_channels("Conv1d", in_channels, out_channels, groups, padding_mode)
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = (F._single(kernel_size, "kernel_size"),)
        self.stride = (F._single(stride, "stride"),)
        self.dilation = (F._single(dilation, "dilation"),)
        self.padding = padding if isinstance(padding, str) else (F._single(padding, "padding"),)
        self.padding_mode = padding_mode
        _init_weight_and_bias(self, (out_channels, in_channels // groups) + self.kernel_size,
                              in_channels // groups * self.kernel_size[0], out_channels, bias)

    def forward(self, input):
        padding = self.padding if isinstance(self.padding, str) else self.padding[0]
        return F.conv1d(input, self.weight, self.bias, self.stride[0], padding,
                        self.dilation[0], self.groups)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding!r}"
                + ("" if self.bias is not None else ", bias=False"))


class ConvTranspose2d(Module):
    """The transposed convolution (F.conv_transpose2d) that GAN generators upsample
    with: input (N, in_channels, H, W), weight (in_channels, out_channels / groups, KH,
    KW), output (N, out_channels, H_out, W_out) with
    H_out = (H - 1) stride - 2 padding + dilation (KH - 1) + output_padding + 1.
    Init as PyTorch: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = out_channels / groups
    * KH * KW (the weight's second axis, as torch counts it).

    >>> up = nn.ConvTranspose2d(8, 4, kernel_size=4, stride=2, padding=1)
    >>> up(pydl.randn(1, 8, 7, 7)).shape
    (1, 4, 14, 14)
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros"):
        super().__init__()
        _check_channels("ConvTranspose2d", in_channels, out_channels, groups, padding_mode)
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = F._pair(kernel_size, "kernel_size")
        self.stride, self.padding = F._pair(stride, "stride"), F._pair(padding, "padding")
        self.output_padding = F._pair(output_padding, "output_padding")
        self.dilation = F._pair(dilation, "dilation")
        self.padding_mode = padding_mode
        _init_weight_and_bias(self, (in_channels, out_channels // groups) + self.kernel_size,
                              out_channels // groups * self.kernel_size[0] * self.kernel_size[1],
                              out_channels, bias)

    def forward(self, input):
        return F.conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding,
                                  self.output_padding, self.groups, self.dilation)

    def extra_repr(self):
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}")
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.output_padding != (0, 0):
            text += f", output_padding={self.output_padding}"
        return text + ("" if self.bias is not None else ", bias=False")
