"""Pooling: kernels against the float64 NumPy forms, gradients by finite
differences, layers against torch.nn (ceil_mode and padding included), errors."""
import numpy as np
import pytest

import pydl
import pydl.nn.functional as F
from pydl import _C

from conftest import check_grad


def random_pool(rng, dilation=True):
    """(input shape, kernel, stride, padding, dilation, ceil_mode), valid for PyTorch."""
    kernel = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    dil = (int(rng.integers(1, 3)), int(rng.integers(1, 3))) if dilation else (1, 1)
    padding = tuple(int(rng.integers(0, k // 2 + 1)) for k in kernel)
    size = tuple(int(rng.integers(d * (k - 1) + 1, 12)) for k, d in zip(kernel, dil))
    shape = (int(rng.integers(1, 3)), int(rng.integers(1, 4))) + size
    return shape, kernel, stride, padding, dil, bool(rng.integers(0, 2))


def as64(t):
    return t.detach().numpy().astype(np.float64)


@pytest.mark.parametrize("trial", range(10))
def test_max_pool_kernel_matches_reference(rng, config, trial):
    shape, kernel, stride, padding, dilation, ceil_mode = random_pool(rng)
    x = rng.standard_normal(shape)
    args = dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dilation,
                ceil_mode=ceil_mode)
    y64, i64 = F.max_pool2d(x, **args, return_indices=True)
    y, idx = _C.max_pool2d_forward(x.astype(np.float32), **args)
    np.testing.assert_allclose(y, as64(y64), rtol=1e-6)
    np.testing.assert_array_equal(idx, i64.numpy())
    g = rng.standard_normal(y.shape)
    expected = np.zeros(shape).reshape(shape[0] * shape[1], -1)
    for plane in range(expected.shape[0]):
        np.add.at(expected[plane], idx.reshape(expected.shape[0], -1)[plane],
                  g.reshape(expected.shape[0], -1)[plane])
    got = _C.max_pool2d_backward(g.astype(np.float32), idx, shape, **args)
    np.testing.assert_allclose(got, expected.reshape(shape), rtol=1e-5, atol=1e-6)


# The vector path's geometries (column stride 1 or 2, undilated columns): widths
# below, at and past the 8 and 16 lanes (the tail vector overlapping the one
# before), padding and ceil_mode windows reaching past the edges, row dilation.
VECTOR_POOLS = [
    # (H, W), kernel, stride, padding, dilation, ceil_mode
    ((26, 26), (2, 2), (2, 2), (0, 0), (1, 1), False),   # the MNIST CNN's first pool
    ((11, 11), (2, 2), (2, 2), (0, 0), (1, 1), False),   # its second: 5 columns
    ((11, 11), (2, 2), (2, 2), (0, 0), (1, 1), True),    # a last window past the edge
    ((9, 37), (3, 3), (2, 2), (1, 1), (1, 1), True),
    ((7, 33), (3, 3), (1, 1), (1, 1), (1, 1), False),
    ((5, 16), (1, 4), (1, 2), (0, 2), (1, 1), False),
    ((6, 3), (2, 3), (1, 1), (1, 1), (2, 1), True),
    ((8, 40), (4, 1), (3, 2), (2, 0), (1, 1), False),
    ((3, 17), (2, 2), (1, 2), (1, 1), (2, 1), True),
]


@pytest.mark.parametrize("geometry", VECTOR_POOLS, ids=lambda g: f"{g[0]}k{g[1]}s{g[2]}p{g[3]}")
def test_max_pool_vector_path_matches_torch(rng, config, geometry):
    """Values and indices equal PyTorch's, ties (small integers), NaNs and -inf included."""
    torch = pytest.importorskip("torch")
    size, kernel, stride, padding, dilation, ceil_mode = geometry
    x = rng.integers(-3, 4, (2, 3) + size).astype(np.float32)   # many ties: the first max wins
    flat = x.reshape(-1)
    spots = rng.choice(flat.size, size=max(2, flat.size // 40), replace=False)
    flat[spots[: len(spots) // 2]] = np.nan                     # the last NaN in a window wins
    flat[spots[len(spots) // 2:]] = -np.inf
    x[1, 2] = -np.inf                                           # whole windows of -inf
    args = dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dilation,
                ceil_mode=ceil_mode)
    y, idx = _C.max_pool2d_forward(x, **args)
    yt, it = torch.nn.functional.max_pool2d(torch.from_numpy(x), **args, return_indices=True)
    np.testing.assert_array_equal(y, yt.numpy())
    np.testing.assert_array_equal(idx, it.numpy())
    y64, i64 = F.max_pool2d(x.astype(np.float64), **args, return_indices=True)
    np.testing.assert_array_equal(y, as64(y64))
    # The float64 form's argmax takes a window's first NaN (PyTorch its last) and,
    # in an all -inf window, its first padded position (PyTorch its first valid one).
    finite = np.isfinite(y)
    np.testing.assert_array_equal(idx[finite], i64.numpy()[finite])


@pytest.mark.parametrize("trial", range(10))
def test_avg_pool_kernel_matches_reference(rng, config, trial):
    shape, kernel, stride, padding, _, ceil_mode = random_pool(rng, dilation=False)
    include = bool(trial % 2)
    x = pydl.tensor(rng.standard_normal(shape), requires_grad=True)
    args = dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode,
                count_include_pad=include)
    y64 = F.avg_pool2d(x, **args)
    y = _C.avg_pool2d_forward(x.detach().numpy().astype(np.float32), **args)
    np.testing.assert_allclose(y, as64(y64), rtol=1e-5, atol=1e-6)
    g = rng.standard_normal(y.shape)
    (y64 * pydl.tensor(g)).sum().backward()
    got = _C.avg_pool2d_backward(g.astype(np.float32), shape, **args)
    np.testing.assert_allclose(got, x.grad.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("trial", range(3))
def test_float64_gradients_by_finite_differences(rng, trial):
    shape, kernel, stride, padding, dilation, ceil_mode = random_pool(rng)
    # Distinct values, so the argmax is unique and the max is differentiable.
    x = rng.permutation(np.prod(shape)).reshape(shape) * 0.1 + rng.standard_normal(shape) * 0.01
    check_grad(lambda x: F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode), x)
    check_grad(lambda x: F.avg_pool2d(x, kernel, stride, padding, ceil_mode,
                                      trial % 2 == 0), x)
    check_grad(lambda x: F.adaptive_avg_pool2d(x, (3, 2)), x)


def test_layers_match_torch(rng):
    torch = pytest.importorskip("torch")
    tnn = torch.nn
    for trial in range(12):
        shape, kernel, stride, padding, dilation, ceil_mode = random_pool(rng)
        out_size = (int(rng.integers(1, 5)), None if trial % 3 == 0 else int(rng.integers(1, 5)))
        pairs = [
            (pydl.nn.MaxPool2d(kernel, stride, padding, dilation, ceil_mode=ceil_mode),
             tnn.MaxPool2d(kernel, stride, padding, dilation, ceil_mode=ceil_mode)),
            (pydl.nn.AvgPool2d(kernel, stride, padding, ceil_mode,
                               trial % 2 == 0),
             tnn.AvgPool2d(kernel, stride, padding, ceil_mode,
                           trial % 2 == 0)),
            (pydl.nn.AdaptiveAvgPool2d(out_size), tnn.AdaptiveAvgPool2d(out_size)),
        ]
        x = rng.standard_normal(shape)
        for dtype, tol in (("float32", 1e-5), ("float64", 1e-10)):
            for ours, theirs in pairs:
                xo = pydl.tensor(x, dtype=dtype, requires_grad=True)
                xt = torch.tensor(x.astype(dtype), requires_grad=True)
                yo, yt = ours(xo), theirs(xt)
                assert yo.shape == tuple(yt.shape), (ours, shape)
                g = rng.standard_normal(yo.shape).astype(dtype)
                (yo * pydl.tensor(g, dtype=dtype)).sum().backward()
                yt.backward(torch.from_numpy(g))
                np.testing.assert_allclose(yo.detach().numpy(), yt.detach().numpy(), rtol=tol,
                                           atol=tol, err_msg=repr(ours))
                np.testing.assert_allclose(xo.grad.numpy(), xt.grad.numpy(), rtol=tol,
                                           atol=tol, err_msg=repr(ours))


def test_max_pool_indices_and_nan_match_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3, 9, 7)).astype(np.float32)
    x[0, 1, 2, 3] = np.nan
    y, idx = F.max_pool2d(x, 3, 2, 1, ceil_mode=True, return_indices=True)
    yt, it = torch.nn.functional.max_pool2d(torch.from_numpy(x), 3, 2, 1, ceil_mode=True,
                                            return_indices=True)
    np.testing.assert_array_equal(y.numpy(), yt.numpy())
    np.testing.assert_array_equal(idx.numpy(), it.numpy())
    assert np.isnan(y.numpy()[0, 1]).any()


def test_global_average_pool_and_flatten(rng):
    x = rng.standard_normal((2, 5, 6, 4)).astype(np.float32)
    pooled = pydl.nn.AdaptiveAvgPool2d(1)(x)
    np.testing.assert_allclose(pooled.numpy(), x.mean(axis=(2, 3), keepdims=True), rtol=1e-5,
                               atol=1e-6)
    flat = pydl.nn.Flatten()(pooled)
    assert flat.shape == (2, 5)
    assert pydl.nn.Flatten(0, 2)(x).shape == (60, 4)


@pytest.mark.parametrize("call, error, message", [
    (lambda x: _C.max_pool2d_forward(x, kernel_size=(2, 2), stride=(0, 2)), ValueError,
     r"stride must be >= 1: input \(2, 3, 8, 8\)"),
    (lambda x: _C.max_pool2d_forward(x, kernel_size=(2, 2), stride=(2, 2), padding=(2, 0)),
     ValueError, "at most half the kernel size"),
    (lambda x: _C.avg_pool2d_forward(x, kernel_size=(9, 2), stride=(1, 1)), ValueError,
     r"output would be empty.*kernel_size \(9, 2\)"),
    (lambda x: _C.max_pool2d_forward(x[0], kernel_size=(2, 2), stride=(2, 2)), ValueError,
     r"4-D.*\(3, 8, 8\)"),
    (lambda x: _C.max_pool2d_backward(np.zeros((2, 3, 4, 4), np.float32),
                                      np.full((2, 3, 4, 4), 64, np.int64), x.shape,
                                      kernel_size=(2, 2), stride=(2, 2)),
     ValueError, r"indices must lie in .*\[0, 64\) for input \(2, 3, 8, 8\)"),
    (lambda x: _C.max_pool2d_backward(np.zeros((2, 3, 3, 4), np.float32),
                                      np.zeros((2, 3, 3, 4), np.int64), x.shape,
                                      kernel_size=(2, 2), stride=(2, 2)),
     ValueError, r"grad_output must have shape \(2, 3, 4, 4\).*got \(2, 3, 3, 4\)"),
    (lambda x: F.max_pool2d(x, 2, padding=3), ValueError, r"at most half.*input \(2, 3, 8, 8\)"),
    (lambda x: F.adaptive_avg_pool2d(x, (1, 2, 3)), ValueError, "output_size"),
    (lambda x: F.avg_pool2d(x, (2, 2, 2)), TypeError, "kernel_size"),
])
def test_bad_arguments_raise(rng, call, error, message):
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    with pytest.raises(error, match=message):
        call(x)
