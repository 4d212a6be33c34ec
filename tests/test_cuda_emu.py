"""The CUDA kernels run on the CPU by the CUDA emulator (pydl._cuda_emu),
compared with the CPU kernels of pydl._C; and checks of the emulator itself."""
import numpy as np
import pytest

import cuda_cases as cases

emu = pytest.importorskip("pydl._cuda_emu", reason="built without PYDL_CUDA_EMULATION")

backend = cases.Backend(emu, np, np.asarray)


# ---- kernels against pydl._C ---------------------------------------------------------

@pytest.mark.parametrize("case", cases.GEMM_CASES, ids=str)
def test_gemm(case, rng):
    cases.check_gemm_case(backend, case, rng)


def test_gemm_views(rng):
    cases.check_gemm_views(backend, rng)


def test_gemm_broadcast_batch(rng):
    """A batch stride of 0 broadcasts one operand over the batch."""
    a3, b3, c3 = cases.gemm_operands(rng, 3, 10, 12, 7, False, False)
    b_one = cases.random(rng, (7, 12))
    expected = np.einsum("bmk,kn->bmn", a3.astype(np.float64), b_one)
    out = backend.poisoned(c3.shape)
    emu.gemm(a3, np.broadcast_to(b_one, (3, 7, 12)), out=out)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("op", cases.UNARY_OPS)
@pytest.mark.parametrize("n", cases.UNARY_SIZES)
def test_unary(op, n, rng):
    cases.check_unary(backend, op, n, rng)


@pytest.mark.parametrize("op", cases.UNARY_OPS)
def test_unary_misaligned(op, rng):
    cases.check_unary(backend, op, 37, rng, misaligned=True)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape", cases.ROWWISE_SHAPES, ids=str)
def test_rowwise(op, shape, rng):
    cases.check_rowwise(backend, op, shape, rng)


@pytest.mark.parametrize("reduction", cases.REDUCTIONS)
@pytest.mark.parametrize("shape", cases.LOSS_SHAPES, ids=str)
def test_cross_entropy_index(shape, reduction, rng):
    N, C = shape
    logits = cases.random(rng, shape, scale=3.0)
    cases.check_cross_entropy(backend, logits, cases.index_target(rng, N, C), reduction)


@pytest.mark.parametrize("reduction", cases.REDUCTIONS)
@pytest.mark.parametrize("shape", cases.LOSS_SHAPES, ids=str)
def test_cross_entropy_prob(shape, reduction, rng):
    N, C = shape
    logits = cases.random(rng, shape, scale=3.0)
    cases.check_cross_entropy(backend, logits, cases.prob_target(rng, N, C), reduction)


def test_cross_entropy_variants(rng):
    logits = cases.random(rng, (12, 7), scale=3.0)
    # Without a gradient; a custom ignore_index; every row ignored (mean is
    # 0/0 = NaN, as PyTorch).
    cases.check_cross_entropy(backend, logits, cases.index_target(rng, 12, 7), "mean",
                              with_grad=False)
    cases.check_cross_entropy(backend, logits, cases.index_target(rng, 12, 7, ignore_index=3),
                              "mean", ignore_index=3)
    cases.check_cross_entropy(backend, logits, np.full(12, -100, np.int64), "mean")
    cases.check_cross_entropy(backend, logits[:0], np.zeros(0, np.int64), "mean")


def test_cross_entropy_bad_class_index_gives_nan(rng):
    logits = cases.random(rng, (5, 4))
    target = np.array([0, 9, 1, -3, 2], np.int64)
    loss, losses, grad = cases.run_cross_entropy(backend, logits, target, "sum")
    assert np.isnan(loss)
    assert np.isnan(losses[[1, 3]]).all() and np.isfinite(losses[[0, 2, 4]]).all()
    assert np.isnan(grad[[1, 3]]).all() and np.isfinite(grad[[0, 2, 4]]).all()


# ---- argument checks -----------------------------------------------------------------

def test_errors_name_the_argument():
    x = np.ones((4, 5), np.float32)
    out = np.empty((4, 5), np.float32)
    with pytest.raises(TypeError, match="x must be float32, got float64"):
        emu.relu_forward(x.astype(np.float64), out=out)
    with pytest.raises(TypeError, match="x must be a NumPy array"):
        emu.relu_forward([1.0, 2.0], out=out)
    with pytest.raises(ValueError, match="x must be C-contiguous"):
        emu.relu_forward(np.ones((5, 4), np.float32).T, out=out)
    with pytest.raises(ValueError, match="out has shape \\(4, 4\\) but x has shape \\(4, 5\\)"):
        emu.relu_forward(x, out=np.empty((4, 4), np.float32))
    readonly = np.empty((4, 5), np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="out must be writable"):
        emu.sigmoid_forward(x, out=readonly)
    with pytest.raises(ValueError, match="dy has shape"):
        emu.tanh_backward(np.ones(3, np.float32), x, out=out)
    with pytest.raises(ValueError, match="inner dimensions differ"):
        emu.gemm(x, x, out=np.empty((4, 5), np.float32))
    with pytest.raises(ValueError, match="gemm: out has shape"):
        emu.gemm(x, x, trans_b=True, out=np.empty((4, 5), np.float32))
    with pytest.raises(ValueError, match="neither a contiguous row nor column"):
        emu.gemm(np.ones((4, 6), np.float32)[:, ::2], x[:3], out=np.empty((4, 5), np.float32))
    logits, loss, losses = np.ones((3, 4), np.float32), np.empty(1, np.float32), np.empty(3, np.float32)
    with pytest.raises(ValueError, match="reduction must be"):
        emu.softmax_cross_entropy(logits, np.zeros(3, np.int64), reduction="avg", loss=loss,
                                  losses=losses)
    with pytest.raises(ValueError, match="class-index target must have shape \\(3,\\)"):
        emu.softmax_cross_entropy(logits, np.zeros(4, np.int64), loss=loss, losses=losses)
    with pytest.raises(ValueError, match="loss must hold one element"):
        emu.softmax_cross_entropy(logits, np.zeros(3, np.int64), loss=np.empty(2, np.float32),
                                  losses=losses)
    with pytest.raises(ValueError, match="grad has shape"):
        emu.softmax_cross_entropy(logits, np.zeros(3, np.int64), loss=loss, losses=losses,
                                  grad=np.empty((3, 5), np.float32))


# ---- the emulator itself -----------------------------------------------------------------

selftest = emu.emulator_selftest


def test_emulated_warp_ops():
    out = np.array(selftest.warp_ops()).reshape(6, 64)
    t = np.arange(64)
    lane, warp_base = t % 32, t - t % 32
    np.testing.assert_array_equal(out[0], (warp_base + 3) * 10)
    np.testing.assert_array_equal(out[1], t ^ 1)
    np.testing.assert_array_equal(out[2], np.where(lane + 4 < 32, t + 4, t))
    np.testing.assert_array_equal(out[3], np.where(lane % 16 >= 2, t - 2, t))
    ballot = sum(1 << i for i in range(32) if i % 3 == 0)
    np.testing.assert_array_equal(out[4].astype(np.uint32), np.uint32(ballot))
    np.testing.assert_array_equal(out[5], 1)  # any(lane == 31) and not all(lane < 31)


def test_emulated_atomics():
    total, fsum, maximum = selftest.atomics()
    n = 4 * 96
    assert (total, fsum, maximum) == (n * (n - 1) // 2, float(n), n - 1)


def test_unwritten_shared_memory_reads_nan():
    assert np.isnan(selftest.unwritten_shared()).all()


def test_bad_launches_raise_instead_of_hanging():
    selftest.launch_threads(32, 32)  # 1024 threads is the limit
    with pytest.raises(RuntimeError, match="invalid launch configuration.*1025 threads"):
        selftest.launch_threads(1025, 1)
    with pytest.raises(RuntimeError, match="block \\(.*thread \\(5, 0, 0\\): thread 5 gave up"):
        selftest.throwing()
    with pytest.raises(RuntimeError, match="__syncthreads waits for 32 of its 64 threads"):
        selftest.early_return()


# ---- conv and pool ---------------------------------------------------------------------

@pytest.mark.parametrize("case", cases.CONV_CASES, ids=str)
def test_conv2d(case, rng):
    cases.check_conv(backend, case, rng)


@pytest.mark.parametrize("case", cases.POOL_CASES, ids=str)
def test_max_pool2d(case, rng):
    cases.check_max_pool(backend, case, rng)


def test_max_pool2d_nan_wins(rng):
    cases.check_max_pool(backend, cases.POOL_CASES[2], rng, with_nan=True)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("case", [c for c in cases.POOL_CASES if c[7] == (1, 1)], ids=str)
def test_avg_pool2d(case, count_include_pad, rng):
    cases.check_avg_pool(backend, case, count_include_pad, rng)


def test_max_pool2d_bad_index_gives_nan(rng):
    dy = cases.random(rng, (1, 2, 2, 2))
    idx = np.array([[[[0, 1], [2, 3]], [[0, 99], [2, 3]]]], np.int64)
    grad_input = np.full((1, 2, 4, 4), np.nan, np.float32)
    emu.max_pool2d_backward(dy, idx, kernel_size=(2, 2), stride=(2, 2), grad_input=grad_input)
    assert np.isfinite(grad_input[0, 0]).all()
    assert np.isnan(grad_input[0, 1, 0, 0]) and np.isfinite(grad_input[0, 1].flat[1:]).all()


def test_conv_pool_errors_name_the_argument(rng):
    x, w = cases.random(rng, (2, 4, 6, 6)), cases.random(rng, (3, 2, 3, 3))
    with pytest.raises(ValueError, match="with groups 1 expects 2 input channels"):
        emu.conv2d_forward(x, w, out=np.empty((2, 3, 4, 4), np.float32))
    with pytest.raises(ValueError, match="divisible by groups"):
        emu.conv2d_forward(x, w, groups=2, out=np.empty((2, 3, 4, 4), np.float32))
    w = cases.random(rng, (4, 2, 3, 3))
    with pytest.raises(ValueError, match="conv2d: out has shape \\(2, 4, 6, 6\\), expected"):
        emu.conv2d_forward(x, w, groups=2, out=np.empty((2, 4, 6, 6), np.float32))
    with pytest.raises(ValueError, match="conv2d: bias has shape"):
        emu.conv2d_forward(x, w, np.ones(3, np.float32), groups=2,
                           out=np.empty((2, 4, 4, 4), np.float32))
    with pytest.raises(TypeError, match="grad_weight must be float32"):
        emu.conv2d_backward(np.ones((2, 4, 4, 4), np.float32), x, w, groups=2,
                            grad_weight=np.empty(w.shape, np.float64))
    with pytest.raises(ValueError, match="input must be 4-D"):
        emu.max_pool2d_forward(x[0], kernel_size=(2, 2), stride=(2, 2),
                               out=np.empty((4, 3, 3), np.float32),
                               indices=np.empty((4, 3, 3), np.int64))
    with pytest.raises(ValueError, match="padding must be >= 0 and at most half"):
        emu.avg_pool2d_forward(x, kernel_size=(2, 2), stride=(2, 2), padding=(2, 0),
                               out=np.empty((2, 4, 3, 3), np.float32))
    with pytest.raises(TypeError, match="indices must be int64"):
        emu.max_pool2d_backward(np.ones((2, 4, 3, 3), np.float32),
                                np.zeros((2, 4, 3, 3), np.int32), kernel_size=(2, 2),
                                stride=(2, 2), grad_input=np.empty(x.shape, np.float32))


# ---- layers: optimizers, dropout, embedding, normalization -------------------------------

@pytest.mark.parametrize("case", cases.OPTIM_CASES, ids=lambda c: f"{c[0]}-{'-'.join(c[1])}")
def test_optim_step(case, rng):
    cases.check_optim(backend, case, cases.OPTIM_SHAPES, rng)


@pytest.mark.parametrize("case", [cases.OPTIM_CASES[1], cases.OPTIM_CASES[4], cases.OPTIM_CASES[7]],
                         ids=lambda c: c[0])
def test_optim_multi_tensor(case, rng):
    """34 parameters in one call take two launches of up to 32; empty ones are skipped."""
    shapes = [(int(n),) for n in rng.integers(1, 70, 34)]
    shapes[5] = (0,)
    shapes[20] = (4100,)
    cases.check_optim(backend, case, shapes, rng, steps=2, as_list=True)


def test_optim_errors():
    p, g = np.ones(4, np.float32), np.ones(4, np.float32)
    with pytest.raises(ValueError, match="momentum_buffer is required"):
        emu.sgd_step(p, g, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="exp_avg shares memory with param"):
        emu.adam_step(p, g, p, np.zeros(4, np.float32), lr=0.1, step=1)
    with pytest.raises(ValueError, match="state_sum shares memory with grad"):
        emu.adagrad_step(p, g, g, lr=0.1, step=1)
    with pytest.raises(ValueError, match="step must be >= 1"):
        emu.adam_step(p, g, np.zeros(4, np.float32), np.zeros(4, np.float32), lr=0.1, step=0)
    with pytest.raises(ValueError, match=r"exp_avg_sq\[1\] has shape \(3,\) but param\[1\]"):
        emu.adam_step([p, p[:2].copy()], [g, g[:2].copy()],
                      [np.zeros(4, np.float32), np.zeros(2, np.float32)],
                      [np.zeros(4, np.float32), np.zeros(3, np.float32)], lr=0.1, step=1)
    big = np.zeros(8, np.float32)
    with pytest.raises(ValueError, match=r"param\[1\] shares memory with param\[0\]"):
        emu.sgd_step([big[:4], big[2:6]], [g, g.copy()], lr=0.1)
    with pytest.raises(ValueError, match="grad has 1 arrays but param has 2"):
        emu.sgd_step([p, p.copy()], [g], lr=0.1)
    with pytest.raises(TypeError, match="grad must be a list of arrays"):
        emu.sgd_step([p], g, lr=0.1)
    with pytest.raises(TypeError, match="grad must be float32"):
        emu.sgd_step(p, g.astype(np.float64), lr=0.1)


@pytest.mark.parametrize("stream", cases.DROPOUT_STREAMS, ids=str)
@pytest.mark.parametrize("n", cases.DROPOUT_SIZES)
def test_dropout(n, stream, rng):
    cases.check_dropout(backend, n, *stream, rng)


def test_dropout_errors():
    x = np.ones(6, np.float32)
    with pytest.raises(ValueError, match="p must be in"):
        emu.dropout_forward(x, 1.5, 0, 0, y=np.empty(6, np.float32), mask=np.empty(6, np.uint8))
    with pytest.raises(TypeError, match="mask must be uint8, got bool"):
        emu.dropout_mask(0.5, 0, 0, mask=np.empty(6, bool))
    with pytest.raises(ValueError, match="mask has shape"):
        emu.dropout_backward(x, np.ones(5, np.uint8), 0.5, out=np.empty(6, np.float32))


@pytest.mark.parametrize("case", cases.EMBEDDING_CASES, ids=str)
def test_embedding(case, rng):
    cases.check_embedding(backend, *case, rng)


def test_embedding_bad_index_gives_nan_and_is_skipped(rng):
    weight, dy = cases.random(rng, (4, 3)), cases.random(rng, (3, 3))
    indices = np.array([1, 7, -1], np.int64)
    out = backend.poisoned((3, 3))
    emu.embedding_forward(weight, indices, out=out)
    np.testing.assert_array_equal(out[0], weight[1])
    assert np.isnan(out[1:]).all()
    dweight = backend.poisoned((4, 3))
    emu.embedding_backward(dy, indices, 4, out=dweight)
    np.testing.assert_array_equal(dweight[1], dy[0])
    np.testing.assert_array_equal(dweight[[0, 2, 3]], 0)
    with pytest.raises(ValueError, match="out has shape"):
        emu.embedding_backward(dy, indices, 5, out=dweight)


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", cases.BATCH_NORM_SHAPES, ids=str)
def test_batch_norm_train(shape, affine, rng):
    cases.check_batch_norm(backend, shape, True, affine, track_running_stats=affine, rng=rng)


@pytest.mark.parametrize("shape", cases.BATCH_NORM_SHAPES[::2] + [(2, 3, 0)], ids=str)
def test_batch_norm_eval(shape, rng):
    cases.check_batch_norm(backend, shape, False, True, True, rng)


def test_batch_norm_backward_partial_outputs(rng):
    x, weight, *_ = cases.batch_norm_inputs(rng, (4, 3, 5, 2), affine=True)
    dy = cases.random(rng, x.shape)
    _, mean, invstd = cases._C.batch_norm_forward(x, weight, None, None, None, True, 0.1, 1e-5)
    ref_dx, _, ref_db = cases._C.batch_norm_backward(dy, x, mean, invstd, weight, True)
    dx, db = backend.poisoned(x.shape), backend.poisoned(3)
    emu.batch_norm_backward(dy, x, mean, invstd, weight, True, dx=dx, dbias=db)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(db, ref_db, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="evaluation needs running_mean"):
        emu.batch_norm_forward(x, None, None, None, None, False, 0.1, 1e-5, y=dx,
                               mean=db, invstd=db.copy())
    with pytest.raises(ValueError, match="invstd has shape \\(4,\\), expected \\(3,\\)"):
        emu.batch_norm_forward(x, None, None, None, None, True, 0.1, 1e-5, y=dx,
                               mean=db, invstd=np.empty(4, np.float32))


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", cases.LAYER_NORM_SHAPES, ids=str)
def test_layer_norm(shape, affine, rng):
    cases.check_layer_norm(backend, shape, affine, rng)


def test_layer_norm_errors():
    x = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="weight has shape \\(3,\\), expected \\(4,\\)"):
        emu.layer_norm_forward(x, np.ones(3, np.float32), None, 1e-5, y=x.copy(),
                               mean=np.empty(3, np.float32), rstd=np.empty(3, np.float32))
    with pytest.raises(ValueError, match="dx has shape"):
        emu.layer_norm_backward(x, x, np.ones(3, np.float32), np.ones(3, np.float32), None,
                                dx=np.empty((4, 3), np.float32))


# ---- gemm on TF32 tensor cores (the emulator's wmma) ---------------------------------

@pytest.mark.parametrize("case", cases.GEMM_TF32_CASES, ids=str)
def test_gemm_tf32(case, rng):
    cases.check_gemm_tf32_case(backend, case, rng)


def test_emulated_float_to_tf32_rounds_to_nearest_ties_away(rng):
    """cvt.rna.tf32.f32: random floats, exact ties (low 13 bits 0x1000) of
    both signs, which round away from zero, and inf/nan, which pass."""
    bits = rng.integers(0, 2 ** 32, 2000, dtype=np.uint64).astype(np.uint32)
    finite = bits[(bits & 0x7F800000) != 0x7F800000]
    ties = (finite[:200] & ~np.uint32(0x1FFF)) | np.uint32(0x1000)
    x = np.concatenate([finite.view(np.float32), ties.view(np.float32)])
    got = np.array(selftest.float_to_tf32(x.tolist()), np.float32)
    np.testing.assert_array_equal(got, cases.tf32_round(x).astype(np.float32))
    assert np.all(got.view(np.uint32) & 0x1FFF == 0)
    tie_got = got[-200:].astype(np.float64)
    assert np.all(np.abs(tie_got) > np.abs(x[-200:].astype(np.float64)))  # away from zero
    special = np.array(selftest.float_to_tf32([np.inf, -np.inf, np.nan]), np.float32)
    assert special[0] == np.inf and special[1] == -np.inf and np.isnan(special[2])


def test_emulated_wmma_needs_a_whole_warp():
    with pytest.raises(RuntimeError, match="wmma::fill_fragment in a warp of 16 lanes"):
        selftest.wmma_partial_warp()


@pytest.mark.parametrize("case", cases.RNN_CASES, ids=str)
@pytest.mark.parametrize("mode", cases.RNN_MODES)
def test_rnn(mode, case, rng):
    cases.check_rnn(backend, mode, case, rng)


def test_rnn_bad_arguments(rng):
    cases.check_rnn_bad_arguments(backend, rng)
