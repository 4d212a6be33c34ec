"""pydl.keras: training behaviour, agreement with a manual forward pass, callbacks,
summary parameter counts against torch.nn, save/load, the tutorial MNIST CNN."""
import csv
import importlib.util
import sys

import numpy as np
import pytest

import pydl
from pydl import keras
from pydl.keras import layers
from pydl.nn import functional as F

needs_conv = pytest.mark.skipif(not hasattr(F, "conv2d"),
                                reason="pydl.nn.functional.conv2d is not in this build")


def _blobs(rng, n=384, features=10, classes=3):
    """Linearly separable classes: labels are the argmax of a random linear map."""
    x = rng.standard_normal((n, features)).astype(np.float32)
    y = np.argmax(x @ rng.standard_normal((features, classes)), axis=1)
    return x, y


def _mlp(features=10, classes=3, activation="softmax"):
    return keras.Sequential([layers.Dense(32, activation="relu", input_shape=(features,)),
                             layers.Dense(classes, activation=activation)])


def test_fit_reduces_loss_and_separates_classes(rng):
    pydl.manual_seed(1)
    x, y = _blobs(rng)
    model = _mlp()
    model.compile(keras.optimizers.Adam(learning_rate=0.01), "categorical_crossentropy",
                  ["accuracy"])
    history = model.fit(x, keras.utils.to_categorical(y, 3), epochs=15, batch_size=32,
                        verbose=0)
    losses = history.history["loss"]
    assert len(losses) == 15 and losses[-1] < 0.5 * losses[0]
    assert history.history["accuracy"][-1] > 0.9
    loss, accuracy = model.evaluate(x, keras.utils.to_categorical(y, 3), verbose=0)
    assert accuracy > 0.9 and loss < losses[0]


@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy", "categorical_crossentropy"])
def test_evaluate_and_predict_match_a_manual_forward(rng, loss):
    pydl.manual_seed(2)
    x, y = _blobs(rng, n=70)
    target = y if loss.startswith("sparse") else keras.utils.to_categorical(y, 3)
    model = _mlp()
    model.compile("sgd", loss, ["accuracy"])
    kernel1, bias1, kernel2, bias2 = [w.astype(np.float64) for w in model.get_weights()]
    logits = np.maximum(x @ kernel1 + bias1, 0) @ kernel2 + bias2
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    np.testing.assert_allclose(model.predict(x, batch_size=16, verbose=0), probs, rtol=1e-5,
                               atol=1e-6)
    expected_loss = -np.log(probs[np.arange(len(y)), y]).mean()
    expected_accuracy = (probs.argmax(1) == y).mean()
    loss_value, accuracy = model.evaluate(x, target, batch_size=16, verbose=0)
    assert loss_value == pytest.approx(expected_loss, rel=1e-5)
    assert accuracy == pytest.approx(expected_accuracy)


def test_unfused_losses_match_numpy(rng):
    """Losses computed on probabilities (no activation to fuse with) clip like Keras."""
    y_pred = rng.uniform(0.05, 0.95, (6, 1)).astype(np.float32)
    y_true = rng.integers(0, 2, (6, 1)).astype(np.float32)
    bce = keras.losses.BinaryCrossentropy()(y_true, pydl.tensor(y_pred)).item()
    expected = -(y_true * np.log(y_pred) + (1 - y_true) * np.log(1 - y_pred)).mean()
    assert bce == pytest.approx(expected, rel=1e-5)
    mse = keras.losses.get("mse")(y_true, pydl.tensor(y_pred)).item()
    assert mse == pytest.approx(((y_pred - y_true) ** 2).mean(), rel=1e-5)


def test_binary_sigmoid_model_trains(rng):
    pydl.manual_seed(3)
    x = rng.standard_normal((256, 4)).astype(np.float32)
    y = (x @ rng.standard_normal(4) > 0).astype(np.float32)
    model = keras.Sequential([layers.Dense(8, activation="tanh"),
                              layers.Dense(1, activation="sigmoid")])
    model.compile(keras.optimizers.RMSprop(learning_rate=0.01), "binary_crossentropy",
                  ["accuracy"])
    history = model.fit(x, y, epochs=10, batch_size=32, verbose=0)
    assert history.history["accuracy"][-1] > 0.9


def test_history_plots_its_curves_to_a_png(rng, tmp_path, monkeypatch):
    x, y = _blobs(rng, n=60)
    model = _mlp()
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    history = model.fit(x, y, epochs=3, validation_split=0.25, verbose=0)
    path = tmp_path / "curves.png"
    if importlib.util.find_spec("matplotlib") is not None:
        history.plot(path)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"pydl\[plot\]"):
        history.plot(tmp_path / "missing.png")


def test_history_keys_with_validation(rng):
    x, y = _blobs(rng, n=100)
    model = _mlp()
    model.compile("rmsprop", "sparse_categorical_crossentropy", ["accuracy"])
    history = model.fit(x, y, epochs=2, validation_split=0.2, verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 2 for v in history.history.values())
    history = model.fit(x, y, epochs=3, initial_epoch=1, validation_data=(x[:20], y[:20]),
                        verbose=0)
    assert history.epoch == [1, 2]
    val_loss, val_accuracy = model.evaluate(x[:20], y[:20], verbose=0)
    assert history.history["val_loss"][-1] == pytest.approx(val_loss, rel=1e-6)


def test_callbacks_fire(rng, tmp_path):
    x, y = _blobs(rng, n=64)
    model = _mlp()
    model.compile(keras.optimizers.SGD(learning_rate=0.1), "sparse_categorical_crossentropy",
                  ["accuracy"])
    seen = []

    class Recorder(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(("lr", epoch, self.model.optimizer.learning_rate))

        def on_batch_end(self, batch, logs=None):
            seen.append(("batch", batch))

    schedule = keras.callbacks.LearningRateScheduler(lambda epoch, lr: 0.1 / (epoch + 1))
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "ckpt-{epoch:02d}.keras"),
                                                 monitor="loss")
    logger = keras.callbacks.CSVLogger(str(tmp_path / "log.csv"))
    model.fit(x, y, epochs=3, batch_size=32, verbose=0,
              callbacks=[schedule, Recorder(), checkpoint, logger])
    lrs = [entry[2] for entry in seen if entry[0] == "lr"]
    assert lrs == pytest.approx([0.1, 0.05, 0.1 / 3])
    assert model.optimizer._optimizer.param_groups[0]["lr"] == pytest.approx(0.1 / 3)
    assert sum(entry[0] == "batch" for entry in seen) == 6
    assert sorted(p.name for p in tmp_path.glob("ckpt-*")) == [
        "ckpt-01.keras", "ckpt-02.keras", "ckpt-03.keras"]
    with open(tmp_path / "log.csv") as stream:
        rows = list(csv.reader(stream))
    assert rows[0] == ["epoch", "accuracy", "learning_rate", "loss"]
    assert [row[0] for row in rows[1:]] == ["0", "1", "2"]


def test_early_stopping_stops_and_restores(rng):
    x, y = _blobs(rng, n=64)
    model = _mlp()
    model.compile(keras.optimizers.SGD(learning_rate=0.0), "sparse_categorical_crossentropy")
    stopper = keras.callbacks.EarlyStopping(monitor="loss", patience=2)
    history = model.fit(x, y, epochs=20, verbose=0, callbacks=[stopper])
    assert len(history.history["loss"]) == 3  # lr 0: no improvement after the first epoch
    assert model.stop_training and stopper.stopped_epoch == 2

    class Scramble(keras.callbacks.Callback):
        """From the second epoch on, large noise on the weights: validation gets worse."""

        def on_epoch_begin(self, epoch, logs=None):
            if epoch:
                self.model.set_weights([w + 10 * rng.standard_normal(w.shape)
                                        for w in self.model.get_weights()])

    model.compile(keras.optimizers.SGD(learning_rate=0.0), "sparse_categorical_crossentropy")
    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=2,
                                            restore_best_weights=True)
    history = model.fit(x, y, epochs=30, verbose=0, validation_data=(x, y),
                        callbacks=[Scramble(), stopper])
    assert len(history.history["val_loss"]) == 3 and stopper.best_epoch == 0
    assert model.evaluate(x, y, verbose=0) == pytest.approx(history.history["val_loss"][0],
                                                            rel=1e-6)


def test_reduce_lr_on_plateau(rng):
    """lr 1e-8 leaves the loss flat (changes below min_delta): every epoch after the
    first halves the rate after it, down to min_lr."""
    x, y = _blobs(rng, n=32)
    model = _mlp()
    model.compile(keras.optimizers.SGD(learning_rate=1e-8), "sparse_categorical_crossentropy")
    reducer = keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1,
                                                min_lr=1e-9)
    history = model.fit(x, y, epochs=5, verbose=0, callbacks=[reducer])
    assert history.history["learning_rate"] == pytest.approx(
        [1e-8, 1e-8, 5e-9, 2.5e-9, 1.25e-9])  # the rate each epoch ran with
    assert model.optimizer._optimizer.param_groups[0]["lr"] == pytest.approx(1e-9)


def test_progress_output_one_line_per_epoch(rng, capsys):
    x, y = _blobs(rng, n=50)
    model = _mlp()
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, epochs=3, batch_size=16, verbose=1)
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if line.startswith("Epoch")] == [
        "Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]
    progress = [line for line in lines if not line.startswith("Epoch")]
    assert len(progress) == 3 and "\r" not in "".join(progress)
    for line in progress:
        assert line.startswith("4/4 [") and "loss: " in line and "accuracy: " in line


def test_progress_bar_on_a_terminal_redraws_in_place():
    class Terminal:
        def __init__(self):
            self.text = ""

        def isatty(self):
            return True

        def write(self, text):
            self.text += text

        def flush(self):
            pass

    stream = Terminal()
    bar = keras.utils.Progbar(4, verbose=1, stream=stream)
    bar._last_draw = -1.0
    bar.update(1, [("loss", 0.5)], finalize=False)
    bar.update(4, [("loss", 0.25)], finalize=True)
    assert stream.text.startswith("\r1/4 [======>") and "ETA:" in stream.text
    assert stream.text.rstrip().endswith("loss: 0.2500") and stream.text.count("\n") == 1


def _torch_count(module):
    return sum(p.numel() for p in module.parameters())


def test_summary_parameter_counts_match_torch(capsys):
    torch = pytest.importorskip("torch")
    model = keras.Sequential([
        layers.Embedding(100, 16, input_shape=(12,)),
        layers.LSTM(24, return_sequences=True),
        layers.GRU(20),
        layers.BatchNormalization(),
        layers.Dense(7),
    ])
    embedding, lstm, gru, norm, dense = model.layers
    assert embedding.count_params() == _torch_count(torch.nn.Embedding(100, 16))
    torch_gru = torch.nn.GRU(24, 20)  # reset_after=True: two bias vectors, as torch
    assert gru.count_params() == _torch_count(torch_gru)
    torch_lstm = torch.nn.LSTM(16, 24)  # Keras keeps one bias vector of the two
    assert lstm.count_params() == _torch_count(torch_lstm) - torch_lstm.bias_hh_l0.numel()
    assert lstm.count_params() == 4 * 24 * (16 + 24 + 1)  # Keras's formula
    torch_norm = torch.nn.BatchNorm1d(20)
    assert norm.count_params() == _torch_count(torch_norm) + torch_norm.running_mean.numel() \
        + torch_norm.running_var.numel()
    assert dense.count_params() == _torch_count(torch.nn.Linear(20, 7))
    model.summary()
    out = capsys.readouterr().out
    total = sum(layer.count_params() for layer in model.layers)
    assert f"Total params: {total:,}" in out
    assert f"Non-trainable params: {2 * 20:,}" in out
    assert "(None, 12, 24)" in out and f"{lstm.name} (LSTM)" in out


@needs_conv
def test_conv_parameter_counts_and_shapes_match_torch(rng):
    torch = pytest.importorskip("torch")
    conv = layers.Conv2D(8, (3, 5), padding="same", strides=2)
    x = rng.standard_normal((2, 9, 10, 3)).astype(np.float32)
    with pydl.no_grad():
        out = conv(x)
    assert conv.count_params() == _torch_count(torch.nn.Conv2d(3, 8, (3, 5)))
    assert out.shape == (2, 5, 5, 8) == conv.compute_output_shape((2, 9, 10, 3))
    # The same weights through torch (channels-last in and out; TensorFlow's 'same'
    # puts the odd padding row/column at the bottom/right).
    kernel, bias = conv.get_weights()
    weight = torch.tensor(kernel).permute(3, 2, 0, 1)
    padded = torch.nn.functional.pad(torch.tensor(x).permute(0, 3, 1, 2), (1, 2, 1, 1))
    expected = torch.nn.functional.conv2d(padded, weight, torch.tensor(bias), stride=2)
    np.testing.assert_allclose(out.numpy(), expected.permute(0, 2, 3, 1).numpy(), rtol=1e-4,
                               atol=1e-5)
    pooled = layers.MaxPooling2D(3, strides=2, padding="same")(x).numpy()
    manual = torch.nn.functional.max_pool2d(
        torch.nn.functional.pad(torch.tensor(x).permute(0, 3, 1, 2), (0, 1, 1, 1),
                                value=-np.inf), 3, 2)
    np.testing.assert_allclose(pooled, manual.permute(0, 2, 3, 1).numpy())
    averaged = layers.AveragePooling2D(2, padding="same")(x[:, :9, :9]).numpy()
    assert averaged.shape == (2, 5, 5, 3)
    np.testing.assert_allclose(averaged[:, -1, -1], x[:, 8, 8], rtol=1e-6)  # a 1-pixel window


def test_functional_model_dag(rng):
    pydl.manual_seed(4)
    inputs = keras.Input(shape=(6,))
    hidden = layers.Dense(5, activation="relu")(inputs)
    skip = layers.Dense(5)(inputs)
    merged = layers.add([hidden, skip])
    outputs = layers.Dense(2, activation="softmax")(layers.concatenate([merged, inputs]))
    model = keras.Model(inputs, outputs)
    assert len(model.layers) == 6 and model.count_params() == 35 + 35 + 0 + 0 + 24
    x = rng.standard_normal((9, 6)).astype(np.float32)
    w1, b1, w2, b2, w3, b3 = model.get_weights()
    features = np.concatenate([np.maximum(x @ w1 + b1, 0) + x @ w2 + b2, x], axis=1)
    logits = features @ w3 + b3
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(model.predict(x, verbose=0), probs, rtol=1e-5, atol=1e-6)
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, np.arange(9) % 2, epochs=1, verbose=0)


def test_save_load_round_trip(rng, tmp_path):
    pydl.manual_seed(5)
    x, y = _blobs(rng, n=64)
    model = keras.Sequential([layers.Dense(16, activation="relu"), layers.BatchNormalization(),
                              layers.Dropout(0.2), layers.Dense(3, activation="softmax")])
    model.compile(keras.optimizers.Adam(learning_rate=0.005), "sparse_categorical_crossentropy",
                  ["accuracy"])
    model.fit(x, y, epochs=2, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.optimizer.learning_rate == pytest.approx(0.005)
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    # The optimizer state came along: one more step (same dropout masks) keeps them equal.
    for trained in (loaded, model):
        pydl.manual_seed(6)
        trained.fit(x, y, epochs=1, batch_size=64, shuffle=False, verbose=0)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    weights_path = tmp_path / "weights.npz"
    model.save_weights(weights_path)
    loaded.set_weights([np.zeros_like(w) for w in loaded.get_weights()])
    loaded.load_weights(weights_path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert not list(tmp_path.glob("*.tmp"))


def test_saved_files_keep_keras_layout_for_weights_stored_otherwise(rng, tmp_path):
    """Conv2D and LSTM weights are stored in their kernels' layout (OIHW; pydl.nn's
    (gates * units, features)), but get_weights and the saved file (weights and the
    optimizer's per-weight state) hold Keras's (HWIO; (features, gates * units)), as
    files written before did; loading puts the optimizer state back so training goes
    on as it would have."""
    x = rng.standard_normal((8, 6, 6, 2)).astype(np.float32)
    y = np.arange(8) % 3
    model = keras.Sequential([layers.Conv2D(4, 3, input_shape=(6, 6, 2)),
                              layers.Reshape((4, 16)), layers.LSTM(5), layers.Dense(3)])
    model.compile(keras.optimizers.Adam(learning_rate=0.01), "sparse_categorical_crossentropy")
    model.train_on_batch(x, y)
    keras_shapes = [(3, 3, 2, 4), (4,), (16, 20), (5, 20), (20,), (5, 3), (3,)]
    assert [w.shape for w in model.get_weights()] == keras_shapes
    assert [tuple(w.shape) for w in model.weights][:4] == [(4, 2, 3, 3), (4,), (20, 16), (20, 5)]
    np.testing.assert_array_equal(model.get_weights()[0],
                                  model.layers[0].weight.detach().numpy().transpose(2, 3, 1, 0))
    path = tmp_path / "model.keras"
    model.save(path)
    saved = pydl.load(path)
    assert [w.shape for w in saved["weights"]] == keras_shapes
    state = saved["optimizer"]["state"]["state"]
    for index, shape in enumerate(keras_shapes):
        assert {v.shape for v in state[index].values() if getattr(v, "ndim", 0)} == {shape}
    loaded = keras.models.load_model(path)
    for trained in (model, loaded):
        trained.train_on_batch(x, y)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    loaded.set_weights(model.get_weights())
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_recurrent_models_train(rng):
    pydl.manual_seed(6)
    sequences = rng.integers(1, 20, (96, 7))
    labels = (sequences[:, 0] > 10).astype(np.int64)  # depends on the first token only
    for recurrent in (layers.SimpleRNN, layers.LSTM, layers.GRU):
        model = keras.Sequential([layers.Embedding(20, 8), recurrent(16),
                                  layers.Dense(2, activation="softmax")])
        model.compile(keras.optimizers.Adam(learning_rate=0.02),
                      "sparse_categorical_crossentropy", ["accuracy"])
        history = model.fit(sequences, labels, epochs=8, batch_size=32, verbose=0)
        assert history.history["loss"][-1] < history.history["loss"][0]


def test_bad_input_raises_clear_errors(rng):
    with pytest.raises(ValueError, match="Unknown activation"):
        layers.Dense(3, activation="swishy")
    with pytest.raises(ValueError, match="Unknown loss"):
        _mlp().compile("adam", "hinge_loss_xyz")
    with pytest.raises(ValueError, match="Unknown optimizer"):
        _mlp().compile("adamax_xyz", "mse")
    with pytest.raises(ValueError, match="not yet been built"):
        keras.Sequential([layers.Dense(2)]).summary()
    model = _mlp()
    with pytest.raises(RuntimeError, match="compile"):
        model.fit(np.zeros((4, 10)), np.zeros(4))
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="outside"):
        model.fit(rng.standard_normal((4, 10)), np.array([0, 1, 2, 7]), verbose=0)
    with pytest.raises(ValueError, match="to_categorical"):
        keras.utils.to_categorical([0, 3], num_classes=2)


def test_to_categorical():
    np.testing.assert_array_equal(keras.utils.to_categorical([[2], [0]], 3),
                                  [[0, 0, 1], [1, 0, 0]])


@needs_conv
def test_tutorial_mnist_cnn_script_runs(rng, capsys):
    """The TensorFlow tutorial's CNN, with only the imports changed."""
    # from tensorflow import keras; from tensorflow.keras import layers, models
    from pydl.keras import models
    x_train = rng.uniform(0, 1, (64, 28, 28, 1)).astype(np.float32)
    y_train = keras.utils.to_categorical(rng.integers(0, 10, 64), 10)

    model = models.Sequential()
    model.add(layers.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model.add(layers.Flatten())
    model.add(layers.Dense(64, activation="relu"))
    model.add(layers.Dense(10, activation="softmax"))
    model.summary()
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, epochs=1, batch_size=32)
    test_loss, test_acc = model.evaluate(x_train, y_train, verbose=0)
    out = capsys.readouterr().out
    assert "Total params: 93,322" in out  # the tutorial's printed total
    assert "(None, 3, 3, 64)" in out
    assert np.isfinite(history.history["loss"][0]) and 0 <= test_acc <= 1
    assert np.isfinite(test_loss)
