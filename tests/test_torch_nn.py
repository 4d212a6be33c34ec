"""The torch.nn surface tutorials use, against PyTorch with the same weights: outputs,
input and parameter gradients (float64 tightly, float32 through the kernels), which
kernels run, the dtype errors, schedulers step by step, and Module hooks."""
import numpy as np
import pytest

import pydl
from pydl import _kernels, nn
from pydl.nn import functional as F

from conftest import check_grad
from test_device import check_same, cuda  # noqa: F401 (cuda: the device fixture)
from test_nn_layers import run_both, to_torch

torch = pytest.importorskip("torch")
tnn = torch.nn

DTYPES = ["float32", "float64"]


def normal(rng, *shape, dtype="float64"):
    return rng.standard_normal(shape).astype(dtype)


def kernel_calls(monkeypatch, *names):
    """Records the names of the CPU kernels in `names` as they are called."""
    calls = []
    for name in names:
        kernel = getattr(_kernels.cpu, name)
        monkeypatch.setattr(_kernels.cpu, name,
                            lambda *a, _k=kernel, _n=name, **kw: calls.append(_n) or _k(*a, **kw))
    return calls


# ---- 1-D convolution and pooling ------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kwargs", [dict(), dict(stride=2, padding=1), dict(dilation=2),
                                    dict(groups=2, padding="same"), dict(bias=False)])
def test_conv1d_matches_torch(rng, dtype, kwargs):
    ours, theirs = nn.Conv1d(4, 6, 3, **kwargs), tnn.Conv1d(4, 6, 3, **kwargs)
    ours.to(dtype)
    to_torch(ours, theirs, dtype)
    run_both(ours, theirs, [normal(rng, 2, 4, 11, dtype=dtype)], dtype)


def test_conv1d_init_bound_is_torchs():
    w = nn.Conv1d(4, 6, 5, groups=2).weight.detach().numpy()
    assert w.shape == (6, 2, 5)
    bound = 1 / np.sqrt(2 * 5)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layer,kwargs", [
    ("MaxPool1d", dict(kernel_size=3, stride=2, padding=1)), ("MaxPool1d", dict(kernel_size=2)),
    ("MaxPool1d", dict(kernel_size=2, dilation=2, ceil_mode=True)),
    ("AvgPool1d", dict(kernel_size=3, stride=2, padding=1)),
    ("AvgPool1d", dict(kernel_size=3, padding=1, count_include_pad=False))])
def test_pool1d_matches_torch(rng, dtype, layer, kwargs):
    run_both(getattr(nn, layer)(**kwargs), getattr(tnn, layer)(**kwargs),
             [normal(rng, 2, 3, 9, dtype=dtype)], dtype)


def test_max_pool1d_indices_match_torch(rng):
    x = normal(rng, 2, 3, 10, dtype="float32")
    _, ours = F.max_pool1d(pydl.tensor(x), 3, 2, return_indices=True)
    _, theirs = torch.nn.functional.max_pool1d(torch.tensor(x), 3, 2, return_indices=True)
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_1d_layers_run_the_2d_kernels(rng, monkeypatch):
    calls = kernel_calls(monkeypatch, "conv2d_forward", "conv2d_backward", "max_pool2d_forward",
                         "avg_pool2d_forward")
    x = pydl.tensor(normal(rng, 2, 4, 12, dtype="float32"), requires_grad=True)
    y = nn.AvgPool1d(2)(nn.MaxPool1d(2)(nn.Conv1d(4, 4, 3)(x)))
    y.sum().backward()
    assert calls == ["conv2d_forward", "max_pool2d_forward", "avg_pool2d_forward",
                     "conv2d_backward"]


# ---- transposed convolution -------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3), dict(kernel_size=4, stride=2, padding=1),
    dict(kernel_size=3, stride=2, padding=1, output_padding=1),
    dict(kernel_size=(3, 2), stride=(2, 3), padding=(1, 0), output_padding=(1, 2), bias=False),
    dict(kernel_size=3, dilation=2, padding=2), dict(kernel_size=3, stride=2, groups=2)])
def test_conv_transpose2d_matches_torch(rng, dtype, kwargs):
    ours, theirs = nn.ConvTranspose2d(4, 6, **kwargs), tnn.ConvTranspose2d(4, 6, **kwargs)
    ours.to(dtype)
    to_torch(ours, theirs, dtype)
    run_both(ours, theirs, [normal(rng, 2, 4, 5, 6, dtype=dtype)], dtype)


def test_conv_transpose2d_gradient_by_finite_differences(rng):
    check_grad(lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1,
                                                  output_padding=1),
               normal(rng, 1, 2, 3, 3), normal(rng, 2, 3, 3, 3), normal(rng, 3))


def test_conv_transpose2d_runs_the_conv_kernels(rng, monkeypatch):
    calls = kernel_calls(monkeypatch, "conv2d_forward", "conv2d_backward")
    layer = nn.ConvTranspose2d(3, 2, 4, stride=2, padding=1)
    x = pydl.tensor(normal(rng, 2, 3, 5, 5, dtype="float32"), requires_grad=True)
    layer(x).sum().backward()
    # forward = the grad-input kernel; backward = conv2d forward and the grad-weight kernel.
    assert calls == ["conv2d_backward", "conv2d_forward", "conv2d_backward"]


def test_conv_transpose2d_init_and_errors():
    w = nn.ConvTranspose2d(4, 6, 3, groups=2).weight.detach().numpy()
    assert w.shape == (4, 3, 3, 3)
    bound = 1 / np.sqrt(3 * 9)  # fan_in from the weight's second axis, as torch counts it
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound
    with pytest.raises(ValueError, match="smaller than stride"):
        F.conv_transpose2d(pydl.ones(1, 2, 3, 3), pydl.ones(2, 1, 3, 3), stride=2,
                           output_padding=2)
    with pytest.raises(ValueError, match="has 3 channels but the weight"):
        F.conv_transpose2d(pydl.ones(1, 3, 3, 3), pydl.ones(2, 1, 3, 3))


# ---- activations, dropout, upsampling -----------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,kwargs", [("SiLU", {}), ("ELU", {}), ("ELU", dict(alpha=0.5)),
                                         ("GELU", {}), ("GELU", dict(approximate="tanh")),
                                         ("LeakyReLU", dict(negative_slope=0.2)),
                                         ("Identity", {})])
def test_activations_match_torch(rng, dtype, name, kwargs):
    run_both(getattr(nn, name)(**kwargs), getattr(tnn, name)(**kwargs),
             [3 * normal(rng, 4, 7, dtype=dtype)], dtype)


def test_elu_gradient_stays_finite_for_large_inputs():
    x = pydl.tensor([100.0, -100.0, 1000.0], requires_grad=True)
    F.elu(x).sum().backward()
    assert x.grad.tolist() == pytest.approx([1.0, 0.0, 1.0])


def test_dropout2d_drops_whole_channels(rng):
    pydl.manual_seed(1)
    layer = nn.Dropout2d(0.4)
    x = pydl.tensor(normal(rng, 8, 50, 3, 3, dtype="float32") + 5, requires_grad=True)
    out = layer(x)
    ratio = (out / x).detach().numpy()
    per_channel = ratio.reshape(8, 50, 9)
    assert np.allclose(per_channel, per_channel[:, :, :1])  # one decision per (n, c)
    kept = per_channel[:, :, 0] != 0
    np.testing.assert_allclose(per_channel[:, :, 0][kept], 1 / 0.6, rtol=1e-5)
    assert 0.3 < 1 - kept.mean() < 0.5
    out.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), ratio, rtol=1e-6)
    assert layer.eval()(x) is x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kwargs", [dict(scale_factor=2), dict(scale_factor=(2, 3)),
                                    dict(size=(7, 9)), dict(size=5), dict(scale_factor=1.5)])
def test_upsample_nearest_matches_torch(rng, dtype, kwargs):
    run_both(nn.Upsample(**kwargs), tnn.Upsample(**kwargs), [normal(rng, 2, 3, 4, 5, dtype=dtype)],
             dtype)


def test_upsample_on_3d_input_and_errors(rng):
    run_both(nn.Upsample(scale_factor=3), tnn.Upsample(scale_factor=3),
             [normal(rng, 2, 3, 4)], "float64")
    with pytest.raises(NotImplementedError, match="'bilinear' is not supported"):
        nn.Upsample(scale_factor=2, mode="bilinear")
    with pytest.raises(ValueError, match="exactly one of size and scale_factor"):
        F.interpolate(pydl.ones(1, 1, 2, 2))


# ---- cross-entropy with class weights and label smoothing --------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("target_kind", ["index", "ignored", "probability", "spatial"])
@pytest.mark.parametrize("weighted,smoothing", [(True, 0.0), (False, 0.15), (True, 0.3)])
def test_cross_entropy_weight_and_label_smoothing_match_torch(rng, dtype, reduction, target_kind,
                                                             weighted, smoothing):
    shape = (3, 5, 2, 2) if target_kind == "spatial" else (7, 5)
    if target_kind == "probability":
        target = rng.dirichlet(np.ones(5), size=7).astype(dtype)
    else:
        target = rng.integers(0, 5, shape[:1] + shape[2:])
        if target_kind == "ignored":
            target[[1, 4]] = -1
    weight = rng.uniform(0.2, 2.0, 5).astype(dtype) if weighted else None
    kwargs = dict(reduction=reduction, label_smoothing=smoothing, ignore_index=-1)
    ours = nn.CrossEntropyLoss(None if weight is None else pydl.tensor(weight), **kwargs)
    theirs = tnn.CrossEntropyLoss(None if weight is None else torch.tensor(weight), **kwargs)
    run_both(lambda x: ours(x, pydl.tensor(target)), lambda x: theirs(x, torch.tensor(target)),
             [normal(rng, *shape, dtype=dtype)], dtype, owners=(nn.Module(), tnn.Module()))


def test_weighted_cross_entropy_runs_the_fused_kernel(rng, monkeypatch):
    calls = kernel_calls(monkeypatch, "softmax_cross_entropy", "log_softmax_forward")
    loss = nn.CrossEntropyLoss(weight=pydl.rand(4), label_smoothing=0.1)
    loss(pydl.randn(6, 4, requires_grad=True), pydl.tensor(rng.integers(0, 4, 6))).backward()
    assert calls == ["softmax_cross_entropy"]


def test_cross_entropy_gradient_by_finite_differences(rng):
    target = pydl.tensor(rng.integers(0, 4, 5))
    weight = pydl.tensor(rng.uniform(0.5, 2, 4))
    check_grad(lambda x: F.cross_entropy(x, target, weight, label_smoothing=0.2),
               normal(rng, 5, 4))


# ---- dtype mistakes name the dtype ----------------------------------------------------------

def test_dtype_mistakes_raise_like_torch_and_name_the_dtypes(rng):
    probs = pydl.rand(4)
    for loss in (nn.BCELoss(), nn.BCEWithLogitsLoss()):
        with pytest.raises(RuntimeError, match="found dtype int64 for target"):
            loss(probs, pydl.tensor([0, 1, 1, 0]))
        with pytest.raises(RuntimeError):
            type(getattr(tnn, type(loss).__name__)())(torch.rand(4), torch.tensor([0, 1, 1, 0]))
    assert nn.BCELoss()(probs, pydl.tensor([0.0, 1.0, 1.0, 0.0])).item() > 0
    with pytest.raises(RuntimeError, match="input float64 and weight float32"):
        nn.Linear(3, 2)(pydl.tensor(normal(rng, 4, 3)))
    with pytest.raises(RuntimeError, match="input float64 and weight float32"):
        nn.Conv2d(1, 1, 3)(pydl.tensor(normal(rng, 1, 1, 5, 5)))
    with pytest.raises(RuntimeError, match="class-index targets must be int64.*got float32"):
        F.cross_entropy(pydl.randn(4, 3), pydl.tensor([0.0, 1.0, 2.0, 1.0]))
    assert nn.Linear(3, 2).double()(pydl.tensor(normal(rng, 4, 3))).dtype == pydl.float64


# ---- schedulers ------------------------------------------------------------------------------

SCHEDULES = {
    "OneCycleLR": lambda S, o: S.OneCycleLR(o, max_lr=1.0, total_steps=22),
    "OneCycleLR_linear_three_phase": lambda S, o: S.OneCycleLR(
        o, max_lr=[0.5], epochs=3, steps_per_epoch=7, anneal_strategy="linear",
        three_phase=True, pct_start=0.25),
    "LinearLR": lambda S, o: S.LinearLR(o, start_factor=0.1, total_iters=5),
    "LinearLR_down": lambda S, o: S.LinearLR(o, start_factor=1.0, end_factor=0.2, total_iters=4),
    "ConstantLR": lambda S, o: S.ConstantLR(o, factor=0.3, total_iters=3),
    "warmup_cosine": lambda S, o: S.SequentialLR(
        o, [S.LinearLR(o, 0.1, total_iters=3), S.CosineAnnealingLR(o, T_max=6)], [3]),
    "three_stages": lambda S, o: S.SequentialLR(
        o, [S.ConstantLR(o, 0.5, total_iters=2), S.ExponentialLR(o, 0.9), S.StepLR(o, 2)],
        [2, 5]),
}


@pytest.mark.parametrize("optimizer", ["SGD", "Adam"])
@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedulers_match_torch_step_by_step(name, optimizer):
    """lr and momentum (SGD) or beta1 (Adam) over 21 steps, as torch sets them."""
    kwargs = dict(lr=0.1, momentum=0.9) if optimizer == "SGD" else dict(lr=0.1)
    trace = []
    for lib, S in ((pydl, pydl.optim.lr_scheduler), (torch, torch.optim.lr_scheduler)):
        param = (nn.Parameter(pydl.zeros(2)) if lib is pydl else
                 torch.nn.Parameter(torch.zeros(2)))
        opt = getattr(lib.optim, optimizer)([param], **kwargs)
        schedule = SCHEDULES[name](S, opt)
        seen = []
        for _ in range(21):
            group = opt.param_groups[0]
            seen.append((group["lr"], group.get("momentum", group.get("betas", (0,))[0])))
            opt.step()
            schedule.step()
        trace.append(seen)
    np.testing.assert_allclose(trace[0], trace[1], rtol=1e-12, atol=1e-15)


def test_one_cycle_needs_momentum_and_a_length():
    opt = pydl.optim.Adagrad([nn.Parameter(pydl.zeros(1))])
    with pytest.raises(ValueError, match="momentum or betas"):
        pydl.optim.lr_scheduler.OneCycleLR(opt, 1.0, total_steps=5)
    with pytest.raises(ValueError, match="total_steps, or epochs and steps_per_epoch"):
        pydl.optim.lr_scheduler.OneCycleLR(opt, 1.0, cycle_momentum=False)


# ---- Module: buffers, traversal, apply, forward hooks ------------------------------------------

def make_net(lib_nn):
    """The same small network in pydl or torch: named children, nesting, a buffer."""
    net = lib_nn.Module()
    net.features = lib_nn.Sequential(lib_nn.Conv2d(1, 2, 3), lib_nn.ReLU())
    net.head = lib_nn.Linear(2, 3)
    net.register_buffer("steps", (pydl if lib_nn is nn else torch).zeros(1))
    net.register_buffer("scratch", (pydl if lib_nn is nn else torch).zeros(1), persistent=False)
    return net


def test_module_traversal_and_buffers_match_torch():
    ours, theirs = make_net(nn), make_net(tnn)
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    visited, t_visited = [], []
    ours.apply(lambda m: visited.append(type(m).__name__))
    theirs.apply(lambda m: t_visited.append(type(m).__name__))
    assert visited == t_visited == ["Conv2d", "ReLU", "Sequential", "Linear", "Module"]


def test_forward_hooks_see_and_may_replace_outputs():
    layer = nn.Linear(3, 2)
    seen = []
    first = layer.register_forward_hook(lambda m, inputs, out: seen.append((m, inputs, out)))
    second = layer.register_forward_hook(lambda m, inputs, out: out * 0)
    x = pydl.ones(4, 3)
    out = layer(x)
    assert seen[0][0] is layer and seen[0][1][0] is x and seen[0][2].shape == (4, 2)
    assert (out.detach().numpy() == 0).all()
    second.remove()
    first.remove()
    assert (layer(x).detach().numpy() != 0).any() and len(seen) == 1


# ---- on the cuda device (emulated here; a real GPU where there is one) ----------------

DEVICE_CASES = {
    "conv1d": (lambda: nn.Conv1d(4, 6, 3, stride=2, padding=1), (2, 4, 11)),
    "conv_transpose2d": (lambda: nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1), (2, 4, 5, 5)),
    "pool1d": (lambda: nn.Sequential(nn.MaxPool1d(3, 2, 1), nn.AvgPool1d(2)), (2, 3, 12)),
    "upsample": (lambda: nn.Upsample(size=(7, 9)), (2, 3, 4, 5)),
    "upsample_x2": (lambda: nn.Upsample(scale_factor=2), (2, 3, 4, 5)),
    "silu_elu": (lambda: nn.Sequential(nn.SiLU(), nn.ELU()), (4, 7)),
    "weighted_ce": (lambda: lambda x: nn.CrossEntropyLoss(
        weight=pydl.tensor([1.0, 2.0, 0.5, 1.5], device=x.device), label_smoothing=0.1)(
        x, pydl.tensor([0, 3, 1, 1, 2, -100], device=x.device)), (6, 4)),
    "topk_sort": (lambda: lambda x: x.topk(2, dim=1).values + x.sort(dim=1).values[:, :2],
                  (5, 6)),
    "gather_scatter": (lambda: lambda x: x.gather(1, pydl.tensor([[0, 2], [1, 1]] * 2,
                                                               device=x.device))
                       .scatter_add(0, pydl.tensor([[1, 0]] * 4, device=x.device), x[:, :2]),
                       (4, 3)),
    "masked_fill_einsum": (lambda: lambda x: pydl.einsum(
        "ij,kj->ik", x.masked_fill(x > 0.5, 0.0), x), (4, 3)),
}


@pytest.mark.parametrize("name", sorted(DEVICE_CASES))
def test_additions_run_on_the_cuda_device(cuda, name, rng):  # noqa: F811 (the fixture)
    make, shape = DEVICE_CASES[name]
    check_same(make, rng.standard_normal(shape).astype(np.float32))


# ---- more layers and losses ------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,kwargs", [("Softplus", {}), ("Softplus", dict(beta=2.0,
                                                                            threshold=5.0)),
                                         ("Hardtanh", dict(min_val=-0.5, max_val=2.0)),
                                         ("ReLU6", {})])
def test_more_activations_match_torch(rng, dtype, name, kwargs):
    run_both(getattr(nn, name)(**kwargs), getattr(tnn, name)(**kwargs),
             [4 * normal(rng, 4, 7, dtype=dtype)], dtype)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name,kwargs", [("HuberLoss", dict(delta=0.7)), ("SmoothL1Loss", {}),
                                         ("SmoothL1Loss", dict(beta=0.3))])
def test_robust_losses_match_torch(rng, reduction, name, kwargs):
    target = normal(rng, 5, 4)
    ours = getattr(nn, name)(reduction=reduction, **kwargs)
    theirs = getattr(tnn, name)(reduction=reduction, **kwargs)
    run_both(lambda x: ours(x, pydl.tensor(target)), lambda x: theirs(x, torch.tensor(target)),
             [2 * normal(rng, 5, 4)], "float64", owners=(nn.Module(), tnn.Module()))


@pytest.mark.parametrize("pad", [(1, 2), (0, 1, 2, 0), (1, 1, 0, 0, 2, 1)])
def test_pad_matches_torch(rng, pad):
    run_both(lambda x: F.pad(x, pad, value=0.5),
             lambda x: torch.nn.functional.pad(x, pad, value=0.5), [normal(rng, 2, 3, 4)],
             "float64", owners=(nn.Module(), tnn.Module()))


def test_normalize_and_cosine_similarity_match_torch(rng):
    run_both(lambda x: F.normalize(x, dim=1), lambda x: torch.nn.functional.normalize(x, dim=1),
             [normal(rng, 4, 5)], "float64", owners=(nn.Module(), tnn.Module()))
    run_both(lambda a, b: F.cosine_similarity(a, b, dim=-1),
             lambda a, b: torch.nn.functional.cosine_similarity(a, b, dim=-1),
             [normal(rng, 4, 5), normal(rng, 4, 5)], "float64", owners=(nn.Module(), tnn.Module()))


def test_module_dict_and_unflatten():
    heads = nn.ModuleDict({"a": nn.Linear(2, 3)})
    heads["b"] = nn.Linear(3, 1)
    assert list(heads) == ["a", "b"] and "b" in heads and len(heads) == 2
    assert list(heads.state_dict()) == ["a.weight", "a.bias", "b.weight", "b.bias"]
    theirs = tnn.ModuleDict({"a": tnn.Linear(2, 3), "b": tnn.Linear(3, 1)})
    assert list(heads.state_dict()) == list(theirs.state_dict())
    assert nn.Unflatten(-1, (2, 2))(pydl.ones(3, 4)).shape == (3, 2, 2)
