"""Anomaly mode names the op that first produced NaN or Inf (forward and backward),
keras TerminateOnNaN stops training, and inference from several Python threads at
once equals serial inference, with the kernels releasing the GIL meanwhile."""
import threading
import time

import numpy as np
import pytest

import pydl
import pydl.nn as nn
from pydl import _C, keras


def test_anomaly_mode_names_the_forward_op_that_produced_nan():
    x = pydl.tensor(np.array([1.0, -1.0, 4.0]), requires_grad=True)
    y = x * 2  # finite: no error
    with pydl.autograd.detect_anomaly():
        assert pydl.autograd.is_anomaly_enabled()
        z = y.abs()
        with pytest.raises(RuntimeError, match=r"detect_anomaly: Sqrt produced NaN in its forward "
                                               r"output, called at .*test_numerics.py:\d+"):
            with np.errstate(invalid="ignore"):
                (z - 3).sqrt()
        (z + 1).log()  # finite again: fine
    assert not pydl.autograd.is_anomaly_enabled()
    with np.errstate(invalid="ignore"):
        assert np.isnan((y - 3).sqrt().detach().numpy()).any()  # outside the mode: unchecked


def test_anomaly_mode_names_the_backward_op_and_its_forward_call():
    x = pydl.tensor(np.array([0.0, 1.0, 4.0]), requires_grad=True)
    with pydl.autograd.detect_anomaly():
        loss = x.sqrt().sum()  # finite forward; d sqrt / dx at 0 is Inf
        with pytest.raises(RuntimeError, match=r"SqrtBackward returned Inf in the gradient of its "
                                               r"input 0; its forward was called at "
                                               r".*test_numerics.py:\d+"):
            with np.errstate(divide="ignore"):
                loss.backward()


def test_terminate_on_nan_stops_fit_at_the_first_bad_batch(capsys):
    x = np.ones((64, 4), np.float32)
    x[40:] = np.nan  # batches from the sixth on (batch_size 8) give a NaN loss
    model = keras.Sequential([keras.layers.Dense(2)])
    model.compile("sgd", "sparse_categorical_crossentropy")
    seen = []

    class Count(keras.callbacks.Callback):
        def on_batch_end(self, batch, logs=None):
            seen.append(batch)
    model.fit(x, np.zeros(64), batch_size=8, epochs=3, shuffle=False, verbose=0,
              callbacks=[keras.callbacks.TerminateOnNaN(), Count()])
    assert seen == [0, 1, 2, 3, 4, 5]  # stopped in the first epoch, after batch 5
    assert "invalid loss, terminating training" in capsys.readouterr().out


def test_inference_from_4_threads_equals_serial():
    pydl.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(8 * 13 * 13, 10)).eval()
    inputs = [pydl.randn(16, 1, 28, 28) for _ in range(8)]
    with pydl.no_grad():
        serial = [model(x).numpy() for x in inputs]
    results = {}

    def work(i):
        with pydl.no_grad():
            for rep in range(5):
                for j in range(i, len(inputs), 4):
                    results[(rep, j)] = model(inputs[j]).numpy()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 5 * len(inputs)
    for (rep, j), out in results.items():
        assert np.array_equal(out, serial[j]), (rep, j)


def test_kernels_release_the_gil():
    """While one thread is inside a long GEMM, another Python thread keeps running."""
    a = np.random.default_rng(0).standard_normal((1200, 1200)).astype(np.float32)
    ticks = []
    done = threading.Event()

    def ticker():
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)
    start = time.perf_counter()
    t = threading.Thread(target=ticker)
    t.start()
    for _ in range(3):
        _C.gemm(a, a)
    end = time.perf_counter()
    done.set()
    t.join()
    inside = [tick for tick in ticks if start < tick < end]
    # With the GIL held across the GEMMs the ticker would tick only between calls.
    assert len(inside) >= 10, (len(inside), end - start)
