"""Cases and checks shared by the CUDA kernel tests.

test_cuda_emu.py runs them on pydl._cuda_emu (the CUDA kernels on host threads,
NumPy arrays) and test_cuda_gpu.py on pydl._cuda (a real GPU, CuPy arrays).
Every check poisons the outputs with NaN, runs the CUDA kernel and compares
with the CPU kernel of pydl._C on the same fresh random inputs.
"""
import numpy as np
import pytest

from pydl import _C


class Backend:
    """A CUDA kernel module and the array library its arguments live in."""

    def __init__(self, module, xp, to_numpy, stream=lambda: 0):
        self.module, self.xp, self.to_numpy, self.stream = module, xp, to_numpy, stream

    def put(self, a):
        """A C-contiguous NumPy array `a` on the backend's device."""
        return self.xp.asarray(a)

    def poisoned(self, shape, dtype=np.float32):
        return self.xp.full(shape, np.nan, dtype=dtype)

    def get(self, a):
        return self.to_numpy(a)


def random(rng, shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(np.float32)


# ---- gemm -------------------------------------------------------------------------
# (batch or None, M, N, K, trans_a, trans_b, alpha, beta). One SIMT tile is
# 64x64 or, when there are enough output tiles for the device (the emulator
# reports 8 multiprocessors), 128x128; K is walked in slabs of 8.
GEMM_CASES = [
    (None, 1, 1, 1, False, False, 1.0, 0.0),
    (None, 5, 7, 3, False, False, 1.0, 0.0),
    (None, 64, 64, 8, False, False, 1.0, 0.0),
    (None, 65, 63, 9, True, False, 1.0, 0.0),
    (None, 33, 130, 17, False, True, 0.5, 0.0),
    (None, 70, 66, 21, True, True, 1.0, 0.0),
    (None, 31, 45, 12, False, False, -1.5, 0.75),
    (None, 12, 16, 0, False, False, 1.0, 0.5),
    (None, 257, 300, 10, False, False, 1.0, 0.0),  # 3x3 large tiles
    (None, 129, 260, 7, True, True, 2.0, -1.0),
    (3, 17, 9, 11, False, False, 1.0, 0.0),
    (3, 40, 70, 5, True, True, 1.0, 0.5),
    (2, 129, 200, 6, False, True, 1.0, 0.0),  # 2x2x2 large tiles
]


def gemm_operands(rng, batch, M, N, K, trans_a, trans_b):
    lead = () if batch is None else (batch,)
    a = random(rng, lead + ((K, M) if trans_a else (M, K)))
    b = random(rng, lead + ((N, K) if trans_b else (K, N)))
    c = random(rng, lead + (M, N))
    return a, b, c


def check_gemm_against_cpu(backend, a, b, c, trans_a, trans_b, alpha, beta,
                           view=lambda x: x):
    """out = alpha op(view(a)) op(view(b)) + beta c on both; `view` (a
    transpose, a slice) is applied on each side, so strides stay as given."""
    a_view, b_view = view(a), view(b)
    expected = _C.gemm(a_view, b_view, trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta,
                       out=c.copy())
    out = backend.put(c) if beta != 0 else backend.poisoned(c.shape)
    backend.module.gemm(view(backend.put(a)), view(backend.put(b)), trans_a=trans_a,
                        trans_b=trans_b, alpha=alpha, beta=beta, out=out,
                        stream=backend.stream())
    K = a_view.shape[-2] if trans_a else a_view.shape[-1]
    np.testing.assert_allclose(backend.get(out), expected, rtol=1e-5, atol=1e-5 * max(K, 1))


def check_gemm_views(backend, rng):
    """Transposed (column-major) views and rows 4 bytes past 16-byte alignment
    (the scalar load path)."""
    a, b, c = gemm_operands(rng, None, 23, 19, 14, False, False)
    # a.T of a (K, M) array is a column-major (M, K) view: passes as trans_a.
    check_gemm_against_cpu(backend, np.ascontiguousarray(a.T), np.ascontiguousarray(b.T),
                           c, False, False, 1.0, 0.0, view=lambda x: x.T)
    wide_a, wide_b = random(rng, (23, 15)), random(rng, (14, 20))
    check_gemm_against_cpu(backend, wide_a, wide_b, c, False, False, 1.0, 0.0,
                           view=lambda x: x[:, 1:])


def check_gemm_case(backend, case, rng):
    batch, M, N, K, trans_a, trans_b, alpha, beta = case
    a, b, c = gemm_operands(rng, batch, M, N, K, trans_a, trans_b)
    check_gemm_against_cpu(backend, a, b, c, trans_a, trans_b, alpha, beta)


# ---- elementwise ----------------------------------------------------------------------
UNARY_OPS = ["relu", "sigmoid", "tanh", "gelu"]
# Saved tensor of each backward: the input x, or the output y.
SAVED = {"relu": "x", "sigmoid": "y", "tanh": "y", "gelu": "x"}
# Sizes around the float4 runs: tails of 1 to 3, below and above one block.
UNARY_SIZES = [1, 3, 4, 257, 1027]


def check_unary(backend, op, n, rng, misaligned=False):
    """Forward and backward; `misaligned` passes views 4 bytes off 16-byte
    alignment, which take the scalar path."""
    start = 1 if misaligned else 0
    x_base, dy_base = random(rng, n + start, scale=3.0), random(rng, n + start)
    x, dy = x_base[start:], dy_base[start:]
    forward, backward = getattr(_C, op + "_forward"), getattr(_C, op + "_backward")
    y = forward(x)
    saved_is_x = SAVED[op] == "x"
    dx = backward(dy, x if saved_is_x else y)

    # The views are taken on the backend, so they keep their (mis)alignment.
    x_dev, dy_dev = backend.put(x_base)[start:], backend.put(dy_base)[start:]
    out = backend.poisoned(n)
    getattr(backend.module, op + "_forward")(x_dev, out=out, stream=backend.stream())
    np.testing.assert_allclose(backend.get(out), y, rtol=2e-6, atol=1e-6)
    saved_dev = x_dev if saved_is_x else backend.put(y)
    out = backend.poisoned(n)
    getattr(backend.module, op + "_backward")(dy_dev, saved_dev, out=out, stream=backend.stream())
    np.testing.assert_allclose(backend.get(out), dx, rtol=2e-6, atol=1e-6)


# Row-wise shapes: warp per row up to 1024 columns (8 rows per block), block
# per row above; leading axes flatten into rows.
ROWWISE_SHAPES = [(1, 1), (7, 33), (9, 64), (2, 3, 50), (3, 1024), (3, 1025), (2, 2000)]


def check_rowwise(backend, op, shape, rng):
    x = random(rng, shape, scale=2.0)
    dy = random(rng, shape)
    y = getattr(_C, op + "_forward")(x)
    dx = getattr(_C, op + "_backward")(dy, y)
    out = backend.poisoned(shape)
    getattr(backend.module, op + "_forward")(backend.put(x), out=out, stream=backend.stream())
    np.testing.assert_allclose(backend.get(out), y, rtol=1e-5, atol=1e-6)
    out = backend.poisoned(shape)
    getattr(backend.module, op + "_backward")(backend.put(dy), backend.put(y), out=out,
                                              stream=backend.stream())
    np.testing.assert_allclose(backend.get(out), dx, rtol=1e-5, atol=1e-6)


# ---- loss ----------------------------------------------------------------------------
# (N, C): narrow rows go to a warp, C > 1024 to a block.
LOSS_SHAPES = [(1, 1), (9, 10), (37, 100), (4, 1500)]
REDUCTIONS = ["mean", "sum", "none"]


def run_cross_entropy(backend, logits, target, reduction, ignore_index=-100, with_grad=True):
    N = logits.shape[0]
    loss, losses = backend.poisoned(1), backend.poisoned(N)
    grad = backend.poisoned(logits.shape) if with_grad else None
    backend.module.softmax_cross_entropy(
        backend.put(logits), backend.put(target), reduction=reduction, ignore_index=ignore_index,
        loss=loss, losses=losses, grad=grad, stream=backend.stream())
    return (float(backend.get(loss)[0]), backend.get(losses),
            None if grad is None else backend.get(grad))


def check_cross_entropy(backend, logits, target, reduction, ignore_index=-100, with_grad=True):
    loss, losses, grad = run_cross_entropy(backend, logits, target, reduction, ignore_index,
                                           with_grad)
    ref_loss, ref_losses, ref_grad = _C.softmax_cross_entropy(
        logits, target, reduction=reduction, ignore_index=ignore_index, compute_grad=with_grad)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5, atol=1e-5)
    assert loss == pytest.approx(ref_loss, rel=1e-5, abs=1e-5)
    if with_grad:
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-7)
    else:
        assert grad is None


def index_target(rng, N, C, ignored_fraction=0.25, ignore_index=-100):
    target = rng.integers(0, C, N).astype(np.int64)
    target[rng.random(N) < ignored_fraction] = ignore_index
    return target


def prob_target(rng, N, C):
    t = rng.random((N, C)).astype(np.float32)
    return (t / t.sum(axis=1, keepdims=True)).astype(np.float32)


# ---- conv ------------------------------------------------------------------------------
# (N, C_in, H, W, C_out, KH, KW, stride, padding, dilation, groups, bias). One
# block is a 64x64 tile of a product: channels by (image, position); the
# reduction runs in slabs of 16 and grad_weight's is split over blocks once
# N*H_out*W_out passes 256 (the emulator reports 8 multiprocessors).
CONV_CASES = [
    (1, 1, 1, 1, 1, 1, 1, (1, 1), (0, 0), (1, 1), 1, True),
    (2, 3, 7, 9, 5, 3, 3, (1, 1), (1, 1), (1, 1), 1, True),
    (2, 4, 9, 8, 6, 3, 2, (2, 3), (1, 0), (1, 1), 2, False),
    (1, 6, 11, 10, 6, 3, 3, (1, 2), (2, 1), (2, 3), 3, True),
    (2, 5, 6, 7, 3, 1, 1, (1, 1), (0, 0), (1, 1), 1, True),
    (1, 6, 8, 8, 6, 3, 3, (2, 2), (1, 1), (1, 1), 6, True),  # depthwise
    (3, 2, 13, 15, 3, 2, 3, (1, 1), (0, 1), (1, 1), 1, True),  # split grad_weight
    (1, 17, 5, 5, 70, 3, 3, (1, 1), (1, 1), (1, 1), 1, True),  # 2 channel tiles, K > 16
    (0, 3, 5, 5, 4, 3, 3, (1, 1), (0, 0), (1, 1), 1, True),  # empty batch
]


def conv_operands(rng, case):
    N, C_in, H, W, C_out, KH, KW, stride, padding, dilation, groups, with_bias = case
    x = random(rng, (N, C_in, H, W))
    w = random(rng, (C_out, C_in // groups, KH, KW))
    b = random(rng, C_out) if with_bias else None
    return x, w, b, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


def check_conv(backend, case, rng):
    """Forward and the three gradients against pydl._C."""
    x, w, b, geometry = conv_operands(rng, case)
    y = _C.conv2d_forward(x, w, b, **geometry)
    dy = random(rng, y.shape)
    dx, dw, db = _C.conv2d_backward(dy, x, w, **geometry)
    K = w[0].size
    put = backend.put
    out = backend.poisoned(y.shape)
    backend.module.conv2d_forward(put(x), put(w), None if b is None else put(b), **geometry,
                                  out=out, stream=backend.stream())
    np.testing.assert_allclose(backend.get(out), y, rtol=1e-5, atol=1e-5 * K)
    gi, gw, gb = (backend.poisoned(a.shape) for a in (dx, dw, db))
    backend.module.conv2d_backward(put(dy), put(x), put(w), **geometry, grad_input=gi,
                                   grad_weight=gw, grad_bias=gb, stream=backend.stream())
    reduction = max(y.size // max(y.shape[1], 1), 1)  # terms per grad_weight element
    np.testing.assert_allclose(backend.get(gi), dx, rtol=1e-5, atol=1e-5 * y.shape[1] * K)
    np.testing.assert_allclose(backend.get(gw), dw, rtol=1e-5, atol=1e-5 * reduction)
    np.testing.assert_allclose(backend.get(gb), db, rtol=1e-5, atol=1e-5 * reduction)


# ---- pool ------------------------------------------------------------------------------
# (N, C, H, W, kernel, stride, padding, dilation, ceil_mode)
POOL_CASES = [
    (1, 1, 1, 1, (1, 1), (1, 1), (0, 0), (1, 1), False),
    (2, 3, 7, 9, (2, 2), (2, 2), (0, 0), (1, 1), False),
    (2, 3, 7, 9, (3, 3), (2, 2), (1, 1), (1, 1), True),  # overlapping, last window clipped
    (1, 4, 10, 11, (3, 2), (1, 2), (1, 1), (2, 1), False),  # dilated (max only)
    (3, 2, 8, 6, (3, 3), (3, 2), (1, 0), (1, 1), True),
    (2, 5, 17, 13, (4, 3), (1, 1), (2, 1), (1, 1), False),
]


def check_max_pool(backend, case, rng, with_nan=False):
    N, C, H, W, kernel, stride, padding, dilation, ceil_mode = case
    x = random(rng, (N, C, H, W))
    if with_nan:
        x.flat[rng.choice(x.size, max(1, x.size // 10), replace=False)] = np.nan
    geometry = dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dilation,
                    ceil_mode=ceil_mode)
    y, idx = _C.max_pool2d_forward(x, **geometry)
    out, indices = backend.poisoned(y.shape), backend.xp.full(y.shape, -7, dtype=np.int64)
    backend.module.max_pool2d_forward(backend.put(x), **geometry, out=out, indices=indices,
                                      stream=backend.stream())
    np.testing.assert_array_equal(backend.get(out), y)  # a max is exact, NaN included
    np.testing.assert_array_equal(backend.get(indices), idx)
    dy = random(rng, y.shape)
    dx = _C.max_pool2d_backward(dy, idx, x.shape, **geometry)
    grad_input = backend.poisoned(x.shape)
    backend.module.max_pool2d_backward(backend.put(dy), backend.put(idx), **geometry,
                                       grad_input=grad_input, stream=backend.stream())
    np.testing.assert_allclose(backend.get(grad_input), dx, rtol=1e-6, atol=1e-6)


def check_avg_pool(backend, case, count_include_pad, rng):
    N, C, H, W, kernel, stride, padding, dilation, ceil_mode = case
    geometry = dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode,
                    count_include_pad=count_include_pad)
    x = random(rng, (N, C, H, W))
    y = _C.avg_pool2d_forward(x, **geometry)
    out = backend.poisoned(y.shape)
    backend.module.avg_pool2d_forward(backend.put(x), **geometry, out=out, stream=backend.stream())
    np.testing.assert_allclose(backend.get(out), y, rtol=1e-5, atol=1e-6)
    dy = random(rng, y.shape)
    dx = _C.avg_pool2d_backward(dy, x.shape, **geometry)
    grad_input = backend.poisoned(x.shape)
    backend.module.avg_pool2d_backward(backend.put(dy), **geometry, grad_input=grad_input,
                                       stream=backend.stream())
    np.testing.assert_allclose(backend.get(grad_input), dx, rtol=1e-5, atol=1e-6)
