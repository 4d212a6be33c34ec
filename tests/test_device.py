"""device="cuda" through the whole Python layer, against the same code on "cpu".

Each test runs twice: on the emulated device (tests/fake_cupy.py as CuPy, the CUDA
kernels of pydl._cuda_emu on host threads; see the fake_cuda fixture) and, marked
gpu, on a real GPU with CuPy and pydl._cuda where there is one. Forward values and
gradients on "cuda" must match "cpu" for fresh random inputs.
"""
import numpy as np
import pytest

import pydl
import pydl.nn as nn
import pydl.nn.functional as F
from pydl import _kernels


@pytest.fixture(params=["emulated", pytest.param("gpu", marks=pytest.mark.gpu)])
def cuda(request):
    """The CuPy module of the device under test (the look-alike, or real CuPy)."""
    if request.param == "emulated":
        return request.getfixturevalue("fake_cuda")
    cupy = pytest.importorskip("cupy")
    if not pydl.cuda.is_available():
        pytest.skip("no CUDA device (or pydl._cuda not built)")
    return cupy


def host(t):
    """A tensor's values as a NumPy array, from either device."""
    return None if t is None else t.detach().cpu().numpy()


def close(actual, expected, rtol=1e-4, atol=1e-5):
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def run_on(device, make, inputs, weights_seed=0):
    """Builds make() (a module or a function) under seed 0 on `device`, runs it on the
    inputs (float ones require grad) and backpropagates sum(out * w) for fixed random w.
    Returns (out, input grads, parameter grads) as NumPy arrays, and the output tensor."""
    pydl.manual_seed(0)
    model = make()
    if isinstance(model, nn.Module):
        model.to(device)
    xs = [pydl.tensor(a, device=device, requires_grad=a.dtype.kind == "f") for a in inputs]
    out = model(*xs)
    out = out[0] if isinstance(out, tuple) else out
    w = np.random.default_rng(weights_seed).standard_normal(out.shape).astype(out.dtype)
    (out * pydl.tensor(w, device=device)).sum().backward()
    params = list(model.parameters()) if isinstance(model, nn.Module) else []
    return (host(out), [host(x.grad) for x in xs if x.requires_grad],
            [host(p.grad) for p in params]), out


def check_same(make, *inputs, rtol=1e-4, atol=1e-5):
    """make() on "cuda" gives the output and gradients it gives on "cpu"."""
    expected, _ = run_on("cpu", make, inputs)
    actual, out = run_on("cuda", make, inputs)
    assert out.device.type == "cuda"
    close(actual[0], expected[0], rtol, atol)
    for got, want in zip(actual[1] + actual[2], expected[1] + expected[2]):
        assert (got is None) == (want is None)
        if want is not None:
            close(got, want, rtol, atol)
    return actual


def randn(rng, *shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


# ---- without a device --------------------------------------------------------------

def test_without_cuda_the_cpu_path_is_all_there_is():
    if pydl.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert pydl.cuda.is_available() is False
    assert pydl.cuda.device_count() == 0
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        pydl.tensor([1.0, 2.0], device="cuda")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        pydl.ones(3).to("cuda")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        nn.Linear(2, 2).cuda()


def test_the_stand_in_refuses_what_cupy_refuses(fake_cuda, rng):
    """The emulated device is only as strict as fake_cupy: it must refuse host data
    where CuPy does, or host code paths could pass these tests unseen."""
    a = randn(rng, 3, 4)
    d = fake_cuda.asarray(a)
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array"):
        np.asarray(d)
    for mixed in (lambda: d + a, lambda: np.maximum(d, a), lambda: np.concatenate([d, a]),
                  lambda: fake_cuda.where(d > 0, d, a)):
        with pytest.raises(TypeError):
            mixed()
    total = d.sum()
    assert isinstance(total, fake_cuda.ndarray) and total.shape == ()
    assert float(total) == pytest.approx(float(a.sum()), rel=1e-5)
    assert not hasattr(d.flags, "writeable")
    out = fake_cuda.empty((3, 3), np.float32)  # the emulated kernels read and write it
    _kernels.cuda().gemm(d, d, trans_b=True, out=out)
    close(fake_cuda.asnumpy(out), a @ a.T)


# ---- tensors and moving them ----------------------------------------------------------

def test_tensor_on_cuda_round_trips(cuda, rng):
    a = randn(rng, 3, 4)
    t = pydl.tensor(a, device="cuda")
    assert isinstance(t.data, cuda.ndarray) and t.device == pydl.device("cuda:0")
    assert str(t.device) == "cuda:0" and "device='cuda:0'" in repr(t)
    np.testing.assert_array_equal(t.cpu().numpy(), a)
    np.testing.assert_array_equal(pydl.tensor(a).to("cuda").to("cpu").numpy(), a)
    with pytest.raises(TypeError, match="call .cpu"):
        t.numpy()
    assert t.sum().item() == pytest.approx(float(a.sum()), rel=1e-5)


@pytest.mark.parametrize("factory", ["zeros", "ones", "empty", "full", "arange", "randn",
                                     "rand", "eye"])
def test_factories_make_cuda_tensors(cuda, factory):
    args = {"full": ((2, 3), 1.5), "arange": (5,), "eye": (3,)}.get(factory, (2, 3))
    pydl.manual_seed(1)
    on_cpu = getattr(pydl, factory)(*args)
    pydl.manual_seed(1)
    on_cuda = getattr(pydl, factory)(*args, device="cuda")
    assert isinstance(on_cuda.data, cuda.ndarray)
    assert on_cuda.shape == on_cpu.shape and on_cuda.dtype == on_cpu.dtype
    if factory != "empty":  # random factories draw the same numbers on both devices
        np.testing.assert_array_equal(host(on_cuda), on_cpu.numpy())
    like = pydl.zeros_like(on_cuda)
    assert like.device.type == "cuda" and not host(like).any()


def test_gradient_flows_back_through_to(cuda, rng):
    a = randn(rng, 4, 3)
    x = pydl.tensor(a, requires_grad=True)
    y = (x.to("cuda") * 3.0).relu().sum()
    y.backward()
    assert x.grad.device.type == "cpu"
    np.testing.assert_array_equal(x.grad.numpy(), 3.0 * (a > 0))


def test_mixing_devices_raises_naming_both(cuda, rng):
    a, b = pydl.tensor(randn(rng, 3)), pydl.tensor(randn(rng, 3), device="cuda")
    expected = "same device.*(cpu.*cuda:0|cuda:0.*cpu)"
    for op in (lambda: a + b, lambda: b * a, lambda: a.matmul(b), lambda: b < a,
               lambda: pydl.where(b > 0, a, b), lambda: pydl.cat([a, b]),
               lambda: F.mse_loss(b, a)):
        with pytest.raises(RuntimeError, match=expected):
            op()
    with pytest.raises(RuntimeError, match=expected):
        b.add_(a)
    model = nn.Linear(3, 2).to("cuda")
    with pytest.raises(RuntimeError, match=expected):
        model(a)
    with pytest.raises(RuntimeError, match=expected):
        F.cross_entropy(pydl.randn(2, 3, device="cuda"), pydl.tensor([0, 1]))


# ---- ops ----------------------------------------------------------------------------

BINARY = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "div": lambda a, b: a / (b.abs() + 1), "pow": lambda a, b: (a.abs() + 0.5) ** b,
    "maximum": lambda a, b: a.maximum(b), "minimum": lambda a, b: a.minimum(b),
    "where": lambda a, b: pydl.where(a > b, a, b * 2), "matmul": lambda a, b: a @ b.T,
}
UNARY = {
    "neg": lambda a: -a, "abs": abs, "exp": lambda a: a.exp(),
    "log": lambda a: (a.abs() + 0.1).log(), "sqrt": lambda a: (a.abs() + 0.1).sqrt(),
    "clamp": lambda a: a.clamp(-0.5, 0.7), "scalar": lambda a: 2.5 - a * 3 + 1 / (a * a + 1),
    "relu": lambda a: a.relu(), "sigmoid": lambda a: a.sigmoid(), "tanh": lambda a: a.tanh(),
    "gelu": F.gelu, "softmax": lambda a: a.softmax(0), "log_softmax": lambda a: a.log_softmax(),
    "leaky_relu": F.leaky_relu, "sum": lambda a: a.sum(1, keepdim=True),
    "mean": lambda a: a.mean(0), "amax": lambda a: a.amax(1), "max": lambda a: a.max(),
    "var": lambda a: a.var(1), "std": lambda a: a.std(),
    "reshape": lambda a: a.reshape(2, -1), "permute": lambda a: a.T,
    "expand": lambda a: a[:, :1].expand(4, 3), "slice": lambda a: a[1:, ::2],
    "index": lambda a: a[[2, 0, 2]], "index_tensor": lambda a: a[pydl.tensor([1, 1, 3])],
    "mask": lambda a: a[a > 0], "cat": lambda a: pydl.cat([a, a * 2], 1),
    "stack": lambda a: pydl.stack([a, a.exp()], 2), "unsqueeze": lambda a: a.unsqueeze(1),
    "flatten": lambda a: a.reshape(2, 2, 5).flatten(1),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_op(cuda, name, dtype, rng):
    check_same(lambda: BINARY[name], randn(rng, 4, 5, dtype=dtype), randn(rng, 4, 5, dtype=dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_op(cuda, name, dtype, rng):
    if name == "gelu" and dtype == np.float64 and cuda.__name__ == "fake_cupy":
        pytest.skip("float64 gelu on the device takes erf from cupyx (real CuPy only)")
    check_same(lambda: UNARY[name], randn(rng, 4, 5, dtype=dtype))


def test_batched_matmul_and_comparisons(cuda, rng):
    check_same(lambda: lambda a, b: a @ b, randn(rng, 2, 3, 4, 5), randn(rng, 5, 6))
    check_same(lambda: lambda a, b: a @ b, randn(rng, 2, 3, 4, 5), randn(rng, 3, 5, 2))
    a, b = randn(rng, 6), randn(rng, 6)
    for op in ("__lt__", "__ge__", "__eq__"):
        on_cuda = getattr(pydl.tensor(a, device="cuda"), op)(pydl.tensor(b, device="cuda"))
        np.testing.assert_array_equal(host(on_cuda), getattr(a, op)(b))
    t = pydl.tensor(a, device="cuda")
    assert host(t.argmax()) == a.argmax() and host(t.max(0).indices) == a.argmax()


def tf32(x):
    """x rounded to TF32 (10 mantissa bits, to nearest, ties away from zero)."""
    bits = np.asarray(x, np.float32).view(np.uint32)
    return ((bits + np.uint32(0x1000)) & np.uint32(0xFFFFE000)).view(np.float32)


def test_allow_tf32_switches_cuda_matmul_to_tensor_cores(cuda, rng, monkeypatch):
    """With pydl.backends.cuda.matmul.allow_tf32 the product is that of the
    TF32-rounded operands (float32 accumulation); without it, the float32 one."""
    a, b = randn(rng, 37, 45), randn(rng, 45, 29)
    exact = a.astype(np.float64) @ b
    rounded = tf32(a).astype(np.float64) @ tf32(b)
    assert np.abs(rounded - exact).max() > 1e-3  # the two references are distinguishable
    da, db = pydl.tensor(a, device="cuda"), pydl.tensor(b, device="cuda")
    close(host(da @ db), exact, rtol=1e-5, atol=1e-4)
    monkeypatch.setattr(pydl.backends.cuda.matmul, "allow_tf32", True)
    close(host(da @ db), rounded, rtol=1e-5, atol=1e-4)
    with pytest.raises(TypeError, match="allow_tf32 must be a bool"):
        pydl.backends.cuda.matmul.allow_tf32 = 1


def test_in_place_updates_on_cuda(cuda, rng):
    a, b = randn(rng, 3, 4), randn(rng, 3, 4)
    t = pydl.tensor(a, device="cuda")
    t.add_(pydl.tensor(b, device="cuda"), alpha=2).mul_(0.5)
    t[0] = 7.0
    t[1:, :2] = pydl.tensor(b[1:, :2], device="cuda")
    expected = (a + 2 * b) * 0.5
    expected[0] = 7.0
    expected[1:, :2] = b[1:, :2]
    close(host(t), expected)
    t.copy_(pydl.tensor(b))  # copy_ takes a source on any device
    np.testing.assert_array_equal(host(t), b)


def test_device_arrays_and_state_dicts_cross_devices(cuda, rng):
    a = randn(rng, 2, 3)
    t = pydl.tensor(cuda.asarray(a))  # a CuPy array stays on its device
    assert t.device.type == "cuda" and t.dtype == pydl.float32
    np.testing.assert_array_equal(host(pydl.tensor(t, dtype="float64")), a.astype(np.float64))
    pydl.manual_seed(0)
    on_cpu = nn.Linear(3, 2)
    pydl.manual_seed(1)
    on_cuda = nn.Linear(3, 2).cuda()
    on_cuda.load_state_dict(on_cpu.state_dict())
    close(host(on_cuda(pydl.tensor(a, device="cuda"))), host(on_cpu(pydl.tensor(a))))
    assert on_cuda.weight.device.type == "cuda"
    back = nn.Linear(3, 2)
    back.load_state_dict(on_cuda.state_dict())
    np.testing.assert_array_equal(host(back.weight), host(on_cpu.weight))


def test_float64_conv_and_pool_on_cuda_raise_clearly(cuda, rng):
    x = pydl.tensor(randn(rng, 1, 2, 5, 5, dtype=np.float64), device="cuda")
    for op in (lambda: F.conv2d(x, pydl.ones(3, 2, 3, 3, dtype="float64", device="cuda")),
               lambda: F.max_pool2d(x, 2), lambda: F.avg_pool2d(x, 2)):
        with pytest.raises(TypeError, match="float64 input on cuda:0.*float32"):
            op()


@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
def test_clip_grad_norm_on_cuda(cuda, norm_type, rng):
    grads = [randn(rng, 4, 3) * 5, randn(rng, 7)]
    clipped, totals = [], []
    for device in ("cpu", "cuda"):
        params = [pydl.zeros(*g.shape, device=device, requires_grad=True) for g in grads]
        for p, g in zip(params, grads):
            p.grad = pydl.tensor(g, device=device)
        totals.append(host(nn.utils.clip_grad_norm_(params, 1.5, norm_type)))
        clipped.append([host(p.grad) for p in params])
    close(totals[1], totals[0])
    for got, want in zip(clipped[1], clipped[0]):
        close(got, want)


# ---- layers -------------------------------------------------------------------------

LAYERS = {
    "linear": (lambda: nn.Linear(6, 4), (5, 6)),
    "linear_3d": (lambda: nn.Linear(6, 4, bias=False), (2, 3, 6)),
    "conv2d": (lambda: nn.Conv2d(3, 4, 3, padding=1), (2, 3, 7, 6)),
    "conv2d_grouped": (lambda: nn.Conv2d(4, 6, (3, 2), stride=2, groups=2, dilation=(1, 2)),
                       (2, 4, 9, 8)),
    "max_pool": (lambda: nn.MaxPool2d(2), (2, 3, 6, 7)),
    "max_pool_padded": (lambda: nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
                        (1, 2, 7, 9)),
    "avg_pool": (lambda: nn.AvgPool2d(3, stride=2, padding=1), (2, 2, 7, 8)),
    "adaptive_avg_pool": (lambda: nn.AdaptiveAvgPool2d((3, 2)), (2, 2, 7, 5)),
    "batch_norm_1d": (lambda: nn.BatchNorm1d(5), (8, 5)),
    "batch_norm_2d": (lambda: nn.BatchNorm2d(3), (4, 3, 5, 5)),
    "layer_norm": (lambda: nn.LayerNorm((4, 5)), (3, 4, 5)),
    "flatten": (lambda: nn.Flatten(), (2, 3, 4)),
    "relu": (lambda: nn.ReLU(), (3, 7)),
    "sigmoid": (lambda: nn.Sigmoid(), (3, 7)),
    "tanh": (lambda: nn.Tanh(), (3, 7)),
    "softmax": (lambda: nn.Softmax(dim=1), (3, 7)),
    "dropout": (lambda: nn.Dropout(0.4), (6, 9)),
    "sequential": (lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.2),
                                         nn.Linear(8, 3)), (5, 4)),
    "attention": (lambda: _SelfAttention(), (4, 2, 8)),
}


class _SelfAttention(nn.Module):
    """MultiheadAttention on one input, with a causal mask and a key padding mask."""

    def __init__(self):
        super().__init__()
        self.attention = nn.MultiheadAttention(8, 2)

    def forward(self, x):
        padding = np.zeros((x.shape[1], x.shape[0]), bool)
        padding[1, -1] = True
        out, _ = self.attention(x, x, x, key_padding_mask=padding, is_causal=True)
        return out


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer(cuda, name, rng):
    make, shape = LAYERS[name]
    check_same(make, randn(rng, *shape))


@pytest.mark.parametrize("name", ["batch_norm_1d", "batch_norm_2d", "dropout"])
def test_layer_in_eval_mode(cuda, name, rng):
    make, shape = LAYERS[name]
    x = randn(rng, *shape)
    outputs = []
    for device in ("cpu", "cuda"):
        pydl.manual_seed(0)
        layer = make().to(device)
        layer(pydl.tensor(x, device=device))  # one training step updates the running stats
        layer.eval()
        outputs.append(host(layer(pydl.tensor(x, device=device) * 2)))
        outputs += [host(b) for b in layer.buffers() if b.dtype.kind == "f"]
    half = len(outputs) // 2
    for got, want in zip(outputs[half:], outputs[:half]):
        close(got, want)


def test_embedding(cuda, rng):
    indices = rng.integers(0, 10, (4, 3))
    indices[0, 0] = 2
    make = lambda: _Embedded(nn.Embedding(10, 5, padding_idx=2), indices)  # noqa: E731
    *_, (weight_grad,) = check_same(make, randn(rng, 5))
    assert not weight_grad[2].any()
    table = nn.Embedding(4, 3).to("cuda")
    with pytest.raises(ValueError, match="index 4"):
        table(pydl.tensor([1, 4], device="cuda"))


class _Embedded(nn.Module):
    """An embedding lookup (indices fixed, moved to the layer's device) times x."""

    def __init__(self, table, indices):
        super().__init__()
        self.table, self.indices = table, indices

    def forward(self, x):
        idx = pydl.tensor(self.indices, device=self.table.weight.device)
        return self.table(idx) * x


def test_dropout_masks_match_cpu(cuda, rng):
    x = randn(rng, 50, 40)
    masks = []
    for device in ("cpu", "cuda"):
        pydl.manual_seed(7)
        masks.append(host(F.dropout(pydl.tensor(x, device=device), 0.3)) != 0)
    np.testing.assert_array_equal(masks[0], masks[1])
    assert 0.2 < 1 - masks[0].mean() < 0.4


class _AllRecurrentOutputs(nn.Module):
    """A recurrent layer whose output, final hidden state and (LSTM) final cell state
    are all flattened into one output, so every one of them gets a gradient."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        y, state = self.layer(x)
        states = state if isinstance(state, tuple) else (state,)
        return pydl.cat([t.reshape(-1) for t in (y, *states)])


@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_recurrent_layers(cuda, mode, bidirectional, rng):
    check_same(lambda: _AllRecurrentOutputs(
        getattr(nn, mode)(4, 5, num_layers=2, bidirectional=bidirectional)), randn(rng, 6, 3, 4))


# ---- losses -------------------------------------------------------------------------

def _loss_case(name, rng):
    """(loss function, inputs) for one loss."""
    n, c = 6, 4
    labels = rng.integers(0, c, n)
    labels[1] = -100
    probs = rng.random((n, c)).astype(np.float32)
    targets01 = (rng.random((n, c)) > 0.5).astype(np.float32)
    pixel_labels = rng.integers(0, 3, (2, 4, 5))
    cases = {
        "cross_entropy": (lambda x: F.cross_entropy(x, pydl.tensor(labels, device=x.device)),
                          randn(rng, n, c)),
        "cross_entropy_sum": (lambda x: F.cross_entropy(
            x, pydl.tensor(labels, device=x.device), reduction="sum"), randn(rng, n, c)),
        "cross_entropy_probs": (lambda x: nn.CrossEntropyLoss(reduction="none")(
            x, pydl.tensor(probs / probs.sum(1, keepdims=True), device=x.device)),
            randn(rng, n, c)),
        "cross_entropy_4d": (lambda x: F.cross_entropy(
            x, pydl.tensor(pixel_labels, device=x.device)), randn(rng, 2, 3, 4, 5)),
        "cross_entropy_f64": (lambda x: F.cross_entropy(x, pydl.tensor(labels, device=x.device)),
                              randn(rng, n, c, dtype=np.float64)),
        "nll": (lambda x: F.nll_loss(x.log_softmax(1), pydl.tensor(labels, device=x.device)),
                randn(rng, n, c)),
        "mse": (lambda x: nn.MSELoss()(x, pydl.tensor(probs, device=x.device)), randn(rng, n, c)),
        "l1": (lambda x: F.l1_loss(x, pydl.tensor(probs, device=x.device)), randn(rng, n, c)),
        "bce": (lambda x: nn.BCELoss()(x.sigmoid(), pydl.tensor(targets01, device=x.device)),
                randn(rng, n, c)),
        "bce_logits": (lambda x: nn.BCEWithLogitsLoss(pos_weight=2.0)(
            x, pydl.tensor(targets01, device=x.device)), randn(rng, n, c)),
    }
    return cases[name]


@pytest.mark.parametrize("name", ["cross_entropy", "cross_entropy_sum", "cross_entropy_probs",
                                  "cross_entropy_4d", "cross_entropy_f64", "nll", "mse", "l1",
                                  "bce", "bce_logits"])
def test_loss(cuda, name, rng):
    loss, x = _loss_case(name, rng)
    check_same(lambda: loss, x)


# ---- optimizers ---------------------------------------------------------------------

OPTIMIZERS = {
    "sgd": lambda p: pydl.optim.SGD(p, lr=0.1),
    "sgd_nesterov": lambda p: pydl.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True,
                                             weight_decay=0.01),
    "rmsprop": lambda p: pydl.optim.RMSprop(p, lr=0.01, momentum=0.5, centered=True),
    "adagrad": lambda p: pydl.optim.Adagrad(p, lr=0.1, lr_decay=0.01),
    "adam": lambda p: pydl.optim.Adam(p, lr=0.01, weight_decay=0.1),
    "adamw_amsgrad": lambda p: pydl.optim.AdamW(p, lr=0.01, amsgrad=True),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_steps(cuda, name, dtype, rng):
    x, y = randn(rng, 8, 5, dtype=dtype), randn(rng, 8, 3, dtype=dtype)
    results = []
    for device in ("cpu", "cuda"):
        pydl.manual_seed(0)
        model = nn.Linear(5, 3).to(pydl.float64 if dtype == np.float64 else pydl.float32)
        model.to(device)
        optimizer = OPTIMIZERS[name](model.parameters())
        for _ in range(3):
            optimizer.zero_grad()
            F.mse_loss(model(pydl.tensor(x, device=device)), pydl.tensor(y, device=device)
                       ).backward()
            optimizer.step()
        results.append([host(p) for p in model.parameters()])
        results[-1] += [host(pydl.Tensor._wrap(v)) for s in optimizer.state.values()
                        for v in s.values() if hasattr(v, "shape")]
    for got, want in zip(results[1], results[0]):
        close(got, want, rtol=1e-4, atol=1e-6)


# ---- training and checkpoints -----------------------------------------------------------

def _train(device, make, x, y, steps=8):
    pydl.manual_seed(3)
    model = make().to(device)
    optimizer = pydl.optim.Adam(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    xs, ys = pydl.tensor(x, device=device), pydl.tensor(y, device=device)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_fn(model(xs), ys)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, model, optimizer


MODELS = {
    "mlp": (lambda: nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Dropout(0.1),
                                  nn.Linear(16, 3)), (24, 12)),
    "cnn": (lambda: nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                  nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)),
            (10, 1, 8, 8)),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_trains_on_cuda_as_on_cpu(cuda, name, rng):
    make, shape = MODELS[name]
    x = randn(rng, *shape)
    y = rng.integers(0, 3, shape[0])
    cpu_losses, _, _ = _train("cpu", make, x, y)
    cuda_losses, model, _ = _train("cuda", make, x, y)
    assert all(p.device.type == "cuda" for p in model.parameters())
    close(cuda_losses, cpu_losses, rtol=1e-4, atol=1e-5)
    assert cuda_losses[-1] < cuda_losses[0]


def test_cuda_checkpoint_loads_on_cpu(cuda, rng, tmp_path):
    make, shape = MODELS["cnn"]
    x, y = randn(rng, *shape), rng.integers(0, 3, shape[0])
    _, model, optimizer = _train("cuda", make, x, y, steps=2)
    path = tmp_path / "model.pydl"
    pydl.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, path)
    saved = pydl.load(path)
    pydl.manual_seed(5)
    restored = make()
    restored.load_state_dict(saved["model"])
    restored_optimizer = pydl.optim.Adam(restored.parameters(), lr=0.01)
    restored_optimizer.load_state_dict(saved["optimizer"])
    model.eval()
    restored.eval()
    close(host(restored(pydl.tensor(x))), host(model(pydl.tensor(x, device="cuda"))))
    # ... and back onto the device, optimizer state included.
    restored.to("cuda")
    again = pydl.optim.Adam(restored.parameters(), lr=0.01)
    again.load_state_dict(saved["optimizer"])
    assert all(v.device.id == 0 for s in again.state.values() for v in s.values()
               if hasattr(v, "shape"))


# ---- dispatch ---------------------------------------------------------------------------

def test_cuda_ops_call_the_cuda_kernels_on_the_current_stream(fake_cuda, monkeypatch, rng):
    """Every kernel of a training step comes from the cuda kernel set, each call asks
    CuPy for its current stream, and no CPU kernel runs."""
    called = []
    cuda_set = _kernels.cuda()
    for name in list(vars(cuda_set)):
        if not name.startswith("_"):
            monkeypatch.setattr(cuda_set, name, _recording(getattr(cuda_set, name), name, called))
    for name in _kernels.KERNEL_NAMES:
        if hasattr(_kernels.cpu, name):
            monkeypatch.setattr(_kernels.cpu, name, _refusing(name))
    streams = []
    monkeypatch.setattr(fake_cuda.cuda, "get_current_stream",
                        lambda: streams.append(1) or fake_cuda._Stream())
    make, shape = MODELS["cnn"]
    _train("cuda", make, randn(rng, *shape), rng.integers(0, 3, shape[0]), steps=1)
    assert {"gemm", "conv2d_forward", "conv2d_backward", "batch_norm_forward",
            "relu_forward", "max_pool2d_backward", "softmax_cross_entropy",
            "adam_step"} <= set(called)
    assert len(streams) == len(called)


def _recording(fn, name, called):
    def record(*args, **kwargs):
        called.append(name)
        return fn(*args, **kwargs)
    return record


def _refusing(name):
    def refuse(*args, **kwargs):
        raise AssertionError(f"the CPU kernel {name} ran in a cuda step")
    return refuse


def test_debug_timing_covers_cuda_kernels(fake_cuda, monkeypatch, capsys, rng):
    """PYDL_DEBUG=1 prints each cuda kernel call too, timed to the end of the kernel (the
    stream is synchronized after each call)."""
    import pydl._cuda_emu as emu
    monkeypatch.setattr(_kernels, "DEBUG", True)
    synchronized = []
    monkeypatch.setattr(fake_cuda._Stream, "synchronize", lambda self: synchronized.append(1))
    monkeypatch.setattr(_kernels, "_cuda_set", _kernels.cuda_kernel_set(emu))
    x = pydl.tensor(randn(rng, 5, 6), device="cuda")
    (x @ x.T).relu()
    printed = capsys.readouterr().err
    assert "pydl: gemm (5, 6) (6, 5)" in printed
    assert "pydl: relu_forward (5, 5)" in printed and len(synchronized) == 2
