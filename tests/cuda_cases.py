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
    assert loss == pytest.approx(ref_loss, rel=1e-5, abs=1e-5, nan_ok=True)
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


# ---- optimizers --------------------------------------------------------------------
# (kernel, state arrays, options). The CUDA steps do the CPU vector path's float
# operations one for one, so with pydl._C on AVX2 they agree bit for bit.
OPTIM_CASES = [
    ("sgd_step", [], dict(lr=0.1)),
    ("sgd_step", ["momentum_buffer"], dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    ("sgd_step", ["momentum_buffer"], dict(lr=0.05, momentum=0.8, nesterov=True, maximize=True)),
    ("rmsprop_step", ["square_avg"], dict(lr=0.01, weight_decay=0.1)),
    ("rmsprop_step", ["square_avg", "grad_avg", "momentum_buffer"],
     dict(lr=0.01, alpha=0.9, centered=True, momentum=0.5, maximize=True)),
    ("adagrad_step", ["state_sum"], dict(lr=0.1, lr_decay=0.01, weight_decay=0.05)),
    ("adam_step", ["exp_avg", "exp_avg_sq"], dict(lr=1e-3, weight_decay=0.1)),
    ("adam_step", ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"],
     dict(lr=1e-2, betas=(0.8, 0.99), amsgrad=True, decoupled_weight_decay=True,
          weight_decay=0.05, maximize=True)),
]
# Shapes around one block's chunk of 4096 elements.
OPTIM_SHAPES = [(1,), (37,), (5, 130), (4097,)]


def optim_options(kernel, options, step):
    """The keyword options of step `step` (1-based) of a case."""
    options = dict(options)
    if "betas" in options:
        options["beta1"], options["beta2"] = options.pop("betas")
    if kernel in ("adagrad_step", "adam_step"):
        options["step"] = step
    if kernel == "sgd_step" and "momentum" in options:
        options["first_step"] = step == 1
    return options


def assert_matches_cpu_step(actual, expected):
    if _C.isa() != "portable":
        np.testing.assert_array_equal(actual, expected)
    else:  # the portable CPU path does not fuse its multiply-adds
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-7)


def check_optim(backend, case, shapes, rng, steps=3, as_list=False):
    """`steps` updates of parameters of the given shapes on both sides, from
    the same random parameters (zero state, as optimizers start) and fresh
    random gradients each step. `as_list` passes every argument as a list (one
    multi-tensor call); otherwise each parameter gets its own call."""
    kernel, state_names, options = case
    params = [random(rng, s) for s in shapes]
    states = {name: [np.zeros(s, np.float32) for s in shapes] for name in state_names}
    dev_params = [backend.put(p) for p in params]
    dev_states = {name: [backend.put(a) for a in arrays] for name, arrays in states.items()}
    for step in range(1, steps + 1):
        grads = [random(rng, s) for s in shapes]
        opts = optim_options(kernel, options, step)
        for i in range(len(shapes)):
            getattr(_C, kernel)(params[i], grads[i], **{n: a[i] for n, a in states.items()}, **opts)
        dev_grads = [backend.put(g) for g in grads]
        module_step = getattr(backend.module, kernel)
        if as_list:
            module_step(dev_params, dev_grads, **dev_states, **opts, stream=backend.stream())
        else:
            for i in range(len(shapes)):
                module_step(dev_params[i], dev_grads[i], **{n: a[i] for n, a in dev_states.items()},
                            **opts, stream=backend.stream())
    for i in range(len(shapes)):
        assert_matches_cpu_step(backend.get(dev_params[i]), params[i])
        for name in state_names:
            assert_matches_cpu_step(backend.get(dev_states[name][i]), states[name][i])


# ---- dropout -----------------------------------------------------------------------
# Sizes around Philox blocks of 4 elements and 256-thread blocks of them.
DROPOUT_SIZES = [1, 3, 4, 5, 1023, 1029]
# (p, seed, offset): seeds and offsets with both 32-bit halves set.
DROPOUT_STREAMS = [(0.0, 1, 0), (0.3, 0x1234_5678_9ABC_DEF0, 7), (0.5, 42, 0xFFFF_FFFF_0000_0003),
                   (1.0, 5, 9)]


def check_dropout(backend, n, p, seed, offset, rng):
    """The mask, y and dx equal pydl._C's bit for bit."""
    x, dy = random(rng, n), random(rng, n)
    ref_mask = _C.dropout_mask([n], p, seed, offset)
    ref_y, ref_mask_fwd = _C.dropout_forward(x, p, seed, offset)
    ref_dx = _C.dropout_backward(dy, ref_mask, p)

    mask = backend.xp.full(n, 7, dtype=np.uint8)  # neither 0 nor 1
    backend.module.dropout_mask(p, seed, offset, mask=mask, stream=backend.stream())
    np.testing.assert_array_equal(backend.get(mask), ref_mask)
    y, mask = backend.poisoned(n), backend.xp.full(n, 7, dtype=np.uint8)
    backend.module.dropout_forward(backend.put(x), p, seed, offset, y=y, mask=mask,
                                   stream=backend.stream())
    np.testing.assert_array_equal(backend.get(mask), ref_mask_fwd)
    np.testing.assert_array_equal(backend.get(y), ref_y)
    dx = backend.poisoned(n)
    backend.module.dropout_backward(backend.put(dy), backend.put(ref_mask), p, out=dx,
                                    stream=backend.stream())
    np.testing.assert_array_equal(backend.get(dx), ref_dx)


# ---- embedding ---------------------------------------------------------------------
# (V, D, indices shape, padding_idx).
EMBEDDING_CASES = [(1, 1, (3,), -1), (10, 7, (5,), -1), (6, 33, (4, 9), 2), (50, 300, (2, 3), 0),
                   (4, 5, (0,), -1)]


def check_embedding(backend, V, D, index_shape, padding_idx, rng):
    weight = random(rng, (V, D))
    # Few rows, many positions: rows are hit several times (the atomics add up).
    indices = rng.integers(0, V, index_shape).astype(np.int64)
    dy = random(rng, index_shape + (D,))
    out = backend.poisoned(index_shape + (D,))
    backend.module.embedding_forward(backend.put(weight), backend.put(indices), out=out,
                                     stream=backend.stream())
    np.testing.assert_array_equal(backend.get(out), _C.embedding_forward(weight, indices))
    dweight = backend.poisoned((V, D))
    backend.module.embedding_backward(backend.put(dy), backend.put(indices), V, padding_idx,
                                      out=dweight, stream=backend.stream())
    np.testing.assert_allclose(backend.get(dweight),
                               _C.embedding_backward(dy, indices, V, padding_idx),
                               rtol=1e-5, atol=1e-6)


# ---- batch norm --------------------------------------------------------------------
# (N, C) and (N, C, H, W); one block of 256 threads walks each channel, so the
# channel sizes N*H*W straddle 256, and a step of 256 covers whole planes
# (S = 1), planes and a part (S = 100) or a part of one (S = 323).
BATCH_NORM_SHAPES = [(2, 3), (300, 2), (7, 1), (2, 3, 4, 5), (3, 2, 7, 9), (6, 2, 10, 10),
                     (2, 2, 17, 19), (5, 4, 1, 1)]


def batch_norm_inputs(rng, shape, affine):
    C = shape[1]
    x = random(rng, shape, scale=2.0) + 0.5
    weight = random(rng, C) if affine else None
    bias = random(rng, C) if affine else None
    running_mean, running_var = random(rng, C), rng.random(C).astype(np.float32) + 0.5
    return x, weight, bias, running_mean, running_var


def check_batch_norm(backend, shape, training, affine, track_running_stats, rng):
    x, weight, bias, rm, rv = batch_norm_inputs(rng, shape, affine)
    if not track_running_stats:
        rm = rv = None
    C = shape[1]
    ref_rm, ref_rv = (None, None) if rm is None else (rm.copy(), rv.copy())
    ref_y, ref_mean, ref_invstd = _C.batch_norm_forward(x, weight, bias, ref_rm, ref_rv,
                                                        training, 0.1, 1e-5)
    put = lambda a: None if a is None else backend.put(a)
    dev_rm, dev_rv = put(rm), put(rv)
    y, mean, invstd = backend.poisoned(shape), backend.poisoned(C), backend.poisoned(C)
    backend.module.batch_norm_forward(backend.put(x), put(weight), put(bias), dev_rm, dev_rv,
                                      training, 0.1, 1e-5, y=y, mean=mean, invstd=invstd,
                                      stream=backend.stream())
    np.testing.assert_allclose(backend.get(mean), ref_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(backend.get(invstd), ref_invstd, rtol=1e-5)
    np.testing.assert_allclose(backend.get(y), ref_y, rtol=1e-5, atol=1e-5)
    if rm is not None:
        np.testing.assert_allclose(backend.get(dev_rm), ref_rm, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(backend.get(dev_rv), ref_rv, rtol=1e-5, atol=1e-6)

    dy = random(rng, shape)
    ref_dx, ref_dw, ref_db = _C.batch_norm_backward(dy, x, ref_mean, ref_invstd, weight, training)
    dx, dw, db = backend.poisoned(shape), backend.poisoned(C), backend.poisoned(C)
    backend.module.batch_norm_backward(backend.put(dy), backend.put(x), backend.put(ref_mean),
                                       backend.put(ref_invstd), put(weight), training, dx=dx,
                                       dweight=dw, dbias=db, stream=backend.stream())
    M = x.size // C
    np.testing.assert_allclose(backend.get(dw), ref_dw, rtol=1e-5, atol=1e-5 * np.sqrt(M))
    np.testing.assert_allclose(backend.get(db), ref_db, rtol=1e-5, atol=1e-5 * np.sqrt(M))
    np.testing.assert_allclose(backend.get(dx), ref_dx, rtol=1e-4, atol=1e-5)


# ---- layer norm --------------------------------------------------------------------
# (M, D): a warp per row up to D = 1024, a block above; the parameter gradients
# sum 32-column tiles over 16 row lanes.
LAYER_NORM_SHAPES = [(1, 1), (7, 33), (9, 64), (40, 5), (3, 1025), (2, 2000)]


def check_layer_norm(backend, shape, affine, rng):
    M, D = shape
    x = random(rng, shape, scale=2.0) + 0.5
    weight, bias = (random(rng, D), random(rng, D)) if affine else (None, None)
    put = lambda a: None if a is None else backend.put(a)
    ref_y, ref_mean, ref_rstd = _C.layer_norm_forward(x, weight, bias, 1e-5)
    y, mean, rstd = backend.poisoned(shape), backend.poisoned(M), backend.poisoned(M)
    backend.module.layer_norm_forward(backend.put(x), put(weight), put(bias), 1e-5, y=y,
                                      mean=mean, rstd=rstd, stream=backend.stream())
    np.testing.assert_allclose(backend.get(mean), ref_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(backend.get(rstd), ref_rstd, rtol=1e-5)
    np.testing.assert_allclose(backend.get(y), ref_y, rtol=1e-5, atol=1e-5)

    dy = random(rng, shape)
    ref_dx, ref_dw, ref_db = _C.layer_norm_backward(dy, x, ref_mean, ref_rstd, weight)
    dx, dw, db = backend.poisoned(shape), backend.poisoned(D), backend.poisoned(D)
    backend.module.layer_norm_backward(backend.put(dy), backend.put(x), backend.put(ref_mean),
                                       backend.put(ref_rstd), put(weight), dx=dx, dweight=dw,
                                       dbias=db, stream=backend.stream())
    np.testing.assert_allclose(backend.get(dx), ref_dx, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(backend.get(dw), ref_dw, rtol=1e-5, atol=1e-5 * np.sqrt(M))
    np.testing.assert_allclose(backend.get(db), ref_db, rtol=1e-5, atol=1e-5 * np.sqrt(M))


# ---- gemm on TF32 tensor cores --------------------------------------------------------
# (batch or None, M, N, K, trans_a, trans_b, alpha, beta). One TF32 tile is 64x64
# (4 warps) or, with at least 8 output tiles, 128x128 (8 warps); K is walked
# in slabs of 16, two wmma steps of 8. The emulator has every lane do a whole
# 16x16x8 product, so the large-tile cases keep K within one slab.
GEMM_TF32_CASES = [
    (None, 1, 1, 1, False, False, 1.0, 0.0),
    (None, 16, 16, 8, False, False, 1.0, 0.0),
    (None, 37, 50, 29, False, False, 1.0, 0.0),   # edge tiles in M, N and K
    (None, 64, 64, 16, True, False, 1.0, 0.0),
    (None, 33, 70, 40, False, True, 0.5, 0.0),
    (None, 70, 45, 17, True, True, -1.5, 0.75),
    (None, 12, 16, 0, False, False, 1.0, 0.5),
    (None, 257, 260, 12, False, True, 1.0, 0.0),  # 3x3 large tiles
    (3, 20, 18, 24, True, False, 1.0, 0.5),
    (2, 129, 130, 9, True, True, 2.0, -1.0),      # 2x2x2 large tiles
]


def tf32_round(x):
    """x rounded to TF32 to nearest, ties away from zero, in float64. TF32
    keeps float's exponent and 10 mantissa bits: for |x| in [2^(e-1), 2^e) its
    values are 2^(e-11) apart, below float's smallest normal 2^-126 (e = -125)
    a fixed 2^-136."""
    x = np.asarray(x, np.float64)
    _, e = np.frexp(x)
    unit = np.ldexp(1.0, np.maximum(e, -125) - 11)
    return np.sign(x) * np.floor(np.abs(x) / unit + 0.5) * unit


def check_gemm_tf32_case(backend, case, rng):
    """The TF32 product against float64 on the TF32-rounded operands, within
    the float32 accumulation error K * 2^-23 * (|alpha| |A||B| + |beta c|)
    per element; and loosely against the float32 product."""
    batch, M, N, K, trans_a, trans_b, alpha, beta = case
    a, b, c = gemm_operands(rng, batch, M, N, K, trans_a, trans_b)
    op_a = np.swapaxes(a, -1, -2) if trans_a else a
    op_b = np.swapaxes(b, -1, -2) if trans_b else b
    exact = alpha * (tf32_round(op_a) @ tf32_round(op_b)) + beta * c.astype(np.float64)
    bound = (max(K, 1) * 2.0 ** -23 * (abs(alpha) * (np.abs(op_a.astype(np.float64))
                                                     @ np.abs(op_b.astype(np.float64)))
                                       + abs(beta) * np.abs(c))
             + 1e-6 * np.abs(exact))
    out = backend.put(c.copy()) if beta != 0 else backend.poisoned(c.shape)
    backend.module.gemm(backend.put(a), backend.put(b), trans_a=trans_a, trans_b=trans_b,
                        alpha=alpha, beta=beta, out=out, stream=backend.stream(), tf32=True)
    got = backend.get(out).astype(np.float64)
    excess = np.abs(got - exact) - bound
    assert np.all(excess <= 0), (
        f"TF32 gemm off its reference by up to {np.max(excess):.3g} beyond the bound "
        f"at {np.unravel_index(np.argmax(excess), excess.shape)}")
    fp32 = alpha * (op_a.astype(np.float64) @ op_b) + beta * c
    np.testing.assert_allclose(got, fp32, rtol=5e-3, atol=5e-3 * np.sqrt(max(K, 1)))


# ---- rnn ---------------------------------------------------------------------------
# (T, B, I, H, bias, reverse, dc_last given, dx wanted). The rnn bindings return
# new outputs, as pydl._C's; under emulation those (and the kernels' workspaces)
# start as NaN, so an element nothing wrote shows up.
RNN_MODES = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
RNN_GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
RNN_CASES = [
    (1, 1, 3, 7, True, False, True, True),
    (2, 3, 5, 7, False, True, False, True),
    (5, 2, 4, 9, True, True, True, False),
    (3, 3, 1, 5, True, False, False, True),
]
RNN_FORWARD_OUTPUTS = ["y", "c", "saved"]
RNN_BACKWARD_OUTPUTS = ["dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh"]


def rnn_inputs(rng, mode, T, B, I, H, bias):
    """x, h0, c0 (None unless LSTM), w_ih, w_hh, b_ih, b_hh (None without bias);
    weights scaled as PyTorch initializes them, so the gates do not saturate."""
    G, scale = RNN_GATES[mode], 1 / np.sqrt(H)
    return (random(rng, (T, B, I)), random(rng, (B, H)),
            random(rng, (B, H)) if mode == "lstm" else None,
            random(rng, (G * H, I), scale), random(rng, (G * H, H), scale),
            random(rng, G * H, scale) if bias else None,
            random(rng, G * H, scale) if bias else None)


def assert_rnn_outputs(names, actual, expected, backend, rtol, atol):
    assert len(actual) == len(expected)
    for name, a, e in zip(names, actual, expected):
        if e is None:
            assert a is None, f"{name} should be None"
        else:
            np.testing.assert_allclose(backend.get(a), e, rtol=rtol, atol=atol, err_msg=name)


def check_rnn(backend, mode, case, rng, rtol=1e-4, atol=1e-5):
    """rnn_forward, then rnn_backward from the CPU's forward results, against pydl._C;
    the inputs must come back unchanged."""
    T, B, I, H, bias, reverse, with_dc_last, need_dx = case
    inputs = rnn_inputs(rng, mode, T, B, I, H, bias)
    put = lambda a: None if a is None else backend.put(a)
    expected = _C.rnn_forward(mode, *inputs, reverse=reverse)
    dev_inputs = [put(a) for a in inputs]
    actual = backend.module.rnn_forward(mode, *dev_inputs, reverse=reverse,
                                        stream=backend.stream())
    assert_rnn_outputs(RNN_FORWARD_OUTPUTS, actual, expected, backend, rtol, atol)

    x, h0, c0, w_ih, w_hh = inputs[:5]
    y, c, saved = expected
    dy = random(rng, (T, B, H))
    dc_last = random(rng, (B, H)) if with_dc_last and mode == "lstm" else None
    args = (dy, dc_last, x, h0, c0, w_ih, w_hh, y, c, saved)
    flags = dict(reverse=reverse, has_bias=bias, need_dx=need_dx)
    expected = _C.rnn_backward(mode, *args, **flags)
    dev_args = [put(a) for a in args]
    actual = backend.module.rnn_backward(mode, *dev_args, **flags, stream=backend.stream())
    # Weight and bias gradients sum over T*B rows.
    assert_rnn_outputs(RNN_BACKWARD_OUTPUTS, actual, expected, backend, rtol,
                       atol * np.sqrt(T * B))
    for a, dev in zip(list(inputs) + list(args), dev_inputs + dev_args):
        if a is not None:
            np.testing.assert_array_equal(backend.get(dev), a)


def check_rnn_bad_arguments(backend, rng):
    """The CUDA bindings reject what pydl._C rejects, with the same messages (the
    shape rules are one shared copy)."""
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = [backend.put(a) for a in
                                        rnn_inputs(rng, "lstm", 3, 2, 5, 4, True)]
    forward = backend.module.rnn_forward
    with pytest.raises(ValueError, match=r"w_ih has shape \(16, 6\), expected \(G\*H, I\) = "
                                         r"\(16, 5\)"):
        forward("lstm", x, h0, c0, backend.put(random(rng, (16, 6))), w_hh, b_ih, b_hh)
    with pytest.raises(ValueError, match=r"w_hh must be \(4\*hidden_size, hidden_size\), got "
                                         r"\(12, 4\)"):
        forward("lstm", x, h0, c0, w_ih, w_hh[:12], b_ih, b_hh)
    with pytest.raises(TypeError, match="c0 must be a float32 array"):
        forward("lstm", x, h0, None, w_ih, w_hh, b_ih, b_hh)
    with pytest.raises(ValueError, match="c0 is for LSTM only"):
        forward("gru", x, h0, c0, w_ih[:12], w_hh[:12], b_ih[:12], b_hh[:12])
    with pytest.raises(ValueError, match="both b_ih and b_hh"):
        forward("lstm", x, h0, c0, w_ih, w_hh, b_ih, None)
    with pytest.raises(ValueError, match="mode must be"):
        forward("elman", x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    with pytest.raises(TypeError, match="x must be float32"):
        forward("lstm", x.astype(np.float64), h0, c0, w_ih, w_hh, b_ih, b_hh)
    with pytest.raises(ValueError, match="x must be C-contiguous"):
        forward("lstm", x[:, :, ::2], h0, c0, w_ih, w_hh, b_ih, b_hh)
    y, c, saved = forward("lstm", x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    with pytest.raises(ValueError, match=r"saved has shape \(3, 2, 15\), expected"):
        backend.module.rnn_backward("lstm", y, None, x, h0, c0, w_ih, w_hh, y, c,
                                    saved[..., :15].copy())
    with pytest.raises(ValueError, match=r"dc_last has shape \(2, 3\), expected \(B, H\)"):
        backend.module.rnn_backward("lstm", y, h0[:, :3].copy(), x, h0, c0, w_ih, w_hh, y, c,
                                    saved)
