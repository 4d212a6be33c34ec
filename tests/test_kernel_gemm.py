"""SGEMM (pydl._C.gemm) against float64 NumPy references on fresh random inputs.

Every product runs on each instruction set the CPU has (avx512, avx2, portable) and on 1 and
2 threads. The error bound is the float32 accumulation bound, elementwise:
|C - C_ref| <= c * K * eps * (|alpha| |op(A)| @ |op(B)| + |beta| |C0|),
so it grows with K as rounding error does, while any indexing or blocking
mistake (an error the size of the terms themselves) still fails it.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from pydl import _C
from conftest import ISAS, kernel_settings

EPS32 = np.finfo(np.float32).eps


def op(x, trans):
    return np.swapaxes(x, -1, -2) if trans else x


def operands(rng, M, N, K, trans_a=False, trans_b=False, batch=None):
    lead = () if batch is None else (batch,)
    a = rng.standard_normal(lead + ((K, M) if trans_a else (M, K))).astype(np.float32)
    b = rng.standard_normal(lead + ((N, K) if trans_b else (K, N))).astype(np.float32)
    return a, b


def assert_gemm(got, a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, c0=None):
    """got == alpha * op(a) @ op(b) + beta * c0 within the float32 accumulation bound."""
    A = op(a.astype(np.float64), trans_a)
    B = op(b.astype(np.float64), trans_b)
    want = alpha * (A @ B)
    scale = abs(alpha) * (np.abs(A) @ np.abs(B))
    if beta != 0.0:
        want = want + beta * c0.astype(np.float64)
        scale = scale + abs(beta) * np.abs(c0.astype(np.float64))
    K = A.shape[-1]
    assert got.dtype == np.float32 and got.shape == want.shape
    bound = 4 * (K + 2) * EPS32 * scale + 1e-30
    err = np.abs(got.astype(np.float64) - want)
    worst = np.unravel_index(np.argmax(err - bound), err.shape) if err.size else None
    assert np.all(err <= bound), f"error {err[worst]:.3g} > bound {bound[worst]:.3g} at {worst}"


# ---- shapes, transposes, alpha and beta ------------------------------------------

SHAPES = [  # (M, N, K): empty, single, edge tiles, several k/m blocks, wide N
    (0, 5, 3), (4, 0, 3), (1, 1, 1), (1, 7, 1), (7, 1, 33), (7, 33, 255), (33, 7, 1),
    (255, 33, 7), (6, 16, 4), (12, 32, 300), (1000, 33, 7), (33, 1000, 255), (7, 4200, 5),
    (300, 130, 520),
]


@pytest.mark.parametrize("M,N,K", SHAPES)
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True), (True, True)])
def test_shapes_and_transposes(rng, isa, threads, M, N, K, trans_a, trans_b):
    a, b = operands(rng, M, N, K, trans_a, trans_b)
    got = _C.gemm(a, b, trans_a=trans_a, trans_b=trans_b)
    assert_gemm(got, a, b, trans_a, trans_b)


@pytest.mark.parametrize("M,N,K", [(64, 512, 784), (255, 255, 255), (1000, 70, 600), (40, 2000, 64),
                                   (64, 64, 576), (64, 784, 512), (784, 512, 64), (2000, 32, 9)])
def test_threaded_sizes(rng, isa, threads, M, N, K):
    # Big enough that 2 threads really split the work: rows of C (tall, or A
    # read in place with a tiny B), or the B panels (short M, wide N, or N <= 64
    # with A read in place by both threads).
    for trans_a, trans_b in [(False, False), (True, True)]:
        a, b = operands(rng, M, N, K, trans_a, trans_b)
        assert_gemm(_C.gemm(a, b, trans_a=trans_a, trans_b=trans_b), a, b, trans_a, trans_b)


@pytest.mark.parametrize("M,N,K", [(64, 10, 512), (13, 64, 7), (64, 64, 577), (50, 65, 3),
                                   (43264 // 64, 32, 9), (5, 1, 130), (10816 // 4, 64, 288)])
def test_narrow_products_read_a_in_place(rng, isa, threads, M, N, K):
    # N <= 64 with row-major A: A is read in place (edge rows, K not a multiple
    # of the unroll, and a row stride wider than K); N = 65, or an A larger
    # than half of L2 with K >= 16, packs A again.
    big = rng.standard_normal((M + 1, K + 3)).astype(np.float32)
    a = big[1:, 2:2 + K]  # ends at the buffer's last row: no row past M is read
    b = rng.standard_normal((N, K)).astype(np.float32)
    c0 = rng.standard_normal((M, N)).astype(np.float32)
    out = c0.copy()
    _C.gemm(a, b, trans_b=True, alpha=0.75, beta=0.5, out=out)
    assert_gemm(out, a, b, False, True, 0.75, 0.5, c0)
    assert_gemm(_C.gemm(a, b.T), a, b.T)


# (12, 40, 9) and (300, 1000, 20): column edges of exactly 8 (the narrow
# kernel writing C directly, with beta), A in place and packed.
@pytest.mark.parametrize("M,N,K", [(7, 33, 255), (300, 130, 520), (64, 512, 784), (12, 40, 9),
                                   (300, 1000, 20), (50, 50, 64)])
@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (-0.5, 2.0), (2.5, 0.0), (1.0, -1.0)])
def test_alpha_beta_into_out(rng, isa, threads, M, N, K, alpha, beta):
    a, b = operands(rng, M, N, K, trans_b=True)
    c0 = rng.standard_normal((M, N)).astype(np.float32)
    out = c0.copy()
    got = _C.gemm(a, b, trans_b=True, alpha=alpha, beta=beta, out=out)
    assert got is out or np.shares_memory(got, out)
    assert_gemm(out, a, b, False, True, alpha, beta, c0)


@pytest.mark.parametrize("M,N,K", [(7, 33, 255), (300, 130, 520), (5, 6, 0)])
def test_beta_zero_overwrites_nan(rng, isa, threads, M, N, K):
    a, b = operands(rng, M, N, K)
    out = np.full((M, N), np.nan, np.float32)
    _C.gemm(a, b, out=out)
    assert np.isfinite(out).all()
    assert_gemm(out, a, b)


@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_k_zero_scales_out(rng, isa, beta):
    a, b = operands(rng, 9, 17, 0)
    c0 = rng.standard_normal((9, 17)).astype(np.float32)
    out = c0.copy()
    _C.gemm(a, b, alpha=3.0, beta=beta, out=out)
    np.testing.assert_array_equal(out, np.float32(beta) * c0)


def test_alpha_zero_reads_neither_operand(rng, isa):
    a, b = operands(rng, 8, 20, 30)
    a[0, 0] = np.inf  # alpha == 0: A and B are not read (BLAS), so no NaN appears
    c0 = rng.standard_normal((8, 20)).astype(np.float32)
    out = c0.copy()
    _C.gemm(a, b, alpha=0.0, beta=2.0, out=out)
    np.testing.assert_array_equal(out, np.float32(2.0) * c0)


# ---- views -------------------------------------------------------------------------

def test_strided_and_transposed_views(rng, isa, threads):
    big = rng.standard_normal((300, 400)).astype(np.float32)
    rows = big[10:110, 5:260]          # row stride 400, contiguous rows: used in place
    cols_t = big[:255, :40].T          # column-major view: passed as a transposed operand
    every_other = big[:255, ::2]       # neither axis contiguous: copied first
    got = _C.gemm(rows, every_other)   # (100, 255) @ (255, 200)
    assert_gemm(got, rows, every_other)
    got = _C.gemm(cols_t, big[:255, 100:133])  # (40, 255) @ (255, 33)
    assert_gemm(got, cols_t, big[:255, 100:133])
    # trans_a on a column-major view: two transposes cancel to a row-major read
    a_t = big[:70, :33].T              # (33, 70), op(a) is (70, 33)
    got = _C.gemm(a_t, big[:33, 200:260], trans_a=True)
    assert_gemm(got, a_t, big[:33, 200:260], trans_a=True)
    b_t = big[100:160, 40:73]          # (60, 33) with row stride, trans_b: op(b) is (33, 60)
    got = _C.gemm(a_t, b_t, trans_a=True, trans_b=True)
    assert_gemm(got, a_t, b_t, trans_a=True, trans_b=True)


def test_views_leave_inputs_untouched(rng, isa):
    a, b = operands(rng, 50, 60, 70)
    a_view, b_view = a[:, ::2], b[::2]
    a_copy, b_copy = a.copy(), b.copy()
    assert_gemm(_C.gemm(a_view, b_view), a_view, b_view)
    np.testing.assert_array_equal(a, a_copy)
    np.testing.assert_array_equal(b, b_copy)


# ---- batched -----------------------------------------------------------------------

@pytest.mark.parametrize("batch,M,N,K", [(64, 50, 50, 64), (3, 7, 33, 255), (2, 200, 300, 150),
                                         (5, 1, 1, 1), (4, 0, 3, 2)])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, True), (False, True)])
def test_batched(rng, isa, threads, batch, M, N, K, trans_a, trans_b):
    a, b = operands(rng, M, N, K, trans_a, trans_b, batch=batch)
    got = _C.gemm(a, b, trans_a=trans_a, trans_b=trans_b)
    assert_gemm(got, a, b, trans_a, trans_b)


@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True)])
def test_batched_broadcast_operands(rng, isa, threads, trans_a, trans_b):
    batch, M, N, K = 6, 40, 70, 90
    a, b = operands(rng, M, N, K, trans_a, trans_b, batch=batch)
    b_shared = np.broadcast_to(b[0], b.shape)   # stride 0: one B for every product
    assert_gemm(_C.gemm(a, b_shared, trans_a=trans_a, trans_b=trans_b), a, b_shared, trans_a, trans_b)
    a_shared = np.broadcast_to(a[1], a.shape)   # stride 0: one A for every product
    assert_gemm(_C.gemm(a_shared, b, trans_a=trans_a, trans_b=trans_b), a_shared, b, trans_a, trans_b)


def test_batched_alpha_beta_and_views(rng, isa, threads):
    batch, M, N, K = 4, 30, 45, 60
    a, b = operands(rng, M, N, K, batch=batch)
    c0 = rng.standard_normal((batch, M, N)).astype(np.float32)
    out = c0.copy()
    _C.gemm(a, b, alpha=0.5, beta=-1.5, out=out)
    assert_gemm(out, a, b, alpha=0.5, beta=-1.5, c0=c0)
    big = rng.standard_normal((batch, K, 2 * N)).astype(np.float32)
    b_view = big[:, :, ::2]  # needs a copy
    assert_gemm(_C.gemm(a, b_view), a, b_view)
    a_t = np.swapaxes(rng.standard_normal((batch, K, M)).astype(np.float32), 1, 2)  # column-major
    assert_gemm(_C.gemm(a_t, b), a_t, b)


# ---- drawn shapes --------------------------------------------------------------------

dims = st.one_of(st.integers(0, 20), st.integers(21, 300))


@settings(max_examples=40, deadline=None)
@given(M=dims, N=dims, K=dims, trans_a=st.booleans(), trans_b=st.booleans(),
       beta=st.sampled_from([0.0, 1.0, -0.75]), seed=st.integers(0, 2**32 - 1),
       isa=st.sampled_from(ISAS), two_threads=st.booleans())
def test_drawn_products(M, N, K, trans_a, trans_b, beta, seed, isa, two_threads):
    rng = np.random.default_rng(seed)
    a, b = operands(rng, M, N, K, trans_a, trans_b)
    c0 = rng.standard_normal((M, N)).astype(np.float32)
    out = c0.copy()
    with kernel_settings(isa, 2 if two_threads else 1):
        _C.gemm(a, b, trans_a=trans_a, trans_b=trans_b, alpha=1.25, beta=beta, out=out)
    assert_gemm(out, a, b, trans_a, trans_b, 1.25, beta, c0)


# ---- bad arguments -----------------------------------------------------------------

def test_bad_arguments_raise():
    a = np.ones((3, 4), np.float32)
    b = np.ones((4, 5), np.float32)
    with pytest.raises(TypeError, match="a must be float32"):
        _C.gemm(a.astype(np.float64), b)
    with pytest.raises(TypeError, match="b must be a numpy array"):
        _C.gemm(a, [[1.0]])
    with pytest.raises(ValueError, match="inner dimensions differ"):
        _C.gemm(a, np.ones((5, 4), np.float32))
    with pytest.raises(ValueError, match="inner dimensions differ"):
        _C.gemm(a, b, trans_a=True)
    with pytest.raises(ValueError, match="out has shape"):
        _C.gemm(a, b, out=np.empty((3, 4), np.float32))
    with pytest.raises(TypeError, match="out must be float32"):
        _C.gemm(a, b, out=np.empty((3, 5), np.float64))
    with pytest.raises(ValueError, match="out must be C-contiguous"):
        _C.gemm(a, b, out=np.empty((5, 3), np.float32).T)
    with pytest.raises(ValueError, match="2-D"):
        _C.gemm(np.ones(4, np.float32), b)
    with pytest.raises(ValueError, match="2-D"):
        _C.gemm(a, np.ones((2, 4, 5), np.float32))
    with pytest.raises(ValueError, match="batch sizes differ"):
        _C.gemm(np.ones((2, 3, 4), np.float32), np.ones((3, 4, 5), np.float32))
    with pytest.raises(ValueError, match="beta != 0 needs out="):
        _C.gemm(a, b, beta=1.0)


# ---- the peak probe ---------------------------------------------------------------

def test_fma_peak_is_measured():
    one = _C.fma_peak_gflops(1, 0.02)
    assert 0.1 < one < 1e5
    with pytest.raises(ValueError, match="threads"):
        _C.fma_peak_gflops(0)
