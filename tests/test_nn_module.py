"""nn.Module: registration, traversal, modes, state_dict round trips and errors."""
import numpy as np
import pytest

import pydl
import pydl.nn as nn


class Affine(nn.Module):
    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(pydl.randn(n_out, n_in))
        self.bias = nn.Parameter(pydl.randn(n_out))
        self.register_buffer("calls", pydl.zeros(1))
        self.register_buffer("scratch", pydl.zeros(2), persistent=False)

    def forward(self, x):
        return x @ self.weight.T + self.bias


def model():
    return nn.Sequential(Affine(4, 3), nn.Sequential(Affine(3, 2)))


def test_names_follow_pytorch():
    m = model()
    assert [n for n, _ in m.named_parameters()] == ["0.weight", "0.bias", "1.0.weight", "1.0.bias"]
    assert list(m.state_dict()) == ["0.weight", "0.bias", "0.calls", "1.0.weight", "1.0.bias",
                                    "1.0.calls"]
    assert [n for n, _ in m.named_modules()] == ["", "0", "1", "1.0"]


def test_shared_parameter_listed_once():
    shared = Affine(2, 2)
    both = nn.Sequential(shared, shared)
    assert len(list(both.parameters())) == 2


def test_forward_and_gradients_reach_every_parameter(rng):
    m = model()
    x = pydl.tensor(rng.standard_normal((5, 4)).astype(np.float32))
    m(x).sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name
    # d sum(y) / d W0 = (ones @ W1)^T @ x
    hidden_grad = np.ones((5, 2)) @ m[1][0].weight.data.astype(np.float64)
    np.testing.assert_allclose(m[0].weight.grad.numpy(), hidden_grad.T @ x.data, rtol=1e-5,
                               atol=1e-5)
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())


def test_train_eval_reach_children():
    m = model()
    m.eval()
    assert not any(mod.training for mod in m.modules())
    m.train()
    assert all(mod.training for mod in m.modules())


def test_state_dict_round_trip(rng):
    src, dst = model(), model()
    state = {k: rng.standard_normal(v.shape) for k, v in src.state_dict().items()}
    src.load_state_dict(state)
    dst.load_state_dict(src.state_dict())
    for (k, a), (_, b) in zip(src.state_dict().items(), dst.state_dict().items()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)
        np.testing.assert_allclose(a.numpy(), state[k].astype(np.float32), err_msg=k)


def test_load_state_dict_errors():
    m = model()
    state = m.state_dict()
    del state["0.bias"]
    with pytest.raises(KeyError, match="missing keys.*0.bias"):
        m.load_state_dict(state)
    state = dict(m.state_dict(), extra=np.zeros(1))
    with pytest.raises(KeyError, match="unexpected keys.*extra"):
        m.load_state_dict(state)
    assert m.load_state_dict(state, strict=False).unexpected_keys == ["extra"]
    state = dict(m.state_dict())
    state["0.weight"] = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"0.weight has shape \(4, 3\).*\(3, 4\)"):
        m.load_state_dict(state)


def test_dtype_conversion_keeps_parameter_objects():
    m = model()
    params = list(m.parameters())
    m.double()
    assert list(m.parameters()) == params
    assert all(p.dtype == np.float64 and p.requires_grad for p in params)


def test_matches_torch_state_dict_keys():
    torch = pytest.importorskip("torch")
    tm = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Sequential(torch.nn.Linear(3, 2)))
    pm = model()
    params = [k for k, _ in pm.named_parameters()]
    assert params == [k for k, _ in tm.named_parameters()]
    pm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()}, strict=False)
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(pm(pydl.tensor(x)).detach().numpy(), tm(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)


def test_errors_are_clear():
    class Forgot(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(pydl.zeros(1))
    with pytest.raises(AttributeError, match="super\\(\\).__init__"):
        Forgot()
    with pytest.raises(NotImplementedError, match="Module has no forward"):
        nn.Module()(1)
    with pytest.raises(TypeError, match="expected a Parameter"):
        nn.Module().register_parameter("w", pydl.zeros(1))


def test_containers_index_slice_and_iterate():
    layers = [Affine(4, 4) for _ in range(3)]
    seq, lst = nn.Sequential(*layers), nn.ModuleList(layers[:2]).append(layers[2])
    for container in (seq, lst):
        assert len(container) == 3 and list(container) == layers
        assert container[1] is layers[1] and container[-1] is layers[2]
        part = container[1:]
        assert type(part) is type(container) and list(part) == layers[1:]
    assert [n for n, _ in lst.named_parameters()][:2] == ["0.weight", "0.bias"]
    x = pydl.randn(2, 4)
    expected = layers[2](layers[1](layers[0](x)))
    np.testing.assert_allclose(seq(x).detach().numpy(), expected.detach().numpy())
