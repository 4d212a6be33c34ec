"""Keras metrics: running means over the batches of an epoch, computed in NumPy from
the model's outputs (no gradient)."""
import numpy as np


class Metric:
    def __init__(self, name=None):
        self.name = name or self.default_name
        self.reset_state()

    def reset_state(self):
        self.total, self.count = 0.0, 0.0

    def update_state(self, y_true, y_pred):
        values = np.asarray(self.values(np.asarray(y_true), np.asarray(y_pred)), np.float64)
        self.total += float(values.sum())
        self.count += values.size

    def result(self):
        return self.total / self.count if self.count else 0.0


class Mean(Metric):
    """The weighted mean of the values given (the loss tracker)."""

    default_name = "mean"

    def update_state(self, value, sample_weight=1.0):
        self.total += float(value) * sample_weight
        self.count += sample_weight


class CategoricalAccuracy(Metric):
    default_name = "categorical_accuracy"

    def values(self, y_true, y_pred):
        return np.argmax(y_pred, -1) == np.argmax(y_true.reshape(y_pred.shape), -1)


class SparseCategoricalAccuracy(Metric):
    default_name = "sparse_categorical_accuracy"

    def values(self, y_true, y_pred):
        predicted = np.argmax(y_pred, -1).reshape(-1)
        return predicted == y_true.reshape(-1).astype(np.int64)


class BinaryAccuracy(Metric):
    default_name = "binary_accuracy"

    def __init__(self, name=None, threshold=0.5):
        self.threshold = threshold
        super().__init__(name)

    def values(self, y_true, y_pred):
        return (y_pred > self.threshold) == (y_true.reshape(y_pred.shape) > self.threshold)


class MeanSquaredError(Metric):
    default_name = "mean_squared_error"

    def values(self, y_true, y_pred):
        return (y_pred - y_true.reshape(y_pred.shape)) ** 2


class MeanAbsoluteError(Metric):
    default_name = "mean_absolute_error"

    def values(self, y_true, y_pred):
        return np.abs(y_pred - y_true.reshape(y_pred.shape))


_BY_NAME = {"categorical_accuracy": CategoricalAccuracy,
            "sparse_categorical_accuracy": SparseCategoricalAccuracy,
            "binary_accuracy": BinaryAccuracy, "mse": MeanSquaredError,
            "mean_squared_error": MeanSquaredError, "mae": MeanAbsoluteError,
            "mean_absolute_error": MeanAbsoluteError}


def get(identifier, loss_name=None, output_shape=None):
    """A Metric from a name or object. 'accuracy'/'acc' picks the accuracy that fits the
    loss, as Keras does: binary for binary cross-entropy or one output, sparse for the
    sparse cross-entropy, categorical otherwise; the metric keeps the name asked for."""
    if isinstance(identifier, Metric):
        return identifier
    if not isinstance(identifier, str):
        raise TypeError(f"metric must be a name or a Metric, got {type(identifier).__name__}")
    if identifier in ("accuracy", "acc"):
        if loss_name == "binary_crossentropy" or (output_shape and output_shape[-1] == 1):
            return BinaryAccuracy(identifier)
        if loss_name == "sparse_categorical_crossentropy":
            return SparseCategoricalAccuracy(identifier)
        return CategoricalAccuracy(identifier)
    if identifier not in _BY_NAME:
        raise ValueError(f"Unknown metric {identifier!r}; expected 'accuracy' or one of "
                         f"{sorted(_BY_NAME)}")
    return _BY_NAME[identifier](identifier)


__all__ = ["Metric", "Mean", "CategoricalAccuracy", "SparseCategoricalAccuracy",
           "BinaryAccuracy", "MeanSquaredError", "MeanAbsoluteError", "get"]
