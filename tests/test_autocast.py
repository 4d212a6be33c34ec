"""bfloat16: rounding, gemm_bf16 and the bf16 convolution GEMMs against float64 references
computed on the bf16-rounded operands, on every instruction-set path this CPU has, and
pydl.autocast on layers and in training.

The references round with NumPy's own bit arithmetic (round to nearest, ties to even);
products of bf16 values are exact, so the kernels may differ from them only by float32
accumulation: |C - C_ref| <= c * K * eps32 * (|A| @ |B|) elementwise.
"""
import threading

import numpy as np
import pytest

import pydl
import pydl.nn as nn
import pydl.nn.functional as F
from pydl import _C
from pydl.ops.conv import _reference_backward, _reference_forward

EPS32 = np.finfo(np.float32).eps
BF16_KERNEL = {"avx512": "avx512_bf16" if _C.cpu_features()["avx512_bf16"] else "avx2",
               "avx2": "avx2", "portable": "portable"}


def bf16(x):
    """x rounded to bfloat16 (as float32): add half an ulp of the kept bits, ties to even."""
    bits = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
    out = rounded.view(np.float32)
    return np.where(np.isnan(x), np.float32(np.nan), out)


def assert_close(got, want, scale, K):
    bound = 4 * (K + 2) * EPS32 * scale + 1e-30
    assert got.dtype == np.float32 and got.shape == want.shape
    err = np.abs(got.astype(np.float64) - want)
    worst = err.argmax() if err.size else 0
    assert np.all(err <= bound), f"max error {err.max():.3g}, bound there {bound.flat[worst]:.3g}"


def test_each_path_runs_its_own_kernel(isa):
    assert _C.bf16_kernel() == BF16_KERNEL[isa]


def test_bf16_peak_needs_the_avx512_path(isa):
    if _C.bf16_kernel() == "avx512_bf16":
        assert _C.bf16_peak_gflops(1, 0.01) > 0
    else:
        with pytest.raises(ValueError, match="no AVX512_BF16"):
            _C.bf16_peak_gflops(1, 0.01)


def test_round_bf16_is_round_to_nearest_even(rng):
    x = (rng.standard_normal(10000) * 10.0 ** rng.integers(-30, 30, 10000)).astype(np.float32)
    ties = (np.arange(1, 9, dtype=np.uint32) << 16 | 0x8000).view(np.float32)  # exactly halfway
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.finfo(np.float32).max, 1e-40, np.nan],
                       np.float32)
    x = np.concatenate([x, ties, -ties, special])
    got = _C.round_bf16(x)
    np.testing.assert_array_equal(got, bf16(x))
    assert np.all(got[~np.isnan(x)].view(np.uint32) & 0xFFFF == 0) and np.isnan(got[-1])
    np.testing.assert_array_equal(got[10000:10008].view(np.uint32) >> 16,
                                  [2, 2, 4, 4, 6, 6, 8, 8])  # k + 1/2 goes to the even one
    torch = pytest.importorskip("torch")
    finite = x[np.isfinite(x)]
    np.testing.assert_array_equal(_C.round_bf16(finite),
                                  torch.from_numpy(finite).bfloat16().float().numpy())


SHAPES = [(1, 1, 1), (7, 33, 13), (6, 64, 2), (13, 17, 301), (64, 100, 1029), (130, 200, 9),
          (250, 65, 530)]


@pytest.mark.parametrize("M,N,K", SHAPES)
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True),
                                             (True, True)])
def test_gemm_bf16_matches_the_rounded_float64_product(rng, isa, threads, M, N, K, trans_a,
                                                       trans_b):
    a = rng.standard_normal((K, M) if trans_a else (M, K)).astype(np.float32)
    b = rng.standard_normal((N, K) if trans_b else (K, N)).astype(np.float32)
    got = _C.gemm_bf16(a, b, trans_a=trans_a, trans_b=trans_b)
    A = bf16(a).astype(np.float64)
    B = bf16(b).astype(np.float64)
    A, B = (A.T if trans_a else A), (B.T if trans_b else B)
    assert_close(got, A @ B, np.abs(A) @ np.abs(B), K)


def test_gemm_bf16_accumulates_batches_and_rejects_other_betas(rng, isa):
    a = rng.standard_normal((3, 20, 30)).astype(np.float32)
    b = rng.standard_normal((3, 30, 40)).astype(np.float32)
    out = rng.standard_normal((3, 20, 40)).astype(np.float32)
    want = out.astype(np.float64) + bf16(a).astype(np.float64) @ bf16(b).astype(np.float64)
    _C.gemm_bf16(a, b, beta=1.0, out=out)
    assert_close(out, want, np.abs(want) + 1, 30)
    with pytest.raises(ValueError, match="beta 0 or 1"):
        _C.gemm_bf16(a, b, beta=0.5, out=out)


@pytest.mark.parametrize("N,C,H,W,C_out,k,stride,padding,dilation", [
    (4, 1, 12, 12, 8, 3, 1, 0, 1),
    (3, 32, 11, 11, 64, 3, 1, 1, 1),   # where float32 would take the Winograd path
    (2, 3, 9, 11, 5, 3, 2, 1, 2),
])
def test_conv2d_bf16_matches_the_rounded_float64_convolution(rng, isa, threads, N, C, H, W,
                                                             C_out, k, stride, padding,
                                                             dilation):
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = rng.standard_normal((C_out, C, k, k)).astype(np.float32)
    bias = rng.standard_normal(C_out).astype(np.float32)
    geometry = dict(stride=(stride,) * 2, padding=(padding,) * 2, dilation=(dilation,) * 2)
    y = _C.conv2d_forward(x, w, bias, **geometry, groups=1, bf16=True)
    X, Wr = bf16(x).astype(np.float64), bf16(w).astype(np.float64)
    args = (geometry["stride"], geometry["padding"], geometry["dilation"], 1)
    K = C * k * k
    assert_close(y, _reference_forward(X, Wr, bias.astype(np.float64), *args),
                 _reference_forward(np.abs(X), np.abs(Wr), np.abs(bias), *args), K)
    g = rng.standard_normal(y.shape).astype(np.float32)
    gx, gw, gb = _C.conv2d_backward(g, x, w, **geometry, groups=1, bf16=True)
    G = bf16(g).astype(np.float64)
    want_x, want_w, _ = _reference_backward(G, X, Wr, *args)
    scale_x, scale_w, _ = _reference_backward(np.abs(G), np.abs(X), np.abs(Wr), *args)
    assert_close(gx, want_x, scale_x, C_out * k * k)
    assert_close(gw, want_w, scale_w, N * y.shape[2] * y.shape[3])
    np.testing.assert_allclose(gb, g.astype(np.float64).sum((0, 2, 3)), rtol=1e-5, atol=1e-4)


# ---- autocast ----------------------------------------------------------------------------


def test_autocast_runs_linear_forward_and_backward_on_bf16_operands(rng):
    x = pydl.tensor(rng.standard_normal((16, 40)).astype(np.float32), requires_grad=True)
    layer = nn.Linear(40, 24)
    w, b = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    with pydl.autocast("cpu", dtype="bfloat16"):
        y = layer(x)
    assert y.dtype == np.float32 and layer.weight.dtype == np.float32
    X, Wr = bf16(x.detach().numpy()).astype(np.float64), bf16(w).astype(np.float64)
    assert_close(y.detach().numpy(), X @ Wr.T + b, np.abs(X) @ np.abs(Wr.T) + np.abs(b), 40)
    with pydl.no_grad():
        float_y = layer(x).numpy()
    assert np.abs(y.detach().numpy() - float_y).max() > 1e-4  # not the float32 product
    g = rng.standard_normal(y.shape).astype(np.float32)
    y.backward(pydl.tensor(g))  # outside the block: the recorded products stay bf16
    G = bf16(g).astype(np.float64)
    assert_close(x.grad.numpy(), G @ Wr, np.abs(G) @ np.abs(Wr), 24)
    assert_close(layer.weight.grad.numpy(), G.T @ X, np.abs(G.T) @ np.abs(X), 16)
    assert layer.weight.grad.dtype == np.float32


def test_autocast_covers_matmul_and_conv2d(rng):
    a = rng.standard_normal((2, 5, 30)).astype(np.float32)
    b = rng.standard_normal((30, 7)).astype(np.float32)
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    with pydl.autocast("cpu"):
        product = (pydl.tensor(a) @ pydl.tensor(b)).numpy()
        conv = F.conv2d(pydl.tensor(x), pydl.tensor(w), padding=1).numpy()
    A, B = bf16(a).astype(np.float64), bf16(b).astype(np.float64)
    assert_close(product, A @ B, np.abs(A) @ np.abs(B), 30)
    X, Wr = bf16(x).astype(np.float64), bf16(w).astype(np.float64)
    args = ((1, 1), (1, 1), (1, 1), 1)
    assert_close(conv, _reference_forward(X, Wr, None, *args),
                 _reference_forward(np.abs(X), np.abs(Wr), None, *args), 27)


def test_autocast_scope_nesting_decorator_and_threads():
    assert not pydl.amp.is_autocast_enabled()
    with pydl.autocast("cpu", dtype="bfloat16"):
        assert pydl.amp.is_autocast_enabled()
        with pydl.autocast("cpu", enabled=False):
            assert not pydl.amp.is_autocast_enabled()
        assert pydl.amp.is_autocast_enabled()
        seen = []
        thread = threading.Thread(target=lambda: seen.append(pydl.amp.is_autocast_enabled()))
        thread.start()
        thread.join()
        assert seen == [False]  # per thread, as in torch
    assert not pydl.amp.is_autocast_enabled()

    @pydl.autocast("cpu")
    def inside():
        return pydl.amp.is_autocast_enabled()
    assert inside() and not pydl.amp.is_autocast_enabled()
    with pytest.raises(ValueError, match="only device_type 'cpu'"):
        pydl.autocast("cuda")
    with pytest.raises(ValueError, match="dtype must be 'bfloat16'"):
        pydl.autocast("cpu", dtype="float16")


def digits_split():
    datasets = pytest.importorskip("sklearn.datasets")
    data = datasets.load_digits()
    x = (data.images / 16).astype(np.float32)
    y = data.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    return (x[:1400], y[:1400]), (x[1400:], y[1400:])


def train_and_score(model, x_train, y_train, x_test, y_test, epochs, bf16_training):
    opt = pydl.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        for i in range(0, len(x_train), 100):
            with pydl.autocast("cpu", enabled=bf16_training):
                loss = F.cross_entropy(model(pydl.tensor(x_train[i:i + 100])),
                                       pydl.tensor(y_train[i:i + 100]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    with pydl.no_grad():
        return np.mean(np.argmax(model(pydl.tensor(x_test)).numpy(), 1) == y_test)


@pytest.mark.parametrize("network", ["mlp", "cnn"])
def test_training_under_autocast_reaches_float32_accuracy(network):
    (x_train, y_train), (x_test, y_test) = digits_split()

    def make():
        pydl.manual_seed(0)
        if network == "mlp":
            return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
        return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(16, 32, 3), nn.ReLU(), nn.Flatten(), nn.Linear(128, 10))
    if network == "cnn":
        x_train, x_test = x_train[:, None], x_test[:, None]
    epochs = 15 if network == "mlp" else 6
    float_accuracy = train_and_score(make(), x_train, y_train, x_test, y_test, epochs, False)
    bf16_accuracy = train_and_score(make(), x_train, y_train, x_test, y_test, epochs, True)
    assert float_accuracy > 0.9
    assert bf16_accuracy >= float_accuracy - 0.01, (float_accuracy, bf16_accuracy)
