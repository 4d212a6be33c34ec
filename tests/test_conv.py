"""conv2d: the kernels against a float64 NumPy reference, gradients by finite
differences, the layer against torch.nn.Conv2d, argument errors, and a small CNN
trained to a near-zero loss."""
import numpy as np
import pytest

import pydl
import pydl.nn.functional as F
from pydl import _C
from pydl.ops.conv import _reference_backward, _reference_forward

from conftest import check_grad


def random_config(rng):
    """A random valid convolution: (x shape, weight shape, stride, padding, dilation, groups)."""
    groups = int(rng.choice([1, 1, 2, 3]))
    cg_in, cg_out = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    if rng.random() < 0.2:  # depthwise
        groups, cg_in, cg_out = int(rng.integers(2, 5)), 1, 1
    kh, kw = int(rng.choice([1, 3, 5])), int(rng.choice([1, 3, 5]))
    stride = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    padding = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
    h = int(rng.integers(max(1, dilation[0] * (kh - 1) + 1 - 2 * padding[0]), 12))
    w = int(rng.integers(max(1, dilation[1] * (kw - 1) + 1 - 2 * padding[1]), 12))
    n = int(rng.integers(1, 4))
    return ((n, groups * cg_in, h, w), (groups * cg_out, cg_in, kh, kw), stride, padding,
            dilation, groups)


def kwargs_of(stride, padding, dilation, groups):
    return dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


@pytest.mark.parametrize("trial", range(12))
def test_kernels_match_float64_reference(rng, config, trial):
    xs, ws, stride, padding, dilation, groups = random_config(rng)
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    b = rng.standard_normal(ws[0])
    y64 = _reference_forward(x, w, b, stride, padding, dilation, groups)
    y = _C.conv2d_forward(x.astype(np.float32), w.astype(np.float32), b.astype(np.float32),
                          **kwargs_of(stride, padding, dilation, groups))
    np.testing.assert_allclose(y, y64, rtol=1e-4, atol=1e-4)
    g = rng.standard_normal(y64.shape)
    expected = _reference_backward(g, x, w, stride, padding, dilation, groups)
    got = _C.conv2d_backward(g.astype(np.float32), x.astype(np.float32), w.astype(np.float32),
                             **kwargs_of(stride, padding, dilation, groups))
    for name, a, e in zip(("grad_input", "grad_weight", "grad_bias"), got, expected):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("shape", [
    # (N, C_in, H, W, C_out, k, stride, pad): the benchmark's kinds of layers, tiled in rows
    (3, 16, 40, 37, 8, 3, 1, 1),   # a col tile of a few output rows
    (5, 64, 5, 5, 64, 3, 1, 0),    # tiny planes
    (2, 8, 9, 7, 6, 1, 1, 0),      # 1x1: the input is the col matrix
    (2, 4, 11, 13, 6, 1, 2, 0),    # 1x1 strided: im2col again
])
def test_kernels_at_layer_shapes(rng, config, shape):
    n, cin, h, w, cout, k, stride, pad = shape
    x, wt = rng.standard_normal((n, cin, h, w)), rng.standard_normal((cout, cin, k, k))
    b = rng.standard_normal(cout)
    geometry = kwargs_of((stride, stride), (pad, pad), (1, 1), 1)
    y64 = _reference_forward(x, wt, b, **geometry)
    y = _C.conv2d_forward(x.astype(np.float32), wt.astype(np.float32), b.astype(np.float32),
                          **geometry)
    np.testing.assert_allclose(y, y64, rtol=1e-4, atol=2e-4)
    g = rng.standard_normal(y64.shape)
    got = _C.conv2d_backward(g.astype(np.float32), x.astype(np.float32), wt.astype(np.float32),
                             **geometry)
    for a, e in zip(got, _reference_backward(g, x, wt, **geometry)):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-3)


# (N, C_in, H, W, C_out, pad): 3x3 stride-1 layers at and around the edges of
# the Winograd rule (16+ channels both sides; outputs large enough that 2x2
# tiles save ~1.75x the multiplies; grad-input also when C_out <= C_in or the
# output is 24+ wide): odd sizes, batch 1, channels not multiples of 8.
WINOGRAD_EDGES = [
    (1, 16, 7, 9, 16, 1),     # both paths Winograd, odd plane, batch 1
    (2, 17, 13, 11, 19, 0),   # forward Winograd, grad-input im2col (C_out > C_in, narrow)
    (2, 16, 26, 27, 20, 0),   # grad-input Winograd too: 25 wide
    (3, 24, 6, 5, 16, 1),     # odd width: a half-used tile column
    (2, 16, 4, 4, 16, 2),     # padding 2: tiles over the border
    (1, 16, 5, 5, 16, 0),     # 3x3 outputs: too few saved multiplies, im2col
    (2, 15, 8, 8, 16, 1),     # 15 input channels: im2col
    (2, 16, 9, 9, 16, 3),     # padding 3: whole tiles of padding
    (2, 33, 19, 18, 16, 1),   # several chunks of tile rows, threads take whole chunks
]


def conv_in_channel_slices(x, w, b, gy, pad, size=8):
    """conv2d and its gradients computed from slices of fewer than 16 channels
    (input channels for the forward, output channels for grad-input), so every
    piece runs im2col + GEMM: an independent float32 computation to compare with."""
    geometry = dict(stride=(1, 1), padding=(pad, pad))
    y = sum(_C.conv2d_forward(x[:, i:i + size].copy(), w[:, i:i + size].copy(), None, **geometry)
            for i in range(0, x.shape[1], size)) + b[None, :, None, None]
    gx = sum(_C.conv2d_backward(gy[:, o:o + size].copy(), x, w[o:o + size].copy(), **geometry,
                                weight_grad=False, bias_grad=False)[0]
             for o in range(0, w.shape[0], size))
    return y, gx


@pytest.mark.parametrize("shape", WINOGRAD_EDGES)
def test_winograd_edges_match_float64_and_im2col(rng, config, shape):
    n, cin, h, w, cout, pad = shape
    x, wt, b = rng.standard_normal((n, cin, h, w)), rng.standard_normal((cout, cin, 3, 3)), \
        rng.standard_normal(cout)
    geometry = kwargs_of((1, 1), (pad, pad), (1, 1), 1)
    y64 = _reference_forward(x, wt, b, **geometry)
    g = rng.standard_normal(y64.shape)
    x32, w32, b32, g32 = (a.astype(np.float32) for a in (x, wt, b, g))
    y = _C.conv2d_forward(x32, w32, b32, **geometry)
    got = _C.conv2d_backward(g32, x32, w32, **geometry)
    expected = _reference_backward(g, x, wt, **geometry)
    # Winograd's transforms add a few roundings: still ~1e-6 of the largest value.
    for name, a, e in zip(("output", "grad_input", "grad_weight", "grad_bias"),
                          (y,) + tuple(got), (y64,) + tuple(expected)):
        assert np.abs(a - e).max() <= 1e-5 * np.abs(e).max(), name
    y_slices, gx_slices = conv_in_channel_slices(x32, w32, b32, g32, pad)
    np.testing.assert_allclose(y, y_slices, rtol=1e-4, atol=1e-4 * np.abs(y64).max())
    np.testing.assert_allclose(got[0], gx_slices, rtol=1e-4, atol=1e-4 * np.abs(expected[0]).max())


def winograd_weights_float64(w):
    """U[4i + j][co][ci] = (G g G^T)[i][j] for g = w[co][ci], the F(2x2, 3x3) weight
    transform, in float64."""
    G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
    return np.einsum("ik,ockl,jl->ijoc", G, w, G).reshape(16, *w.shape[:2])


@pytest.mark.parametrize("shape", WINOGRAD_EDGES)
def test_reused_weight_transform_matches_float64(rng, config, shape):
    """conv2d_forward(keep_weight_transform=True) hands back the weight's Winograd
    transform where forward takes the Winograd path (None where it does not), and
    conv2d_backward given it returns the same bits as without it."""
    n, cin, h, w, cout, pad = shape
    x, wt, b = rng.standard_normal((n, cin, h, w)), rng.standard_normal((cout, cin, 3, 3)), \
        rng.standard_normal(cout)
    geometry = kwargs_of((1, 1), (pad, pad), (1, 1), 1)
    y64 = _reference_forward(x, wt, b, **geometry)
    g = rng.standard_normal(y64.shape)
    x32, w32, b32, g32 = (a.astype(np.float32) for a in (x, wt, b, g))
    y, transform = _C.conv2d_forward(x32, w32, b32, **geometry, keep_weight_transform=True)
    im2col_forward = cin < 16 or (h + 2 * pad - 2) * (w + 2 * pad - 2) <= 9
    assert (transform is None) == im2col_forward
    np.testing.assert_array_equal(y, _C.conv2d_forward(x32, w32, b32, **geometry))
    assert np.abs(y - y64).max() <= 1e-5 * np.abs(y64).max()
    if transform is not None:
        u64 = winograd_weights_float64(wt)
        assert transform.shape == (16, cout, cin)
        assert np.abs(transform - u64).max() <= 1e-6 * np.abs(u64).max()
    reused = _C.conv2d_backward(g32, x32, w32, **geometry, weight_transform=transform)
    fresh = _C.conv2d_backward(g32, x32, w32, **geometry)
    expected = _reference_backward(g, x, wt, **geometry)
    for name, a, f, e in zip(("grad_input", "grad_weight", "grad_bias"), reused, fresh, expected):
        np.testing.assert_array_equal(a, f, err_msg=name)
        assert np.abs(a - e).max() <= 1e-5 * np.abs(e).max(), name


def test_conv2d_op_keeps_the_weight_transform_for_grad_input(rng):
    """The op saves the transform only when the input needs a gradient (the grad-input
    pass is its one reader), and gradients agree with float64 either way."""
    x = rng.standard_normal((2, 16, 26, 27))
    w = rng.standard_normal((20, 16, 3, 3))
    g = rng.standard_normal((2, 20, 24, 25))
    gx64, gw64, _ = _reference_backward(g, x, w, (1, 1), (0, 0), (1, 1), 1)
    for x_grad in (True, False):
        xt = pydl.tensor(x.astype(np.float32), requires_grad=x_grad)
        wt = pydl.tensor(w.astype(np.float32), requires_grad=True)
        y = F.conv2d(xt, wt)
        assert (y.grad_fn.saved[2] is not None) == x_grad
        y.backward(pydl.tensor(g.astype(np.float32)))
        assert np.abs(wt.grad.numpy() - gw64).max() <= 1e-5 * np.abs(gw64).max()
        if x_grad:
            assert np.abs(xt.grad.numpy() - gx64).max() <= 1e-5 * np.abs(gx64).max()


def test_winograd_layer_matches_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 32, 14, 13)).astype(np.float32)
    w = (rng.standard_normal((32, 32, 3, 3)) * 0.1).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)
    gy = rng.standard_normal((2, 32, 14, 13)).astype(np.float32)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    torch.nn.functional.conv2d(xt, wt, bt, padding=1).backward(torch.from_numpy(gy))
    y = _C.conv2d_forward(x, w, b, padding=(1, 1))
    gx, gw, gb = _C.conv2d_backward(gy, x, w, padding=(1, 1))
    yt = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b),
                                    padding=1).numpy()
    for a, e in ((y, yt), (gx, xt.grad.numpy()), (gw, wt.grad.numpy()), (gb, bt.grad.numpy())):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-4 * np.abs(e).max())


@pytest.mark.parametrize("trial", range(4))
def test_float64_gradients_by_finite_differences(rng, trial):
    xs, ws, stride, padding, dilation, groups = random_config(rng)
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
    check_grad(lambda x, w, b: F.conv2d(x, w, b, stride, padding, dilation, groups), x, w, b,
               atol=1e-6, rtol=1e-5)


def test_float32_autograd_matches_float64(rng):
    x, w, b = rng.standard_normal((2, 4, 9, 8)), rng.standard_normal((6, 2, 3, 3)), \
        rng.standard_normal(6)
    grads = {}
    for dtype in ("float32", "float64"):
        leaves = [pydl.tensor(a, dtype=dtype, requires_grad=True) for a in (x, w, b)]
        y = F.conv2d(*leaves, stride=(2, 1), padding=1, groups=2)
        (y * y).sum().backward()
        grads[dtype] = [y.detach().numpy()] + [t.grad.numpy() for t in leaves]
    for a, e in zip(grads["float32"], grads["float64"]):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-3)


def test_padding_strings(rng):
    x, w = rng.standard_normal((1, 2, 7, 6)), rng.standard_normal((3, 2, 4, 3))
    same = F.conv2d(x, w, padding="same", dilation=(1, 2))
    assert same.shape == (1, 3, 7, 6)
    # 'same' with an even kernel pads the extra row at the bottom, as PyTorch does.
    xpad = np.pad(x, ((0, 0), (0, 0), (1, 2), (2, 2)))
    np.testing.assert_allclose(same.detach().numpy(), _reference_forward(xpad, w, None, (1, 1), (0, 0),
                                                                (1, 2), 1), rtol=1e-12)
    assert F.conv2d(x, w, padding="valid").shape == (1, 3, 4, 4)
    check_grad(lambda x, w: F.conv2d(x, w, padding="same"), x, w)


def test_layer_matches_torch(rng):
    torch = pytest.importorskip("torch")
    for trial in range(6):
        xs, ws, stride, padding, dilation, groups = random_config(rng)
        bias = trial % 3 != 2
        for dtype, tol in (("float32", 1e-4), ("float64", 1e-10)):
            ours = pydl.nn.Conv2d(xs[1], ws[0], ws[2:], stride, padding, dilation, groups, bias)
            if dtype == "float64":
                ours.double()
            theirs = torch.nn.Conv2d(xs[1], ws[0], ws[2:], stride, padding, dilation, groups,
                                     bias).to(getattr(torch, dtype))
            with torch.no_grad():
                theirs.weight.copy_(torch.from_numpy(ours.weight.detach().numpy()))
                if bias:
                    theirs.bias.copy_(torch.from_numpy(ours.bias.detach().numpy()))
            x = rng.standard_normal(xs).astype(dtype)
            gy_seed = rng.standard_normal
            xo, xt = pydl.tensor(x, dtype=dtype, requires_grad=True), \
                torch.tensor(x, requires_grad=True)
            yo, yt = ours(xo), theirs(xt)
            gy = gy_seed(yt.shape).astype(dtype)
            (yo * pydl.tensor(gy, dtype=dtype)).sum().backward()
            yt.backward(torch.from_numpy(gy))
            pairs = [(yo, yt), (xo.grad, xt.grad), (ours.weight.grad, theirs.weight.grad)]
            if bias:
                pairs.append((ours.bias.grad, theirs.bias.grad))
            for a, e in pairs:
                np.testing.assert_allclose(a.detach().numpy(), e.detach().numpy(), rtol=tol, atol=tol)


def test_layer_init_and_seed():
    pydl.manual_seed(3)
    layer = pydl.nn.Conv2d(6, 8, (3, 5), groups=2)
    bound = 1 / np.sqrt(3 * 3 * 5)
    assert layer.weight.shape == (8, 3, 3, 5) and layer.bias.shape == (8,)
    for p in (layer.weight, layer.bias):
        assert p.detach().numpy().dtype == np.float32 and np.abs(p.detach().numpy()).max() <= bound
    assert layer.weight.detach().numpy().std() > bound / 3   # spread over the range, not near 0
    pydl.manual_seed(3)
    again = pydl.nn.Conv2d(6, 8, (3, 5), groups=2)
    np.testing.assert_array_equal(again.weight.detach().numpy(), layer.weight.detach().numpy())
    assert pydl.nn.Conv2d(2, 2, 1, bias=False).bias is None
    assert [name for name, _ in layer.named_parameters()] == ["weight", "bias"]


@pytest.mark.parametrize("call, message", [
    (lambda x, w: _C.conv2d_forward(x, w[:, :2].copy()), r"weight \(4, 2, 3, 3\).*input \(2, 3, 8, 8\)"),
    (lambda x, w: _C.conv2d_forward(x, w, groups=2), r"weight \(4, 3, 3, 3\) with groups 2 expects 6"),
    (lambda x, w: _C.conv2d_forward(x, w[:, :1].copy(), groups=3), "output channels 4 .*divisible by groups 3"),
    (lambda x, w: _C.conv2d_forward(x[:, :, :2, :2].copy(), w), r"larger than the padded input.*"
                                                         r"input \(2, 3, 2, 2\)"),
    (lambda x, w: _C.conv2d_forward(x, w, stride=(0, 1)), r"stride.*input \(2, 3, 8, 8\)"),
    (lambda x, w: _C.conv2d_forward(x, w, padding=(-1, 0)), "padding must be >= 0"),
    (lambda x, w: _C.conv2d_forward(x, w, np.zeros(5, np.float32)), r"bias.*\(4,\).*\(5,\)"),
    (lambda x, w: _C.conv2d_forward(x[0], w), r"input must be 4-D.*\(3, 8, 8\)"),
    (lambda x, w: _C.conv2d_backward(np.zeros((2, 4, 5, 5), np.float32), x, w),
     r"grad_output must have shape \(2, 4, 6, 6\).*got \(2, 4, 5, 5\)"),
    (lambda x, w: _C.conv2d_backward(np.zeros((2, 4, 6, 6), np.float32), x, w,
                                     weight_transform=np.zeros((16, 3, 4), np.float32)),
     r"weight_transform must have shape \(16, 4, 3\).*got \(16, 3, 4\)"),
    (lambda x, w: F.conv2d(x, w, padding="same", stride=2), "'same' needs stride 1"),
    (lambda x, w: F.conv2d(x, w, padding="full"), "padding must be"),
])
def test_bad_arguments_raise(rng, call, message):
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=message):
        call(x, w)


def test_bad_dtype_raises_type_error():
    with pytest.raises(TypeError, match="input must be float32"):
        _C.conv2d_forward(np.zeros((1, 1, 3, 3)), np.zeros((1, 1, 3, 3), np.float32))


def test_small_cnn_fits_a_batch(rng):
    """Conv2d-ReLU-MaxPool-Flatten-Linear (functional, with a plain weight matrix)
    drives the cross-entropy on a fixed batch close to zero with plain SGD steps."""
    pydl.manual_seed(0)
    conv = pydl.nn.Conv2d(1, 8, 3, padding=1)
    fc = pydl.tensor(rng.standard_normal((8 * 4 * 4, 4)) * 0.1, dtype="float32",
                     requires_grad=True)
    x = pydl.tensor(rng.standard_normal((16, 1, 8, 8)), dtype="float32")
    labels = rng.integers(0, 4, 16)
    params = [conv.weight, conv.bias, fc]
    for step in range(150):
        h = F.max_pool2d(F.relu(conv(x)), 2).flatten(1)
        loss = F.cross_entropy(h @ fc, labels)
        if step == 0:
            first = loss.item()
        for p in params:
            p.grad = None
        loss.backward()
        with pydl.no_grad():
            for p in params:
                p.data -= 0.5 * p.grad.data
    assert first > 1.0 and loss.item() < 0.05, (first, loss.item())
