"""Keras's layer wrappers: Bidirectional (a recurrent layer run both ways) and
TimeDistributed (one layer applied to every step of a sequence).

A wrapper owns its inner layers: their weights are its weights (in Keras's order),
their penalties its losses, and its config nests theirs.
"""
from pydl.keras import layers as _layers  # its LAYER_CLASSES, complete once it has loaded
from pydl.keras.layers import Layer, _Recurrent
from pydl.tensor import cat


def _layer_config(layer):
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def _layer_from_config(entry):
    name = entry["class_name"]
    if name not in _layers.LAYER_CLASSES:
        raise ValueError(f"Unknown layer class {name!r} inside a wrapper")
    return _layers.LAYER_CLASSES[name].from_config(dict(entry["config"]))


class _Wrapper(Layer):
    def _adopt(self, *inner):
        """Makes the inner layers' weights this layer's (after building them)."""
        self._inner = inner
        self._weights = [entry for layer in inner for entry in layer._weights]

    @property
    def losses(self):
        return [p for layer in self._inner for p in layer.losses] + super().losses


class Bidirectional(_Wrapper):
    """Runs a SimpleRNN, LSTM or GRU forward and a copy of it backward (go_backwards)
    over the sequence and merges the two: merge_mode 'concat' (features side by side,
    forward first), 'sum', 'mul' or 'ave'. With return_sequences the backward output is
    put back in time order, so step t holds both directions' states at t.

    >>> import numpy as np
    >>> from pydl.keras import layers
    >>> layers.Bidirectional(layers.LSTM(8, return_sequences=True))(np.ones((2, 5, 3))).shape
    (2, 5, 16)
    """

    MERGES = ("concat", "sum", "mul", "ave")

    def __init__(self, layer, merge_mode="concat", backward_layer=None, **kwargs):
        if not isinstance(layer, _Recurrent):
            raise TypeError(f"Bidirectional wraps a SimpleRNN, LSTM or GRU layer, got "
                            f"{type(layer).__name__}")
        if merge_mode not in self.MERGES:
            raise ValueError(f"Bidirectional: merge_mode must be one of {self.MERGES}, got "
                             f"{merge_mode!r}")
        super().__init__(**kwargs)
        self.merge_mode = merge_mode
        self.forward_layer = layer
        if backward_layer is None:
            config = {**layer.get_config(), "name": f"backward_{layer.name}",
                      "go_backwards": not layer.go_backwards}
            config.pop("batch_input_shape", None)
            backward_layer = type(layer).from_config(config)
        elif backward_layer.go_backwards == layer.go_backwards:
            raise ValueError("Bidirectional: backward_layer must run the other way "
                             "(go_backwards differing from the forward layer's)")
        self.backward_layer = backward_layer
        self.return_sequences = layer.return_sequences

    def build(self, input_shape):
        self.forward_layer._ensure_built(input_shape)
        self.backward_layer._ensure_built(input_shape)
        self._adopt(self.forward_layer, self.backward_layer)

    def compute_output_shape(self, input_shape):
        shape = self.forward_layer.compute_output_shape(input_shape)
        if self.merge_mode == "concat":
            return (*shape[:-1], shape[-1] + self.backward_layer.units)
        return shape

    def call(self, inputs, training=False):
        forward = self.forward_layer.activate(self.forward_layer.call(inputs, training))
        backward = self.backward_layer.activate(self.backward_layer.call(inputs, training))
        if self.return_sequences:
            backward = backward[:, ::-1]  # back in time order
        if self.merge_mode == "concat":
            return cat([forward, backward], dim=-1)
        if self.merge_mode == "sum":
            return forward + backward
        if self.merge_mode == "mul":
            return forward * backward
        return (forward + backward) * 0.5

    def get_config(self):
        return {**super().get_config(), "merge_mode": self.merge_mode,
                "layer": _layer_config(self.forward_layer),
                "backward_layer": _layer_config(self.backward_layer)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        layer = _layer_from_config(config.pop("layer"))
        backward = _layer_from_config(config.pop("backward_layer"))
        return cls(layer, backward_layer=backward, **config)


class TimeDistributed(_Wrapper):
    """Applies `layer` to every step of (N, steps, ...) input independently: the steps
    are folded into the batch, (N * steps, ...), for one call of the layer.

    >>> import numpy as np
    >>> from pydl.keras import layers
    >>> layers.TimeDistributed(layers.Dense(4))(np.ones((2, 6, 3))).shape
    (2, 6, 4)
    """

    def __init__(self, layer, **kwargs):
        if not isinstance(layer, Layer):
            raise TypeError(f"TimeDistributed wraps a keras layer, got "
                            f"{type(layer).__name__}")
        super().__init__(**kwargs)
        self.layer = layer

    def build(self, input_shape):
        if len(input_shape) < 3:
            raise ValueError(f"{self.name}: expected an input (batch, steps, ...) of at "
                             f"least 3 axes, got shape {input_shape}")
        self.layer._ensure_built((None, *input_shape[2:]))
        self._adopt(self.layer)

    def compute_output_shape(self, input_shape):
        inner = self.layer.compute_output_shape((None, *input_shape[2:]))
        return (input_shape[0], input_shape[1], *inner[1:])

    def call(self, inputs, training=False):
        batch, steps = inputs.shape[:2]
        folded = inputs.reshape(batch * steps, *inputs.shape[2:])
        out = self.layer.activate(self.layer.call(folded, training))
        return out.reshape(batch, steps, *out.shape[1:])

    def get_config(self):
        return {**super().get_config(), "layer": _layer_config(self.layer)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(_layer_from_config(config.pop("layer")), **config)


LAYER_CLASSES = {cls.__name__: cls for cls in (Bidirectional, TimeDistributed)}
__all__ = list(LAYER_CLASSES)
