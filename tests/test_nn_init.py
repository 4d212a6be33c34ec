"""pydl.nn.init: the sampled statistics match the formulas, seeds reproduce, and the
layers' default initializations follow torch's."""
import math

import numpy as np
import pytest

import pydl
from pydl import nn
from pydl.nn import init


def filled(fn, shape, *args, **kwargs):
    t = pydl.empty(*shape)
    out = fn(t, *args, **kwargs)
    assert out is t
    return t.numpy().astype(np.float64)


def check_uniform(values, bound):
    assert values.min() >= -bound and values.max() <= bound
    assert values.max() > 0.99 * bound and values.min() < -0.99 * bound
    np.testing.assert_allclose(values.std(), bound / math.sqrt(3), rtol=0.02)
    assert abs(values.mean()) < 0.02 * bound


def test_uniform_normal_constant():
    pydl.manual_seed(1)
    v = filled(init.uniform_, (200, 300), -2.0, 3.0)
    assert v.min() >= -2 and v.max() < 3
    np.testing.assert_allclose(v.mean(), 0.5, atol=0.02)
    v = filled(init.normal_, (200, 300), 1.5, 0.25)
    np.testing.assert_allclose([v.mean(), v.std()], [1.5, 0.25], rtol=0.01)
    np.testing.assert_array_equal(filled(init.constant_, (3, 4), 2.5), 2.5)
    np.testing.assert_array_equal(filled(init.zeros_, (3, 4)), 0)
    np.testing.assert_array_equal(filled(init.ones_, (3, 4)), 1)


@pytest.mark.parametrize("shape", [(300, 200), (64, 32, 3, 3)])
def test_xavier_and_kaiming_statistics(shape):
    receptive = int(np.prod(shape[2:]))
    fan_in, fan_out = shape[1] * receptive, shape[0] * receptive
    check_uniform(filled(init.xavier_uniform_, shape, gain=2.0),
                  2.0 * math.sqrt(6 / (fan_in + fan_out)))
    np.testing.assert_allclose(filled(init.xavier_normal_, shape).std(),
                               math.sqrt(2 / (fan_in + fan_out)), rtol=0.02)
    check_uniform(filled(init.kaiming_uniform_, shape, nonlinearity="relu"),
                  math.sqrt(2) * math.sqrt(3 / fan_in))
    check_uniform(filled(init.kaiming_uniform_, shape, a=math.sqrt(5)), 1 / math.sqrt(fan_in))
    np.testing.assert_allclose(
        filled(init.kaiming_normal_, shape, mode="fan_out", nonlinearity="relu").std(),
        math.sqrt(2 / fan_out), rtol=0.02)


def test_calculate_gain_matches_torch():
    torch = pytest.importorskip("torch")
    for name, param in [("linear", None), ("sigmoid", None), ("tanh", None), ("relu", None),
                        ("leaky_relu", None), ("leaky_relu", 0.2), ("selu", None),
                        ("conv2d", None)]:
        assert init.calculate_gain(name, param) == pytest.approx(
            torch.nn.init.calculate_gain(name, param), rel=1e-12)
    with pytest.raises(ValueError, match="unsupported nonlinearity"):
        init.calculate_gain("swish")


@pytest.mark.parametrize("shape", [(5, 8), (8, 5), (4, 2, 3)])
def test_orthogonal(shape):
    w = filled(init.orthogonal_, shape, gain=1.5).reshape(shape[0], -1)
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    np.testing.assert_allclose(gram, 2.25 * np.eye(gram.shape[0]), atol=1e-5)


def test_seed_reproduces_and_errors():
    pydl.manual_seed(7)
    a = filled(init.kaiming_normal_, (10, 10))
    pydl.manual_seed(7)
    np.testing.assert_array_equal(a, filled(init.kaiming_normal_, (10, 10)))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.xavier_uniform_(pydl.empty(5))
    with pytest.raises(ValueError, match="mode must be"):
        init.kaiming_uniform_(pydl.empty(3, 3), mode="fan")


def test_layer_default_inits():
    pydl.manual_seed(3)
    layer = nn.Linear(400, 300)
    check_uniform(layer.weight.detach().numpy().astype(np.float64), 1 / math.sqrt(400))
    bias = layer.bias.detach().numpy()
    assert np.abs(bias).max() <= 1 / math.sqrt(400) and np.abs(bias).max() > 0.9 / 20
    emb = nn.Embedding(500, 100, padding_idx=4).weight.detach().numpy()
    np.testing.assert_array_equal(emb[4], 0)
    np.testing.assert_allclose(np.delete(emb, 4, 0).std(), 1.0, rtol=0.02)
    mha = nn.MultiheadAttention(64, 4)
    check_uniform(mha.in_proj_weight.detach().numpy().astype(np.float64), math.sqrt(6 / (64 + 192)))
    np.testing.assert_array_equal(mha.in_proj_bias.detach().numpy(), 0)
    np.testing.assert_array_equal(mha.out_proj.bias.detach().numpy(), 0)
