"""Keras losses on pydl Tensors: each returns the mean loss over the batch.

A loss computed on probabilities clips them to [eps, 1 - eps] (eps = 1e-7) like Keras.
When the model ends in the activation a loss can take the logits of (softmax for the
cross-entropies, sigmoid for binary cross-entropy), `fused` computes it from the
pre-activation values instead: one stable pass, no clipping, exact gradients.

With sample_weight (one weight per sample) the loss is Keras's sum over batch size:
mean_i(w_i * loss_i), each sample's loss first averaged over its outputs.

>>> import numpy as np
>>> from pydl import keras, tensor
>>> mse = keras.losses.MeanSquaredError()
>>> float(mse(np.zeros((2, 1)), tensor([[1.0], [3.0]]), sample_weight=[1.0, 0.0]))
0.5
"""
import numpy as np

from pydl.keras import activations
from pydl.nn import functional as F
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

    def __call__(self, y_true, y_pred, sample_weight=None):
        """The batch mean of the loss of predictions y_pred (a Tensor), weighted per
        sample by sample_weight."""
        return _reduce(self._compute, y_true, y_pred, sample_weight)

    def _compute(self, y_true, y_pred, reduction):
        """The loss: 'mean' over everything, or 'none': one value per row of outputs."""
        raise NotImplementedError

    def fused(self, y_true, pre_activation, activation, sample_weight=None):
        """The loss from the last layer's pre-activation output, or None when this loss
        cannot absorb `activation`."""
        if not self._fuses(activation):
            return None
        return _reduce(self._compute_fused, y_true, pre_activation, sample_weight)

    def _fuses(self, activation):
        return False

    def get_config(self):
        return {"name": self.name, "from_logits": self.from_logits}


def _reduce(compute, y_true, y_pred, sample_weight):
    """compute(y_true, y_pred, 'mean'), or the per-row losses weighted by sample_weight
    (N,) (each weight repeated over a sample's rows) and averaged."""
    if sample_weight is None:
        return compute(y_true, y_pred, "mean")
    rows = compute(y_true, y_pred, "none").reshape(-1)
    weights = np.asarray(sample_weight.numpy() if isinstance(sample_weight, Tensor)
                         else sample_weight, dtype=rows.dtype).reshape(-1)
    if weights.size == 0 or rows.shape[0] % weights.size:
        raise ValueError(f"sample_weight has {weights.size} entries for a batch of "
                         f"{y_pred.shape[0]} samples (one weight per sample)")
    return (rows * Tensor(np.repeat(weights, rows.shape[0] // weights.size))).mean()


def _row_mean(values, reduction):
    """values (N, ..., K) averaged over everything ('mean') or over the last axis."""
    return values.mean() if reduction == "mean" else values.mean(dim=-1)


def _class_rows(logits):
    """(N, ..., C) -> (N * ..., C): every position's class scores as one row."""
    return logits.reshape(-1, logits.shape[-1])


class CategoricalCrossentropy(Loss):
    """-sum_c t_c log p_c for one-hot (or probability) targets t."""

    name = "categorical_crossentropy"

    def _compute(self, y_true, y_pred, reduction):
        if self.from_logits:
            return self._compute_fused(y_true, y_pred, reduction)
        target = _target(y_true, y_pred)
        probs = y_pred / y_pred.sum(dim=-1, keepdim=True)
        log_probs = probs.clamp(min=EPSILON, max=1 - EPSILON).log()
        losses = -(log_probs * Tensor(target)).sum(dim=-1)
        return losses.mean() if reduction == "mean" else losses

    def _fuses(self, activation):
        return not self.from_logits and activation is activations.softmax

    def _compute_fused(self, y_true, logits, reduction):
        target = _target(y_true, logits)
        return F.cross_entropy(_class_rows(logits), target.reshape(-1, logits.shape[-1]),
                               reduction=reduction)


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

    def _compute(self, y_true, y_pred, reduction):
        if self.from_logits:
            return self._compute_fused(y_true, y_pred, reduction)
        log_probs = _class_rows(y_pred).clamp(min=EPSILON, max=1 - EPSILON).log()
        return F.nll_loss(log_probs, self._labels(y_true, y_pred), reduction=reduction)

    def _fuses(self, activation):
        return not self.from_logits and activation is activations.softmax

    def _compute_fused(self, y_true, logits, reduction):
        return F.cross_entropy(_class_rows(logits), self._labels(y_true, logits),
                               reduction=reduction)


class BinaryCrossentropy(Loss):
    """-(t log p + (1 - t) log(1 - p)), averaged over every output."""

    name = "binary_crossentropy"

    def _compute(self, y_true, y_pred, reduction):
        if self.from_logits:
            return self._compute_fused(y_true, y_pred, reduction)
        target = Tensor(_target(y_true, y_pred))
        p = y_pred.clamp(min=EPSILON, max=1 - EPSILON)
        return _row_mean(-(target * p.log() + (1 - target) * (1 - p).log()), reduction)

    def _fuses(self, activation):
        return not self.from_logits and activation is activations.sigmoid

    def _compute_fused(self, y_true, logits, reduction):
        target = Tensor(_target(y_true, logits))
        return _row_mean(F.binary_cross_entropy_with_logits(logits, target, reduction="none"),
                         reduction)


class MeanSquaredError(Loss):
    name = "mean_squared_error"

    def _compute(self, y_true, y_pred, reduction):
        return _row_mean((y_pred - Tensor(_target(y_true, y_pred))) ** 2, reduction)


class MeanAbsoluteError(Loss):
    name = "mean_absolute_error"

    def _compute(self, y_true, y_pred, reduction):
        return _row_mean(abs(y_pred - Tensor(_target(y_true, y_pred))), reduction)


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

    def _compute(self, y_true, y_pred, reduction):
        losses = self.fn(Tensor(_target(y_true, y_pred)), y_pred)
        return losses.mean() if reduction == "mean" else losses


__all__ = ["Loss", "CategoricalCrossentropy", "SparseCategoricalCrossentropy",
           "BinaryCrossentropy", "MeanSquaredError", "MeanAbsoluteError", "get",
           "categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy",
           "mean_squared_error", "mean_absolute_error", "mse", "mae"]
