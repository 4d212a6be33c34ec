"""pydl.onnx.export: every layer family through ONNX Runtime against pydl's own outputs,
at the example's batch size and at another one (dynamic batch); load_weights."""
import numpy as np
import pytest

import pydl
import pydl.nn as nn
import pydl.nn.functional as F

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from pydl import keras  # noqa: E402
from pydl.keras import layers  # noqa: E402

RTOL, ATOL = 1e-4, 1e-5


class LastHidden(nn.Module):
    """A recurrent layer's top-layer final state through a linear head, as the seed text
    classifier does; `which` picks output, h_n or (LSTM) c_n."""

    def __init__(self, rnn, which="h"):
        super().__init__()
        self.rnn, self.which = rnn, which
        wide = rnn.bidirectional and which == "output"
        self.head = nn.Linear(rnn.hidden_size * (2 if wide else 1), 3)

    def forward(self, x):
        output, state = self.rnn(x)
        if self.which == "output":
            return self.head(output)
        h, c = state if isinstance(state, tuple) else (state, None)
        return self.head(h[-1] if self.which == "h" else c[-1])


class Attention(nn.Module):
    def __init__(self, batch_first):
        super().__init__()
        self.attention = nn.MultiheadAttention(16, 4, batch_first=batch_first)
        self.norm = nn.LayerNorm(16)

    def forward(self, x):
        attended, _ = self.attention(x, x, x, need_weights=False)
        return self.norm(x + attended).softmax(-1)


class Tokens(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(20, 8)
        self.positions = nn.Embedding(6, 8)
        self.linear = nn.Linear(8, 4)

    def forward(self, tokens):                       # (N, 6) int64
        h = self.embedding(tokens) + self.positions(pydl.arange(tokens.shape[1]))
        return F.gelu(self.linear(h.mean(dim=1)))


class ElementwiseMix(nn.Module):
    """Arithmetic, reshapes, indexing and reductions of a custom forward."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(12, 12)

    def forward(self, x):                            # (N, 3, 4)
        h = self.linear(x.reshape(x.shape[0], -1)).reshape(x.shape[0], 3, 4)
        h = (h * 0.5 - x).abs().clamp(0.1, 2.0).sqrt() + x.exp() / (1 + x ** 2)
        h = pydl.cat([h[:, 1:], h[:, :1].tanh()], dim=1).permute(0, 2, 1)
        tail = h.amax(dim=1)[:, None, :3].squeeze(1).sigmoid().log_softmax(-1)
        return pydl.stack([h.sum(dim=2)[:, :3], tail, h[..., -1].mean(dim=1, keepdim=True)
                           .expand(x.shape[0], 3)], dim=1)


def _rng():
    return np.random.default_rng(0)


def _images(n, c=3, size=12):
    return _rng().standard_normal((n, c, size, size)).astype(np.float32)


def _trained_batch_norm(model, example):
    """Running statistics away from their (0, 1) start, as after training."""
    model.train()
    with pydl.no_grad():
        for _ in range(3):
            model(pydl.tensor(example * 2 + 1))
    return model.eval()


def _sequential_cnn():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=4), nn.Sigmoid(),
        nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5),
        nn.Linear(8, 5), nn.Softmax(dim=1))
    return _trained_batch_norm(model, _images(8)), _images(2), _images(5)


def _pooling():
    model = nn.Sequential(nn.AvgPool2d(3, stride=2, padding=1), nn.Tanh(),
                          nn.MaxPool2d(3, stride=2, padding=1), nn.AvgPool2d(2, ceil_mode=False),
                          nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten())
    return model, _images(3), _images(1)


def _mlp_batch_norm():
    model = nn.Sequential(nn.Linear(10, 16), nn.BatchNorm1d(16), nn.GELU(), nn.Dropout(0.3),
                          nn.Linear(16, 8), nn.LeakyReLU(0.2), nn.Linear(8, 4),
                          nn.LogSoftmax(dim=1))
    x = _rng().standard_normal((4, 10)).astype(np.float32)
    return _trained_batch_norm(model, np.tile(x, (4, 1))), x, x[:1]


def _recurrent(cls, which, **kwargs):
    def build():
        model = LastHidden(cls(5, 7, **kwargs), which).eval()
        batch_first = kwargs.get("batch_first", False)
        shape = (3, 6, 5) if batch_first else (6, 3, 5)
        x = _rng().standard_normal(shape).astype(np.float32)
        other = x[:1] if batch_first else x[:, :1]
        return model, x, np.ascontiguousarray(other)
    return build


def _attention(batch_first):
    def build():
        x = _rng().standard_normal((2, 5, 16) if batch_first else (5, 2, 16)).astype(np.float32)
        other = np.concatenate([x, x * 0.5, -x], axis=0 if batch_first else 1)
        return Attention(batch_first).eval(), x, other
    return build


def _tokens():
    x = _rng().integers(0, 20, (4, 6)).astype(np.int64)
    return Tokens(), x, x[:1]


def _mix():
    x = _rng().standard_normal((2, 3, 4)).astype(np.float32)
    return ElementwiseMix(), x, np.concatenate([x, -x, x * 2])


def _pruned():
    """Weights through the pruning hook: weight_orig * weight_mask."""
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 10 * 10, 4))
    nn.utils.prune.l1_unstructured(model[0], "weight", 0.5)
    nn.utils.prune.ln_structured(model[3], "weight", 0.5, n=2, dim=0)
    return model, _images(2), _images(3)


def _keras_cnn():
    model = keras.Sequential([
        layers.Conv2D(6, (3, 3), activation="relu", padding="same", input_shape=(10, 10, 2)),
        layers.BatchNormalization(),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(4, (3, 3), strides=(2, 2), activation="tanh"),
        layers.Flatten(), layers.Dropout(0.2), layers.Dense(5, activation="softmax")])
    x = _rng().standard_normal((3, 10, 10, 2)).astype(np.float32)
    return model, x, x[:2]


def _keras_recurrent(cls, return_sequences):
    def build():
        model = keras.Sequential([
            layers.Embedding(30, 6, input_shape=(7,)),
            # named: test_keras expects the first unnamed LSTM of the session to be "lstm"
            cls(5, return_sequences=return_sequences, name=f"exported_{cls.__name__.lower()}"),
            layers.Flatten() if return_sequences else layers.Activation("linear"),
            layers.Dense(3)])
        x = _rng().integers(0, 30, (4, 7)).astype(np.int64)
        return model, x, x[:3]
    return build


def _keras_functional():
    inputs = layers.Input(shape=(8,))
    a = layers.Dense(6, activation="relu")(inputs)
    b = layers.Dense(6, activation="sigmoid")(inputs)
    merged = layers.Concatenate()([layers.Add()([a, b]), layers.Multiply()([a, b])])
    model = keras.Model(inputs, layers.Dense(2)(merged))
    x = _rng().standard_normal((5, 8)).astype(np.float32)
    return model, x, x[:2]


FAMILIES = {
    "conv_batchnorm_pool_linear": _sequential_cnn,
    "pooling": _pooling,
    "linear_batchnorm1d_gelu_leakyrelu_dropout": _mlp_batch_norm,
    "lstm_h": _recurrent(nn.LSTM, "h", num_layers=2),
    "lstm_c_bidirectional_batch_first": _recurrent(nn.LSTM, "c", bidirectional=True,
                                                   batch_first=True),
    "gru_output_bidirectional": _recurrent(nn.GRU, "output", bidirectional=True),
    "gru_h_two_layers": _recurrent(nn.GRU, "h", num_layers=2, batch_first=True),
    "rnn_relu": _recurrent(nn.RNN, "h", nonlinearity="relu"),
    "multihead_attention": _attention(False),
    "multihead_attention_batch_first": _attention(True),
    "embedding": _tokens,
    "pruned_conv_linear": _pruned,
    "elementwise_shape_reduce": _mix,
    "keras_cnn_channels_last": _keras_cnn,
    "keras_lstm": _keras_recurrent(layers.LSTM, False),
    "keras_gru_sequences": _keras_recurrent(layers.GRU, True),
    "keras_simple_rnn": _keras_recurrent(layers.SimpleRNN, False),
    "keras_functional": _keras_functional,
}


def _pydl_output(model, x):
    with pydl.no_grad():
        out = model(x, training=False) if hasattr(model, "compile") else model(pydl.tensor(x))
    return out.numpy()


def max_differences(family, tmp_path):
    """(max |pydl - ONNX Runtime| at the example's batch, at the other batch)."""
    model, x, other = FAMILIES[family]()
    path = tmp_path / f"{family}.onnx"
    pydl.onnx.export(model, x, path, dynamic_batch=True, batch_axis=_batch_axis(family))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    differences = []
    for inputs in (x, other):
        expected = _pydl_output(model, inputs)
        (got,) = session.run(None, {"input": inputs})
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
        differences.append(float(np.abs(got - expected).max()))
    return differences


def _batch_axis(family):
    seq_first = family in ("lstm_h", "gru_output_bidirectional", "rnn_relu",
                           "multihead_attention")
    return 1 if seq_first else 0


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_onnx_runtime_matches_pydl_at_two_batch_sizes(family, tmp_path):
    max_differences(family, tmp_path)


def test_recurrent_layers_use_onnx_recurrent_operators(tmp_path):
    for family, op in (("lstm_h", "LSTM"), ("gru_h_two_layers", "GRU"), ("rnn_relu", "RNN"),
                       ("keras_lstm", "LSTM")):
        model, x, _ = FAMILIES[family]()
        proto = pydl.onnx.export(model, x, tmp_path / "m.onnx", batch_axis=_batch_axis(family))
        ops = [n for n in proto.graph.node if n.op_type == op]
        assert ops, family
        if op == "GRU":
            assert all(a.i == 1 for n in ops for a in n.attribute if a.name ==
                       "linear_before_reset")


def test_fixed_batch_export_declares_the_example_shape(tmp_path):
    model, x, _ = _sequential_cnn()
    proto = pydl.onnx.export(model, x, tmp_path / "m.onnx", dynamic_batch=False)
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == list(x.shape)
    dynamic = pydl.onnx.export(model, x, tmp_path / "d.onnx")
    assert dynamic.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_export_restores_training_mode_and_grad_flags(tmp_path):
    model, x, _ = _mlp_batch_norm()
    model.train()
    model[0].requires_grad_(False)
    pydl.onnx.export(model, x, tmp_path / "m.onnx")
    assert model.training and model[1].training
    assert not model[0].weight.requires_grad and model[1].weight.requires_grad


def test_load_weights_reads_initializers_back(tmp_path):
    for family in ("conv_batchnorm_pool_linear", "keras_cnn_channels_last"):
        model, x, _ = FAMILIES[family]()
        path = tmp_path / "m.onnx"
        pydl.onnx.export(model, x, path)
        fresh, _, _ = FAMILIES[family]()
        if hasattr(fresh, "compile"):
            fresh(x)  # built; its weights are new random ones
            names = [w for layer in fresh.layers for w in layer.weights]
        else:
            names = list(fresh.state_dict().values())
        for w in names:
            if w.dtype.kind == "f":
                w.data[...] = 0
        loaded = pydl.onnx.load_weights(path, fresh)
        assert loaded
        np.testing.assert_array_equal(_pydl_output(fresh, x), _pydl_output(model, x))


def test_load_weights_checks_names_and_shapes(tmp_path):
    model = nn.Sequential(nn.Linear(4, 3))
    path = tmp_path / "m.onnx"
    pydl.onnx.export(model, np.ones((2, 4), np.float32), path)
    with pytest.raises(KeyError, match=r"missing from the file \['1.weight', '1.bias'\]"):
        pydl.onnx.load_weights(path, nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 3)))
    with pytest.raises(KeyError, match=r"not in the model \['0.weight', '0.bias'\]"):
        pydl.onnx.load_weights(path, nn.Sequential(nn.Identity(), nn.Linear(4, 3)))
    with pytest.raises(ValueError, match="0.weight has shape"):
        pydl.onnx.load_weights(path, nn.Sequential(nn.Linear(5, 3)))


def test_unsupported_ops_are_refused_naming_the_layer(tmp_path):
    class FunctionalLeakyReLU(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 4)

        def forward(self, x):
            return F.leaky_relu(self.linear(x))
    with pytest.raises(NotImplementedError, match=r"op Where \(in FunctionalLeakyReLU"):
        pydl.onnx.export(FunctionalLeakyReLU(), np.ones((2, 4), np.float32),
                         tmp_path / "m.onnx")

    class NumpyMask(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 4)

        def forward(self, x):
            return self.linear(x) * pydl.tensor((x.detach().numpy() > 0).astype(np.float32))
    x = _rng().standard_normal((2, 4)).astype(np.float32)
    with pytest.raises(NotImplementedError, match="constant"):
        pydl.onnx.export(NumpyMask(), x, tmp_path / "m.onnx")
    with pytest.raises(TypeError, match="nn.Module or a pydl.keras model"):
        pydl.onnx.export(lambda x: x, np.ones((2, 4), np.float32), tmp_path / "m.onnx")
