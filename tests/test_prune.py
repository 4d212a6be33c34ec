"""pydl.nn.utils.prune against torch.nn.utils.prune: the same masks on the same weights,
the reparametrization (weight_orig, weight_mask, the pre-forward hook), fine-tuning
keeping the zeros, and remove()."""
import numpy as np
import pytest

import pydl
import pydl.nn as nn
from pydl.nn.utils import prune

torch = pytest.importorskip("torch")
import torch.nn.utils.prune as torch_prune  # noqa: E402


def _pair(ours, theirs):
    """Gives torch module `theirs` the weights of pydl module `ours`."""
    theirs.load_state_dict({k: torch.from_numpy(v.numpy().copy())
                            for k, v in ours.state_dict().items()})
    return ours, theirs


def _conv_pair():
    pydl.manual_seed(1)
    return _pair(nn.Conv2d(4, 6, 3), torch.nn.Conv2d(4, 6, 3))


def _linear_pair():
    pydl.manual_seed(2)
    return _pair(nn.Linear(9, 7), torch.nn.Linear(9, 7))


def _mask(module):
    return module.weight_mask.numpy()


@pytest.mark.parametrize("amount", [0.0, 0.3, 0.5, 0.999, 1.0, 17])
def test_l1_unstructured_matches_torch(amount):
    ours, theirs = _conv_pair()
    prune.l1_unstructured(ours, "weight", amount)
    torch_prune.l1_unstructured(theirs, "weight", amount)
    np.testing.assert_array_equal(_mask(ours), theirs.weight_mask.numpy())
    np.testing.assert_array_equal(ours.weight.detach().numpy(), theirs.weight.detach().numpy())
    assert list(ours.state_dict()) == list(theirs.state_dict())


def test_repeated_pruning_prunes_what_is_left_as_torch():
    ours, theirs = _linear_pair()
    for amount in (0.4, 0.5, 3):
        prune.l1_unstructured(ours, "weight", amount)
        torch_prune.l1_unstructured(theirs, "weight", amount)
        np.testing.assert_array_equal(_mask(ours), theirs.weight_mask.numpy())
    prune.ln_structured(ours, "weight", 0.5, n=2, dim=0)
    torch_prune.ln_structured(theirs, "weight", 0.5, n=2, dim=0)
    np.testing.assert_array_equal(_mask(ours), theirs.weight_mask.numpy())


@pytest.mark.parametrize("n,dim,amount", [(1, 0, 0.5), (2, 0, 2), (2, 1, 0.25),
                                          (float("inf"), -1, 0.4), (3, 0, 0.34)])
def test_ln_structured_matches_torch(n, dim, amount):
    ours, theirs = _conv_pair()
    prune.ln_structured(ours, "weight", amount, n=n, dim=dim)
    torch_prune.ln_structured(theirs, "weight", amount, n=n, dim=dim)
    np.testing.assert_array_equal(_mask(ours), theirs.weight_mask.numpy())
    # whole channels go: each slice along dim is all kept or all pruned
    kept = np.moveaxis(_mask(ours), dim, 0).reshape(_mask(ours).shape[dim], -1)
    assert np.all((kept == 0).all(axis=1) | (kept == 1).all(axis=1))


def test_global_unstructured_matches_torch():
    pydl.manual_seed(3)
    ours = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten(), nn.Linear(16, 5), nn.Linear(5, 3))
    theirs = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.Flatten(),
                                 torch.nn.Linear(16, 5), torch.nn.Linear(5, 3))
    _pair(ours, theirs)
    prune.l1_unstructured(ours[3], "weight", 0.2)     # one already pruned: masked values count
    torch_prune.l1_unstructured(theirs[3], "weight", 0.2)
    for amount in (0.6, 0.5):
        prune.global_unstructured([(ours[i], "weight") for i in (0, 2, 3)],
                                  pruning_method=prune.L1Unstructured, amount=amount)
        torch_prune.global_unstructured([(theirs[i], "weight") for i in (0, 2, 3)],
                                        pruning_method=torch_prune.L1Unstructured, amount=amount)
        for i in (0, 2, 3):
            np.testing.assert_array_equal(ours[i].weight_mask.numpy(),
                                          theirs[i].weight_mask.numpy())
    x = np.random.default_rng(0).standard_normal((3, 2, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(ours(pydl.tensor(x)).detach().numpy(),
                               theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-5,
                               atol=1e-6)
    with pytest.raises(TypeError, match="unstructured"):
        prune.global_unstructured([(ours[0], "bias")], prune.LnStructured, amount=0.5, n=1)


def test_masks_hold_through_fine_tuning_and_remove_makes_them_permanent():
    pydl.manual_seed(4)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = pydl.optim.Adam(model.parameters(), lr=0.05)   # built before pruning
    prune.l1_unstructured(model[0], "weight", 0.6)
    prune.ln_structured(model[2], "weight", 1, n=2, dim=1)
    assert prune.is_pruned(model) and not prune.is_pruned(nn.Linear(2, 2))
    masks = [model[0].weight_mask.numpy().copy(), model[2].weight_mask.numpy().copy()]
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((32, 6)).astype(np.float32), rng.integers(0, 2, 32)
    losses = []
    for _ in range(30):
        loss = nn.functional.cross_entropy(model(pydl.tensor(x)), pydl.tensor(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    for layer, mask in zip((model[0], model[2]), masks):
        assert np.all(layer.weight.detach().numpy()[mask == 0] == 0)
        assert np.all(layer.weight_orig.grad.numpy()[mask == 0] == 0)
    before = model(pydl.tensor(x)).detach().numpy()
    orig = model[0].weight_orig
    prune.remove(model[0], "weight")
    prune.remove(model[2], "weight")
    assert not prune.is_pruned(model)
    assert model[0].weight is orig and isinstance(orig, nn.Parameter)
    assert sorted(model.state_dict()) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    np.testing.assert_array_equal(model(pydl.tensor(x)).detach().numpy(), before)
    assert np.all(model[0].weight.detach().numpy()[masks[0] == 0] == 0)
    with pytest.raises(ValueError, match="has to be pruned"):
        prune.remove(model[0], "weight")


def test_random_unstructured_prunes_the_count_and_bad_arguments_raise():
    pydl.manual_seed(5)
    layer = nn.Linear(10, 10)
    prune.random_unstructured(layer, "weight", 0.3)
    assert int((layer.weight_mask.numpy() == 0).sum()) == 30
    with pytest.raises(ValueError, match="amount"):
        prune.l1_unstructured(nn.Linear(2, 2), "weight", 1.5)
    with pytest.raises(ValueError, match="smaller than the number"):
        prune.l1_unstructured(nn.Linear(2, 2), "weight", 5)
    with pytest.raises(AttributeError, match="no parameter 'kernel'"):
        prune.l1_unstructured(nn.Linear(2, 2), "kernel", 0.5)


def test_forward_pre_hook_can_replace_the_input_and_be_removed():
    layer = nn.Linear(3, 2)
    handle = layer.register_forward_pre_hook(lambda module, args: args[0] * 0)
    x = pydl.ones(1, 3)
    np.testing.assert_allclose(layer(x).detach().numpy()[0], layer.bias.detach().numpy())
    handle.remove()
    assert not np.allclose(layer(x).detach().numpy()[0], layer.bias.detach().numpy())
