"""pydl.keras training inputs and penalties: fit/evaluate/predict on generators and
DataLoaders (steps_per_epoch), sample_weight and class_weight, the regularizers,
save/load_model of every layer, summary columns, the Dense shape message and
History.plot."""
import importlib.util

import numpy as np
import pytest

import pydl
from pydl import keras
from pydl.keras import layers, regularizers


def _regression(rng, n=64, features=3):
    x = rng.standard_normal((n, features)).astype(np.float32)
    return x, (x @ rng.standard_normal((features, 1))).astype(np.float32)


def _linear_model(features=3, **dense_kwargs):
    model = keras.Sequential([layers.Dense(1, input_shape=(features,), **dense_kwargs)])
    model.compile(keras.optimizers.SGD(learning_rate=0.05), "mse")
    return model


def _twin_models(features=3, **dense_kwargs):
    pydl.manual_seed(0)
    first = _linear_model(features, **dense_kwargs)
    second = _linear_model(features, **dense_kwargs)
    second.set_weights(first.get_weights())
    return first, second


def test_fit_on_a_generator_takes_steps_per_epoch_batches(rng):
    x, y = _regression(rng)
    drawn = []

    def batches():
        while True:
            for start in range(0, len(x), 16):
                drawn.append(start)
                yield x[start:start + 16], y[start:start + 16]
    from_generator, from_arrays = _twin_models()
    history = from_generator.fit(batches(), steps_per_epoch=4, epochs=3, verbose=0)
    assert len(drawn) == 12 and len(history.history["loss"]) == 3
    from_arrays.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    for a, b in zip(from_generator.get_weights(), from_arrays.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_fit_on_a_data_loader_is_one_pass_per_epoch(rng):
    x, y = _regression(rng, n=50)
    loader = pydl.data.DataLoader(pydl.data.TensorDataset(x, y), batch_size=16)
    from_loader, from_arrays = _twin_models()
    history = from_loader.fit(loader, epochs=2, verbose=0, validation_data=loader)
    from_arrays.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(from_loader.get_weights(), from_arrays.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert history.params["steps"] == 4
    assert from_loader.evaluate(loader, verbose=0) == pytest.approx(
        from_loader.evaluate(x, y, verbose=0), rel=1e-5)
    np.testing.assert_allclose(from_loader.predict(loader, verbose=0),
                               from_loader.predict(x, verbose=0), rtol=1e-6)
    # steps_per_epoch beyond one pass starts the loader over
    from_loader.fit(loader, steps_per_epoch=6, epochs=1, verbose=0)


def test_a_generator_that_runs_out_stops_training(rng, capsys):
    x, y = _regression(rng)

    def three_batches():
        for start in range(0, 48, 16):
            yield x[start:start + 16], y[start:start + 16]
    model = _linear_model()
    history = model.fit(three_batches(), steps_per_epoch=2, epochs=5, verbose=0)
    assert len(history.history["loss"]) == 2
    assert "ran out of data" in capsys.readouterr().out


def test_predict_and_evaluate_on_generators(rng):
    x, y = _regression(rng, n=40)
    model = _linear_model()
    batches = (x[i:i + 8] for i in range(0, 40, 8))
    np.testing.assert_allclose(model.predict(batches, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6)
    pairs = ((x[i:i + 8], y[i:i + 8]) for i in range(0, 40, 8))
    assert model.evaluate(pairs, steps=5, verbose=0) == pytest.approx(
        model.evaluate(x, y, batch_size=8, verbose=0), rel=1e-5)
    with pytest.raises(ValueError, match="do not pass y"):
        model.fit(iter([(x, y)]), y, verbose=0)


def test_sample_weight_weights_each_samples_loss(rng):
    x, y = _regression(rng, n=32)
    model = _linear_model()
    weights = rng.uniform(0, 2, 32).astype(np.float32)
    kernel, bias = model.get_weights()
    per_sample = ((x @ kernel + bias - y) ** 2)[:, 0]
    assert model.evaluate(x, y, sample_weight=weights, batch_size=32, verbose=0) == \
        pytest.approx(float(np.mean(weights * per_sample)), rel=1e-5)
    # a zero weight removes a sample from training
    half, full = _twin_models()
    half.fit(x[:16], y[:16], batch_size=16, epochs=2, shuffle=False, verbose=0)
    mask = np.r_[np.ones(16), np.zeros(16)].astype(np.float32)
    full.fit(np.concatenate([x[:16], x[16:]]), y, sample_weight=mask * 2, batch_size=32,
             epochs=2, shuffle=False, verbose=0)
    for a, b in zip(half.get_weights(), full.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_class_weight_equals_the_matching_sample_weight(rng):
    x = rng.standard_normal((60, 4)).astype(np.float32)
    labels = (x[:, 0] > 0.3).astype(np.int64)

    def classifier():
        pydl.manual_seed(3)
        model = keras.Sequential([layers.Dense(2, activation="softmax", input_shape=(4,))])
        model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
        return model
    by_class, by_sample = classifier(), classifier()
    by_class.fit(x, labels, class_weight={0: 1.0, 1: 4.0}, batch_size=20, epochs=2,
                 shuffle=False, verbose=0)
    by_sample.fit(x, labels, sample_weight=np.where(labels == 1, 4.0, 1.0), batch_size=20,
                  epochs=2, shuffle=False, verbose=0)
    for a, b in zip(by_class.get_weights(), by_sample.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    one_hot = keras.utils.to_categorical(labels, 2)
    np.testing.assert_array_equal(
        keras.data_adapters.class_sample_weights(one_hot, {1: 4.0}),
        np.where(labels == 1, 4.0, 1.0))


@pytest.mark.parametrize("regularizer,penalty", [
    (regularizers.l1(0.1), lambda w: 0.1 * np.abs(w).sum()),
    (regularizers.l2(0.05), lambda w: 0.05 * (w ** 2).sum()),
    (regularizers.l1_l2(l1=0.02, l2=0.03), lambda w: 0.02 * np.abs(w).sum() +
     0.03 * (w ** 2).sum())])
def test_weight_regularizers_add_their_penalty_and_its_gradient(rng, regularizer, penalty):
    x, y = _regression(rng, n=16)
    plain, regularized = _twin_models()
    regularized = _linear_model(kernel_regularizer=regularizer, bias_regularizer=regularizer)
    regularized.set_weights(plain.get_weights())
    kernel, bias = plain.get_weights()
    expected = plain.evaluate(x, y, verbose=0) + penalty(kernel) + penalty(bias)
    assert regularized.evaluate(x, y, verbose=0) == pytest.approx(expected, rel=1e-5)
    assert len(regularized.losses) == 2
    plain.fit(x, y, batch_size=16, epochs=1, verbose=0)
    regularized.fit(x, y, batch_size=16, epochs=1, verbose=0)
    # SGD: the extra step is lr * d(penalty)/dw, checked by central differences
    step = 1e-3
    grad = np.array([(penalty(kernel + step * e) - penalty(kernel - step * e)) / (2 * step)
                     for e in np.eye(kernel.size).reshape(-1, *kernel.shape)]).reshape(
        kernel.shape)
    np.testing.assert_allclose(plain.get_weights()[0] - regularized.get_weights()[0],
                               0.05 * grad, rtol=1e-3, atol=1e-5)


def test_activity_regularizer_penalizes_outputs_per_sample(rng):
    x, y = _regression(rng, n=24)
    plain, regularized = _twin_models()
    regularized = _linear_model(activity_regularizer=regularizers.l2(0.1))
    regularized.set_weights(plain.get_weights())
    outputs = plain.predict(x, verbose=0)
    expected = plain.evaluate(x, y, batch_size=24, verbose=0) + \
        0.1 * (outputs ** 2).sum() / 24
    assert regularized.evaluate(x, y, batch_size=24, verbose=0) == pytest.approx(expected,
                                                                                 rel=1e-5)


def test_regularizers_from_names_and_configs():
    assert regularizers.get("l1").l1 == 0.01
    assert regularizers.get({"class_name": "L1L2", "config": {"l1": 0.1, "l2": 0.2}}).l2 == 0.2
    assert regularizers.get(None) is None
    with pytest.raises(ValueError, match="l3"):
        regularizers.get("l3")
    with pytest.raises(ValueError, match="non-negative"):
        regularizers.L2(-1.0)


def _every_layer_model():
    """A functional model through every layer added to pydl.keras with the
    regularizers, in one graph that save/load_model must restore."""
    sequence = keras.Input((12, 4))
    x = layers.Conv1D(6, 3, padding="causal", kernel_regularizer="l2")(sequence)
    x = layers.LeakyReLU(0.2)(x)
    x = layers.MaxPooling1D(2)(x)
    x = layers.AveragePooling1D(2, strides=1, padding="same")(x)
    x = layers.LayerNormalization()(x)
    x = layers.MultiHeadAttention(num_heads=2, key_dim=3)(x, x, use_causal_mask=True)
    x = layers.Bidirectional(layers.LSTM(4, return_sequences=True))(x)
    x = layers.TimeDistributed(layers.Dense(5, activation="relu"))(x)
    pooled = layers.GlobalMaxPooling1D()(x)
    averaged = layers.GlobalAveragePooling1D()(x)
    x = layers.Concatenate()([pooled, averaged])
    x = layers.RepeatVector(2)(x)
    x = layers.Permute((2, 1))(x)
    x = layers.Reshape((5, 2, 2))(x)
    x = layers.ZeroPadding2D(((1, 0), (0, 1)))(x)
    x = layers.UpSampling2D((1, 2))(x)
    x = layers.Conv2DTranspose(3, 2, strides=2, padding="same",
                               activity_regularizer=regularizers.l1(1e-3))(x)
    x = layers.AveragePooling2D(2)(x)
    x = layers.GlobalMaxPooling2D()(x)
    x = layers.Activation("tanh")(x)
    out = layers.Dense(3, activation="softmax", bias_regularizer=regularizers.l1_l2())(x)
    return keras.Model(sequence, out)


def test_save_and_load_model_restore_every_new_layer(rng, tmp_path):
    pydl.manual_seed(4)
    model = _every_layer_model()
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    x = rng.standard_normal((16, 12, 4)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.load_model(path)
    assert [type(layer).__name__ for layer in loaded.layers] == \
        [type(layer).__name__ for layer in model.layers]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    assert loaded.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0),
                                                             rel=1e-5)
    loaded.fit(x, y, batch_size=8, epochs=1, verbose=0)  # the optimizer state came back too


def test_summary_columns_fit_long_names():
    model = keras.Sequential([
        layers.Dense(4, input_shape=(3,), name="a_dense_layer_with_a_really_long_name"),
        layers.Dense(2, name="short")])
    lines = []
    model.summary(print_fn=lines.append)
    header = next(line for line in lines if "Output Shape" in line)
    row = next(line for line in lines if "really_long_name" in line)
    shape_column = header.index("Output Shape")
    assert row.index("(None, 4)") == shape_column
    assert row[shape_column - 1] == " "
    assert all(len(line) == len(lines[1]) or not line.startswith(("_", "="))
               for line in lines)


def test_dense_on_the_wrong_shape_names_the_layer_and_its_input_shape():
    model = keras.Sequential([layers.Dense(3, input_shape=(4,), name="classifier")])
    with pytest.raises(ValueError, match=r"'classifier'.*4 features.*input_shape=\(4,\).*"
                                         r"\(2, 5\)"):
        model.predict(np.ones((2, 5)), verbose=0)


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                    reason="History.plot needs matplotlib")
def test_history_plot_returns_a_figure_with_whole_epoch_ticks(rng):
    x, y = _regression(rng)
    model = _linear_model()
    history = model.fit(x, y, epochs=3, batch_size=16, verbose=0, validation_split=0.25)
    figure = history.plot()
    axis, = figure.axes
    ticks = [t for t in axis.get_xticks() if axis.get_xlim()[0] <= t <= axis.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert {line.get_label() for line in axis.get_lines()} >= {"loss", "val_loss"}
    # the running loss within the epochs: one point per batch
    assert len(history.batch_history["loss"]) == 3 * 3


def test_a_learning_rate_schedule_sets_each_updates_rate(rng, tmp_path):
    schedules = keras.optimizers.schedules
    decay = schedules.CosineDecay(0.2, decay_steps=4, alpha=0.1)
    expected = [0.2 * (0.9 * 0.5 * (1 + np.cos(np.pi * min(t, 4) / 4)) + 0.1) for t in range(6)]
    np.testing.assert_allclose([decay(t) for t in range(6)], expected)
    assert schedules.ExponentialDecay(0.1, 2, 0.5)(3) == pytest.approx(0.1 * 0.5 ** 1.5)
    x, y = _regression(rng, n=16)
    scheduled, stepwise = _twin_models()
    scheduled.compile(keras.optimizers.SGD(learning_rate=decay), "mse")
    seen = []

    class Rates(keras.callbacks.Callback):
        def on_batch_end(self, batch, logs=None):
            seen.append(self.model.optimizer.learning_rate)
    scheduled.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, callbacks=[Rates()])
    np.testing.assert_allclose(seen, expected[:4])
    stepwise.compile(keras.optimizers.SGD(learning_rate=1.0), "mse")
    for step, rate in enumerate(expected[:4]):  # the same updates, the rate set by hand
        stepwise.optimizer.learning_rate = rate
        stepwise.train_on_batch(x[4 * step:4 * step + 4], y[4 * step:4 * step + 4])
    for a, b in zip(scheduled.get_weights(), stepwise.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    path = tmp_path / "scheduled.keras"
    scheduled.save(path)
    restored = keras.load_model(path).optimizer
    assert isinstance(restored.schedule, schedules.CosineDecay)
    assert restored.schedule.get_config() == decay.get_config()
    assert restored.iterations == 4
