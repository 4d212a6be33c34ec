"""Post-training int8 quantization: `pydl.quantization.quantize(model, calibration_batches)`.

quantize() returns a copy of the model in which every Linear and Conv2d (groups 1),
and every Keras Dense and Conv2D, runs on the int8 kernels of pydl._C
(csrc/quant.cpp). Other layers stay float32, and so do the int8 layers' inputs and
outputs: each quantizes its input, multiplies in integers and returns float32.

    weights      symmetric, per output channel: w[o] ~ w_scale[o] * qw[o] with qw in
                 [-127, 127] and w_scale[o] = max |w[o]| / 127
    activations  asymmetric, per tensor: x ~ a_scale * (qx - a_zero) with qx in
                 [0, 255], from the least and greatest value the layer's input took
                 over the calibration batches (a min/max observer), the range widened
                 to include 0 so that 0.0 (padding, ReLU zeros) is exact

The int8 layers are for inference on the CPU: they hold no Parameters and record
no gradients. The model passed in is not changed.
"""
import copy

import numpy as np

from pydl import _C
from pydl._device import kernels_for
from pydl.autograd import no_grad
from pydl.keras import layers as keras_layers
from pydl.keras.models import Model
from pydl.nn import functional as F
from pydl.nn.conv import Conv2d
from pydl.nn.linear import Linear
from pydl.nn.module import Module
from pydl.tensor import Tensor, _as_tensor


class MinMaxObserver:
    """The range of every value seen, as an asymmetric uint8 scale and zero point."""

    def __init__(self):
        self.low, self.high = np.inf, -np.inf

    def observe(self, array):
        finite = array[np.isfinite(array)]
        if finite.size:
            self.low = min(self.low, float(finite.min()))
            self.high = max(self.high, float(finite.max()))

    def qparams(self):
        """(a_scale, a_zero): [low, high] (with 0 inside) mapped onto [0, 255]."""
        if self.low > self.high:
            raise ValueError("quantize: a layer saw no finite input during calibration")
        low, high = min(self.low, 0.0), max(self.high, 0.0)
        if high == low:
            return 1.0, 0
        scale = float(np.float32((high - low) / 255))
        return scale, int(np.clip(round(-low / scale), 0, 255))


def quantize_weight(weight):
    """(qw int8, w_scale float32): weight (out, ...) per output channel, symmetric."""
    rows = np.ascontiguousarray(weight, np.float32).reshape(len(weight), -1)
    peak = np.abs(rows).max(axis=1) if rows.size else np.zeros(len(rows), np.float32)
    w_scale = np.where(peak > 0, peak / 127, 1).astype(np.float32)
    qw = np.clip(np.rint(rows / w_scale[:, None]), -127, 127).astype(np.int8)
    return qw, w_scale


class _Int8Weights:
    """A layer's weights as the int8 kernels take them, with its activation qparams."""

    def __init__(self, weight, bias, a_scale, a_zero):
        qw, self.w_scale = quantize_weight(weight)
        self.w_rows, self.colsum = _C.int8_pack_weights(qw)
        self.bias = None if bias is None else np.ascontiguousarray(bias, np.float32)
        self.a_scale, self.a_zero = float(a_scale), int(a_zero)

    def arguments(self):
        return (self.w_rows, self.w_scale, self.colsum, self.bias)


def _host_float32(input, layer):
    x = _as_tensor(input).data
    if not isinstance(x, np.ndarray):
        raise NotImplementedError(f"{layer}: the int8 kernels run on the CPU; move the input "
                                  "there with .cpu()")
    return np.ascontiguousarray(x, np.float32)


class QuantizedLinear(Module):
    """y = x W^T + b on int8 weights and activations (see the module docstring)."""

    def __init__(self, weight, bias, a_scale, a_zero):
        super().__init__()
        self.out_features, self.in_features = np.shape(weight)
        self.int8 = _Int8Weights(weight, bias, a_scale, a_zero)

    def forward(self, input):
        x = _host_float32(input, "QuantizedLinear")
        if x.shape[-1:] != (self.in_features,):
            raise ValueError(f"QuantizedLinear: input of shape {x.shape} does not fit "
                             f"in_features={self.in_features}")
        rows = x.reshape(-1, self.in_features)
        y = kernels_for(rows).int8_linear(rows, *self.int8.arguments(),
                                          a_scale=self.int8.a_scale, a_zero=self.int8.a_zero)
        return Tensor._wrap(y.reshape(x.shape[:-1] + (self.out_features,)))

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"a_scale={self.int8.a_scale:.4g}, a_zero={self.int8.a_zero}")


class QuantizedConv2d(Module):
    """conv2d(x, W) + b on int8 weights and activations, weight (C_out, C_in, KH, KW)."""

    def __init__(self, weight, bias, a_scale, a_zero, stride=(1, 1), padding=(0, 0),
                 dilation=(1, 1)):
        super().__init__()
        self.out_channels, self.in_channels, *kernel = np.shape(weight)
        self.kernel_size = tuple(kernel)
        self.stride, self.dilation = F._pair(stride, "stride"), F._pair(dilation, "dilation")
        self.padding = padding
        self.int8 = _Int8Weights(weight, bias, a_scale, a_zero)

    def conv(self, input, padding):
        """The int8 convolution of input (N, C_in, H, W) with a padding pair."""
        x = _host_float32(input, "QuantizedConv2d")
        y = kernels_for(x).int8_conv2d(x, *self.int8.arguments(), kernel_size=self.kernel_size,
                                       stride=self.stride, padding=padding,
                                       dilation=self.dilation, a_scale=self.int8.a_scale,
                                       a_zero=self.int8.a_zero)
        return Tensor._wrap(y)

    def forward(self, input):
        padding, crop = F._conv2d_padding(self.padding, self.stride, self.dilation,
                                         self.kernel_size)
        out = self.conv(input, padding)
        return out[:, :, crop[0]:, crop[1]:] if crop != (0, 0) else out

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, a_scale={self.int8.a_scale:.4g}, "
                f"a_zero={self.int8.a_zero}")


# ---- quantize -------------------------------------------------------------------------


def _batches_as_inputs(calibration_batches):
    """Each batch as the model's input: (x, y) pairs (as a DataLoader gives) give x."""
    for batch in calibration_batches:
        yield batch[0] if isinstance(batch, (tuple, list)) else batch


def _calibrate(model, layers, method, calibration_batches):
    """A MinMaxObserver per layer (by id) of the first argument its `method` got while
    `model` ran on every calibration batch."""
    observers = {id(layer): MinMaxObserver() for layer in layers}
    for layer in layers:
        original = getattr(layer, method)

        def observed(input, *args, _original=original, _observer=observers[id(layer)],
                     **kwargs):
            x = _as_tensor(input)
            _observer.observe(x.detach().numpy())
            return _original(x, *args, **kwargs)
        object.__setattr__(layer, method, observed)
    try:
        count = 0
        with no_grad():
            for batch in _batches_as_inputs(calibration_batches):
                model(_as_tensor(batch))
                count += 1
    finally:
        for layer in layers:
            del layer.__dict__[method]
    if count == 0:
        raise ValueError("quantize: calibration_batches gave no batches")
    return observers


def _int8_module(layer, observer):
    a_scale, a_zero = observer.qparams()
    bias = None if layer.bias is None else layer.bias.detach().numpy()
    if isinstance(layer, Linear):
        return QuantizedLinear(layer.weight.detach().numpy(), bias, a_scale, a_zero)
    return QuantizedConv2d(layer.weight.detach().numpy(), bias, a_scale, a_zero, layer.stride,
                           layer.padding, layer.dilation)


def _quantize_module(model, calibration_batches):
    quantized = copy.deepcopy(model).eval()
    layers = [(name, m) for name, m in quantized.named_modules()
              if isinstance(m, Linear) or (isinstance(m, Conv2d) and m.groups == 1)]
    observers = _calibrate(quantized, [m for _, m in layers], "forward", calibration_batches)
    for name, layer in layers:
        replacement = _int8_module(layer, observers[id(layer)])
        if not name:
            return replacement
        *path, child = name.split(".")
        parent = quantized
        for part in path:
            parent = parent._modules[part]
        parent._modules[child] = replacement  # in place: Sequential runs them in order
    return quantized


def _quantize_keras(model, calibration_batches):
    quantized = copy.deepcopy(model)
    targets = [layer for layer in quantized.layers
               if isinstance(layer, keras_layers.Dense)
               or (isinstance(layer, keras_layers.Conv2D) and layer.groups == 1)]
    observers = _calibrate(quantized, targets, "call", calibration_batches)
    for layer in targets:
        a_scale, a_zero = observers[id(layer)].qparams()
        bias = None if layer.bias is None else layer.bias.detach().numpy()
        if isinstance(layer, keras_layers.Dense):
            int8 = QuantizedLinear(layer.kernel.detach().numpy().T, bias, a_scale, a_zero)
            call = (lambda inputs, training=False, _int8=int8: _int8(inputs))
        else:
            weight = layer.kernel.detach().numpy().transpose(3, 2, 0, 1)  # HWIO -> OIHW
            int8 = QuantizedConv2d(weight, bias, a_scale, a_zero, layer.strides,
                                   dilation=layer.dilation_rate)

            def call(inputs, training=False, _int8=int8, _layer=layer):
                x, padding = _layer.nchw_input(inputs)
                return _layer._from_nchw(_int8.conv(x, padding))
        object.__setattr__(layer, "call", call)
    return quantized


def quantize(model, calibration_batches):
    """A copy of `model` (a pydl.nn.Module or a pydl.keras model) with int8 Linear and
    Conv2d layers (Keras Dense and Conv2D), calibrated on `calibration_batches` (an
    iterable of input tensors or arrays, or of (input, target) pairs)."""
    if isinstance(model, Model):
        return _quantize_keras(model, calibration_batches)
    if not isinstance(model, Module):
        raise TypeError(f"quantize: expected a pydl.nn.Module or a pydl.keras model, got "
                        f"{type(model).__name__}")
    return _quantize_module(model, calibration_batches)
