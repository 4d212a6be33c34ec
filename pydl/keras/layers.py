"""Keras layers on pydl's kernels.

A layer takes its configuration in __init__, creates its weights in build(input_shape)
on the first call (input_shape has None for the batch axis), and computes in
call(x, training). The layer's activation is applied after call(), so a model can
stop before a final softmax/sigmoid and hand the logits to a fused loss.

Calling a layer on a KerasTensor (from keras.Input) records a graph node instead of
computing: that is how the functional API builds a Model. Images are channels-last
(N, H, W, C), transposed around pydl's NCHW convolution and pooling kernels.

Weights are stored in the layout their kernel reads (a convolution's kernel as
(out, in, kh, kw), a recurrent layer's as pydl.nn's (gates * units, features)), so a
training step copies none of them; get_weights, set_weights and the saved files show
them in Keras's layout (KerasWeight.keras_axes), and the `kernel` attributes of those
layers are views in Keras's layout.
"""
import collections
import re

import numpy as np

from pydl import nn
from pydl._C import conv_output_size, same_padding
from pydl._random import generator
from pydl.keras import activations, initializers, regularizers
from pydl.nn import functional as F
from pydl.nn.module import Parameter
from pydl.tensor import Tensor, cat, zeros

_name_counts = collections.Counter()


def _unique_name(cls_name):
    base = re.sub(r"(?<!^)(?=[A-Z][a-z])", "_", cls_name).lower()
    base = re.sub(r"(?<=[a-z])(?=\d)", "", base)
    count = _name_counts[base]
    _name_counts[base] += 1
    return base if count == 0 else f"{base}_{count}"


def _pair(value, name):
    return F._pair(value, name, positive=True)


class KerasTensor:
    """A symbolic tensor of the functional API: its shape (None for the batch axis),
    dtype, and the layer call that produces it from `inputs` (None for an Input), with
    the call's keyword settings (e.g. use_causal_mask)."""

    def __init__(self, shape, dtype="float32", layer=None, inputs=(), call_kwargs=None):
        self.shape, self.dtype = tuple(shape), dtype
        self.layer, self.inputs = layer, list(inputs)
        self.call_kwargs = dict(call_kwargs or {})

    def __repr__(self):
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}>"


def _shape_of(x):
    if isinstance(x, (list, tuple)):
        return [_shape_of(v) for v in x]
    return x.shape


class KerasWeight(Parameter):
    """A trainable weight stored in the layout its kernel reads: Keras's array is
    stored.transpose(keras_axes), the stored one keras_array.transpose(argsort(keras_axes)).

    >>> import numpy as np
    >>> w = KerasWeight(np.zeros((4, 3), np.float32), keras_axes=(1, 0))
    >>> w.shape, w.keras_view().shape
    ((4, 3), (3, 4))
    """

    __slots__ = ("keras_axes",)

    def __init__(self, data=None, requires_grad=True, keras_axes=None):
        super().__init__(data, requires_grad)
        self.keras_axes = tuple(keras_axes)

    def to_keras(self, array):
        """The stored layout's `array` (this weight's or its gradient's) in Keras's."""
        return array.transpose(self.keras_axes)

    def from_keras(self, array):
        """Keras's layout's `array` in the stored layout."""
        return array.transpose(np.argsort(self.keras_axes))

    def keras_view(self):
        """The weight in Keras's layout, sharing its memory, with the gradient (when there
        is one) seen the same way: for reading; computations use the stored weight."""
        view = Tensor(self.to_keras(self.data))
        if self.grad is not None:
            view.grad = Tensor(self.to_keras(self.grad.data))
        return view


def _keras_array(weight):
    """A copy of `weight` as get_weights returns it (Keras's layout)."""
    array = weight.detach().numpy()
    if isinstance(weight, KerasWeight):
        return np.ascontiguousarray(weight.to_keras(array))
    return array.copy()


class Layer:
    """Base of every layer: weights via add_weight, the Keras call/build protocol.

    activity_regularizer penalizes the layer's output (after its activation); weight
    regularizers are given to add_weight. `losses` holds the penalties of the latest
    call, which fit() adds to the loss.

    >>> import numpy as np
    >>> from pydl.keras import layers
    >>> class Double(layers.Layer):
    ...     def call(self, inputs, training=False):
    ...         return inputs * 2
    >>> Double()(np.array([[1.0, 2.0]])).numpy().tolist()
    [[2.0, 4.0]]
    """

    integer_input = False  # Embedding takes indices; every other layer casts ints to float

    def __init__(self, activation=None, name=None, trainable=True, input_shape=None,
                 input_dim=None, batch_input_shape=None, dtype=None, activity_regularizer=None,
                 **kwargs):
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected keyword arguments "
                            f"{sorted(kwargs)}")
        self.name = name or _unique_name(type(self).__name__)
        self.trainable = trainable
        self.activation = activations.get(activation)
        self.activity_regularizer = regularizers.get(activity_regularizer)
        self._activity_loss = None
        self.built = False
        self._weights = []  # (Tensor, trainable, name) in creation order
        self._regularized = []  # (regularizer, weight)
        self.batch_input_shape = None
        if batch_input_shape is not None:
            self.batch_input_shape = tuple(batch_input_shape)
        elif input_shape is not None:
            self.batch_input_shape = (None, *tuple(input_shape))
        elif input_dim is not None:
            self.batch_input_shape = (None, input_dim)
        self.output_shape = None

    # ---- weights -------------------------------------------------------------------

    def add_weight(self, shape, initializer="glorot_uniform", trainable=True, name=None,
                   regularizer=None, stored_axes=None):
        """A new weight of Keras shape `shape`, initialized in that shape. stored_axes
        (trainable weights only): keep it as value.transpose(stored_axes), the layout
        its kernel reads, as a KerasWeight."""
        value = initializers.get(initializer)(tuple(shape))
        if stored_axes is not None:
            weight = KerasWeight(np.ascontiguousarray(value.transpose(stored_axes)),
                                 keras_axes=np.argsort(stored_axes))
        else:
            weight = Parameter(value) if trainable else Tensor(value)
        self._weights.append((weight, trainable, f"{self.name}/{name or 'weight'}"))
        regularizer = regularizers.get(regularizer)
        if regularizer is not None:
            self._regularized.append((regularizer, weight))
        return weight

    @property
    def losses(self):
        """The weight penalties (from the current weights) and the activity penalty of
        the latest call, as scalar Tensors."""
        penalties = [regularizer(weight) for regularizer, weight in self._regularized]
        return penalties + ([self._activity_loss] if self._activity_loss is not None else [])

    def _record_activity(self, output):
        """Keeps activity_regularizer(output) / batch size for `losses`."""
        if self.activity_regularizer is not None:
            self._activity_loss = self.activity_regularizer(output) / output.shape[0]

    @property
    def weights(self):
        return [w for w, _, _ in self._weights]

    @property
    def trainable_weights(self):
        return [w for w, t, _ in self._weights if t and self.trainable]

    @property
    def non_trainable_weights(self):
        return [w for w, t, _ in self._weights if not (t and self.trainable)]

    def get_weights(self):
        """Copies of the weights, in Keras's layout (what set_weights takes)."""
        return [_keras_array(w) for w in self.weights]

    def set_weights(self, weights):
        if len(weights) != len(self._weights):
            raise ValueError(f"{self.name}: set_weights got {len(weights)} arrays, the layer "
                             f"has {len(self._weights)} weights")
        for (target, _, name), value in zip(self._weights, weights):
            value = np.asarray(value)
            stored = target.to_keras(target.data) if isinstance(target, KerasWeight) \
                else target.data
            if value.shape != stored.shape:
                raise ValueError(f"{self.name}: weight {name} has shape "
                                 f"{stored.shape}, got an array of shape {value.shape}")
            stored[...] = value.astype(target.dtype)  # a view: writes the stored weight

    def count_params(self):
        return int(sum(w.numel() for w in self.weights))

    # ---- the call protocol -------------------------------------------------------------

    def build(self, input_shape):
        self.built = True

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, inputs, training=False):
        return inputs

    def _ensure_built(self, input_shape):
        if not self.built:
            self.build(input_shape)
            self.built = True
        if self.output_shape is None:
            self.output_shape = self.compute_output_shape(input_shape)

    def _to_tensor(self, x):
        array = x if isinstance(x, Tensor) else Tensor(np.asarray(x))
        if self.integer_input:
            return array if array.dtype.kind in "iu" else array.to("int64")
        if array.dtype != np.float32:  # Keras autocasts inputs to the float32 weights' dtype
            return array.to("float32")
        return array

    def forward_pre_activation(self, inputs, training=False, **call_kwargs):
        """call() on concrete inputs (building the layer first), without the activation."""
        if isinstance(inputs, (list, tuple)):
            inputs = [self._to_tensor(x) for x in inputs]
        else:
            inputs = self._to_tensor(inputs)
        self._ensure_built(_batch_shape(inputs))
        return self.call(inputs, training=training, **call_kwargs)

    def activate(self, pre_activation):
        """The layer's activation of call()'s output, recording the activity penalty."""
        output = self.activation(pre_activation)
        self._record_activity(output)
        return output

    def __call__(self, inputs, training=False, **call_kwargs):
        symbolic = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        if all(isinstance(x, KerasTensor) for x in symbolic):
            self._ensure_built(_shape_of(inputs))
            dtype = "float32" if not self.integer_input else symbolic[0].dtype
            return KerasTensor(self.compute_output_shape(_shape_of(inputs)), dtype, self,
                               symbolic, call_kwargs)
        return self.activate(self.forward_pre_activation(inputs, training, **call_kwargs))

    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable}
        if self.batch_input_shape is not None:
            config["batch_input_shape"] = list(self.batch_input_shape)
        if self.activity_regularizer is not None:
            config["activity_regularizer"] = regularizers.serialize(self.activity_regularizer)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"


def _batch_shape(inputs):
    if isinstance(inputs, list):
        return [(None, *x.shape[1:]) for x in inputs]
    return (None, *inputs.shape[1:])


class _ActivationConfig:
    """get_config entries shared by layers with an `activation=` argument."""

    def _activation_config(self):
        return {"activation": activations.serialize(self.activation)}


class _Regularized:
    """Layers taking kernel_regularizer=, bias_regularizer= (...): keeps them by name
    for add_weight and get_config."""

    def _init_regularizers(self, **regularizers_by_name):
        self.regularizer_names = sorted(regularizers_by_name)
        for name, value in regularizers_by_name.items():
            setattr(self, name, regularizers.get(value))

    def _regularizer_config(self):
        return {name: regularizers.serialize(getattr(self, name))
                for name in self.regularizer_names if getattr(self, name) is not None}


class InputLayer(Layer):
    """The placeholder a functional model starts from (keras.Input makes one)."""

    def __init__(self, shape=None, batch_size=None, dtype="float32", input_shape=None,
                 batch_input_shape=None, name=None, **kwargs):
        if batch_input_shape is None:
            shape = shape if shape is not None else input_shape
            if shape is None:
                raise ValueError("InputLayer needs shape= (the shape of one sample)")
            batch_input_shape = (batch_size, *tuple(shape))
        super().__init__(name=name, batch_input_shape=batch_input_shape, **kwargs)
        self.dtype = dtype or "float32"
        self.integer_input = np.dtype(self.dtype).kind in "iu"
        self.output = KerasTensor(self.batch_input_shape, self.dtype, self)
        self.built = True
        self.output_shape = self.batch_input_shape

    def get_config(self):
        return {**super().get_config(), "dtype": self.dtype}


def Input(shape=None, batch_size=None, dtype="float32", name=None, batch_shape=None):
    """A symbolic input of the given per-sample shape, to call layers on."""
    return InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, name=name,
                      batch_input_shape=batch_shape).output


class Dense(Layer, _ActivationConfig, _Regularized):
    """activation(x @ kernel + bias), kernel (in, units), over the last axis of x.

    >>> import numpy as np
    >>> from pydl.keras import layers
    >>> layers.Dense(3)(np.ones((2, 5))).shape
    (2, 3)
    """

    def __init__(self, units, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(activation=activation, **kwargs)
        if not isinstance(units, int) or units <= 0:
            raise ValueError(f"Dense: units must be a positive integer, got {units!r}")
        self.units, self.use_bias = units, bool(use_bias)
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        self._init_regularizers(kernel_regularizer=kernel_regularizer,
                                bias_regularizer=bias_regularizer)

    def build(self, input_shape):
        if input_shape[-1] is None:
            raise ValueError(f"{self.name}: the last axis of the input must be known, got "
                             f"shape {input_shape}")
        self.kernel = self.add_weight((input_shape[-1], self.units), self.kernel_initializer,
                                      name="kernel", regularizer=self.kernel_regularizer)
        self.bias = (self.add_weight((self.units,), self.bias_initializer, name="bias",
                                     regularizer=self.bias_regularizer)
                     if self.use_bias else None)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def call(self, inputs, training=False):
        features = self.kernel.shape[0]
        if inputs.shape[-1] != features:
            declared = "" if self.batch_input_shape is None else \
                f", declared input_shape={self.batch_input_shape[1:]}"
            raise ValueError(f"Input of layer {self.name!r} (Dense) is incompatible with the "
                             f"layer: expected the last axis to have {features} features "
                             f"(the layer was built for inputs (None, ..., {features}){declared}),"
                             f" got an input of shape {tuple(inputs.shape)}")
        out = inputs.matmul(self.kernel)
        return out + self.bias if self.use_bias else out

    def get_config(self):
        return {**super().get_config(), **self._activation_config(), "units": self.units,
                "use_bias": self.use_bias, **self._regularizer_config()}


class Activation(Layer, _ActivationConfig):
    """Applies an activation function given by its Keras name or as a callable.

    >>> import numpy as np
    >>> from pydl.keras import layers
    >>> layers.Activation("relu")(np.array([[-1.0, 2.0]])).numpy().tolist()
    [[0.0, 2.0]]
    """

    def __init__(self, activation, **kwargs):
        super().__init__(activation=activation, **kwargs)

    def get_config(self):
        return {**super().get_config(), **self._activation_config()}


class Flatten(Layer):
    def compute_output_shape(self, input_shape):
        rest = input_shape[1:]
        size = None if any(d is None for d in rest) else int(np.prod(rest))
        return (input_shape[0], size)

    def call(self, inputs, training=False):
        return inputs.reshape(inputs.shape[0], -1)


class Reshape(Layer):
    """Reshapes each sample to target_shape (one entry may be -1).

    >>> import numpy as np
    >>> from pydl.keras import layers
    >>> layers.Reshape((3, -1))(np.ones((2, 12))).shape
    (2, 3, 4)
    """

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        self.target_shape = tuple(target_shape)

    def compute_output_shape(self, input_shape):
        shape = list(self.target_shape)
        if -1 in shape and all(d is not None for d in input_shape[1:]):
            known = int(np.prod([d for d in shape if d != -1]))
            shape[shape.index(-1)] = int(np.prod(input_shape[1:])) // known
        return (input_shape[0], *[None if d == -1 else d for d in shape])

    def call(self, inputs, training=False):
        return inputs.reshape(inputs.shape[0], *self.target_shape)

    def get_config(self):
        return {**super().get_config(), "target_shape": list(self.target_shape)}


class Permute(Layer):
    """Permutes the non-batch axes: dims (1-based, as in Keras) gives, for each output
    axis, the input axis it comes from.

    >>> import numpy as np
    >>> from pydl.keras import layers
    >>> layers.Permute((2, 1))(np.ones((4, 10, 64))).shape
    (4, 64, 10)
    """

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        self.dims = tuple(int(d) for d in dims)
        if sorted(self.dims) != list(range(1, len(self.dims) + 1)):
            raise ValueError(f"Permute: dims must be a permutation of 1..{len(self.dims)}, "
                             f"got {dims!r}")

    def build(self, input_shape):
        if len(input_shape) != len(self.dims) + 1:
            raise ValueError(f"{self.name}: dims {self.dims} need a {len(self.dims) + 1}-D "
                             f"input, got shape {input_shape}")

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *[input_shape[d] for d in self.dims])

    def call(self, inputs, training=False):
        return inputs.permute(0, *self.dims)

    def get_config(self):
        return {**super().get_config(), "dims": list(self.dims)}


class RepeatVector(Layer):
    """Repeats each input vector n times: (N, features) -> (N, n, features).

    >>> import numpy as np
    >>> from pydl.keras import layers
    >>> layers.RepeatVector(3)(np.ones((2, 5))).shape
    (2, 3, 5)
    """

    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(n, int) or n <= 0:
            raise ValueError(f"RepeatVector: n must be a positive integer, got {n!r}")
        self.n = n

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"{self.name}: expected a 2-D input (batch, features), got shape "
                             f"{input_shape}")

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n, input_shape[1])

    def call(self, inputs, training=False):
        batch, features = inputs.shape
        return inputs.unsqueeze(1).expand(batch, self.n, features)

    def get_config(self):
        return {**super().get_config(), "n": self.n}


class LeakyReLU(Layer):
    """x for x > 0, negative_slope * x otherwise (Keras's default slope 0.3; Keras 2's
    alpha= is accepted too).

    >>> import numpy as np
    >>> from pydl.keras import layers
    >>> layers.LeakyReLU(negative_slope=0.5)(np.array([[-2.0, 3.0]])).numpy().tolist()
    [[-1.0, 3.0]]
    """

    def __init__(self, negative_slope=0.3, alpha=None, **kwargs):
        super().__init__(**kwargs)
        self.negative_slope = float(negative_slope if alpha is None else alpha)

    def call(self, inputs, training=False):
        return F.leaky_relu(inputs, self.negative_slope)

    def get_config(self):
        return {**super().get_config(), "negative_slope": self.negative_slope}


class Dropout(Layer):
    """Zeroes a fraction `rate` of the inputs while training, scaling the rest by
    1 / (1 - rate); the identity at inference."""

    def __init__(self, rate, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= rate < 1:
            raise ValueError(f"Dropout: rate must be in [0, 1), got {rate!r}")
        self.rate = float(rate)

    def call(self, inputs, training=False):
        return F.dropout(inputs, self.rate, training=training)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


def _same_padding(size, kernel, stride, dilation=1):
    """(before, after) padding so that the output has ceil(size / stride) positions;
    an odd total puts the extra row/column after, as Keras (TensorFlow) does."""
    return same_padding(size, kernel, stride, dilation)


def _window_output(size, kernel, stride, padding, dilation=1):
    if size is None:
        return None
    if padding == "same":
        return -(-size // stride)
    return conv_output_size(size, kernel, stride, 0, dilation)


def _pad_nchw(x, pads, value, axes=(2, 3)):
    """x (N, C, H, W) with constant `value` rows/columns added: pads = ((top, bottom),
    (left, right)) along `axes`."""
    for axis, (before, after) in zip(axes, pads):
        parts = []
        for count in (before, after):
            if count:
                shape = list(x.shape)
                shape[axis] = count
                parts.append(Tensor(np.full(shape, value, x.dtype)))
            else:
                parts.append(None)
        if parts[0] is not None or parts[1] is not None:
            x = cat([p for p in (parts[0], x, parts[1]) if p is not None], dim=axis)
    return x


def _check_padding(padding, name):
    padding = padding.lower() if isinstance(padding, str) else padding
    if padding not in ("valid", "same"):
        raise ValueError(f"{name}: padding must be 'valid' or 'same', got {padding!r}")
    return padding


def _check_data_format(data_format, name):
    data_format = data_format or "channels_last"
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(f"{name}: data_format must be 'channels_last' or 'channels_first', "
                         f"got {data_format!r}")
    return data_format


class _Spatial2D(Layer):
    """Shared by Conv2D and the pooling layers: channels-last <-> NCHW and the
    spatial output size."""

    def _init_spatial(self, kernel_size, strides, padding, data_format, dilation_rate=1):
        name = type(self).__name__
        self.kernel_size = _pair(kernel_size, f"{name}: kernel_size")
        self.strides = _pair(strides, f"{name}: strides")
        self.dilation_rate = _pair(dilation_rate, f"{name}: dilation_rate")
        self.padding = _check_padding(padding, name)
        self.data_format = _check_data_format(data_format, name)

    def _spatial_axes(self):
        return (1, 2) if self.data_format == "channels_last" else (2, 3)

    def _channel_axis(self):
        return -1 if self.data_format == "channels_last" else 1

    def _check_rank(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"{self.name}: expected a 4-D input (batch, rows, cols, channels) "
                             f"for data_format={self.data_format}, got shape {input_shape}")

    def _output_spatial(self, input_shape):
        return [_window_output(input_shape[axis], k, s, self.padding, d)
                for axis, k, s, d in zip(self._spatial_axes(), self.kernel_size, self.strides,
                                         self.dilation_rate)]

    def _output_shape(self, input_shape, channels):
        rows, cols = self._output_spatial(input_shape)
        if self.data_format == "channels_last":
            return (input_shape[0], rows, cols, channels)
        return (input_shape[0], channels, rows, cols)

    def _to_nchw(self, x):
        return x.permute(0, 3, 1, 2) if self.data_format == "channels_last" else x

    def _from_nchw(self, x):
        return x.permute(0, 2, 3, 1) if self.data_format == "channels_last" else x

    def _same_pads(self, x_nchw):
        return [_same_padding(x_nchw.shape[axis], k, s, d)
                for axis, k, s, d in zip((2, 3), self.kernel_size, self.strides,
                                         self.dilation_rate)]

    def get_config(self):
        return {**super().get_config(), "strides": list(self.strides), "padding": self.padding,
                "data_format": self.data_format}


def _kernel_padding(x, pads):
    """(x, padding) for conv2d of x (N, C, H, W) padded by pads ((top, bottom), (left,
    right)): the kernel pads when the padding is symmetric, else x gets zero
    rows/columns first."""
    if all(before == after for before, after in pads):
        return x, (pads[0][0], pads[1][0])
    return _pad_nchw(x, pads, 0.0), (0, 0)


def _convolve(x, weight, bias, strides, pads, dilation, groups):
    """conv2d of x (N, C, H, W) padded by pads ((top, bottom), (left, right))."""
    x, padding = _kernel_padding(x, pads)
    return F.conv2d(x, weight, bias, stride=strides, padding=padding,
                                dilation=dilation, groups=groups)


class Conv2D(_Spatial2D, _ActivationConfig, _Regularized):
    """2-D convolution of channels-last images: kernel (kh, kw, in, filters), stored as
    `weight` (filters, in, kh, kw), the convolution kernel's layout.

    >>> import numpy as np
    >>> from pydl.keras import layers
    >>> layers.Conv2D(8, 3, padding="same", kernel_regularizer="l2")(np.ones((1, 6, 6, 2))).shape
    (1, 6, 6, 8)
    """

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(activation=activation, **kwargs)
        self._init_regularizers(kernel_regularizer=kernel_regularizer,
                                bias_regularizer=bias_regularizer)
        if not isinstance(filters, int) or filters <= 0:
            raise ValueError(f"Conv2D: filters must be a positive integer, got {filters!r}")
        self._init_spatial(kernel_size, strides, padding, data_format, dilation_rate)
        if not isinstance(groups, int) or groups <= 0 or filters % groups:
            raise ValueError(f"Conv2D: groups must be a positive integer dividing filters "
                             f"({filters}), got {groups!r}")
        self.filters, self.groups, self.use_bias = filters, groups, bool(use_bias)
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer

    def build(self, input_shape):
        self._check_rank(input_shape)
        channels = input_shape[self._channel_axis()]
        if channels is None or channels % self.groups:
            raise ValueError(f"{self.name}: the channel axis must be known and divisible by "
                             f"groups={self.groups}, got input shape {input_shape}")
        self.weight = self.add_weight((*self.kernel_size, channels // self.groups, self.filters),
                                      self.kernel_initializer, name="kernel",
                                      regularizer=self.kernel_regularizer,
                                      stored_axes=(3, 2, 0, 1))  # HWIO -> OIHW
        self.bias = (self.add_weight((self.filters,), self.bias_initializer, name="bias",
                                     regularizer=self.bias_regularizer)
                     if self.use_bias else None)

    @property
    def kernel(self):
        """The kernel in Keras's layout (kh, kw, in, filters): a view of `weight`."""
        return self.weight.keras_view()

    def compute_output_shape(self, input_shape):
        return self._output_shape(input_shape, self.filters)

    def nchw_input(self, inputs):
        """(x, padding): the input as NCHW, zero-padded here where 'same' needs more on
        one side, and the padding left for the convolution kernel."""
        x = self._to_nchw(inputs)
        return _kernel_padding(x, self._same_pads(x) if self.padding == "same"
                               else ((0, 0), (0, 0)))

    def call(self, inputs, training=False):
        x, padding = self.nchw_input(inputs)
        return self._from_nchw(F.conv2d(
            x, self.weight, self.bias, stride=self.strides, padding=padding,
            dilation=self.dilation_rate, groups=self.groups))

    def get_config(self):
        return {**super().get_config(), **self._activation_config(), "filters": self.filters,
                "kernel_size": list(self.kernel_size), "dilation_rate": list(self.dilation_rate),
                "groups": self.groups, "use_bias": self.use_bias, **self._regularizer_config()}


class _Pooling2D(_Spatial2D):
    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None,
                 **kwargs):
        super().__init__(**kwargs)
        self._init_spatial(pool_size, pool_size if strides is None else strides, padding,
                           data_format)

    @property
    def pool_size(self):
        return self.kernel_size

    def build(self, input_shape):
        self._check_rank(input_shape)

    def compute_output_shape(self, input_shape):
        return self._output_shape(input_shape, input_shape[self._channel_axis()])

    def call(self, inputs, training=False):
        x = self._to_nchw(inputs)
        pads = self._same_pads(x) if self.padding == "same" else ((0, 0), (0, 0))
        return self._from_nchw(self._pool(F, x, pads))

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size)}


class _MaxPool:
    """Max over (kernel_size) windows of NCHW x padded by pads."""

    def _pool(self, F, x, pads):
        x = _pad_nchw(x, pads, -np.inf)  # padding never wins the max
        return F.max_pool2d(x, self.kernel_size, self.strides)


class _AveragePool:
    """Mean over (kernel_size) windows of NCHW x padded by pads."""

    def _pool(self, F, x, pads):
        out = F.avg_pool2d(_pad_nchw(x, pads, 0.0), self.kernel_size, self.strides)
        if pads == ((0, 0), (0, 0)):
            return out
        # 'same' averages over the window's real pixels only: divide the zero-padded
        # sums by the fraction of each window that lies inside the image.
        ones = Tensor(np.ones((1, 1, *x.shape[2:]), x.dtype))
        inside = F.avg_pool2d(_pad_nchw(ones, pads, 0.0), self.kernel_size, self.strides)
        return out / inside


class MaxPooling2D(_MaxPool, _Pooling2D):
    """The maximum over pool_size windows of channels-last images.

    >>> import numpy as np
    >>> from pydl.keras import layers
    >>> layers.MaxPooling2D((2, 2))(np.ones((1, 4, 6, 3))).shape
    (1, 2, 3, 3)
    """


class AveragePooling2D(_AveragePool, _Pooling2D):
    """The mean over pool_size windows; 'same' padding averages the real pixels only.

    >>> import numpy as np
    >>> from pydl.keras import layers
    >>> layers.AveragePooling2D(2, padding="same")(np.ones((1, 5, 5, 2))).shape
    (1, 3, 3, 2)
    """


class _GlobalPooling(Layer):
    """The mean or maximum over every spatial axis of (N, *spatial, C) (channels_last)
    or (N, C, *spatial) input; keepdims keeps those axes with size 1."""

    rank = 2

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = _check_data_format(data_format, type(self).__name__)
        self.keepdims = bool(keepdims)

    def _axes(self):
        first = 1 if self.data_format == "channels_last" else 2
        return tuple(range(first, first + self.rank))

    def build(self, input_shape):
        if len(input_shape) != self.rank + 2:
            raise ValueError(f"{self.name}: expected a {self.rank + 2}-D input, got shape "
                             f"{input_shape}")

    def compute_output_shape(self, input_shape):
        axes = self._axes()
        if self.keepdims:
            return tuple(1 if i in axes else d for i, d in enumerate(input_shape))
        return tuple(d for i, d in enumerate(input_shape) if i not in axes)

    def call(self, inputs, training=False):
        return self._reduce(inputs, self._axes())

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format,
                "keepdims": self.keepdims}


class _GlobalAverage:
    def _reduce(self, x, axes):
        return x.mean(dim=axes, keepdim=self.keepdims)


class _GlobalMax:
    def _reduce(self, x, axes):
        return x.amax(dim=axes, keepdim=self.keepdims)


class GlobalAveragePooling2D(_GlobalAverage, _GlobalPooling):
    """The mean of each channel over the image: (N, H, W, C) -> (N, C).

    >>> import numpy as np
    >>> from pydl.keras import layers
    >>> layers.GlobalAveragePooling2D()(np.ones((2, 4, 4, 3))).shape
    (2, 3)
    """


class GlobalMaxPooling2D(_GlobalMax, _GlobalPooling):
    """The maximum of each channel over the image: (N, H, W, C) -> (N, C).

    >>> import numpy as np
    >>> from pydl.keras import layers
    >>> layers.GlobalMaxPooling2D(keepdims=True)(np.ones((2, 4, 4, 3))).shape
    (2, 1, 1, 3)
    """


class GlobalAveragePooling1D(_GlobalAverage, _GlobalPooling):
    """The mean of each feature over the steps: (N, steps, C) -> (N, C).

    >>> import numpy as np
    >>> from pydl.keras import layers
    >>> layers.GlobalAveragePooling1D()(np.ones((2, 7, 3))).shape
    (2, 3)
    """

    rank = 1


class GlobalMaxPooling1D(_GlobalMax, _GlobalPooling):
    """The maximum of each feature over the steps: (N, steps, C) -> (N, C).

    >>> import numpy as np
    >>> from pydl.keras import layers
    >>> layers.GlobalMaxPooling1D()(np.arange(6.0).reshape(1, 3, 2)).numpy().tolist()
    [[4.0, 5.0]]
    """

    rank = 1


class BatchNormalization(Layer):
    """Normalizes over every axis but `axis` with the batch's statistics while training
    and the moving ones at inference; moving = momentum * moving + (1 - momentum) * batch.
    Weights: gamma, beta (trained), moving_mean, moving_variance (not trained). The
    moving variance uses the unbiased batch variance (as pydl's batch_norm kernel)."""

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True, **kwargs):
        super().__init__(**kwargs)
        self.axis, self.momentum, self.epsilon = axis, float(momentum), float(epsilon)
        self.center, self.scale = bool(center), bool(scale)

    def build(self, input_shape):
        axis = self.axis % len(input_shape)
        if axis == 0 or input_shape[axis] is None:
            raise ValueError(f"{self.name}: axis {self.axis} of input shape {input_shape} must "
                             "be a known, non-batch axis")
        channels = input_shape[axis]
        self.gamma = self.add_weight((channels,), "ones", name="gamma") if self.scale else None
        self.beta = self.add_weight((channels,), "zeros", name="beta") if self.center else None
        self.moving_mean = self.add_weight((channels,), "zeros", trainable=False,
                                           name="moving_mean")
        self.moving_variance = self.add_weight((channels,), "ones", trainable=False,
                                               name="moving_variance")

    def call(self, inputs, training=False):
        axis = self.axis % inputs.ndim
        order = [0, axis] + [d for d in range(1, inputs.ndim) if d != axis]
        x = inputs.permute(*order) if axis != 1 else inputs
        channels = x.shape[1]
        gamma = self.gamma if self.scale else Tensor(np.ones(channels, x.dtype))
        beta = self.beta if self.center else Tensor(np.zeros(channels, x.dtype))
        out = F.batch_norm(x, self.moving_mean, self.moving_variance, gamma, beta,
                           training=training and self.trainable, momentum=1 - self.momentum,
                           eps=self.epsilon)
        if axis == 1:
            return out
        return out.permute(*np.argsort(order).tolist())

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum,
                "epsilon": self.epsilon, "center": self.center, "scale": self.scale}


class LayerNormalization(Layer, _Regularized):
    """Normalizes each sample over `axis` (an int or a list of axes, default the last):
    (x - mean) / sqrt(var + epsilon) * gamma + beta, with gamma and beta shaped like
    those axes. Trailing axes run through pydl's layer_norm kernel; others are moved
    to the end first.

    >>> import numpy as np
    >>> from pydl.keras import layers
    >>> out = layers.LayerNormalization()(np.array([[1.0, 2.0, 3.0]]))
    >>> out.dtype, np.round(out.detach().numpy().astype(float), 3).tolist()
    (dtype('float32'), [[-1.224, 0.0, 1.224]])
    """

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones", beta_regularizer=None,
                 gamma_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.axis = list(axis) if isinstance(axis, (list, tuple)) else int(axis)
        self.epsilon, self.center, self.scale = float(epsilon), bool(center), bool(scale)
        self.beta_initializer, self.gamma_initializer = beta_initializer, gamma_initializer
        self._init_regularizers(beta_regularizer=beta_regularizer,
                                gamma_regularizer=gamma_regularizer)

    def _axes(self, ndim):
        axes = self.axis if isinstance(self.axis, list) else [self.axis]
        axes = sorted({a % ndim for a in axes})
        if 0 in axes:
            raise ValueError(f"{self.name}: cannot normalize over the batch axis (axis "
                             f"{self.axis})")
        return axes

    def build(self, input_shape):
        axes = self._axes(len(input_shape))
        shape = tuple(input_shape[a] for a in axes)
        if None in shape:
            raise ValueError(f"{self.name}: the normalized axes {axes} of input shape "
                             f"{input_shape} must be known")
        self.gamma = self.add_weight(shape, self.gamma_initializer, name="gamma",
                                     regularizer=self.gamma_regularizer) if self.scale else None
        self.beta = self.add_weight(shape, self.beta_initializer, name="beta",
                                    regularizer=self.beta_regularizer) if self.center else None

    def call(self, inputs, training=False):
        axes = self._axes(inputs.ndim)
        rest = [d for d in range(inputs.ndim) if d not in axes]
        order = rest + axes
        x = inputs if order == list(range(inputs.ndim)) else inputs.permute(*order)
        shape = tuple(inputs.shape[a] for a in axes)
        gamma = self.gamma if self.scale else Tensor(np.ones(shape, x.dtype))
        beta = self.beta if self.center else Tensor(np.zeros(shape, x.dtype))
        out = F.layer_norm(x, shape, gamma, beta, eps=self.epsilon)
        if x is inputs:
            return out
        return out.permute(*np.argsort(order).tolist())

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale, **self._regularizer_config()}


class Embedding(Layer, _Regularized):
    """Rows of an (input_dim, output_dim) table for integer indices.

    >>> import numpy as np
    >>> from pydl.keras import layers
    >>> layers.Embedding(100, 4)(np.array([[3, 7, 7]])).shape
    (1, 3, 4)
    """

    integer_input = True

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform",
                 input_length=None, embeddings_regularizer=None, **kwargs):
        if input_length is not None and "input_shape" not in kwargs:
            kwargs["input_shape"] = (input_length,)
        super().__init__(**kwargs)
        self._init_regularizers(embeddings_regularizer=embeddings_regularizer)
        for arg, value in (("input_dim", input_dim), ("output_dim", output_dim)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"Embedding: {arg} must be a positive integer, got {value!r}")
        self.input_dim, self.output_dim = input_dim, output_dim
        self.embeddings_initializer = embeddings_initializer

    def build(self, input_shape):
        self.embeddings = self.add_weight((self.input_dim, self.output_dim),
                                          self.embeddings_initializer, name="embeddings",
                                          regularizer=self.embeddings_regularizer)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.output_dim)

    def call(self, inputs, training=False):
        indices = inputs.numpy()
        if indices.size and (indices.min() < 0 or indices.max() >= self.input_dim):
            raise ValueError(f"{self.name}: indices must lie in [0, input_dim={self.input_dim}),"
                             f" got values from {indices.min()} to {indices.max()}")
        return F.embedding(inputs, self.embeddings)

    def get_config(self):
        return {**super().get_config(), "input_dim": self.input_dim,
                "output_dim": self.output_dim, **self._regularizer_config()}


class _Recurrent(Layer, _Regularized):
    """SimpleRNN, LSTM and GRU over batch-major (batch, time, features) input.

    Each runs as a one-layer pydl.nn RNN, LSTM or GRU (batch_first) whose weights are
    this layer's: weight_ih (G * units, features) and weight_hh (G * units, units),
    stored as pydl.nn keeps them, are Keras's kernel (features, G * units) and
    recurrent_kernel (units, G * units) transposed; gates in pydl.nn's order (LSTM i,
    f, g, o; GRU r, z, n with the reset gate applied after the recurrent product,
    Keras's reset_after=True). go_backwards runs the sequence from its last step to its
    first; its return_sequences output is then in that reversed order, as in Keras."""

    mode = None
    gates = 1

    def __init__(self, units, use_bias=True, return_sequences=False, go_backwards=False,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self._init_regularizers(kernel_regularizer=kernel_regularizer,
                                recurrent_regularizer=recurrent_regularizer,
                                bias_regularizer=bias_regularizer)
        self.go_backwards = bool(go_backwards)
        if not isinstance(units, int) or units <= 0:
            raise ValueError(f"{type(self).__name__}: units must be a positive integer, got "
                             f"{units!r}")
        self.units, self.use_bias = units, bool(use_bias)
        self.return_sequences = bool(return_sequences)
        self.kernel_initializer = kernel_initializer
        self.recurrent_initializer = recurrent_initializer
        self.bias_initializer = bias_initializer

    def _bias_shape(self):
        return (self.gates * self.units,)

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(f"{self.name}: expected input (batch, time, features) with known "
                             f"features, got shape {input_shape}")
        rows = self.gates * self.units
        self.weight_ih = self.add_weight((input_shape[-1], rows), self.kernel_initializer,
                                         name="kernel", regularizer=self.kernel_regularizer,
                                         stored_axes=(1, 0))
        recurrent = np.concatenate([initializers.get(self.recurrent_initializer)(
            (self.units, self.units)) for _ in range(self.gates)], axis=1)
        self.weight_hh = self.add_weight((self.units, rows), lambda shape: recurrent,
                                         name="recurrent_kernel",
                                         regularizer=self.recurrent_regularizer,
                                         stored_axes=(1, 0))
        self.bias = (self.add_weight(self._bias_shape(), self._initial_bias, name="bias",
                                     regularizer=self.bias_regularizer)
                     if self.use_bias else None)
        # The module's own random weights are replaced at once: the global generator is
        # put back as it was, so a seed gives the same initial weights as Keras's layout did.
        drawn = generator().bit_generator.state
        self._rnn = self._module(input_shape[-1])
        generator().bit_generator.state = drawn
        self._rnn.weight_ih_l0, self._rnn.weight_hh_l0 = self.weight_ih, self.weight_hh

    def _module(self, features):
        return {"lstm": nn.LSTM, "gru": nn.GRU}[self.mode](
            features, self.units, bias=self.use_bias, batch_first=True)

    @property
    def kernel(self):
        """Keras's kernel (features, G * units): a view of weight_ih."""
        return self.weight_ih.keras_view()

    @property
    def recurrent_kernel(self):
        """Keras's recurrent_kernel (units, G * units): a view of weight_hh."""
        return self.weight_hh.keras_view()

    def _initial_bias(self, shape):
        return initializers.get(self.bias_initializer)(shape)

    def _biases(self, like):
        """(b_ih, b_hh) for pydl.nn: Keras's one bias and zeros (on the device of `like`)."""
        return self.bias, zeros(self.gates * self.units, dtype=like.dtype, device=like.device)

    def compute_output_shape(self, input_shape):
        if self.return_sequences:
            return (input_shape[0], input_shape[1], self.units)
        return (input_shape[0], self.units)

    def call(self, inputs, training=False):
        if self.use_bias:
            self._rnn.bias_ih_l0, self._rnn.bias_hh_l0 = self._biases(inputs)
        # Backwards: the reversed sequence run forwards, so step t of the output is the
        # state after x[T-1] .. x[T-1-t], Keras's order.
        x = inputs[:, ::-1] if self.go_backwards else inputs
        sequence, state = self._rnn(x)
        if self.return_sequences:
            return sequence
        h_n = state[0] if self.mode == "lstm" else state
        return h_n[0]

    def get_config(self):
        return {**super().get_config(), "units": self.units, "use_bias": self.use_bias,
                "return_sequences": self.return_sequences, "go_backwards": self.go_backwards,
                **self._regularizer_config()}


class SimpleRNN(_Recurrent):
    """h_t = activation(x_t W + h_{t-1} U + b), activation 'tanh' or 'relu'.

    >>> import numpy as np
    >>> from pydl.keras import layers
    >>> layers.SimpleRNN(5, go_backwards=True)(np.ones((2, 7, 3))).shape
    (2, 5)
    """

    def __init__(self, units, activation="tanh", **kwargs):
        if activation not in ("tanh", "relu"):
            raise ValueError(f"SimpleRNN: activation must be 'tanh' or 'relu', got "
                             f"{activation!r}")
        self.cell_activation = activation
        self.mode = "rnn_" + activation
        super().__init__(units, **kwargs)

    def _module(self, features):
        return nn.RNN(features, self.units, nonlinearity=self.cell_activation,
                      bias=self.use_bias, batch_first=True)

    def get_config(self):
        return {**super().get_config(), "activation": self.cell_activation}


class LSTM(_Recurrent):
    """Long short-term memory; one bias vector (as Keras), the forget gate's started at 1
    (unit_forget_bias).

    >>> import numpy as np
    >>> from pydl.keras import layers
    >>> layers.LSTM(5, return_sequences=True)(np.ones((2, 7, 3))).shape
    (2, 7, 5)
    """

    mode, gates = "lstm", 4

    def __init__(self, units, unit_forget_bias=True, **kwargs):
        super().__init__(units, **kwargs)
        self.unit_forget_bias = bool(unit_forget_bias)

    def _initial_bias(self, shape):
        bias = super()._initial_bias(shape)
        if self.unit_forget_bias:
            bias[self.units:2 * self.units] = 1.0
        return bias

    def get_config(self):
        return {**super().get_config(), "unit_forget_bias": self.unit_forget_bias}


class GRU(_Recurrent):
    """Gated recurrent unit with reset_after=True: bias (2, 3 * units), the input and
    the recurrent bias, as Keras's default GRU (and PyTorch's).

    >>> import numpy as np
    >>> from pydl.keras import layers
    >>> gru = layers.GRU(4)
    >>> gru(np.ones((1, 2, 3))).shape
    (1, 4)
    >>> [w.shape for w in gru.get_weights()]
    [(3, 12), (4, 12), (2, 12)]
    """

    mode, gates = "gru", 3

    def _bias_shape(self):
        return (2, self.gates * self.units)

    def _biases(self, like):
        return self.bias[0], self.bias[1]


class _Merge(Layer):
    """A layer over a list of same-shaped inputs."""

    def call(self, inputs, training=False):
        out = inputs[0]
        for x in inputs[1:]:
            out = self._merge(out, x)
        return out

    def compute_output_shape(self, input_shape):
        return input_shape[0]


class Add(_Merge):
    def _merge(self, a, b):
        return a + b


class Multiply(_Merge):
    def _merge(self, a, b):
        return a * b


class Concatenate(Layer):
    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis

    def compute_output_shape(self, input_shape):
        axis = self.axis % len(input_shape[0])
        sizes = [s[axis] for s in input_shape]
        out = list(input_shape[0])
        out[axis] = None if None in sizes else sum(sizes)
        return tuple(out)

    def call(self, inputs, training=False):
        return cat(list(inputs), dim=self.axis % inputs[0].ndim)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


def add(inputs):
    return Add()(inputs)


def concatenate(inputs, axis=-1):
    return Concatenate(axis=axis)(inputs)


class Rescaling(Layer):
    """x * scale + offset (e.g. 1/255 for pixel values)."""

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale, self.offset = float(scale), float(offset)

    def call(self, inputs, training=False):
        return inputs * self.scale + self.offset

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}

# Keras's aliases.
Convolution2D = Conv2D
MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D

LAYER_CLASSES = {cls.__name__: cls for cls in (
    InputLayer, Dense, Activation, Flatten, Reshape, Permute, RepeatVector, LeakyReLU, Dropout,
    Conv2D, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D,
    GlobalAveragePooling1D, GlobalMaxPooling1D, BatchNormalization, LayerNormalization,
    Embedding, SimpleRNN, LSTM, GRU, Add, Multiply, Concatenate, Rescaling)}

# The layers defined beside this module (they build on the classes above), under
# keras.layers as in Keras.
from pydl.keras import attention, conv_layers, wrappers  # noqa: E402
from pydl.keras.attention import *  # noqa: E402,F401,F403
from pydl.keras.conv_layers import *  # noqa: E402,F401,F403
from pydl.keras.wrappers import *  # noqa: E402,F401,F403

for _module in (attention, conv_layers, wrappers):
    LAYER_CLASSES.update(_module.LAYER_CLASSES)
del _module

__all__ = ["Layer", "Input", "KerasTensor", "add", "concatenate", "Convolution2D", "MaxPool2D",
           "AvgPool2D", "Convolution1D", "Convolution2DTranspose", "MaxPool1D", "AvgPool1D",
           *LAYER_CLASSES]
