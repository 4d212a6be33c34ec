"""Autograd: every op's gradient against central differences in float64, the
float32 kernel paths against float64 NumPy references, and the engine's rules
(accumulation, retain_graph, freed graphs, no_grad, deep and diamond graphs)."""
import math

import numpy as np
import pytest

import pydl
import pydl.nn.functional as F
from conftest import check_grad


def positive(rng, *shape):
    return rng.uniform(0.5, 2.0, shape)


def normal(rng, *shape):
    return rng.standard_normal(shape)


def spread(rng, *shape):
    """Distinct values at least 0.05 apart (no ties, away from 0), randomly ordered."""
    n = int(np.prod(shape))
    values = (np.arange(n) - n / 2 + 0.5) * 0.1 + 0.01
    return rng.permutation(values).reshape(shape)


# ---- elementwise and broadcasting ---------------------------------------------------

BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: a ** b,
    "maximum": lambda a, b: pydl.maximum(a, b),
    "minimum": lambda a, b: a.minimum(b),
}
BROADCAST_SHAPES = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 3), (4, 1)), ((5,), (2, 3, 1)),
                    ((), (2, 3))]


@pytest.mark.parametrize("shapes", BROADCAST_SHAPES, ids=str)
@pytest.mark.parametrize("name", list(BINARY))
def test_binary_ops_broadcast_gradients(rng, name, shapes):
    a = positive(rng, *shapes[0])
    b = positive(rng, *shapes[1])
    if name in ("maximum", "minimum"):
        b = b + 0.1 * np.sign(rng.standard_normal(b.shape))  # ties only by chance
    grads = check_grad(BINARY[name], a, b)
    assert grads[0].shape == a.shape and grads[1].shape == b.shape


@pytest.mark.parametrize("fn", [
    lambda a: 2.5 + a, lambda a: a + 2, lambda a: 3 - a, lambda a: a - 1.5,
    lambda a: 2 * a, lambda a: a * -0.5, lambda a: 3 / a, lambda a: a / 4,
    lambda a: a ** 3, lambda a: a ** 0.5, lambda a: 2 ** a, lambda a: -a,
    lambda a: a.exp(), lambda a: pydl.log(a), lambda a: a.sqrt(),
    lambda a: (a - 1.2).abs(), lambda a: a.clamp(min=0.8, max=1.5),
    lambda a: pydl.clip(a, 0.9), lambda a: a.clamp(max=1.1),
], ids=lambda f: "")
def test_unary_and_scalar_gradients(rng, fn):
    a = positive(rng, 3, 4)
    a[np.abs(a - 1.2) < 0.02] += 0.05  # keep abs away from its kink
    for edge in (0.8, 0.9, 1.1, 1.5):  # and clamp away from its bounds
        a[np.abs(a - edge) < 0.02] += 0.05
    check_grad(fn, a)


def test_where_gradient(rng):
    condition = pydl.tensor(rng.standard_normal((3, 4)) > 0)
    check_grad(lambda a, b: pydl.where(condition, a, b), normal(rng, 3, 4), normal(rng, 4))
    check_grad(lambda a: pydl.where(condition, a, 0.0), normal(rng, 3, 4))


def test_pow_with_zero_base_has_finite_exponent_gradient():
    base = pydl.tensor([0.0, 2.0])
    exponent = pydl.tensor([2.0, 3.0], requires_grad=True)
    (base ** exponent).sum().backward()
    np.testing.assert_allclose(exponent.grad.numpy(), [0.0, 8 * math.log(2)], rtol=1e-6)


# ---- matmul -----------------------------------------------------------------------

MATMUL_SHAPES = [((4,), (4,)), ((3, 4), (4,)), ((4,), (4, 5)), ((3, 4), (4, 5)),
                 ((2, 3, 4), (4, 5)), ((3, 4), (2, 4, 5)), ((2, 3, 4), (2, 4, 5)),
                 ((2, 1, 3, 4), (3, 4, 2)), ((1, 3, 4), (2, 4, 5))]


@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=str)
def test_matmul_gradients(rng, shapes):
    a, b = normal(rng, *shapes[0]), normal(rng, *shapes[1])
    check_grad(lambda x, y: x @ y, a, b)


@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=str)
def test_matmul_float32_matches_float64(rng, shapes):
    a, b = normal(rng, *shapes[0]), normal(rng, *shapes[1])
    g = normal(rng, *np.matmul(a, b).shape)
    results = {}
    for dtype in ("float32", "float64"):
        x = pydl.tensor(a, dtype=dtype, requires_grad=True)
        y = pydl.tensor(b, dtype=dtype, requires_grad=True)
        out = x @ y
        out.backward(pydl.tensor(g, dtype=dtype))
        assert out.dtype == dtype and x.grad.dtype == dtype
        results[dtype] = [out.detach().numpy(), x.grad.numpy(), y.grad.numpy()]
    np.testing.assert_allclose(results["float64"][0], np.matmul(a, b), rtol=1e-12)
    for got, want in zip(results["float32"], results["float64"]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_matmul_of_transposed_views_float32(rng):
    a, b = normal(rng, 6, 5), normal(rng, 7, 6)
    x = pydl.tensor(a, requires_grad=True)
    y = pydl.tensor(b, requires_grad=True)
    out = x.T @ y.T  # both operands column-major views
    out.backward(pydl.ones(5, 7))
    np.testing.assert_allclose(out.detach().numpy(), a.T @ b.T, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(x.grad.numpy(), (np.ones((5, 7)) @ b).T, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(y.grad.numpy(), (a.T.T @ np.ones((5, 7))).T, rtol=1e-4,
                               atol=1e-5)


# ---- reductions -------------------------------------------------------------------

REDUCTIONS = {
    "sum": lambda x, **k: x.sum(**k), "mean": lambda x, **k: x.mean(**k),
    "amax": lambda x, **k: x.amax(**k), "amin": lambda x, **k: pydl.amin(x, **k),
    "var": lambda x, **k: x.var(**k), "std": lambda x, **k: x.std(**k),
}


@pytest.mark.parametrize("kwargs", [{}, {"dim": 0}, {"dim": -1, "keepdim": True},
                                    {"dim": (0, 2)}, {"axis": 1}], ids=str)
@pytest.mark.parametrize("name", list(REDUCTIONS))
def test_reduction_gradients(rng, name, kwargs):
    x = spread(rng, 2, 3, 4)
    check_grad(lambda t: REDUCTIONS[name](t, **kwargs), x)


def test_reductions_match_numpy(rng):
    x = normal(rng, 3, 4, 5)
    t = pydl.tensor(x)
    np.testing.assert_allclose(t.sum(dim=1).numpy(), x.sum(1))
    np.testing.assert_allclose(t.mean((0, 2), keepdim=True).numpy(), x.mean((0, 2), keepdims=True))
    np.testing.assert_allclose(t.var(1).numpy(), x.var(1, ddof=1))
    np.testing.assert_allclose(t.var(1, unbiased=False).numpy(), x.var(1))
    np.testing.assert_allclose(t.std().numpy(), x.std(ddof=1))
    values, indices = t.max(dim=2)
    np.testing.assert_array_equal(values.numpy(), x.max(2))
    np.testing.assert_array_equal(indices.numpy(), x.argmax(2))
    assert t.min().item() == x.min()
    np.testing.assert_array_equal(t.argmax(dim=-1, keepdim=True).numpy(),
                                  x.argmax(-1)[..., None])
    assert pydl.max(t, pydl.zeros(5, dtype="float64")).shape == (3, 4, 5)


def test_max_gradient_is_shared_among_ties():
    x = pydl.tensor([1.0, 3.0, 3.0, 2.0], requires_grad=True)
    x.max().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0, 0.5, 0.5, 0])


# ---- shapes and indexing ---------------------------------------------------------

@pytest.mark.parametrize("fn", [
    lambda x: x.reshape(4, 6), lambda x: x.view(-1), lambda x: x.flatten(1),
    lambda x: x.transpose(0, 2), lambda x: x.permute(1, 2, 0), lambda x: x.T,
    lambda x: x.unsqueeze(1).squeeze(), lambda x: x[:, :1].squeeze(1),
    lambda x: x[:, :1].expand(2, 5, 4), lambda x: x.expand(3, -1, -1, -1),
    lambda x: x.sum(1, keepdim=True).broadcast_to((2, 3, 4)),
    lambda x: x[1], lambda x: x[:, 1:, ::-2], lambda x: x[..., 2], lambda x: x[None, 0, -1],
    lambda x: x[[0, 1, 0]], lambda x: x[:, [2, 2, 0], 1:3],
    lambda x: x[pydl.tensor([1, 1])], lambda x: x[x > 0.0],
    lambda x: x[np.array([[0, 1], [1, 1]])],
], ids=lambda f: "")
def test_shape_and_index_gradients(rng, fn):
    check_grad(fn, normal(rng, 2, 3, 4))


def test_indexing_matches_numpy(rng):
    x = normal(rng, 4, 5)
    t = pydl.tensor(x)
    for index in [(1, 2), (slice(None), [0, 4, 4]), (x > 0,), ([3, 0],), (Ellipsis, -1)]:
        np.testing.assert_array_equal(t[index].numpy(), x[index])


def test_cat_and_stack_gradients(rng):
    check_grad(lambda a, b: pydl.cat([a, b], dim=1), normal(rng, 2, 3), normal(rng, 2, 4))
    check_grad(lambda a, b, c: pydl.cat((a, b, c)), normal(rng, 1, 3), normal(rng, 2, 3),
               normal(rng, 3, 3))
    check_grad(lambda a, b: pydl.stack([a, b], dim=-1), normal(rng, 2, 3), normal(rng, 2, 3))
    check_grad(lambda a, b: pydl.stack([a, b]), normal(rng, 4), normal(rng, 4))


# ---- activations, softmax, losses ---------------------------------------------------

ACTIVATIONS = {
    "relu": F.relu, "sigmoid": F.sigmoid, "tanh": F.tanh, "gelu": F.gelu,
    "softmax": lambda x: F.softmax(x, dim=-1), "softmax_dim0": lambda x: x.softmax(0),
    "log_softmax": lambda x: F.log_softmax(x), "log_softmax_dim1": lambda x: x.log_softmax(1),
}


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_gradients(rng, name):
    check_grad(ACTIVATIONS[name], spread(rng, 3, 4, 5))


def _erf(x):
    return np.vectorize(math.erf)(x)


ACTIVATION_REFERENCES = {  # float64 NumPy, written independently of pydl
    "relu": lambda x: np.maximum(x, 0), "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "tanh": np.tanh, "gelu": lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2))),
    "softmax": lambda x: np.exp(x) / np.exp(x).sum(-1, keepdims=True),
    "softmax_dim0": lambda x: np.exp(x) / np.exp(x).sum(0, keepdims=True),
    "log_softmax": lambda x: x - np.log(np.exp(x).sum(-1, keepdims=True)),
    "log_softmax_dim1": lambda x: x - np.log(np.exp(x).sum(1, keepdims=True)),
}


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_float32_kernels_match_float64(rng, name):
    x = 3 * normal(rng, 3, 4, 5)
    g = normal(rng, 3, 4, 5)
    out64 = {}
    for dtype in ("float32", "float64"):
        t = pydl.tensor(x, dtype=dtype, requires_grad=True)
        y = ACTIVATIONS[name](t)
        y.backward(pydl.tensor(g, dtype=dtype))
        assert y.dtype == dtype and t.grad.dtype == dtype
        out64[dtype] = (y.detach().numpy(), t.grad.numpy())
    np.testing.assert_allclose(out64["float64"][0], ACTIVATION_REFERENCES[name](x), rtol=1e-12,
                               atol=1e-14)
    for got, want in zip(out64["float32"], out64["float64"]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def _cross_entropy_reference(z, target, reduction, ignore_index=-100):
    log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
    if target.dtype.kind == "i":
        keep = target != ignore_index
        losses = np.where(keep, -log_p[np.arange(len(z)), np.where(keep, target, 0)], 0.0)
        count = keep.sum()
    else:
        losses = -(target * log_p).sum(1)
        count = len(z)
    return {"none": losses, "sum": losses.sum(), "mean": losses.sum() / count}[reduction]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("target_kind", ["index", "index_ignored", "probability"])
def test_cross_entropy(rng, reduction, target_kind):
    z = normal(rng, 6, 5)
    if target_kind == "probability":
        target = rng.dirichlet(np.ones(5), size=6)
    else:
        target = rng.integers(0, 5, 6)
        if target_kind == "index_ignored":
            target[[1, 4]] = -1
    ignore = -1 if target_kind == "index_ignored" else -100
    check_grad(lambda x: F.cross_entropy(x, pydl.tensor(target), reduction=reduction,
                                       ignore_index=ignore), z)
    expected = _cross_entropy_reference(z, target, reduction, ignore)
    for dtype, rtol in (("float64", 1e-12), ("float32", 1e-5)):
        x = pydl.tensor(z, dtype=dtype, requires_grad=True)
        t = pydl.tensor(target, dtype=None if target.dtype.kind == "i" else dtype)
        loss = F.cross_entropy(x, t, reduction=reduction, ignore_index=ignore)
        np.testing.assert_allclose(loss.detach().numpy(), expected, rtol=rtol, atol=1e-6)
        loss.sum().backward()
        if dtype == "float64":
            grad64 = x.grad.numpy()
        else:
            np.testing.assert_allclose(x.grad.numpy(), grad64, rtol=1e-4, atol=1e-6)


def test_cross_entropy_spatial_input(rng):
    z = normal(rng, 2, 3, 2, 2)  # (N, C, H, W)
    target = rng.integers(0, 3, (2, 2, 2))
    check_grad(lambda x: F.cross_entropy(x, pydl.tensor(target)), z)
    check_grad(lambda x: F.cross_entropy(x, pydl.tensor(target), reduction="none"), z)


def test_mse_loss(rng):
    a, b = normal(rng, 3, 4), normal(rng, 3, 4)
    check_grad(lambda x, y: F.mse_loss(x, y), a, b)
    check_grad(lambda x, y: F.mse_loss(x, y, reduction="sum"), a, b)
    loss = F.mse_loss(pydl.tensor(a, dtype="float32"), pydl.tensor(b, dtype="float32"))
    np.testing.assert_allclose(loss.item(), ((a - b) ** 2).mean(), rtol=1e-5)


def test_composite_expression(rng):
    def model(x, w1, b1, w2):
        h = F.gelu(x @ w1 + b1)
        return F.log_softmax(h.tanh() @ w2, dim=-1).mean(0) * h.std()
    check_grad(model, normal(rng, 4, 3), normal(rng, 3, 5), normal(rng, 5), normal(rng, 5, 2))


# ---- the engine --------------------------------------------------------------------

def test_gradients_accumulate_across_backward_calls(rng):
    x = pydl.tensor(normal(rng, 3), requires_grad=True)
    (x * x).sum().backward()
    first = x.grad.numpy().copy()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * first)
    np.testing.assert_allclose(first, 2 * x.detach().numpy(), rtol=1e-6)


def test_retain_graph_allows_a_second_backward(rng):
    x = pydl.tensor(normal(rng, 3), requires_grad=True)
    y = (x.exp() * 2).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 4 * np.exp(x.detach().numpy()), rtol=1e-6)


def test_graph_is_freed_after_backward(rng):
    x = pydl.tensor(normal(rng, 3), requires_grad=True)
    y = (x * 3).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_freed_graph_releases_saved_arrays(rng):
    x = pydl.tensor(normal(rng, 3), requires_grad=True)
    y = x.exp()
    node = y.grad_fn
    y.sum().backward()
    assert node.saved is None and node.inputs is None


def test_gradient_reaches_leaf_shared_by_branches_once_per_path(rng):
    # Diamond: y feeds two branches that meet again; x's gradient sums both paths.
    x = pydl.tensor(normal(rng, 4), requires_grad=True)
    y = x * 2
    z = y.tanh()
    out = (z * y + y.exp()).sum()
    out.backward()
    xv = x.detach().numpy()
    yv = 2 * xv
    expected = 2 * ((1 - np.tanh(yv) ** 2) * yv + np.tanh(yv) + np.exp(yv))
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-5)
    check_grad(lambda a: (a * a) * a + a, normal(rng, 3))


def test_long_chain_has_no_recursion_limit():
    x = pydl.tensor([1.0], dtype="float64", requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0001 ** 10_000], rtol=1e-9)


def test_no_grad_context_and_decorator(rng):
    x = pydl.tensor(normal(rng, 3), requires_grad=True)
    with pydl.no_grad():
        assert not pydl.is_grad_enabled()
        y = x * 2
        with pydl.enable_grad():
            z = x * 2
    assert pydl.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad and z.grad_fn is not None

    @pydl.no_grad()
    def double(t):
        return t * 2

    @pydl.no_grad
    def triple(t):
        return t * 3

    assert not double(x).requires_grad and not triple(x).requires_grad
    assert pydl.is_grad_enabled()


def test_retain_grad_keeps_non_leaf_gradient(rng):
    x = pydl.tensor(normal(rng, 3), requires_grad=True)
    h = x * 3
    h.retain_grad()
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad.numpy(), 2 * h.detach().numpy(), rtol=1e-6)
    assert not h.is_leaf and x.is_leaf


def test_backward_needs_gradient_for_non_scalar_and_requires_grad(rng):
    x = pydl.tensor(normal(rng, 3), requires_grad=True)
    with pytest.raises(RuntimeError, match="scalar outputs"):
        (x * 2).backward()
    with pytest.raises(RuntimeError, match="does not require grad"):
        pydl.tensor([1.0]).backward()
    with pytest.raises(ValueError, match="shape"):
        (x * 2).backward(pydl.ones(4))


def test_only_inputs_that_require_grad_get_gradients(rng):
    x = pydl.tensor(normal(rng, 3), requires_grad=True)
    c = pydl.tensor(normal(rng, 3))
    (x * c).sum().backward()
    assert c.grad is None
    np.testing.assert_allclose(x.grad.numpy(), c.numpy())


def test_inplace_rules(rng):
    w = pydl.tensor(normal(rng, 3), requires_grad=True)
    (w * w).sum().backward()
    before = w.detach().numpy().copy()
    with pytest.raises(RuntimeError, match="in-place"):
        w -= 0.1 * w.grad
    with pydl.no_grad():
        w -= 0.1 * w.grad
    np.testing.assert_allclose(w.detach().numpy(), before - 0.1 * 2 * before, rtol=1e-6)
    assert w.requires_grad and w.is_leaf
    h = w * 2
    with pytest.raises(RuntimeError, match="in-place"), pydl.no_grad():
        h.add_(1)
    w.grad.zero_()
    assert not w.grad.numpy().any()
    plain = pydl.ones(3)
    plain += 1
    plain[0] = 5
    np.testing.assert_array_equal(plain.numpy(), [5, 2, 2])


def test_leaf_grad_does_not_alias_other_gradients(rng):
    a = pydl.tensor(normal(rng, 3), requires_grad=True)
    b = pydl.tensor(normal(rng, 3), requires_grad=True)
    (a + b).sum().backward()  # both get the same upstream gradient array
    with pydl.no_grad():
        a.grad += 1
    np.testing.assert_array_equal(b.grad.numpy(), np.ones(3))


def test_against_torch(rng):
    torch = pytest.importorskip("torch")
    x, w, b = normal(rng, 4, 3), normal(rng, 3, 5), normal(rng, 5)
    target = rng.integers(0, 5, 4)

    def run(lib, functional, make):
        xs, ws, bs = make(x), make(w), make(b)
        h = functional.gelu(xs @ ws + bs)
        loss = functional.cross_entropy(h * h.sigmoid(), lib.tensor(target)) \
            + (h.softmax(-1).var(0) + (xs.abs() + 1).log().mean(1).std()).sum() \
            + lib.where(h > 0, h, h.exp() - 1).amax(1).mean()
        loss.backward()
        return [loss.item(), xs.grad.numpy(), ws.grad.numpy(), bs.grad.numpy()]

    mine = run(pydl, F, lambda a: pydl.tensor(a, requires_grad=True))
    theirs = run(torch, torch.nn.functional,
                 lambda a: torch.tensor(a, dtype=torch.float32, requires_grad=True))
    for got, want in zip(mine, theirs):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)


def test_post_accumulate_grad_hook_runs_once_after_the_last_contribution(rng):
    # w is used twice (a diamond into the leaf): the hook must see the summed gradient,
    # once per backward; b's hook runs too, and a removed hook no longer runs.
    w = pydl.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    b = pydl.tensor(rng.standard_normal(4), requires_grad=True)
    x = pydl.tensor(rng.standard_normal((5, 3)))
    seen = []
    w.register_post_accumulate_grad_hook(lambda t: seen.append(("w", t.grad.numpy().copy())))
    handle = b.register_post_accumulate_grad_hook(lambda t: seen.append(("b", None)))
    loss = ((x @ w + b) * (x @ w)).sum()
    loss.backward()
    xw = x.numpy() @ w.detach().numpy()
    expected = x.numpy().T @ (2 * xw + b.detach().numpy())
    assert [name for name, _ in seen] in (["w", "b"], ["b", "w"])
    np.testing.assert_allclose(dict(seen)["w"], expected, rtol=1e-5)
    handle.remove()
    seen.clear()
    (x @ w + b).sum().backward()
    assert [name for name, _ in seen] == ["w"]


def test_post_accumulate_grad_hook_needs_a_leaf_that_requires_grad(rng):
    w = pydl.tensor(rng.standard_normal(3), requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf"):
        (w * 2).register_post_accumulate_grad_hook(lambda t: None)
    with pytest.raises(RuntimeError, match="leaf"):
        pydl.tensor(rng.standard_normal(3)).register_post_accumulate_grad_hook(lambda t: None)
    calls = []
    w.register_post_accumulate_grad_hook(calls.append)
    w.backward(pydl.ones(3))  # the root itself is the leaf
    assert calls == [w]


# ---- Functions of several outputs ------------------------------------------------------

class _PolarParts(pydl.autograd.Function):
    """(r, theta) of points (x, y): two outputs of two inputs, backward by hand."""

    def forward(self, x, y):
        self.save(x, y)
        return np.hypot(x, y), np.arctan2(y, x)

    def backward(self, d_r, d_theta):
        x, y = self.saved
        r2 = x * x + y * y
        r = np.sqrt(r2)
        return d_r * x / r - d_theta * y / r2, d_r * y / r + d_theta * x / r2


def test_function_of_several_outputs_returns_a_tuple_of_tensors(rng):
    x, y = (pydl.tensor(rng.standard_normal(4) + 2, requires_grad=True) for _ in range(2))
    r, theta = _PolarParts.apply(x, y)
    assert isinstance(r, pydl.Tensor) and r.grad_fn is theta.grad_fn
    assert (r.output_nr, theta.output_nr) == (0, 1)
    np.testing.assert_allclose(r.detach().numpy(), np.hypot(x.detach().numpy(),
                                                            y.detach().numpy()), rtol=1e-6)
    with pydl.no_grad():
        r, theta = _PolarParts.apply(x, y)
    assert r.grad_fn is None and not theta.requires_grad


@pytest.mark.parametrize("use", ["both", "r", "theta", "theta_twice"])
def test_function_of_several_outputs_finite_differences(rng, use):
    def f(x, y):
        r, theta = _PolarParts.apply(x, y)
        # The unused output gets zeros (materialized) in backward.
        return {"both": r * theta + r, "r": r * 1.0, "theta": theta * 1.0,
                "theta_twice": theta * theta + theta.exp()}[use]
    check_grad(f, rng.standard_normal(5) + 2, rng.standard_normal(5), atol=1e-7)


def test_function_of_several_outputs_unmaterialized_grads_are_none(rng):
    seen = []

    class TwoCopies(pydl.autograd.Function):
        materialize_grads = False

        def forward(self, x):
            return x * 2, x * 3

        def backward(self, d_first, d_second):
            seen.append((d_first is None, d_second is None))
            return (2 * (0 if d_first is None else d_first)
                    + 3 * (0 if d_second is None else d_second),)

    x = pydl.tensor(rng.standard_normal(3), requires_grad=True)
    TwoCopies.apply(x)[1].sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 3.0)
    assert seen == [(True, False)]


def test_retain_grad_on_each_output_of_a_multi_output_function(rng):
    x, y = (pydl.tensor(rng.standard_normal(3) + 2, requires_grad=True) for _ in range(2))
    r, theta = _PolarParts.apply(x, y)
    r.retain_grad()
    theta.retain_grad()
    (2 * r + 5 * theta).sum().backward()
    np.testing.assert_allclose(r.grad.numpy(), 2.0)
    np.testing.assert_allclose(theta.grad.numpy(), 5.0)
