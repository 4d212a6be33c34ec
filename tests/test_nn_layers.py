"""Layers against PyTorch (same weights, outputs and every gradient), finite differences
in float64, and the kernels' own properties (reproducible dropout masks, deterministic
gradients on any thread count, bounds checks)."""
import numpy as np
import pytest

import pydl
from pydl import _C, nn
from pydl.nn import functional as F

from conftest import check_grad, kernel_settings

torch = pytest.importorskip("torch")

TOL = {"float32": dict(rtol=1e-4, atol=1e-5), "float64": dict(rtol=1e-10, atol=1e-12)}
DTYPES = ["float32", "float64"]


def to_torch(module, torch_module, dtype):
    """Copies module's parameters and buffers into torch_module (same key names)."""
    torch_module.to(getattr(torch, dtype))
    state = {k: torch.tensor(v.numpy()) for k, v in module.state_dict().items()}
    torch_module.load_state_dict(state)


def close(actual, expected, dtype, scale=1.0):
    expected = expected.detach().numpy() if isinstance(expected, torch.Tensor) else expected
    actual = actual.detach().numpy() if isinstance(actual, pydl.Tensor) else actual
    tol = TOL[dtype]
    np.testing.assert_allclose(actual, expected, rtol=tol["rtol"], atol=tol["atol"] * scale)


def run_both(module, torch_module, inputs, dtype, seed=0, outputs=lambda out: out,
             owners=None):
    """Runs both modules (or functions of them: `owners` then names the modules whose
    parameters to compare) on the same inputs, backpropagates the same random output
    gradient, and compares outputs, input gradients and parameter gradients."""
    ours_in = [pydl.tensor(x, requires_grad=x.dtype.kind == "f") for x in inputs]
    theirs_in = [torch.tensor(x, requires_grad=x.dtype.kind == "f") for x in inputs]
    ours = outputs(module(*ours_in))
    theirs = outputs(torch_module(*theirs_in))
    g = np.random.default_rng(seed).standard_normal(ours.shape).astype(dtype)
    close(ours, theirs, dtype)
    (ours * pydl.tensor(g)).sum().backward()
    (theirs * torch.tensor(g)).sum().backward()
    for a, b in zip(ours_in, theirs_in):
        if b.grad is not None:
            close(a.grad, b.grad, dtype)
    ours_owner, theirs_owner = owners or (module, torch_module)
    ours_params = dict(ours_owner.named_parameters())
    for name, p in theirs_owner.named_parameters():
        close(ours_params[name].grad, p.grad, dtype)
    return ours


# ---- Philox and dropout ----------------------------------------------------------

def test_philox_known_answers():
    # Published Philox4x32-10 test vectors (Salmon et al., Random123).
    assert _C.philox4x32_10([0, 0, 0, 0], [0, 0]) == [0x6627e8d5, 0xe169c58d, 0xbc57ac4c,
                                                      0x9b00dbd8]
    assert _C.philox4x32_10([0xffffffff] * 4, [0xffffffff] * 2) == [
        0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
    assert _C.philox4x32_10([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
                            [0xa4093822, 0x299f31d0]) == [0xd16cfe09, 0x94fdcceb, 0x5001e420,
                                                          0x24126ea1]


def test_dropout_mask_is_philox_of_element_index():
    # Element i of the call (seed, offset) uses word i % 4 of block i // 4.
    seed, offset, p = 0x1234_5678_9abc_def0, 7, 0.3
    mask = _C.dropout_mask([37], p, seed, offset)
    for i in range(37):
        block = _C.philox4x32_10([i // 4, 0, offset, 0], [seed & 0xffffffff, seed >> 32])
        uniform = (block[i % 4] >> 8) / 2.0 ** 24
        assert mask[i] == (uniform >= p)


@pytest.mark.parametrize("n", [1, 63, 64, 65, 1000])
def test_dropout_forward_is_the_philox_mask_on_every_path(isa, n, rng):
    # Runs of 64 elements (16 Philox blocks at once on avx512) and masked tails.
    seed, offset, p = 0xfedc_ba98_7654_3210, 3, 0.45
    x = rng.standard_normal(n).astype(np.float32)
    y, mask = _C.dropout_forward(x, p, seed, offset)
    words = [_C.philox4x32_10([b, 0, offset, 0], [seed & 0xffffffff, seed >> 32])
             for b in range((n + 3) // 4)]
    want = np.array([(words[i // 4][i % 4] >> 8) / 2.0 ** 24 >= p for i in range(n)])
    np.testing.assert_array_equal(mask, want)
    np.testing.assert_array_equal(_C.dropout_mask([n], p, seed, offset), want)
    scale = np.float32(1) / (np.float32(1) - np.float32(p))  # as the kernel rounds it
    np.testing.assert_array_equal(y, np.where(want, x * scale, np.float32(0)))


def test_dropout_reproducible_from_seed(rng):
    x = pydl.tensor(rng.standard_normal((64, 33)).astype(np.float32))
    pydl.manual_seed(123)
    first, second = F.dropout(x, 0.4).numpy(), F.dropout(x, 0.4).numpy()
    pydl.manual_seed(123)
    again = F.dropout(x, 0.4).numpy()
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first != 0, second != 0)  # each call advances the stream


def test_dropout_same_mask_on_1_and_2_threads(rng):
    x = rng.standard_normal(300_001).astype(np.float32)
    results = []
    for threads in (1, 2):
        with kernel_settings(_C.isa(), threads):
            results.append(_C.dropout_forward(x, 0.25, 99, 5))
    np.testing.assert_array_equal(results[0][1], results[1][1])
    np.testing.assert_array_equal(results[0][0], results[1][0])


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_keep_rate_and_scaling(rng, p):
    n = 1_000_000
    x = rng.standard_normal(n).astype(np.float32) + 3  # no zeros in x
    y, mask = _C.dropout_forward(x, p, int(rng.integers(2**63)), 0)
    keep = mask.mean()
    sigma = np.sqrt(p * (1 - p) / n)
    assert abs(keep - (1 - p)) < 5 * sigma
    np.testing.assert_array_equal(y != 0, mask == 1)
    np.testing.assert_allclose(y[mask == 1], x[mask == 1] / np.float32(1 - p), rtol=1e-6)


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
def test_dropout_kernels_reject_a_bad_probability(p):
    x = np.ones(6, np.float32)
    for call in (lambda: _C.dropout_mask((6,), p, 0, 0), lambda: _C.dropout_forward(x, p, 0, 0),
                 lambda: _C.dropout_backward(x, np.ones(6, np.uint8), p)):
        with pytest.raises(ValueError, match=r"dropout probability p must be in \[0, 1\]"):
            call()


def test_dropout_module_train_eval_and_gradient(rng):
    layer = nn.Dropout(0.3)
    x = pydl.tensor(rng.standard_normal((50, 40)).astype(np.float32), requires_grad=True)
    y = layer(x)
    g = rng.standard_normal((50, 40)).astype(np.float32)
    (y * pydl.tensor(g)).sum().backward()
    kept = y.detach().numpy() != 0
    np.testing.assert_allclose(x.grad.numpy(), g * kept / np.float32(0.7), rtol=1e-6)
    layer.eval()
    assert layer(x) is x
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)
    np.testing.assert_array_equal(F.dropout(x, 1.0).detach().numpy(), 0)


def test_dropout_float64_uses_same_mask_and_checks_gradient(rng):
    x = rng.standard_normal((7, 9))
    pydl.manual_seed(5)
    y64 = F.dropout(pydl.tensor(x), 0.5).numpy()
    pydl.manual_seed(5)
    y32 = F.dropout(pydl.tensor(x.astype(np.float32)), 0.5).numpy()
    np.testing.assert_allclose(y64, y32, rtol=1e-6)

    def fixed_stream(t):
        pydl.manual_seed(11)  # the same mask on every evaluation
        return F.dropout(t, 0.5)
    check_grad(fixed_stream, x)


# ---- Linear, Identity, activations -------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", range(4))
def test_linear_matches_torch(rng, dtype, case):
    fan_in, fan_out = (int(v) for v in rng.integers(1, 40, 2))
    bias = bool(case % 2)
    lead = [(), (5,), (3, 4), (2, 1, 6)][case]
    layer = nn.Linear(fan_in, fan_out, bias=bias).to(dtype)
    reference = torch.nn.Linear(fan_in, fan_out, bias=bias)
    to_torch(layer, reference, dtype)
    x = rng.standard_normal(lead + (fan_in,)).astype(dtype)
    run_both(layer, reference, [x], dtype)


def test_linear_errors_and_identity(rng):
    layer = nn.Linear(4, 3)
    with pytest.raises(ValueError, match="does not fit weight"):
        layer(pydl.randn(2, 5))
    x = pydl.randn(3, 3)
    assert nn.Identity(7, key=1)(x) is x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, args", [
    ("ReLU", ()), ("Sigmoid", ()), ("Tanh", ()), ("GELU", ()), ("GELU", ("tanh",)),
    ("Softmax", (1,)), ("Softmax", (-1,)), ("LogSoftmax", (0,)), ("LeakyReLU", (0.2,)),
    ("Softmax", ()), ("LogSoftmax", ())])
@pytest.mark.filterwarnings("ignore:Implicit dimension choice")  # torch on the legacy default dim
def test_activations_match_torch(rng, dtype, name, args):
    x = rng.standard_normal((6, 5, 4)).astype(dtype) * 3
    if name == "Softmax" and not args:
        x = x[0]  # 2-D: the legacy default dim is 1
    run_both(getattr(nn, name)(*args), getattr(torch.nn, name)(*args), [x], dtype)


# ---- Embedding ---------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("padding_idx", [None, 2, -1])
def test_embedding_matches_torch(rng, dtype, padding_idx):
    num, dim = int(rng.integers(5, 30)), int(rng.integers(1, 20))
    layer = nn.Embedding(num, dim, padding_idx=padding_idx).to(dtype)
    reference = torch.nn.Embedding(num, dim, padding_idx=padding_idx)
    to_torch(layer, reference, dtype)
    indices = rng.integers(0, num, (7, 11))  # repeated indices: gradients must add up
    indices[0, :3] = num - 1 if padding_idx == -1 else (padding_idx or 0)
    run_both(layer, reference, [indices], dtype)
    if padding_idx is not None:
        np.testing.assert_array_equal(layer.weight.grad.numpy()[padding_idx], 0)


def test_embedding_out_of_range_index_raises():
    layer = nn.Embedding(10, 3)
    with pytest.raises(ValueError, match=r"index 10 at position 4 is out of range"):
        layer(pydl.tensor([[1, 2], [3, 4], [10, 0]]))
    with pytest.raises(ValueError, match=r"index -1 at position 0"):
        layer(pydl.tensor([-1]))
    with pytest.raises(ValueError, match=r"index 12"):
        layer.double()(pydl.tensor([12]))
    with pytest.raises(TypeError, match="integer indices"):
        layer(pydl.tensor([1.0]))


def test_embedding_gradient_deterministic_on_any_thread_count(rng):
    dy = rng.standard_normal((5000, 24)).astype(np.float32)
    indices = rng.integers(0, 17, 5000)
    grads = []
    for threads in (1, 2):
        with kernel_settings(_C.isa(), threads):
            grads.append(_C.embedding_backward(dy, indices, 17, 3))
    np.testing.assert_array_equal(grads[0], grads[1])
    expected = np.zeros((17, 24))
    np.add.at(expected, indices, dy.astype(np.float64))
    expected[3] = 0
    np.testing.assert_allclose(grads[0], expected, rtol=1e-4, atol=1e-4)


def test_embedding_finite_differences(rng):
    indices = rng.integers(0, 6, (3, 4))
    check_grad(lambda w: F.embedding(indices, w), rng.standard_normal((6, 5)))


# ---- BatchNorm and LayerNorm ---------------------------------------------------------

BN_CASES = [  # (class, input shape, affine, track_running_stats, momentum)
    ("BatchNorm1d", (16, 5), True, True, 0.1),
    ("BatchNorm1d", (8, 3, 7), False, True, None),
    ("BatchNorm1d", (9, 4), True, False, 0.1),
    ("BatchNorm2d", (4, 3, 5, 6), True, True, 0.3),
    ("BatchNorm2d", (2, 6, 3, 3), False, False, 0.1),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", BN_CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}-{c[3]}-{c[4]}")
def test_batchnorm_matches_torch_over_training_steps_then_eval(rng, dtype, case):
    name, shape, affine, track, momentum = case
    C = shape[1]
    layer = getattr(nn, name)(C, eps=1e-4, momentum=momentum, affine=affine,
                              track_running_stats=track).to(dtype)
    reference = getattr(torch.nn, name)(C, eps=1e-4, momentum=momentum, affine=affine,
                                        track_running_stats=track)
    if affine:
        layer.weight.data[...] = rng.uniform(0.5, 1.5, C)
        layer.bias.data[...] = rng.standard_normal(C)
    to_torch(layer, reference, dtype)
    for step in range(4):
        x = (rng.standard_normal(shape) * rng.uniform(0.5, 3) + rng.uniform(-2, 2)).astype(dtype)
        layer.zero_grad()
        reference.zero_grad()
        run_both(layer, reference, [x], dtype, seed=step)
    for key, value in reference.state_dict().items():
        close(layer.state_dict()[key], value, dtype)
    layer.eval()
    reference.eval()
    x = rng.standard_normal(shape).astype(dtype)
    layer.zero_grad()
    reference.zero_grad()
    run_both(layer, reference, [x], dtype, seed=9)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("normalized, affine, bias", [
    ((7,), True, True), ((3, 5), True, True), ((6,), False, True), ((4,), True, False)])
def test_layernorm_matches_torch(rng, dtype, normalized, affine, bias):
    layer = nn.LayerNorm(normalized, eps=1e-5, elementwise_affine=affine, bias=bias).to(dtype)
    reference = torch.nn.LayerNorm(normalized, eps=1e-5, elementwise_affine=affine, bias=bias)
    if affine:
        layer.weight.data[...] = rng.uniform(0.5, 1.5, normalized)
        if bias:
            layer.bias.data[...] = rng.standard_normal(normalized)
    to_torch(layer, reference, dtype)
    x = (rng.standard_normal((2, 3) + normalized) * 2 + 1).astype(dtype)
    run_both(layer, reference, [x], dtype)


def test_norm_kernels_large_rows_and_threads(rng):
    # Enough work for two threads; the results must not depend on the thread count.
    x = rng.standard_normal((300, 257)).astype(np.float32)
    dy = rng.standard_normal((300, 257)).astype(np.float32)
    w = rng.standard_normal(257).astype(np.float32)
    outs = []
    for threads in (1, 2):
        with kernel_settings(_C.isa(), threads):
            y, mean, rstd = _C.layer_norm_forward(x, w, None, 1e-5)
            outs.append((y,) + _C.layer_norm_backward(dy, x, mean, rstd, w))
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)
    x64 = x.astype(np.float64)
    xhat = (x64 - x64.mean(1, keepdims=True)) / np.sqrt(x64.var(1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(outs[0][0], xhat * w, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(outs[0][2], (dy * xhat).sum(0), rtol=1e-4, atol=1e-3)


def test_norm_finite_differences(rng):
    x = rng.standard_normal((5, 3, 2)) * 2
    w, b = rng.uniform(0.5, 1.5, 3), rng.standard_normal(3)
    check_grad(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), x, w, b)
    rm, rv = pydl.tensor(rng.standard_normal(3)), pydl.tensor(rng.uniform(0.5, 2, 3))
    check_grad(lambda x, w, b: F.batch_norm(x, rm, rv, w, b, training=False), x, w, b)
    check_grad(lambda x: F.batch_norm(x, None, None, training=True), x)
    check_grad(lambda x, w, b: F.layer_norm(x, (3, 2), w, b), x, rng.standard_normal((3, 2)),
               rng.standard_normal((3, 2)))
    check_grad(lambda x: F.layer_norm(x, 2), x)


def test_norm_errors():
    with pytest.raises(ValueError, match="expected 4-D input"):
        nn.BatchNorm2d(3)(pydl.randn(2, 3))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(pydl.randn(1, 3))
    with pytest.raises(ValueError, match=r"running_mean must be float32 of shape \(3,\)"):
        F.batch_norm(pydl.randn(4, 3), pydl.zeros(2), pydl.ones(2), training=True)
    with pytest.raises(ValueError, match="does not end in normalized_shape"):
        nn.LayerNorm(4)(pydl.randn(2, 5))


# ---- MultiheadAttention ---------------------------------------------------------------

MHA_CASES = [  # (embed, heads, L, S, batch, batch_first, bias, mask kind)
    (8, 2, 5, 5, 3, False, True, None),
    (12, 3, 4, 6, 2, True, True, "bool"),
    (6, 1, 3, 4, 2, False, False, "float"),
    (16, 4, 5, 7, 3, True, True, "padding"),
    (8, 4, 4, 4, 2, False, True, "both"),
    (8, 2, 3, 5, None, False, True, "bool"),  # unbatched
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", MHA_CASES, ids=lambda c: "-".join(map(str, c)))
def test_multihead_attention_matches_torch(rng, dtype, case):
    E, H, L, S, N, batch_first, bias, mask_kind = case
    layer = nn.MultiheadAttention(E, H, bias=bias, batch_first=batch_first).to(dtype)
    reference = torch.nn.MultiheadAttention(E, H, bias=bias, batch_first=batch_first)
    if bias:  # non-zero biases, so their gradients and use are checked
        layer.in_proj_bias.data[...] = rng.standard_normal(3 * E)
        layer.out_proj.bias.data[...] = rng.standard_normal(E)
    to_torch(layer, reference, dtype)

    def shape(steps):
        if N is None:
            return (steps, E)
        return (N, steps, E) if batch_first else (steps, N, E)
    q, k, v = (rng.standard_normal(s).astype(dtype) for s in (shape(L), shape(S), shape(S)))
    attn_mask = padding = None
    if mask_kind in ("bool", "both"):
        attn_mask = rng.random((L, S)) < 0.3
        attn_mask[:, 0] = False  # every query sees at least one key
    if mask_kind == "float":
        attn_mask = rng.standard_normal((L, S)).astype(dtype)
    if mask_kind in ("padding", "both"):
        padding = rng.random((N, S)) < 0.3
        padding[:, 1] = False
    if mask_kind == "both":
        padding[:, 0] = False

    def as_torch(m):
        return None if m is None else torch.tensor(m)

    def ours(q, k, v):
        return layer(q, k, v, key_padding_mask=padding, attn_mask=attn_mask)

    def theirs(q, k, v):
        return reference(q, k, v, key_padding_mask=as_torch(padding),
                         attn_mask=as_torch(attn_mask))
    run_both(ours, theirs, [q, k, v], dtype, outputs=lambda out: out[0],
             owners=(layer, reference))
    close(ours(*map(pydl.tensor, (q, k, v)))[1],
          theirs(*map(torch.tensor, (q, k, v)))[1], dtype)


def test_attention_finite_differences(rng):
    q, k, v = (rng.standard_normal((2, 3, 4)) for _ in range(3))
    mask = np.array([[True, False, True], [True, True, True], [False, True, True]])
    check_grad(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask), q, k, v)
    layer = nn.MultiheadAttention(4, 2).double()
    check_grad(lambda q, w: layer(q, q, q)[0] * w, rng.standard_normal((3, 2, 4)),
               rng.standard_normal((3, 2, 4)))


def test_sdpa_matches_torch(rng):
    q, k, v = (rng.standard_normal((2, 3, 5, 4)) for _ in range(3))
    mask = rng.random((5, 5)) < 0.7
    mask[:, 0] = True
    for kwargs in ({}, {"is_causal": True}, {"scale": 0.3}):
        ours = F.scaled_dot_product_attention(*map(pydl.tensor, (q, k, v)), **kwargs)
        theirs = torch.nn.functional.scaled_dot_product_attention(
            *map(torch.tensor, (q, k, v)), **kwargs)
        close(ours, theirs, "float64")
    ours = F.scaled_dot_product_attention(*map(pydl.tensor, (q, k, v)), attn_mask=mask)
    theirs = torch.nn.functional.scaled_dot_product_attention(
        *map(torch.tensor, (q, k, v)), attn_mask=torch.tensor(mask))
    close(ours, theirs, "float64")


def test_linear_finite_differences(rng):
    check_grad(F.linear, rng.standard_normal((2, 3, 4)), rng.standard_normal((5, 4)),
               rng.standard_normal(5))


# ---- state_dict keys and training -------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda m: m.Linear(3, 4), lambda m: m.Linear(3, 4, bias=False),
    lambda m: m.Embedding(5, 2), lambda m: m.BatchNorm1d(3), lambda m: m.BatchNorm2d(3),
    lambda m: m.BatchNorm1d(3, affine=False, track_running_stats=False),
    lambda m: m.LayerNorm((2, 3)), lambda m: m.LayerNorm(3, elementwise_affine=False),
    lambda m: m.MultiheadAttention(4, 2), lambda m: m.MultiheadAttention(4, 2, bias=False),
    lambda m: m.Sequential(m.Linear(2, 3), m.ReLU(), m.Dropout(0.1), m.Linear(3, 1))])
def test_state_dict_keys_match_torch(make):
    ours, theirs = make(nn).state_dict(), make(torch.nn).state_dict()
    assert list(ours) == list(theirs)
    for key in ours:
        assert tuple(ours[key].shape) == tuple(theirs[key].shape), key


def test_mlp_fits_a_fixed_batch(rng):
    pydl.manual_seed(0)
    x = pydl.tensor(rng.standard_normal((32, 10)).astype(np.float32))
    y = pydl.tensor(rng.integers(0, 4, 32))
    model = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                          nn.Linear(64, 4))
    loss_fn = nn.CrossEntropyLoss()
    first = None
    for _ in range(500):
        loss = loss_fn(model(x), y)
        first = first if first is not None else loss.item()
        model.zero_grad()
        loss.backward()
        with pydl.no_grad():
            for p in model.parameters():
                p -= 0.2 * p.grad
    assert first > 1.0
    assert loss.item() < 0.01
