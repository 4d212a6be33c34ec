"""The CUDA kernels on a real GPU (pydl._cuda, CuPy arrays), compared with the
CPU kernels of pydl._C: the cases of the emulated tests, plus sizes too large
to emulate. Skipped where there is no CuPy, no pydl._cuda or no device."""
import numpy as np
import pytest

import cuda_cases as cases

pytestmark = pytest.mark.gpu

cp = pytest.importorskip("cupy")
gpu = pytest.importorskip("pydl._cuda", reason="pydl._cuda not built (no CUDA compiler)")
if gpu.device_count() == 0:
    pytest.skip("no CUDA device", allow_module_level=True)

backend = cases.Backend(gpu, cp, cp.asnumpy, stream=lambda: cp.cuda.get_current_stream().ptr)

# Sizes where the GPU's own launch choices (128x128 tiles, many blocks,
# grid-stride loops) come into play.
LARGE_GEMM_CASES = [
    (None, 1000, 1030, 517, False, False, 1.0, 0.0),
    (None, 513, 2049, 300, True, True, 1.0, 0.5),
    (16, 129, 255, 64, False, True, 1.0, 0.0),
]


@pytest.mark.parametrize("case", cases.GEMM_CASES + LARGE_GEMM_CASES, ids=str)
def test_gemm(case, rng):
    cases.check_gemm_case(backend, case, rng)


def test_gemm_views(rng):
    cases.check_gemm_views(backend, rng)


@pytest.mark.parametrize("op", cases.UNARY_OPS)
@pytest.mark.parametrize("n", cases.UNARY_SIZES + [1 << 20, (1 << 22) + 3])
def test_unary(op, n, rng):
    cases.check_unary(backend, op, n, rng)


@pytest.mark.parametrize("op", cases.UNARY_OPS)
def test_unary_misaligned(op, rng):
    cases.check_unary(backend, op, 100003, rng, misaligned=True)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape", cases.ROWWISE_SHAPES + [(4096, 1000), (300, 50000)], ids=str)
def test_rowwise(op, shape, rng):
    cases.check_rowwise(backend, op, shape, rng)


@pytest.mark.parametrize("reduction", cases.REDUCTIONS)
@pytest.mark.parametrize("shape", cases.LOSS_SHAPES + [(8192, 1000), (64, 32000)], ids=str)
def test_cross_entropy(shape, reduction, rng):
    N, C = shape
    logits = cases.random(rng, shape, scale=3.0)
    cases.check_cross_entropy(backend, logits, cases.index_target(rng, N, C), reduction)
    cases.check_cross_entropy(backend, logits, cases.prob_target(rng, N, C), reduction)


def test_cross_entropy_loss_is_deterministic(rng):
    logits = cases.random(rng, (20000, 10), scale=3.0)
    target = cases.index_target(rng, 20000, 10)
    first = cases.run_cross_entropy(backend, logits, target, "mean")[0]
    assert all(cases.run_cross_entropy(backend, logits, target, "mean")[0] == first
               for _ in range(5))


def test_numpy_arrays_are_rejected():
    with pytest.raises(TypeError, match="x must be a CuPy array"):
        gpu.relu_forward(np.ones(3, np.float32), out=cp.empty(3, cp.float32))


# ---- conv and pool ---------------------------------------------------------------------
# Large enough for many tiles, a split grad_weight reduction and grid-stride loops.
LARGE_CONV_CASES = [
    (8, 32, 28, 28, 64, 3, 3, (1, 1), (1, 1), (1, 1), 1, True),
    (4, 64, 17, 19, 64, 3, 3, (2, 2), (1, 1), (1, 1), 4, False),
    (16, 3, 64, 64, 32, 7, 7, (2, 2), (3, 3), (1, 1), 1, True),
]
LARGE_POOL_CASES = [(16, 64, 56, 57, (3, 3), (2, 2), (1, 1), (1, 1), True)]


@pytest.mark.parametrize("case", cases.CONV_CASES + LARGE_CONV_CASES, ids=str)
def test_conv2d(case, rng):
    cases.check_conv(backend, case, rng)


@pytest.mark.parametrize("case", cases.POOL_CASES + LARGE_POOL_CASES, ids=str)
def test_max_pool2d(case, rng):
    cases.check_max_pool(backend, case, rng)
    cases.check_max_pool(backend, case, rng, with_nan=True)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("case", [c for c in cases.POOL_CASES + LARGE_POOL_CASES
                                  if c[7] == (1, 1)], ids=str)
def test_avg_pool2d(case, count_include_pad, rng):
    cases.check_avg_pool(backend, case, count_include_pad, rng)


# ---- layers: optimizers, dropout, embedding, normalization -------------------------------

@pytest.mark.parametrize("case", cases.OPTIM_CASES, ids=lambda c: f"{c[0]}-{'-'.join(c[1])}")
def test_optim_step(case, rng):
    cases.check_optim(backend, case, cases.OPTIM_SHAPES + [((1 << 20) + 5,)], rng)


@pytest.mark.parametrize("case", cases.OPTIM_CASES, ids=lambda c: f"{c[0]}-{'-'.join(c[1])}")
def test_optim_multi_tensor(case, rng):
    """100 parameters of mixed sizes in one call (up to 32 per launch)."""
    shapes = [(int(n),) for n in rng.integers(0, 20000, 100)]
    cases.check_optim(backend, case, shapes, rng, steps=2, as_list=True)


@pytest.mark.parametrize("stream", cases.DROPOUT_STREAMS, ids=str)
@pytest.mark.parametrize("n", cases.DROPOUT_SIZES + [(1 << 22) + 3])
def test_dropout(n, stream, rng):
    cases.check_dropout(backend, n, *stream, rng)


@pytest.mark.parametrize("case", cases.EMBEDDING_CASES + [(30000, 512, (64, 128), 0)], ids=str)
def test_embedding(case, rng):
    cases.check_embedding(backend, *case, rng)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", cases.BATCH_NORM_SHAPES + [(32, 64, 28, 28), (4096, 300)],
                         ids=str)
def test_batch_norm(shape, training, rng):
    cases.check_batch_norm(backend, shape, training, True, True, rng)
    if training:
        cases.check_batch_norm(backend, shape, True, False, False, rng)


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", cases.LAYER_NORM_SHAPES + [(4096, 768), (64, 5000)], ids=str)
def test_layer_norm(shape, affine, rng):
    cases.check_layer_norm(backend, shape, affine, rng)


# ---- gemm on TF32 tensor cores ----------------------------------------------------------
LARGE_GEMM_TF32_CASES = [
    (None, 1000, 1030, 517, False, False, 1.0, 0.0),
    (None, 513, 2049, 300, True, True, 1.0, 0.5),
    (None, 1024, 1024, 1024, True, False, 1.0, 0.0),
    (16, 129, 255, 64, False, True, 1.0, 0.0),
]


@pytest.mark.parametrize("case", cases.GEMM_TF32_CASES + LARGE_GEMM_TF32_CASES, ids=str)
def test_gemm_tf32(case, rng):
    cases.check_gemm_tf32_case(backend, case, rng)


# Sizes where the gate kernels run many blocks and the GEMMs take large tiles;
# the long sums over T*B rows and H columns get a looser tolerance.
LARGE_RNN_CASES = [
    (20, 64, 100, 256, True, False, True, True),
    (7, 130, 33, 129, False, True, False, True),
]


@pytest.mark.parametrize("case", cases.RNN_CASES, ids=str)
@pytest.mark.parametrize("mode", cases.RNN_MODES)
def test_rnn(mode, case, rng):
    cases.check_rnn(backend, mode, case, rng)


@pytest.mark.parametrize("case", LARGE_RNN_CASES, ids=str)
@pytest.mark.parametrize("mode", cases.RNN_MODES)
def test_rnn_large(mode, case, rng):
    cases.check_rnn(backend, mode, case, rng, rtol=1e-3, atol=1e-4)


def test_rnn_bad_arguments(rng):
    cases.check_rnn_bad_arguments(backend, rng)
