"""Keras's 1-D convolution and pooling, transposed convolution, upsampling and zero
padding, on pydl's 2-D convolution and pooling kernels.

A 1-D layer sees its (N, steps, C) input (channels_last) as an NCHW image one row
high, (N, C, 1, steps), so it runs through the same kernels as Conv2D and
MaxPooling2D. Conv2DTranspose runs on the convolution kernels through
pydl.ops.conv.ConvTranspose2d.
"""
from pydl._C import conv_transpose_output_size
from pydl.keras.layers import (Layer, _ActivationConfig, _AveragePool, _MaxPool, _Regularized,
                               _Spatial2D, _check_data_format, _check_padding, _convolve,
                               _pad_nchw, _pair, _same_padding, _window_output)
from pydl.nn import functional as F
from pydl.ops.conv import ConvTranspose2d


def _positive_int(value, name):
    value = value[0] if isinstance(value, (tuple, list)) and len(value) == 1 else value
    if not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


class _Steps1D(Layer):
    """Shared by the 1-D layers: (N, steps, C) or (N, C, steps) <-> (N, C, 1, steps)."""

    def _init_steps(self, data_format):
        self.data_format = _check_data_format(data_format, type(self).__name__)

    def _steps_axis(self):
        return 1 if self.data_format == "channels_last" else 2

    def _check_rank(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{self.name}: expected a 3-D input (batch, steps, channels) "
                             f"for data_format={self.data_format}, got shape {input_shape}")

    def _to_image(self, x):
        x = x.permute(0, 2, 1) if self.data_format == "channels_last" else x
        return x.unsqueeze(2)

    def _from_image(self, x):
        x = x.reshape(x.shape[0], x.shape[1], x.shape[3])
        return x.permute(0, 2, 1) if self.data_format == "channels_last" else x

    def _output_shape(self, input_shape, channels, steps):
        if self.data_format == "channels_last":
            return (input_shape[0], steps, channels)
        return (input_shape[0], channels, steps)

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}


class Conv1D(_Steps1D, _ActivationConfig, _Regularized):
    """1-D convolution over the steps of (N, steps, channels) input: kernel
    (kernel_size, in / groups, filters), stored as `weight` (filters, in / groups,
    kernel_size), the convolution kernel's layout. padding 'valid', 'same', or 'causal' (all
    kernel_size - 1 dilated steps of zeros before the first, so output t sees inputs
    up to t only).

    >>> import numpy as np
    >>> from pydl.keras import layers
    >>> layers.Conv1D(8, 3, padding="causal")(np.ones((2, 10, 4))).shape
    (2, 10, 8)
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(activation=activation, **kwargs)
        self.filters = _positive_int(filters, "Conv1D: filters")
        self.kernel_size = _positive_int(kernel_size, "Conv1D: kernel_size")
        self.strides = _positive_int(strides, "Conv1D: strides")
        self.dilation_rate = _positive_int(dilation_rate, "Conv1D: dilation_rate")
        padding = padding.lower() if isinstance(padding, str) else padding
        self.padding = padding if padding == "causal" else _check_padding(padding, "Conv1D")
        if not isinstance(groups, int) or groups <= 0 or self.filters % groups:
            raise ValueError(f"Conv1D: groups must be a positive integer dividing filters "
                             f"({self.filters}), got {groups!r}")
        self.groups, self.use_bias = groups, bool(use_bias)
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        self._init_steps(data_format)
        self._init_regularizers(kernel_regularizer=kernel_regularizer,
                                bias_regularizer=bias_regularizer)

    def build(self, input_shape):
        self._check_rank(input_shape)
        channels = input_shape[-1 if self.data_format == "channels_last" else 1]
        if channels is None or channels % self.groups:
            raise ValueError(f"{self.name}: the channel axis must be known and divisible by "
                             f"groups={self.groups}, got input shape {input_shape}")
        self.weight = self.add_weight((self.kernel_size, channels // self.groups, self.filters),
                                      self.kernel_initializer, name="kernel",
                                      regularizer=self.kernel_regularizer, stored_axes=(2, 1, 0))
        self.bias = (self.add_weight((self.filters,), self.bias_initializer, name="bias",
                                     regularizer=self.bias_regularizer)
                     if self.use_bias else None)

    @property
    def kernel(self):
        """The kernel in Keras's layout (kernel_size, in / groups, filters): a view of
        `weight`."""
        return self.weight.keras_view()

    def _pads(self, steps):
        if self.padding == "causal":
            return (self.kernel_size - 1) * self.dilation_rate, 0
        if self.padding == "same":
            return _same_padding(steps, self.kernel_size, self.strides, self.dilation_rate)
        return 0, 0

    def compute_output_shape(self, input_shape):
        steps = input_shape[self._steps_axis()]
        if steps is not None:
            before, after = self._pads(steps)
            steps = _window_output(steps + before + after, self.kernel_size, self.strides,
                                   "valid", self.dilation_rate)
        return self._output_shape(input_shape, self.filters, steps)

    def call(self, inputs, training=False):
        x = self._to_image(inputs)
        weight = self.weight.unsqueeze(2)  # (out, in, k) -> (out, in, 1, k), a view
        out = _convolve(x, weight, self.bias, (1, self.strides), ((0, 0), self._pads(x.shape[3])),
                        (1, self.dilation_rate), self.groups)
        return self._from_image(out)

    def get_config(self):
        return {**super().get_config(), **self._activation_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "strides": self.strides,
                "padding": self.padding, "dilation_rate": self.dilation_rate,
                "groups": self.groups, "use_bias": self.use_bias, **self._regularizer_config()}


class _Pooling1D(_Steps1D):
    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None,
                 **kwargs):
        super().__init__(**kwargs)
        name = type(self).__name__
        self.pool_size = _positive_int(pool_size, f"{name}: pool_size")
        stride = self.pool_size if strides is None else _positive_int(strides,
                                                                       f"{name}: strides")
        self.kernel_size, self.strides = (1, self.pool_size), (1, stride)
        self.padding = _check_padding(padding, name)
        self._init_steps(data_format)

    def build(self, input_shape):
        self._check_rank(input_shape)

    def compute_output_shape(self, input_shape):
        steps = _window_output(input_shape[self._steps_axis()], self.pool_size, self.strides[1],
                               self.padding)
        channels = input_shape[-1 if self.data_format == "channels_last" else 1]
        return self._output_shape(input_shape, channels, steps)

    def call(self, inputs, training=False):
        x = self._to_image(inputs)
        pads = ((0, 0), (0, 0))
        if self.padding == "same":
            pads = ((0, 0), _same_padding(x.shape[3], self.pool_size, self.strides[1]))
        return self._from_image(self._pool(F, x, pads))

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size,
                "strides": self.strides[1], "padding": self.padding}


class MaxPooling1D(_MaxPool, _Pooling1D):
    """The maximum over windows of pool_size steps (stride pool_size by default).

    >>> import numpy as np
    >>> from pydl.keras import layers
    >>> layers.MaxPooling1D()(np.arange(8.0).reshape(1, 4, 2)).numpy().tolist()
    [[[2.0, 3.0], [6.0, 7.0]]]
    """


class AveragePooling1D(_AveragePool, _Pooling1D):
    """The mean over windows of pool_size steps; 'same' averages the real steps only.

    >>> import numpy as np
    >>> from pydl.keras import layers
    >>> layers.AveragePooling1D(3, strides=1, padding="same")(np.ones((1, 5, 2))).shape
    (1, 5, 2)
    """


class Conv2DTranspose(_Spatial2D, _ActivationConfig, _Regularized):
    """Transposed 2-D convolution of channels-last images (the adjoint of Conv2D in
    its input, as used to upsample in generators): kernel (kh, kw, filters, in), stored
    as `weight` (in, filters, kh, kw), the layout of the convolution kernels it runs on.
    Output rows without output_padding: rows * stride + max(dilated kernel - stride, 0)
    for 'valid', rows * stride for 'same' (TensorFlow's split of the padding, the extra
    row at the end); with it, (rows - 1) * stride + dilated kernel - 2 * pad +
    output_padding, pad 0 for 'valid' and kernel // 2 for 'same'.

    >>> import numpy as np
    >>> from pydl.keras import layers
    >>> layers.Conv2DTranspose(4, 3, strides=2, padding="same")(np.ones((1, 5, 5, 2))).shape
    (1, 10, 10, 4)
    """

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid",
                 output_padding=None, data_format=None, dilation_rate=(1, 1), activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(activation=activation, **kwargs)
        self.filters = _positive_int(filters, "Conv2DTranspose: filters")
        self._init_spatial(kernel_size, strides, padding, data_format, dilation_rate)
        self.output_padding = None
        if output_padding is not None:
            pair = (output_padding,) * 2 if isinstance(output_padding, int) else \
                tuple(output_padding)
            if len(pair) != 2 or not all(isinstance(p, int) and 0 <= p < s
                                         for p, s in zip(pair, self.strides)):
                raise ValueError(f"Conv2DTranspose: output_padding must be a pair of ints "
                                 f"each below its stride {self.strides}, got "
                                 f"{output_padding!r}")
            self.output_padding = pair
        self.use_bias = bool(use_bias)
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        self._init_regularizers(kernel_regularizer=kernel_regularizer,
                                bias_regularizer=bias_regularizer)

    def build(self, input_shape):
        self._check_rank(input_shape)
        channels = input_shape[self._channel_axis()]
        if channels is None:
            raise ValueError(f"{self.name}: the channel axis must be known, got input shape "
                             f"{input_shape}")
        self.weight = self.add_weight((*self.kernel_size, self.filters, channels),
                                      self.kernel_initializer, name="kernel",
                                      regularizer=self.kernel_regularizer,
                                      stored_axes=(3, 2, 0, 1))
        self.bias = (self.add_weight((self.filters,), self.bias_initializer, name="bias",
                                     regularizer=self.bias_regularizer)
                     if self.use_bias else None)

    @property
    def kernel(self):
        """The kernel in Keras's layout (kh, kw, filters, in): a view of `weight`."""
        return self.weight.keras_view()

    def _size(self, axis, size):
        """(output size, rows the kernel writes beyond it at the start) for one axis."""
        kernel = (self.kernel_size[axis] - 1) * self.dilation_rate[axis] + 1
        stride = self.strides[axis]
        pad = 0 if self.padding == "valid" else kernel // 2
        if self.output_padding is None:
            if self.padding == "same":
                return size * stride, max(kernel - stride, 0) // 2
            return size * stride + max(kernel - stride, 0), 0
        out = conv_transpose_output_size(size, self.kernel_size[axis], stride, pad,
                                         self.dilation_rate[axis], self.output_padding[axis])
        return out, pad

    def compute_output_shape(self, input_shape):
        sizes = [None if input_shape[a] is None else self._size(i, input_shape[a])[0]
                 for i, a in enumerate(self._spatial_axes())]
        if self.data_format == "channels_last":
            return (input_shape[0], *sizes, self.filters)
        return (input_shape[0], self.filters, *sizes)

    def call(self, inputs, training=False):
        x = self._to_nchw(inputs)
        # The full (unpadded) transposed convolution, made long enough by the kernel's
        # output_padding, then cropped to the output window.
        crops, extra = [], []
        for axis in range(2):
            out, before = self._size(axis, x.shape[2 + axis])
            full = conv_transpose_output_size(x.shape[2 + axis], self.kernel_size[axis],
                                              self.strides[axis], 0, self.dilation_rate[axis])
            extra.append(max(out + before - full, 0))
            crops.append(slice(before, before + out))
        inputs_ = (x, self.weight) if self.bias is None else (x, self.weight, self.bias)
        out = ConvTranspose2d.apply(*inputs_, stride=self.strides, padding=(0, 0),
                                    dilation=self.dilation_rate, groups=1,
                                    output_padding=tuple(extra))
        if out.shape[2:] != tuple(c.stop - c.start for c in crops):
            out = out[:, :, crops[0], crops[1]]
        return self._from_nchw(out)

    def get_config(self):
        return {**super().get_config(), **self._activation_config(), "filters": self.filters,
                "kernel_size": list(self.kernel_size), "dilation_rate": list(self.dilation_rate),
                "output_padding": None if self.output_padding is None else
                list(self.output_padding), "use_bias": self.use_bias,
                **self._regularizer_config()}


class UpSampling2D(Layer):
    """Repeats each row size[0] times and each column size[1] times (nearest-neighbour
    upsampling), as one broadcast rather than a loop.

    >>> import numpy as np
    >>> from pydl.keras import layers
    >>> layers.UpSampling2D((2, 3))(np.ones((1, 2, 2, 5))).shape
    (1, 4, 6, 5)
    """

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        self.size = _pair(size, "UpSampling2D: size")
        if interpolation != "nearest":
            raise ValueError(f"UpSampling2D: only interpolation='nearest' is supported, got "
                             f"{interpolation!r}")
        self.data_format = _check_data_format(data_format, "UpSampling2D")

    def _axes(self):
        return (1, 2) if self.data_format == "channels_last" else (2, 3)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"{self.name}: expected a 4-D input, got shape {input_shape}")

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        for axis, factor in zip(self._axes(), self.size):
            shape[axis] = None if shape[axis] is None else shape[axis] * factor
        return tuple(shape)

    def call(self, inputs, training=False):
        rows, cols = self._axes()
        shape = list(inputs.shape)
        # (.., H, W, ..) -> (.., H, 1, W, 1, ..) broadcast to (.., H, sh, W, sw, ..)
        split = shape[:cols + 1] + [1] + shape[cols + 1:]
        split = split[:rows + 1] + [1] + split[rows + 1:]
        grown = list(split)
        grown[rows + 1], grown[cols + 2] = self.size
        out = inputs.reshape(*split).expand(*grown)
        shape[rows] *= self.size[0]
        shape[cols] *= self.size[1]
        return out.reshape(*shape)

    def get_config(self):
        return {**super().get_config(), "size": list(self.size),
                "data_format": self.data_format, "interpolation": "nearest"}


class ZeroPadding2D(Layer):
    """Adds rows and columns of zeros: padding an int (all sides), a pair (rows,
    columns: symmetric), or ((top, bottom), (left, right)).

    >>> import numpy as np
    >>> from pydl.keras import layers
    >>> layers.ZeroPadding2D(((1, 2), (0, 3)))(np.ones((1, 4, 4, 2))).shape
    (1, 7, 7, 2)
    """

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.padding = self._pads(padding)
        self.data_format = _check_data_format(data_format, "ZeroPadding2D")

    @staticmethod
    def _pads(padding):
        if isinstance(padding, int):
            padding = (padding, padding)
        pads = tuple((p, p) if isinstance(p, int) else tuple(p) for p in padding)
        if len(pads) != 2 or not all(len(p) == 2 and all(isinstance(v, int) and v >= 0
                                                         for v in p) for p in pads):
            raise ValueError(f"ZeroPadding2D: padding must be an int, a pair of ints or "
                             f"((top, bottom), (left, right)), got {padding!r}")
        return pads

    def _axes(self):
        return (1, 2) if self.data_format == "channels_last" else (2, 3)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"{self.name}: expected a 4-D input, got shape {input_shape}")

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        for axis, (before, after) in zip(self._axes(), self.padding):
            shape[axis] = None if shape[axis] is None else shape[axis] + before + after
        return tuple(shape)

    def call(self, inputs, training=False):
        return _pad_nchw(inputs, self.padding, 0.0, axes=self._axes())

    def get_config(self):
        return {**super().get_config(), "padding": [list(p) for p in self.padding],
                "data_format": self.data_format}


# Keras's aliases.
Convolution1D = Conv1D
Convolution2DTranspose = Conv2DTranspose
MaxPool1D, AvgPool1D = MaxPooling1D, AveragePooling1D

LAYER_CLASSES = {cls.__name__: cls for cls in (
    Conv1D, MaxPooling1D, AveragePooling1D, Conv2DTranspose, UpSampling2D, ZeroPadding2D)}

__all__ = [*LAYER_CLASSES, "Convolution1D", "Convolution2DTranspose", "MaxPool1D", "AvgPool1D"]
