"""Activation functions by their Keras names, on pydl Tensors."""
from pydl.nn import functional as F


def linear(x):
    return x


def relu(x):
    return x.relu()


def sigmoid(x):
    return x.sigmoid()


def tanh(x):
    return x.tanh()


def softmax(x):
    return x.softmax(-1)


def gelu(x):
    return F.gelu(x)


def elu(x):
    """x for x > 0, exp(x) - 1 otherwise (exp of the clamped input, so a large x never
    overflows into the unselected branch's gradient)."""
    return x.where(x > 0, x.clamp(max=0).exp() - 1)


_BY_NAME = {"linear": linear, "relu": relu, "sigmoid": sigmoid, "tanh": tanh,
            "softmax": softmax, "gelu": gelu, "elu": elu}


def get(identifier):
    """An activation function from a name, a callable, or None (the identity)."""
    if identifier is None:
        return linear
    if isinstance(identifier, str):
        if identifier not in _BY_NAME:
            raise ValueError(f"Unknown activation {identifier!r}; expected one of "
                             f"{sorted(_BY_NAME)} or a callable")
        return _BY_NAME[identifier]
    if callable(identifier):
        return identifier
    raise TypeError(f"activation must be a name or a callable, got {type(identifier).__name__}")


def serialize(fn):
    """The name of an activation (for saving); custom callables cannot be saved."""
    for name, known in _BY_NAME.items():
        if fn is known:
            return name
    raise ValueError(f"cannot save the custom activation {fn!r}; use one of {sorted(_BY_NAME)}")


__all__ = ["get", "serialize", *sorted(_BY_NAME)]
