"""int8: the kernels of csrc/quant.cpp against exact integer references (NumPy int64)
on every instruction-set path this CPU has, and pydl.quantization.quantize on models.

The integer products must be exact: random operands over the full ranges (s8 weights,
u8 activations) plus the extremes 0 / 255 and -128 / 127, where a pair sum of u8 x s8
products no longer fits int16 (the saturation vpmaddubsw would have). The float
kernels (int8_linear, int8_conv2d) are checked against the same integer sums scaled
in float64: only the float32 epilogue's rounding may differ.
"""
import importlib.util
import pathlib

import numpy as np
import pytest

import pydl
import pydl.nn as nn
from pydl import _C, quantization
from pydl.ops.conv import _reference_forward

EPS32 = np.finfo(np.float32).eps
INT8_KERNEL = {"avx512": "avx512_vnni" if _C.cpu_features()["avx512_vnni"] else "avx2",
               "avx2": "avx2", "portable": "portable"}


def operands(rng, M, N, K, extremes=True):
    """w (M, K) int8 and x (N, K) uint8, random, with some rows and columns at the extremes."""
    w = rng.integers(-128, 128, (M, K)).astype(np.int8)
    x = rng.integers(0, 256, (N, K)).astype(np.uint8)
    if extremes and M > 2 and N > 2:
        w[0], w[1], w[2, ::2] = 127, -128, -127
        x[0], x[1], x[2, 1::2] = 255, 0, 255
    return w, x


def int_gemm(w, x):
    return w.astype(np.int64) @ x.astype(np.int64).T


def test_each_path_runs_its_own_kernel(isa):
    assert _C.int8_kernel() == INT8_KERNEL[isa]


@pytest.mark.parametrize("M,N,K", [(3, 4, 0), (1, 1, 1), (1, 17, 3), (7, 33, 13), (6, 64, 4),
                                   (13, 17, 300), (64, 100, 1029), (130, 200, 9), (250, 65, 530)])
def test_int8_gemm_is_exact(rng, isa, threads, M, N, K):
    w, x = operands(rng, M, N, K)
    rows, colsum = _C.int8_pack_weights(w)
    np.testing.assert_array_equal(colsum, w.astype(np.int64).sum(1))
    got = _C.int8_gemm(rows, x)
    assert got.dtype == np.int32 and got.shape == (M, N)
    np.testing.assert_array_equal(got, int_gemm(w, x))


@pytest.mark.parametrize("w_value", [127, -128, -127])
def test_int8_gemm_does_not_saturate_at_the_extremes(isa, w_value):
    # Every product 255 * w_value: each pair sums to +-64770 or -65280, beyond int16,
    # and K = 4099 makes the int32 sums large (and K not a multiple of 4).
    M, N, K = 9, 40, 4099
    w = np.full((M, K), w_value, np.int8)
    x = np.full((N, K), 255, np.uint8)
    got = _C.int8_gemm(_C.int8_pack_weights(w)[0], x)
    np.testing.assert_array_equal(got, np.full((M, N), 255 * w_value * K))


def test_vnni_peak_needs_the_avx512_path(isa):
    if _C.int8_kernel() == "avx512_vnni":
        assert _C.vnni_peak_gops(1, 0.01) > 0
    else:
        with pytest.raises(ValueError, match="no AVX512_VNNI"):
            _C.vnni_peak_gops(1, 0.01)


def test_int8_gemm_rejects_bad_arguments(rng):
    w, x = operands(rng, 4, 5, 8)
    rows, _ = _C.int8_pack_weights(w)
    np.testing.assert_array_equal(rows, w)  # a view of the weights, rows padded to 4 bytes
    with pytest.raises(ValueError, match="w_rows .* has K = 8 but the input has K = 7"):
        _C.int8_gemm(rows, rng.integers(0, 255, (5, 7)).astype(np.uint8))
    with pytest.raises(ValueError, match="must come from int8_pack_weights"):
        _C.int8_gemm(w[:, :7].copy(), x[:, :7].copy())  # rows 7 bytes apart, not padded
    with pytest.raises(TypeError, match="x must be uint8"):
        _C.int8_gemm(rows, x.astype(np.int8))
    with pytest.raises(TypeError, match="qw must be int8"):
        _C.int8_pack_weights(w.astype(np.int16))
    with pytest.raises(ValueError, match="above 65536"):
        _C.int8_pack_weights(np.zeros((1, 65537), np.int8))


# ---- the float kernels -------------------------------------------------------------


def quantize_activations(x, a_scale, a_zero):
    """The kernels' rule: clamp(round_half_even(x * (1 / a_scale)) + a_zero, 0, 255)."""
    inv = np.float32(1) / np.float32(a_scale)
    return np.clip(np.rint(x.astype(np.float32) * inv) + a_zero, 0, 255).astype(np.int64)


def assert_epilogue(got, acc, w_scale, bias, a_scale, channel_axis):
    """got == a_scale * w_scale * acc + bias, acc the exact integer sums, up to float32
    rounding of the epilogue."""
    shape = [1] * acc.ndim
    shape[channel_axis] = -1
    scale = np.float64(np.float32(a_scale)) * w_scale.astype(np.float64).reshape(shape)
    terms = scale * acc
    want = terms + (0 if bias is None else bias.astype(np.float64).reshape(shape))
    bound = 4 * EPS32 * (np.abs(terms) + np.abs(want)) + 1e-30
    assert got.dtype == np.float32 and got.shape == want.shape
    err = np.abs(got - want)
    assert np.all(err <= bound), f"max error {err.max():.3g}"


def int8_weights(rng, out, fan_in):
    w = rng.standard_normal((out, fan_in)).astype(np.float32)
    qw, w_scale = quantization.quantize_weight(w)
    rows, colsum = _C.int8_pack_weights(qw)
    return qw, w_scale, rows, colsum


@pytest.mark.parametrize("M,N,K,a_zero", [(1, 1, 1, 0), (5, 10, 7, 128), (256, 64, 784, 0),
                                          (33, 130, 300, 17), (40, 17, 64, 255)])
def test_int8_linear_matches_the_integer_reference(rng, isa, threads, M, N, K, a_zero):
    x = (rng.standard_normal((M, K)) * 2).astype(np.float32)
    x.flat[:3] = [np.nan, 1e30, -1e30][:x.size]  # NaN quantizes to 0, the others clamp
    qw, w_scale, rows, colsum = int8_weights(rng, N, K)
    bias = rng.standard_normal(N).astype(np.float32)
    a_scale = 0.03
    got = _C.int8_linear(x, rows, w_scale, colsum, bias, a_scale=a_scale, a_zero=a_zero)
    qx = quantize_activations(np.nan_to_num(x, nan=-np.inf), a_scale, a_zero)
    acc = (qx - a_zero) @ qw.astype(np.int64).T
    assert_epilogue(got, acc, w_scale, bias, a_scale, channel_axis=1)


@pytest.mark.parametrize("N,C,H,W,C_out,k,stride,padding,dilation", [
    (2, 1, 28, 28, 32, 3, 1, 0, 1),    # the MNIST CNN's first layer
    (3, 32, 13, 13, 64, 3, 1, 0, 1),   # its second
    (2, 3, 9, 11, 5, 3, 2, 1, 1),      # stride and padding (padded taps are the zero point)
    (1, 4, 10, 10, 17, 3, 1, 2, 2),    # dilation
    (5, 6, 4, 4, 8, 1, 1, 0, 1),       # 1x1
])
def test_int8_conv2d_matches_the_integer_reference(rng, isa, threads, N, C, H, W, C_out, k,
                                                   stride, padding, dilation):
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    qw, w_scale, rows, colsum = int8_weights(rng, C_out, C * k * k)
    bias = rng.standard_normal(C_out).astype(np.float32)
    a_scale, a_zero = 0.02, 100
    got = _C.int8_conv2d(x, rows, w_scale, colsum, bias, kernel_size=(k, k), stride=(stride,) * 2,
                         padding=(padding,) * 2, dilation=(dilation,) * 2, a_scale=a_scale,
                         a_zero=a_zero)
    # (qx - a_zero) zero-padded is qx padded with the zero point; integer sums are exact
    # in float64 (far below 2^53).
    centered = (quantize_activations(x, a_scale, a_zero) - a_zero).astype(np.float64)
    acc = _reference_forward(centered, qw.reshape(C_out, C, k, k).astype(np.float64), None,
                             (stride,) * 2, (padding,) * 2, (dilation,) * 2, 1)
    assert_epilogue(got, acc, w_scale, bias, a_scale, channel_axis=1)


def test_int8_float_kernels_reject_bad_arguments(rng):
    _, w_scale, rows, colsum = int8_weights(rng, 4, 8)
    x = rng.standard_normal((3, 8)).astype(np.float32)
    with pytest.raises(ValueError, match="a_zero must be in"):
        _C.int8_linear(x, rows, w_scale, colsum, a_scale=0.1, a_zero=256)
    with pytest.raises(ValueError, match="a_scale must be positive"):
        _C.int8_linear(x, rows, w_scale, colsum, a_scale=0.0, a_zero=0)
    with pytest.raises(ValueError, match="w_scale must have shape"):
        _C.int8_linear(x, rows, w_scale[:3], colsum, a_scale=0.1, a_zero=0)
    with pytest.raises(ValueError, match="has K = 8 but the input has K = 5"):
        _C.int8_linear(np.ascontiguousarray(x[:, :5]), rows, w_scale, colsum, a_scale=0.1, a_zero=0)
    with pytest.raises(ValueError, match="but the input has K = 18"):  # C_in * 3 * 3 != 8
        _C.int8_conv2d(rng.standard_normal((1, 2, 5, 5)).astype(np.float32), rows, w_scale,
                       colsum, kernel_size=(3, 3), a_scale=0.1, a_zero=0)


# ---- quantize() ------------------------------------------------------------------------


def relative_error(got, want):
    return np.abs(got - want).max() / np.abs(want).max()


def test_quantize_replaces_linear_and_conv_and_leaves_the_model_alone():
    pydl.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(8, 8, 3, groups=2), nn.Flatten(), nn.Linear(8 * 2 * 2, 10))
    batches = [pydl.randn(8, 3, 8, 8) for _ in range(3)]
    quantized = quantization.quantize(model, batches)
    kinds = [type(m).__name__ for m in quantized]
    assert kinds == ["QuantizedConv2d", "ReLU", "MaxPool2d", "Conv2d", "Flatten",
                     "QuantizedLinear"]  # grouped convolutions stay float
    assert type(model[0]) is nn.Conv2d and type(model[5]) is nn.Linear
    x = pydl.randn(16, 3, 8, 8)
    with pydl.no_grad():
        want = model(x).numpy()
    got = quantized(x).numpy()
    assert got.dtype == np.float32 and got.shape == want.shape
    assert 0 < relative_error(got, want) < 0.1


def test_quantize_calibrates_the_activation_range():
    pydl.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 4))
    batches = [pydl.tensor(np.array([[-1.0] * 6, [3.0] * 6], np.float32)),
               (pydl.tensor(np.full((1, 6), 2.0, np.float32)), "label")]
    layer = quantization.quantize(model, batches)[0]
    assert layer.int8.a_scale == pytest.approx(4.0 / 255, rel=1e-6)
    assert layer.int8.a_zero == round(1.0 / (4.0 / 255))


def test_quantize_keras_dense_and_conv2d():
    from pydl import keras
    from pydl.keras import layers
    pydl.manual_seed(2)
    model = keras.Sequential([layers.Conv2D(6, 3, padding="same", activation="relu",
                                            input_shape=(8, 8, 2)),
                              layers.Conv2D(4, 2, padding="same"), layers.Flatten(),
                              layers.Dense(5)])
    x = np.random.default_rng(0).standard_normal((10, 8, 8, 2)).astype(np.float32)
    want = model.predict(x, verbose=0)
    quantized = quantization.quantize(model, [x[:5], x[5:]])
    assert 0 < relative_error(quantized.predict(x, verbose=0), want) < 0.1
    np.testing.assert_array_equal(model.predict(x, verbose=0), want)  # the original is float


def test_quantize_rejects_bad_input():
    with pytest.raises(ValueError, match="no batches"):
        quantization.quantize(nn.Linear(3, 2), [])
    with pytest.raises(TypeError, match="expected a pydl.nn.Module"):
        quantization.quantize(lambda x: x, [np.zeros((1, 3), np.float32)])


def load_example(name):
    path = pathlib.Path(__file__).resolve().parent.parent / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # ~20 s: trains the CNN for one epoch on 3000 images
def test_quantized_mnist_cnn_keeps_its_accuracy():
    # The network of examples/mnist_cnn.py on its data (Fashion-MNIST when Debian's
    # dataset-fashion-mnist is installed, else the digits), briefly trained, then
    # quantized with 256 training images for calibration.
    pytest.importorskip("sklearn")
    from pydl import keras
    from pydl.keras import layers, models
    example = load_example("mnist_cnn")
    ((x_train, y_train), (x_test, y_test)), source = example.load_images("auto")
    x_train = x_train[:3000].reshape(-1, 28, 28, 1).astype(np.float32) / 255
    x_test = x_test[:1000].reshape(-1, 28, 28, 1).astype(np.float32) / 255
    y_train, y_test = y_train[:3000], y_test[:1000]
    pydl.manual_seed(0)
    model = models.Sequential()
    model.add(layers.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model.add(layers.Flatten())
    model.add(layers.Dense(64, activation="relu"))
    model.add(layers.Dense(10, activation="softmax"))
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, keras.utils.to_categorical(y_train, 10), epochs=1, batch_size=64,
              verbose=0)
    quantized = quantization.quantize(model, [x_train[i:i + 64] for i in range(0, 256, 64)])

    def accuracy(m):
        return np.mean(np.argmax(m.predict(x_test, batch_size=250, verbose=0), 1) == y_test)
    float_accuracy, int8_accuracy = accuracy(model), accuracy(quantized)
    assert float_accuracy > 0.6, source
    assert abs(int8_accuracy - float_accuracy) <= 0.01, (source, float_accuracy, int8_accuracy)
