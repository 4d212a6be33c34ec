"""Keras weight and activity regularizers: penalties added to the training loss.

A regularizer maps a Tensor to a scalar Tensor: L1(l1) gives l1 * sum(|w|), L2(l2)
gives l2 * sum(w^2), L1L2 both. Layers take them as kernel_regularizer=,
bias_regularizer=, activity_regularizer= (...); fit() adds every layer's penalties
(model.losses) to the loss it minimizes and reports. An activity penalty is divided
by the batch size, so its strength does not depend on batch_size (as in tf.keras).

>>> from pydl import keras, tensor
>>> float(keras.regularizers.L1L2(l1=0.5, l2=0.1)(tensor([1.0, -2.0])))
2.0
"""


class Regularizer:
    """Base class: __call__(x) -> a scalar Tensor, get_config() -> its arguments."""

    def __call__(self, x):
        raise NotImplementedError

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _factor(value, name):
    value = float(value)
    if not value >= 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    return value


class L1L2(Regularizer):
    """l1 * sum(|x|) + l2 * sum(x^2).

    >>> from pydl import keras, tensor
    >>> float(keras.regularizers.l2(0.01)(tensor([3.0, 4.0])))
    0.25
    """

    def __init__(self, l1=0.0, l2=0.0):
        self.l1, self.l2 = _factor(l1, "l1"), _factor(l2, "l2")

    def __call__(self, x):
        penalty = None
        if self.l1:
            penalty = self.l1 * abs(x).sum()
        if self.l2:
            term = self.l2 * (x * x).sum()
            penalty = term if penalty is None else penalty + term
        return penalty if penalty is not None else (x * 0.0).sum()

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    """l1 * sum(|x|)."""

    def __init__(self, l1=0.01):
        super().__init__(l1=l1)

    def get_config(self):
        return {"l1": self.l1}


class L2(L1L2):
    """l2 * sum(x^2)."""

    def __init__(self, l2=0.01):
        super().__init__(l2=l2)

    def get_config(self):
        return {"l2": self.l2}


def l1_l2(l1=0.01, l2=0.01):
    """L1L2 with Keras's function-form defaults (0.01 each)."""
    return L1L2(l1=l1, l2=l2)


# Keras's lower-case names.
l1, l2 = L1, L2
_BY_NAME = {"L1": L1, "L2": L2, "L1L2": L1L2, "l1": L1, "l2": L2, "l1_l2": l1_l2}


def get(identifier):
    """A regularizer from None, a name ('l1', 'l2', 'l1_l2'), a saved config
    {'class_name': ..., 'config': ...}, or a callable.

    >>> get("l2").l2
    0.01
    """
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, str):
        if identifier not in _BY_NAME:
            raise ValueError(f"Unknown regularizer {identifier!r}; expected one of "
                             f"{sorted(_BY_NAME)} or a Regularizer")
        return _BY_NAME[identifier]()
    if isinstance(identifier, dict):
        name = identifier.get("class_name")
        if name not in ("L1", "L2", "L1L2"):
            raise ValueError(f"Unknown regularizer config {identifier!r}")
        return _BY_NAME[name].from_config(identifier.get("config", {}))
    if callable(identifier):
        return identifier
    raise TypeError(f"regularizer must be a name, a Regularizer or a callable, got "
                    f"{type(identifier).__name__}")


def serialize(regularizer):
    """The JSON form that get() reads back (None for None); custom callables cannot be
    saved."""
    if regularizer is None:
        return None
    if not isinstance(regularizer, L1L2):
        raise ValueError(f"cannot save the custom regularizer {regularizer!r}; use "
                         "keras.regularizers.L1, L2 or L1L2")
    return {"class_name": type(regularizer).__name__, "config": regularizer.get_config()}


__all__ = ["Regularizer", "L1", "L2", "L1L2", "l1", "l2", "l1_l2", "get", "serialize"]
