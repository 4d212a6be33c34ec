"""The layout copies one Keras training step makes, counted by counting_copies():
weights are stored in the layout their kernels read, so a step copies none of them,
and what copies remain are the activations' (channels-last <-> NCHW) and the
recurrent input's (batch-major -> time-major). The exact counts are asserted so a
new copy fails here."""
import collections

import numpy as np

from pydl.keras import layers, models, optimizers
from pydl.ops.common import contiguous, counting_copies, reshaped


def _step_copies(model, x, y):
    """Counter of (shape, asking function) of the copies in one train_on_batch, after a
    first step has built the model and the optimizer."""
    model.train_on_batch(x, y)
    with counting_copies() as counted:
        model.train_on_batch(x, y)
    assert counted.count == len(counted.copies)
    assert counted.bytes == sum(int(np.prod(s)) * d.itemsize for s, d, _ in counted.copies)
    return collections.Counter((shape, caller) for shape, _, caller in counted.copies)


def _weight_shapes(model):
    """Every weight's shape, stored and in Keras's layout."""
    shapes = set()
    for array in model.get_weights() + [w.detach().numpy() for w in model.weights]:
        shapes.add(array.shape)
    return shapes


def _cnn(channels):
    model = models.Sequential([
        layers.Conv2D(32, 3, activation="relu", input_shape=(28, 28, channels)),
        layers.MaxPooling2D(), layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(),
        layers.Flatten(), layers.Dense(10)])
    model.compile(optimizer=optimizers.RMSprop(), loss="sparse_categorical_crossentropy")
    return model


def test_counting_copies_counts_contiguous_and_reshape_copies():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    with counting_copies() as counted:
        contiguous(a)                 # already contiguous: no copy
        reshaped(a, (4, 3))           # a view
        contiguous(a.T)               # a copy
        reshaped(a.T, (12,))          # a copy too: the transpose's elements are not in order
    assert (counted.count, counted.bytes) == (2, 96)
    assert [shape for shape, _, _ in counted.copies] == [(4, 3), (4, 3)]


def test_keras_conv2d_step_copies_no_weights(rng):
    """MNIST's CNN: one channel, so the channels-last input is already NCHW in memory.
    Left: the channels-last Flatten's copy (forward) and the gradient it hands back to
    the NCHW pooling (backward)."""
    x = rng.random((16, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 16)
    model = _cnn(1)
    copies = _step_copies(model, x, y)
    assert not {shape for shape, _ in copies} & _weight_shapes(model)
    assert copies == collections.Counter({((16, 5, 5, 64), "Reshape.forward"): 1,
                                          ((16, 64, 5, 5), "MaxPool2d.backward"): 1})


def test_keras_conv2d_step_copies_a_channels_last_input_once(rng):
    """Three channels: the first layer's input is made NCHW once, in forward, and that
    copy is what the weight gradient reads in backward."""
    x = rng.random((8, 28, 28, 3), dtype=np.float32)
    y = rng.integers(0, 10, 8)
    model = _cnn(3)
    copies = _step_copies(model, x, y)
    assert not {shape for shape, _ in copies} & _weight_shapes(model)
    assert copies == collections.Counter({((8, 3, 28, 28), "Conv2d.forward"): 1,
                                          ((8, 5, 5, 64), "Reshape.forward"): 1,
                                          ((8, 64, 5, 5), "MaxPool2d.backward"): 1})


def test_keras_lstm_step_copies_only_its_input(rng):
    """The recurrent kernel reads time-major input: (batch, time, features) is copied
    to (time, batch, features) once; the weights are used as stored."""
    model = models.Sequential([layers.LSTM(32, input_shape=(20, 8)), layers.Dense(4)])
    model.compile(optimizer=optimizers.RMSprop(), loss="sparse_categorical_crossentropy")
    x = rng.random((16, 20, 8), dtype=np.float32)
    copies = _step_copies(model, x, rng.integers(0, 4, 16))
    assert not {shape for shape, _ in copies} & _weight_shapes(model)
    assert [(shape, count) for (shape, _), count in copies.items()] == [((20, 16, 8), 1)]
