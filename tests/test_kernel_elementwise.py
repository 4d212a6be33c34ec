"""Activations and row-wise softmax against float64 NumPy references, on every
instruction-set path the CPU has and on 1 and 2 threads."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.special import erfc, expit

import pydl._C as C
from conftest import ISAS, kernel_settings

# Includes sizes that are not multiples of 8 (vector tails) and one big enough
# that every activation runs on two threads.
SIZES = [0, 1, 7, 33, 255, 1000, 150_001]
# Relative error allowed against float64, plus an absolute floor below which
# float32 cannot resolve anything (subnormal results).
RTOL = {"relu": 0, "sigmoid": 5e-7, "tanh": 5e-7, "gelu": 1e-6}
TINY = 1e-37


def inputs(n, seed):
    """Normal values at several scales, with large magnitudes (+-100) and the
    exp range limits mixed in, in a random order."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n) * rng.choice([0.01, 1.0, 5.0, 30.0], n)
    special = np.array([100.0, -100.0, 88.0, -88.0, 87.5, -87.5, -104.0, 0.6249, -0.6251, 15.0, -15.0])
    k = min(n // 3, special.size)
    x[rng.choice(n, k, replace=False)] = special[:k]
    return x.astype(np.float32)


# ---- float64 references ------------------------------------------------------

def normal_cdf64(x):
    # erfc form: 1 + erf(x / sqrt2) would cancel in the left tail even in float64.
    return 0.5 * erfc(-x / np.sqrt(2))


def gelu64(x):
    return x * normal_cdf64(x)


FORWARD = {
    "relu": lambda x: np.maximum(x, 0),
    "sigmoid": expit,
    "tanh": np.tanh,
    "gelu": gelu64,
}
DERIVATIVE = {  # f'(x)
    "relu": lambda x: (x > 0).astype(np.float64),
    "sigmoid": lambda x: expit(x) * (1 - expit(x)),
    "tanh": lambda x: 1 - np.tanh(x) ** 2,
    "gelu": lambda x: normal_cdf64(x) + x * np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi),
}
SAVES_OUTPUT = {"sigmoid", "tanh"}  # backward takes y; relu and gelu take x


def assert_close(got, ref, rtol, atol=TINY):
    got = np.asarray(got, np.float64)
    err = np.abs(got - ref)
    bound = atol + rtol * np.abs(ref)
    worst = np.argmax(err - bound) if err.size else 0
    assert np.all(err <= bound), (
        f"max excess at {worst}: got {got.flat[worst]!r}, want {ref.flat[worst]!r}")


# ---- activations -----------------------------------------------------------

@pytest.mark.parametrize("n", SIZES)
def test_activations_match_float64(config, n):
    assert C.isa() == config[0]
    x = inputs(n, seed=n)
    x64 = x.astype(np.float64)
    dy = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    for name in FORWARD:
        y = getattr(C, f"{name}_forward")(x)
        assert y.shape == x.shape and y.dtype == np.float32
        assert_close(y, FORWARD[name](x64), RTOL[name])
        saved = y if name in SAVES_OUTPUT else x
        dx = getattr(C, f"{name}_backward")(dy, saved)
        if name in SAVES_OUTPUT:  # the formula in y, evaluated at the float32 y the kernel saw
            y64 = y.astype(np.float64)
            ref = dy * (y64 * (1 - y64) if name == "sigmoid" else 1 - y64 * y64)
        else:
            ref = dy * DERIVATIVE[name](x64)
        # gelu' = Phi(x) + x phi(x) crosses 0 near x = -0.75, where its two terms
        # (about 0.24 each) cancel: allow a few ulp of those terms there.
        assert_close(dx, ref, 1e-6, atol=1e-7 * np.abs(dy) + 1e-30)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "gelu"])
def test_backward_matches_finite_differences(config, name):
    # Central differences of the float64 reference, at inputs away from where
    # float32 y loses the derivative (|x| < 8).
    x = (np.random.default_rng(7).uniform(-8, 8, 333)).astype(np.float32)
    x64 = x.astype(np.float64)
    h = 1e-6
    numeric = (FORWARD[name](x64 + h) - FORWARD[name](x64 - h)) / (2 * h)
    dy = np.ones_like(x)
    saved = getattr(C, f"{name}_forward")(x) if name in SAVES_OUTPUT else x
    dx = getattr(C, f"{name}_backward")(dy, saved)
    np.testing.assert_allclose(dx, numeric, rtol=2e-5, atol=2e-7)


def test_special_values(config):
    x = np.array([np.nan, np.inf, -np.inf, 1e4, -1e4, 0.0, -0.0, 1e-30], np.float32)
    with np.errstate(invalid="ignore"):
        for name in FORWARD:
            y = getattr(C, f"{name}_forward")(x)
            assert np.isnan(y[0]), name
    np.testing.assert_array_equal(C.sigmoid_forward(x)[1:6], [1, 0, 1, 0, 0.5])
    np.testing.assert_array_equal(C.tanh_forward(x)[1:6], [1, -1, 1, -1, 0])
    np.testing.assert_array_equal(C.relu_forward(x)[1:6], [np.inf, 0, 1e4, 0, 0])
    assert C.gelu_forward(x)[1] == np.inf and C.gelu_forward(x)[3] == 1e4
    assert C.gelu_forward(x)[4] == 0 and C.tanh_forward(x)[7] == np.float32(1e-30)


def test_sigmoid_left_tail_is_exp_to_an_ulp(config):
    # For x < -20, sigmoid(x) = exp(x) (1 - exp(x)) equals exp(x) in float32,
    # so this checks the exp kernel itself across the normal range.
    x = np.linspace(-87.3, -20, 100_003, dtype=np.float32)
    got = C.sigmoid_forward(x).astype(np.float64)
    ref = expit(x.astype(np.float64))
    ulp = np.spacing(ref.astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(got - ref) / ulp) <= 2.0


# ---- softmax and log-softmax --------------------------------------------------

def softmax64(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax64(x):
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def logits(shape, seed, spread=5.0):
    return (np.random.default_rng(seed).standard_normal(shape) * spread).astype(np.float32)


SHAPES = [(0, 5), (1, 1), (3, 7), (4, 33), (2, 255), (5, 1000), (300, 257)]


@pytest.mark.parametrize("shape", SHAPES)
def test_softmax_forward_backward(config, shape):
    x = logits(shape, seed=sum(shape))
    y = C.softmax_forward(x)
    ref = softmax64(x.astype(np.float64))
    np.testing.assert_allclose(y, ref, rtol=2e-6, atol=1e-12)
    dy = logits(shape, seed=1, spread=1.0)
    dx = C.softmax_backward(dy, y)
    y64 = y.astype(np.float64)
    ref_dx = y64 * (dy - (dy * y64).sum(-1, keepdims=True))
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("shape", SHAPES)
def test_log_softmax_forward_backward(config, shape):
    x = logits(shape, seed=sum(shape) + 3)
    y = C.log_softmax_forward(x)
    np.testing.assert_allclose(y, log_softmax64(x.astype(np.float64)), rtol=1e-6, atol=2e-6)
    dy = logits(shape, seed=2, spread=1.0)
    dx = C.log_softmax_backward(dy, y)
    ref_dx = dy - np.exp(y.astype(np.float64)) * dy.astype(np.float64).sum(-1, keepdims=True)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_rowwise_backward_matches_finite_differences(config, op):
    x = logits((3, 11), seed=5, spread=2.0)
    x64 = x.astype(np.float64)
    dy = logits((3, 11), seed=6, spread=1.0).astype(np.float64)
    ref = softmax64 if op == "softmax" else log_softmax64
    h = 1e-6
    numeric = np.zeros_like(x64)
    for idx in np.ndindex(x.shape):  # d/dx sum(dy * f(x))
        e = np.zeros_like(x64)
        e[idx] = h
        numeric[idx] = ((dy * ref(x64 + e)).sum() - (dy * ref(x64 - e)).sum()) / (2 * h)
    y = getattr(C, f"{op}_forward")(x)
    dx = getattr(C, f"{op}_backward")(dy.astype(np.float32), y)
    np.testing.assert_allclose(dx, numeric, rtol=1e-4, atol=1e-6)


def test_softmax_extreme_logits_stay_finite(config):
    x = logits((4, 100), seed=9, spread=1.0)
    x[:, 0] = 1e4
    x[:, 1] = -1e4
    x[1] = -1e4          # a row of equal, very negative logits
    x[2, 50] = 8e3
    y, ly = C.softmax_forward(x), C.log_softmax_forward(x)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(ly))
    np.testing.assert_allclose(y.sum(-1), 1, rtol=1e-6)
    np.testing.assert_allclose(ly, log_softmax64(x.astype(np.float64)), rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(y, softmax64(x.astype(np.float64)), rtol=2e-6, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(0, 9), cols=st.integers(1, 70), spread=st.sampled_from([0.1, 3.0, 50.0]),
       seed=st.integers(0, 2**31), lead=st.booleans())
def test_softmax_shapes(rows, cols, spread, seed, lead):
    # Leading axes flatten into rows; the last axis is the softmax axis.
    shape = (2, rows, cols) if lead else (rows, cols)
    x = logits(shape, seed, spread)
    for isa in ISAS:
        with kernel_settings(isa, C.get_num_threads()):
            np.testing.assert_allclose(C.softmax_forward(x), softmax64(x.astype(np.float64)),
                                       rtol=2e-6, atol=1e-12)
            np.testing.assert_allclose(C.log_softmax_forward(x), log_softmax64(x.astype(np.float64)),
                                       rtol=1e-6, atol=1e-5)


# ---- the vector widths agree ----------------------------------------------------

@pytest.mark.skipif("avx512" not in ISAS, reason=f"this CPU has no avx512 path (its best is {ISAS[-1]})")
@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "gelu", "softmax", "log_softmax"])
def test_avx512_and_avx2_paths_give_the_same_bits(name, rng):
    # The math is one template over the vector width, the same operations in the
    # same order per lane; only the rows' sums may differ in order (in double).
    rows = {"softmax", "log_softmax"}
    x = inputs(3 * 37, 2).reshape(3, 37) if name in rows else inputs(1000 + 13, 1)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    out = {}
    for isa in ("avx2", "avx512"):
        with kernel_settings(isa, 1):
            y = getattr(C, f"{name}_forward")(x)
            saved = y if name in SAVES_OUTPUT or name in rows else x
            out[isa] = (y, getattr(C, f"{name}_backward")(dy, saved))
    for a, b in zip(out["avx2"], out["avx512"]):
        if name in rows:
            np.testing.assert_allclose(b, a, rtol=2e-7, atol=1e-30)
        else:
            np.testing.assert_array_equal(b, a)


# ---- bad arguments ------------------------------------------------------------

@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "gelu", "softmax", "log_softmax"])
def test_bad_arguments_raise(name):
    fwd, bwd = getattr(C, f"{name}_forward"), getattr(C, f"{name}_backward")
    x = np.ones((4, 6), np.float32)
    with pytest.raises(TypeError, match="x must be float32"):
        fwd(x.astype(np.float64))
    with pytest.raises(TypeError, match="numpy array"):
        fwd([1.0, 2.0])
    with pytest.raises(ValueError, match="C-contiguous"):
        fwd(x[:, ::2])
    with pytest.raises(ValueError, match="must match"):
        bwd(x, np.ones((4, 5), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        bwd(x.T, x.T.copy())


# ---- against PyTorch ------------------------------------------------------------

@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "gelu", "softmax", "log_softmax"])
def test_matches_torch(name):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    ops = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "gelu": F.gelu,
           "softmax": lambda t: F.softmax(t, -1), "log_softmax": lambda t: F.log_softmax(t, -1)}
    x = logits((37, 41), seed=11, spread=4.0)
    dy = logits((37, 41), seed=12, spread=1.0)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = ops[name](tx)
    ty.backward(torch.from_numpy(dy))
    y = getattr(C, f"{name}_forward")(x)
    saved = x if name in ("relu", "gelu") else y
    dx = getattr(C, f"{name}_backward")(dy, saved)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "gelu"])
@pytest.mark.parametrize("axes", [(0, 2, 3, 1), (3, 1, 0, 2)])
def test_activation_of_a_permuted_view_keeps_its_layout(name, axes, rng):
    """A channels-last view of an NCHW block goes through the kernel without a copy: the
    result is the same values (and gradient) as on a contiguous copy, in the view's
    layout."""
    import pydl
    import pydl.nn.functional as F
    block = rng.standard_normal((3, 5, 4, 6)).astype(np.float32)
    x = pydl.tensor(block, requires_grad=True)
    view = x.permute(*axes)
    y = getattr(F, name)(view)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    (y * pydl.tensor(dy)).sum().backward()

    copy = pydl.tensor(np.ascontiguousarray(block.transpose(axes)), requires_grad=True)
    y_copy = getattr(F, name)(copy)
    (y_copy * pydl.tensor(dy)).sum().backward()
    np.testing.assert_array_equal(y.detach().numpy(), y_copy.detach().numpy())
    np.testing.assert_array_equal(x.grad.numpy().transpose(axes), copy.grad.numpy())
    assert not y.data.flags.c_contiguous and y.data.base is not None  # no copy was made
