"""The batches fit, evaluate and predict run over: NumPy arrays cut into batches, or
batches drawn from a Python generator, a pydl.data.DataLoader or any other iterable.

A batch is (x, y, sample_weight) as NumPy arrays, y and sample_weight None where
absent. An iterable yields x, (x,), (x, y) or (x, y, sample_weight), as arrays or
Tensors. With steps_per_epoch an epoch takes that many batches, continuing where the
previous epoch stopped; a re-iterable source (a DataLoader, a list) starts over when
it runs out, a generator that runs out ends training, as in Keras. Without it an
epoch is one pass over a re-iterable source, or the rest of a generator.

class_weight {class: weight} gives each sample the weight of its class (the argmax of
a one-hot y, else y rounded; classes not named weigh 1), times its sample_weight.

>>> import numpy as np
>>> def batches():
...     while True:
...         yield np.ones((4, 3)), np.zeros((4, 1))
>>> data = DataBatches(batches(), steps_per_epoch=2)
>>> [x.shape for x, y, w in data.epoch()]
[(4, 3), (4, 3)]
"""
import itertools
import math

import numpy as np

from pydl._random import generator
from pydl.tensor import Tensor


def as_array(data, name):
    """data as a NumPy array, floats as float32; None stays None."""
    if data is None:
        return None
    array = data.numpy() if isinstance(data, Tensor) else np.asarray(data)
    if array.dtype.kind == "f" and array.dtype != np.float32:
        array = array.astype(np.float32)
    if array.ndim == 0:
        raise ValueError(f"{name} must have a batch axis, got a scalar")
    return array


def is_batch_source(x):
    """Whether x is a generator, a DataLoader or another iterable of batches (not an
    array, a Tensor or a list of numbers)."""
    if x is None or isinstance(x, (np.ndarray, Tensor, list, tuple, str, bytes, dict)):
        return False
    return hasattr(x, "__iter__") or hasattr(x, "__next__")


def class_sample_weights(y, class_weight):
    """One weight per sample of y from class_weight {class index: weight}."""
    labels = np.asarray(y)
    if labels.ndim > 1 and labels.shape[-1] > 1:
        labels = labels.argmax(axis=-1)
    labels = np.round(labels.reshape(len(labels), -1)[:, 0]).astype(np.int64)
    table = {int(k): float(v) for k, v in class_weight.items()}
    return np.array([table.get(int(label), 1.0) for label in labels], np.float32)


def _unpack(batch, name):
    """(x, y, sample_weight) from one batch an iterable yielded."""
    if isinstance(batch, dict) or not isinstance(batch, (tuple, list)):
        batch = (batch,)
    if not 1 <= len(batch) <= 3:
        raise ValueError(f"{name}: each batch must be x, (x, y) or (x, y, sample_weight), "
                         f"got a {type(batch).__name__} of {len(batch)} items")
    x, y, weight = (*batch, None, None)[:3]
    return (as_array(x, "x"), as_array(y, "y"),
            None if weight is None else as_array(weight, "sample_weight"))


class DataBatches:
    """The batches of one data argument (see the module docstring)."""

    def __init__(self, x, y=None, sample_weight=None, batch_size=32, steps_per_epoch=None,
                 shuffle=False, class_weight=None, name="fit"):
        self.name, self.class_weight = name, class_weight
        self.steps, self.exhausted = steps_per_epoch, False
        # Under a process group, fit makes every rank take rank 0's order of the arrays.
        self.same_order = None
        if steps_per_epoch is not None and (not isinstance(steps_per_epoch, int)
                                            or steps_per_epoch <= 0):
            raise ValueError(f"{name}: steps must be a positive integer, got "
                             f"{steps_per_epoch!r}")
        self.source = x if is_batch_source(x) else None
        if self.source is not None:
            if y is not None or sample_weight is not None:
                raise ValueError(f"{name}: x is a generator or DataLoader, so it must yield "
                                 "y (and sample_weight) itself; do not pass y or "
                                 "sample_weight")
            self.reiterable = not hasattr(self.source, "__next__")
            self._iterator = iter(self.source)
            self._pending = []
            if self.steps is None and hasattr(self.source, "__len__") and self.reiterable:
                self.steps = len(self.source)
            return
        self.x, self.y = as_array(x, "x"), as_array(y, "y")
        if self.x is None:
            raise ValueError(f"{name} needs x (an array, a generator or a DataLoader)")
        for other, label in ((self.y, "y"), (sample_weight, "sample_weight")):
            if other is not None and len(other) != len(self.x):
                raise ValueError(f"{name}: x has {len(self.x)} samples but {label} has "
                                 f"{len(other)}")
        self.sample_weight = None if sample_weight is None else \
            as_array(sample_weight, "sample_weight").reshape(len(self.x), -1)[:, 0]
        self.batch_size, self.shuffle = batch_size, shuffle
        self.steps = math.ceil(len(self.x) / batch_size)
        if steps_per_epoch is not None:
            self.steps = min(steps_per_epoch, self.steps)

    def first_x(self):
        """An input batch to build the model from (kept to be yielded first)."""
        if self.source is None:
            return self.x[:1]
        if not self._pending:
            self._pending.append(self._next())
        if self._pending[0] is None:
            raise ValueError(f"{self.name}: the generator or DataLoader yielded no batches")
        return self._pending[0][0]

    def _next(self):
        """The source's next batch, starting it over once if it can; None at the end."""
        for _ in range(2):
            try:
                return _unpack(next(self._iterator), self.name)
            except StopIteration:
                if not self.reiterable:
                    return None
                self._iterator = iter(self.source)
        return None

    def _weighted(self, batch):
        x, y, weight = batch
        if self.class_weight is not None and y is not None:
            by_class = class_sample_weights(y, self.class_weight)
            weight = by_class if weight is None else weight.reshape(-1) * by_class
        return x, y, weight

    def epoch(self):
        """This epoch's batches."""
        if self.source is None:
            yield from self._array_epoch()
            return
        if self.steps is None and self.reiterable and not self._pending:
            self._iterator = iter(self.source)
        for step in itertools.count():
            if self.steps is not None and step >= self.steps:
                return
            if self._pending:
                batch = self._pending.pop()
            elif self.steps is None and self.reiterable:
                batch = next(self._iterator, None)  # one pass, no restart
                batch = None if batch is None else _unpack(batch, self.name)
            else:
                batch = self._next()
            if batch is None:
                self.exhausted = True
                return
            yield self._weighted(batch)

    def _array_epoch(self):
        count = len(self.x)
        order = generator().permutation(count) if self.shuffle else np.arange(count)
        if self.same_order is not None:
            order = self.same_order(order)
        for step in range(self.steps):
            index = order[step * self.batch_size:(step + 1) * self.batch_size]
            weight = None if self.sample_weight is None else self.sample_weight[index]
            yield self._weighted((self.x[index], None if self.y is None else self.y[index],
                                  weight))


__all__ = ["DataBatches", "as_array", "class_sample_weights", "is_batch_source"]
