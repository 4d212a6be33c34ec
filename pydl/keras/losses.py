"""Keras losses on pydl Tensors: each returns the mean loss over the batch.

A loss computed on probabilities clips them to [eps, 1 - eps] (eps = 1e-7) like Keras.
When the model ends in the activation a loss can take the logits of (softmax for the
cross-entropies, sigmoid for binary cross-entropy), `fused` computes it from the
pre-activation values instead: one stable pass, no clipping, exact gradients.
"""
import numpy as np

from pydl.keras import activations
from pydl.tensor import Tensor

EPSILON = 1e-7


def _target(y_true, y_pred, dtype=None):
    """y_true as an array shaped like y_pred (a (N,) target fits an (N, 1) output)."""
    array = y_true.numpy() if isinstance(y_true, Tensor) else np.asarray(y_true)
    array = array.astype(dtype or y_pred.dtype, copy=False)
    if array.shape != y_pred.shape:
        if array.size != int(np.prod(y_pred.shape)):
            raise ValueError(f"target of shape {array.shape} does not match the model output "
                             f"of shape {y_pred.shape}")
        array = array.reshape(y_pred.shape)
    return array


class Loss:
    name = "loss"

    def __init__(self, from_logits=False, name=None):
        self.from_logits = bool(from_logits)
        if name is not None:
            self.name = name

    def __call__(self, y_true, y_pred):
        """The batch mean of the loss of predictions y_pred (a Tensor)."""
        raise NotImplementedError

    def fused(self, y_true, pre_activation, activation):
        """The loss from the last layer's pre-activation output, or None when this loss
        cannot absorb `activation`."""
        return None

    def get_config(self):
        return {"name": self.name, "from_logits": self.from_logits}


def _class_rows(logits):
    """(N, ..., C) -> (N * ..., C): every position's class scores as one row."""
    return logits.reshape(-1, logits.shape[-1])


class CategoricalCrossentropy(Loss):
    """-sum_c t_c log p_c for one-hot (or probability) targets t."""

    name = "categorical_crossentropy"

    def __call__(self, y_true, y_pred):
        from pydl.nn import functional as F
        target = _target(y_true, y_pred)
        if self.from_logits:
            return F.cross_entropy(_class_rows(y_pred), target.reshape(-1, y_pred.shape[-1]))
        probs = y_pred / y_pred.sum(dim=-1, keepdim=True)
        log_probs = probs.clamp(min=EPSILON, max=1 - EPSILON).log()
        return -(log_probs * Tensor(target)).sum(dim=-1).mean()

    def fused(self, y_true, pre_activation, activation):
        from pydl.nn import functional as F
        if self.from_logits or activation is not activations.softmax:
            return None
        target = _target(y_true, pre_activation)
        return F.cross_entropy(_class_rows(pre_activation),
                               target.reshape(-1, pre_activation.shape[-1]))


class SparseCategoricalCrossentropy(Loss):
    """-log p_t for integer class targets t (shaped like the output without its class
    axis, or with a trailing axis of 1)."""

    name = "sparse_categorical_crossentropy"

    @staticmethod
    def _labels(y_true, y_pred):
        labels = y_true.numpy() if isinstance(y_true, Tensor) else np.asarray(y_true)
        if labels.dtype.kind == "f":
            fractional = labels[labels != np.round(labels)]
            if fractional.size:
                raise ValueError(f"sparse target holds {fractional[0]}, not a class index "
                                 "(sparse labels are whole numbers; use categorical "
                                 "cross-entropy for probabilities)")
            labels = labels.astype(np.int64)
        labels = labels.reshape(-1).astype(np.int64, copy=False)
        rows = int(np.prod(y_pred.shape[:-1]))
        if labels.size != rows:
            raise ValueError(f"sparse target of shape {np.shape(y_true)} does not match the "
                             f"model output of shape {y_pred.shape} (one class index per row)")
        classes = y_pred.shape[-1]
        outside = labels[(labels < 0) | (labels >= classes)]
        if outside.size:
            raise ValueError(f"sparse target holds class {outside[0]} outside [0, {classes}) "
                             f"(the model has {classes} outputs)")
        return labels

    def __call__(self, y_true, y_pred):
        from pydl.nn import functional as F
        labels = self._labels(y_true, y_pred)
        if self.from_logits:
            return F.cross_entropy(_class_rows(y_pred), labels)
        log_probs = _class_rows(y_pred).clamp(min=EPSILON, max=1 - EPSILON).log()
        return F.nll_loss(log_probs, labels)

    def fused(self, y_true, pre_activation, activation):
        from pydl.nn import functional as F
        if self.from_logits or activation is not activations.softmax:
            return None
        return F.cross_entropy(_class_rows(pre_activation), self._labels(y_true, pre_activation))


class BinaryCrossentropy(Loss):
    """-(t log p + (1 - t) log(1 - p)), averaged over every output."""

    name = "binary_crossentropy"

    def __call__(self, y_true, y_pred):
        from pydl.nn import functional as F
        target = Tensor(_target(y_true, y_pred))
        if self.from_logits:
            return F.binary_cross_entropy_with_logits(y_pred, target)
        p = y_pred.clamp(min=EPSILON, max=1 - EPSILON)
        return -(target * p.log() + (1 - target) * (1 - p).log()).mean()

    def fused(self, y_true, pre_activation, activation):
        from pydl.nn import functional as F
        if self.from_logits or activation is not activations.sigmoid:
            return None
        return F.binary_cross_entropy_with_logits(pre_activation,
                                                  Tensor(_target(y_true, pre_activation)))


class MeanSquaredError(Loss):
    name = "mean_squared_error"

    def __call__(self, y_true, y_pred):
        return ((y_pred - Tensor(_target(y_true, y_pred))) ** 2).mean()


class MeanAbsoluteError(Loss):
    name = "mean_absolute_error"

    def __call__(self, y_true, y_pred):
        return abs(y_pred - Tensor(_target(y_true, y_pred))).mean()


_BY_NAME = {"categorical_crossentropy": CategoricalCrossentropy,
            "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
            "binary_crossentropy": BinaryCrossentropy,
            "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError,
            "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError}

# Keras's function-style names.
categorical_crossentropy = CategoricalCrossentropy()
sparse_categorical_crossentropy = SparseCategoricalCrossentropy()
binary_crossentropy = BinaryCrossentropy()
mean_squared_error = mse = MeanSquaredError()
mean_absolute_error = mae = MeanAbsoluteError()


def get(identifier):
    """A Loss from a name, a Loss object, or a callable (y_true, y_pred) -> Tensor."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        if identifier not in _BY_NAME:
            raise ValueError(f"Unknown loss {identifier!r}; expected one of {sorted(_BY_NAME)} "
                             "or a Loss object")
        return _BY_NAME[identifier]()
    if callable(identifier):
        return _FunctionLoss(identifier)
    raise TypeError(f"loss must be a name, a Loss or a callable, got "
                    f"{type(identifier).__name__}")


class _FunctionLoss(Loss):
    def __init__(self, fn):
        super().__init__(name=getattr(fn, "__name__", "loss"))
        self.fn = fn

    def __call__(self, y_true, y_pred):
        return self.fn(Tensor(_target(y_true, y_pred)), y_pred).mean()


__all__ = ["Loss", "CategoricalCrossentropy", "SparseCategoricalCrossentropy",
           "BinaryCrossentropy", "MeanSquaredError", "MeanAbsoluteError", "get",
           "categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy",
           "mean_squared_error", "mean_absolute_error", "mse", "mae"]
