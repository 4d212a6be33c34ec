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
