"""The Keras layers added beside Dense/Conv2D/LSTM: each against PyTorch (outputs and
input/weight gradients, weights mapped from Keras's layout) where PyTorch has the
same layer, else against NumPy and Keras's documented shapes and semantics."""
import numpy as np
import pytest

import pydl
from pydl.keras import layers
from pydl.ops.conv import ConvTranspose2d

torch = pytest.importorskip("torch")
TF = torch.nn.functional


def _call(layer, x, **kwargs):
    """layer(x) with x a float32 leaf: (output Tensor, the input Tensor)."""
    xt = pydl.tensor(x, requires_grad=True)
    return layer(xt, **kwargs), xt


def _backprop(out, grad):
    (out * pydl.tensor(grad)).sum().backward()


def _close(actual, expected, tol=2e-5):
    actual = actual.detach().numpy() if isinstance(actual, pydl.Tensor) else actual
    expected = expected.detach().numpy() if isinstance(expected, torch.Tensor) else expected
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol)


def _torch_leaf(array):
    return torch.tensor(np.asarray(array, np.float32), requires_grad=True)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("stride,padding,dilation,groups,output_padding", [
    ((2, 2), (0, 0), (1, 1), 1, (0, 0)), ((2, 3), (1, 0), (1, 2), 2, (1, 2)),
    ((1, 1), (1, 1), (1, 1), 1, (0, 0)), ((3, 1), (2, 0), (2, 1), 1, (2, 0))])
def test_conv_transpose2d_op_matches_torch(rng, dtype, stride, padding, dilation, groups,
                                           output_padding):
    x = rng.standard_normal((2, 4, 5, 6))
    w = rng.standard_normal((4, 3, 3, 2))
    b = rng.standard_normal(3 * groups)
    ours = [pydl.tensor(a, dtype=dtype, requires_grad=True) for a in (x, w, b)]
    theirs = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    out = ConvTranspose2d.apply(*ours, stride=stride, padding=padding, dilation=dilation,
                                groups=groups, output_padding=output_padding)
    expected = TF.conv_transpose2d(*theirs, stride=stride, padding=padding, groups=groups,
                                   output_padding=output_padding, dilation=dilation)
    grad = rng.standard_normal(expected.shape)
    (out * pydl.tensor(grad, dtype=dtype)).sum().backward()
    (expected * torch.tensor(grad)).sum().backward()
    tol = 1e-4 if dtype == "float32" else 1e-10
    for actual, wanted in zip([out, *[t.grad for t in ours]],
                              [expected, *[t.grad for t in theirs]]):
        _close(actual, wanted, tol)


@pytest.mark.parametrize("padding,strides,dilation,groups", [
    ("valid", 1, 1, 1), ("same", 1, 2, 1), ("same", 2, 1, 2), ("causal", 1, 2, 1),
    ("valid", 3, 1, 1)])
def test_conv1d_matches_torch(rng, padding, strides, dilation, groups):
    layer = layers.Conv1D(6, 3, strides=strides, padding=padding, dilation_rate=dilation,
                          groups=groups, activation="relu")
    x = rng.standard_normal((2, 11, 4)).astype(np.float32)
    out, xt = _call(layer, x)
    kernel, bias = [_torch_leaf(w) for w in layer.get_weights()]
    xx = _torch_leaf(x).detach().requires_grad_()
    inputs = xx.permute(0, 2, 1)  # (N, C, L)
    total = (3 - 1) * dilation
    if padding == "causal":
        inputs = TF.pad(inputs, (total, 0))
    elif padding == "same":
        steps = -(-11 // strides)
        extra = max((steps - 1) * strides + total + 1 - 11, 0)
        inputs = TF.pad(inputs, (extra // 2, extra - extra // 2))
    expected = TF.relu(TF.conv1d(inputs, kernel.permute(2, 1, 0), bias, stride=strides,
                                 dilation=dilation, groups=groups)).permute(0, 2, 1)
    assert out.shape == tuple(expected.shape)
    assert layer.compute_output_shape((None, 11, 4)) == (None, *expected.shape[1:])
    grad = rng.standard_normal(expected.shape).astype(np.float32)
    _backprop(out, grad)
    (expected * torch.tensor(grad)).sum().backward()
    _close(out, expected)
    _close(xt.grad.numpy(), xx.grad)
    _close(layer.kernel.grad.numpy(), kernel.grad)
    _close(layer.bias.grad.numpy(), bias.grad)


def _deconv_length(size, kernel, stride, padding, output_padding, dilation=1):
    """Keras's documented output length of a transposed convolution."""
    kernel = kernel + (kernel - 1) * (dilation - 1)
    if output_padding is None:
        return size * stride + max(kernel - stride, 0) if padding == "valid" else size * stride
    pad = kernel // 2 if padding == "same" else 0
    return (size - 1) * stride + kernel - 2 * pad + output_padding


@pytest.mark.parametrize("kernel,strides,padding,output_padding,dilation", [
    (3, 2, "same", None, 1), (3, 2, "valid", None, 1), (2, 3, "valid", None, 1),
    (4, 2, "same", None, 1), (1, 3, "same", None, 1), (3, 2, "same", 1, 1),
    (3, 1, "valid", None, 2), (5, 3, "valid", 2, 1)])
def test_conv2d_transpose_matches_torch_on_keras_output_sizes(rng, kernel, strides, padding,
                                                              output_padding, dilation):
    layer = layers.Conv2DTranspose(5, kernel, strides=strides, padding=padding,
                                   output_padding=output_padding, dilation_rate=dilation)
    x = rng.standard_normal((2, 4, 6, 3)).astype(np.float32)
    out, xt = _call(layer, x)
    sizes = [_deconv_length(n, kernel, strides, padding, output_padding, dilation)
             for n in (4, 6)]
    assert out.shape == (2, *sizes, 5) == (2, *layer.compute_output_shape((None, 4, 6, 3))[1:])
    # The full transposed convolution in PyTorch, cropped the way TensorFlow pads.
    kernel_t, bias = [_torch_leaf(w) for w in layer.get_weights()]
    xx = _torch_leaf(x)
    # A contiguous input: torch 2.13's CPU conv_transpose2d with output_padding corrupts
    # its heap (and returns a wrong weight gradient) for the permuted view.
    full = TF.conv_transpose2d(xx.permute(0, 3, 1, 2).contiguous(),
                               kernel_t.permute(3, 2, 0, 1), bias, stride=strides,
                               dilation=dilation,
                               output_padding=max(strides - (kernel - 1) * dilation - 1, 0)
                               if output_padding is None else 0)
    effective = (kernel - 1) * dilation + 1
    if output_padding is None:
        before = max(effective - strides, 0) // 2 if padding == "same" else 0
    else:
        before = effective // 2 if padding == "same" else 0
    full = TF.pad(full, (0, max(before + sizes[1] - full.shape[3], 0),
                         0, max(before + sizes[0] - full.shape[2], 0)))
    expected = full[:, :, before:before + sizes[0], before:before + sizes[1]].permute(0, 2, 3, 1)
    grad = rng.standard_normal(expected.shape).astype(np.float32)
    _backprop(out, grad)
    (expected * torch.tensor(grad)).sum().backward()
    _close(out, expected, 1e-4)
    _close(xt.grad.numpy(), xx.grad, 1e-4)
    _close(layer.kernel.grad.numpy(), kernel_t.grad, 1e-4)


def test_conv2d_transpose_undoes_the_shape_of_a_strided_conv2d(rng):
    """Keras's documented use: Conv2D(strides=2, 'same') then Conv2DTranspose(strides=2,
    'same') gives back the input's spatial size."""
    x = rng.standard_normal((1, 14, 14, 3)).astype(np.float32)
    down = layers.Conv2D(8, 3, strides=2, padding="same")(x)
    assert layers.Conv2DTranspose(3, 3, strides=2, padding="same")(down).shape == x.shape


@pytest.mark.parametrize("cls,torch_pool", [(layers.MaxPooling1D, TF.max_pool1d),
                                            (layers.AveragePooling1D, TF.avg_pool1d)])
@pytest.mark.parametrize("pool_size,strides", [(2, None), (3, 1), (3, 2)])
def test_pooling1d_matches_torch(rng, cls, torch_pool, pool_size, strides):
    layer = cls(pool_size, strides=strides)
    x = rng.standard_normal((2, 9, 3)).astype(np.float32)
    out, xt = _call(layer, x)
    xx = _torch_leaf(x)
    expected = torch_pool(xx.permute(0, 2, 1), pool_size, strides or pool_size).permute(0, 2, 1)
    assert layer.compute_output_shape((None, 9, 3)) == (None, *expected.shape[1:])
    grad = rng.standard_normal(expected.shape).astype(np.float32)
    _backprop(out, grad)
    (expected * torch.tensor(grad)).sum().backward()
    _close(out, expected)
    _close(xt.grad.numpy(), xx.grad)


def test_same_pooling1d_keeps_ceil_steps_and_averages_real_steps_only(rng):
    x = rng.standard_normal((2, 7, 3)).astype(np.float32)
    out = layers.AveragePooling1D(3, strides=2, padding="same")(x).numpy()
    # Keras/TensorFlow: 4 windows over steps [0,1], [1,2,3], [3,4,5], [5,6] (padding 1
    # after the end only when needed: total pad 2, one before and one after)
    windows = [(0, 2), (1, 4), (3, 6), (5, 7)]
    expected = np.stack([x[:, a:b].mean(axis=1) for a, b in windows], axis=1)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
    peak = layers.MaxPooling1D(3, strides=2, padding="same")(x).numpy()
    np.testing.assert_allclose(peak, np.stack([x[:, a:b].max(axis=1) for a, b in windows], 1))


@pytest.mark.parametrize("cls,reduce", [
    (layers.GlobalAveragePooling1D, np.mean), (layers.GlobalMaxPooling1D, np.max),
    (layers.GlobalAveragePooling2D, np.mean), (layers.GlobalMaxPooling2D, np.max)])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling_reduces_the_spatial_axes(rng, cls, reduce, data_format, keepdims):
    rank = 1 if cls.__name__.endswith("1D") else 2
    shape = (3, 5, 4, 2)[:rank + 2] if data_format == "channels_last" else (3, 2, 5, 4)[:rank + 2]
    axes = tuple(range(1, rank + 1)) if data_format == "channels_last" else \
        tuple(range(2, rank + 2))
    x = rng.standard_normal(shape).astype(np.float32)
    layer = cls(data_format=data_format, keepdims=keepdims)
    out, xt = _call(layer, x)
    expected = reduce(x, axis=axes, keepdims=keepdims)
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-6, atol=1e-6)
    assert layer.compute_output_shape((None, *shape[1:])) == (None, *expected.shape[1:])
    out.sum().backward()
    if reduce is np.mean:
        np.testing.assert_allclose(xt.grad.numpy(), np.full(shape, 1 / np.prod(
            [shape[a] for a in axes])), rtol=1e-6)
    else:  # the gradient goes to each channel's maximum
        np.testing.assert_array_equal(xt.grad.numpy(), x == x.max(axis=axes, keepdims=True))


@pytest.mark.parametrize("size,data_format", [((2, 2), "channels_last"),
                                              ((2, 3), "channels_first"), (3, "channels_last")])
def test_upsampling2d_is_nearest_neighbour(rng, size, data_format):
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    layer = layers.UpSampling2D(size, data_format=data_format)
    out, xt = _call(layer, x)
    rows, cols = (size, size) if isinstance(size, int) else size
    first = 1 if data_format == "channels_last" else 2
    expected = x.repeat(rows, axis=first).repeat(cols, axis=first + 1)
    np.testing.assert_array_equal(out.detach().numpy(), expected)
    if data_format == "channels_first":
        torch_out = torch.nn.Upsample(scale_factor=(rows, cols), mode="nearest")(
            torch.tensor(x))
        np.testing.assert_array_equal(out.detach().numpy(), torch_out.numpy())
    assert layer.compute_output_shape((None, *x.shape[1:])) == (None, *expected.shape[1:])
    grad = rng.standard_normal(expected.shape).astype(np.float32)
    _backprop(out, grad)
    blocks = grad.reshape(*grad.shape[:first], x.shape[first], rows, x.shape[first + 1], cols,
                          *grad.shape[first + 2:])
    _close(xt.grad.numpy(), blocks.sum(axis=(first + 1, first + 3)))


@pytest.mark.parametrize("padding,expected", [
    (1, ((1, 1), (1, 1))), ((2, 0), ((2, 2), (0, 0))), (((1, 2), (3, 0)), ((1, 2), (3, 0)))])
def test_zero_padding2d(rng, padding, expected):
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    out, xt = _call(layers.ZeroPadding2D(padding), x)
    np.testing.assert_array_equal(out.detach().numpy(),
                                  np.pad(x, ((0, 0), *expected, (0, 0))))
    out.sum().backward()
    np.testing.assert_array_equal(xt.grad.numpy(), np.ones_like(x))
    first = layers.ZeroPadding2D(padding, data_format="channels_first")(x).numpy()
    np.testing.assert_array_equal(first, np.pad(x, ((0, 0), (0, 0), *expected)))


def test_layer_normalization_matches_torch(rng):
    x = rng.standard_normal((4, 6, 8)).astype(np.float32) * 3 + 1
    layer = layers.LayerNormalization()
    out, xt = _call(layer, x)
    gamma = rng.standard_normal(8).astype(np.float32)
    layer.set_weights([gamma, rng.standard_normal(8).astype(np.float32)])
    out, xt = _call(layer, x)
    g, b = [_torch_leaf(w) for w in layer.get_weights()]
    xx = _torch_leaf(x)
    expected = TF.layer_norm(xx, (8,), g, b, eps=1e-3)
    grad = rng.standard_normal(x.shape).astype(np.float32)
    _backprop(out, grad)
    (expected * torch.tensor(grad)).sum().backward()
    _close(out, expected)
    _close(xt.grad.numpy(), xx.grad, 1e-4)
    _close(layer.gamma.grad.numpy(), g.grad, 1e-4)
    _close(layer.beta.grad.numpy(), b.grad, 1e-4)


def test_layer_normalization_over_other_axes(rng):
    x = rng.standard_normal((3, 5, 4)).astype(np.float32)
    out = layers.LayerNormalization(axis=1, epsilon=1e-5)(x).detach().numpy()
    expected = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    both = layers.LayerNormalization(axis=[1, 2], center=False, scale=False)
    assert both(x).shape == x.shape and not both.weights
    flat = x.reshape(3, -1)
    np.testing.assert_allclose(both(x).numpy().reshape(3, -1),
                               (flat - flat.mean(1, keepdims=True)) /
                               np.sqrt(flat.var(1, keepdims=True) + 1e-3), rtol=1e-4,
                               atol=1e-5)


def _torch_mha(layer, embed, heads):
    """A torch.nn.MultiheadAttention holding the Keras layer's weights."""
    weights = [torch.tensor(w) for w in layer.get_weights()]
    wq, bq, wk, bk, wv, bv, wo, bo = weights
    mha = torch.nn.MultiheadAttention(embed, heads, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([w.reshape(embed, -1).T for w in (wq, wk, wv)]))
        mha.in_proj_bias.copy_(torch.cat([b.reshape(-1) for b in (bq, bk, bv)]))
        mha.out_proj.weight.copy_(wo.reshape(-1, embed).T)
        mha.out_proj.bias.copy_(bo)
    return mha


@pytest.mark.parametrize("causal", [False, True])
def test_multi_head_attention_matches_torch(rng, causal):
    embed, heads = 8, 2
    layer = layers.MultiHeadAttention(num_heads=heads, key_dim=embed // heads)
    query = rng.standard_normal((3, 5, embed)).astype(np.float32)
    value = rng.standard_normal((3, 5, embed)).astype(np.float32)
    layer(query, value)
    layer.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.5
                       for w in layer.get_weights()])
    q, v = pydl.tensor(query, requires_grad=True), pydl.tensor(value, requires_grad=True)
    out, scores = layer(q, v, use_causal_mask=causal, return_attention_scores=True)
    mha = _torch_mha(layer, embed, heads)
    tq, tv = _torch_leaf(query), _torch_leaf(value)
    mask = torch.triu(torch.ones(5, 5, dtype=torch.bool), 1) if causal else None
    expected, expected_scores = mha(tq, tv, tv, attn_mask=mask, average_attn_weights=False)
    grad = rng.standard_normal(expected.shape).astype(np.float32)
    _backprop(out, grad)
    (expected * torch.tensor(grad)).sum().backward()
    _close(out, expected, 1e-4)
    _close(scores, expected_scores, 1e-5)
    _close(q.grad.numpy(), tq.grad, 1e-4)
    _close(v.grad.numpy(), tv.grad, 1e-4)


def test_multi_head_attention_mask_and_shapes(rng):
    layer = layers.MultiHeadAttention(num_heads=3, key_dim=4, value_dim=5, output_shape=7)
    query = rng.standard_normal((2, 4, 6)).astype(np.float32)
    value = rng.standard_normal((2, 3, 9)).astype(np.float32)
    mask = np.ones((2, 4, 3), bool)
    mask[:, :, 2] = False  # nobody attends to the last key
    out, scores = layer(query, value, attention_mask=mask, return_attention_scores=True)
    assert out.shape == (2, 4, 7) and scores.shape == (2, 3, 4, 3)
    assert [w.shape for w in layer.get_weights()] == [
        (6, 3, 4), (3, 4), (9, 3, 4), (3, 4), (9, 3, 5), (3, 5), (3, 5, 7), (7,)]
    np.testing.assert_allclose(scores.detach().numpy()[..., 2], 0, atol=1e-7)
    np.testing.assert_allclose(scores.detach().numpy().sum(-1), 1, rtol=1e-5)
    with pytest.raises(TypeError, match="mha\\(query, value"):
        layer(query)


def _torch_lstm_from_bidirectional(layer, features, units):
    lstm = torch.nn.LSTM(features, units, batch_first=True, bidirectional=True)
    forward = [torch.tensor(w) for w in layer.forward_layer.get_weights()]
    backward = [torch.tensor(w) for w in layer.backward_layer.get_weights()]
    with torch.no_grad():
        for suffix, (kernel, recurrent, bias) in (("", forward), ("_reverse", backward)):
            getattr(lstm, "weight_ih_l0" + suffix).copy_(kernel.T)
            getattr(lstm, "weight_hh_l0" + suffix).copy_(recurrent.T)
            getattr(lstm, "bias_ih_l0" + suffix).copy_(bias)
            getattr(lstm, "bias_hh_l0" + suffix).zero_()
    return lstm


@pytest.mark.parametrize("return_sequences", [True, False])
def test_bidirectional_lstm_matches_torch(rng, return_sequences):
    layer = layers.Bidirectional(layers.LSTM(6, return_sequences=return_sequences))
    x = rng.standard_normal((3, 5, 4)).astype(np.float32)
    out, xt = _call(layer, x)
    assert len(layer.weights) == 6 and layer.count_params() == 2 * (4 * 6 * (4 + 6 + 1))
    lstm = _torch_lstm_from_bidirectional(layer, 4, 6)
    xx = _torch_leaf(x)
    sequence, _ = lstm(xx)
    # Keras's last output: the forward state after the last step beside the backward
    # state after it has run back to the first step.
    expected = sequence if return_sequences else torch.cat([sequence[:, -1, :6],
                                                            sequence[:, 0, 6:]], dim=1)
    assert out.shape == tuple(expected.shape) == (3, *layer.compute_output_shape(
        (None, 5, 4))[1:])
    grad = rng.standard_normal(expected.shape).astype(np.float32)
    _backprop(out, grad)
    (expected * torch.tensor(grad)).sum().backward()
    _close(out, expected, 1e-5)
    _close(xt.grad.numpy(), xx.grad, 1e-5)
    _close(layer.forward_layer.kernel.grad.numpy(), lstm.weight_ih_l0.grad.T, 1e-4)
    _close(layer.backward_layer.kernel.grad.numpy(), lstm.weight_ih_l0_reverse.grad.T, 1e-4)


@pytest.mark.parametrize("mode", ["sum", "mul", "ave"])
def test_bidirectional_merge_modes(rng, mode):
    x = rng.standard_normal((2, 4, 3)).astype(np.float32)
    layer = layers.Bidirectional(layers.GRU(5, return_sequences=True), merge_mode=mode)
    out = layer(x).detach().numpy()
    forward = layer.forward_layer(x).detach().numpy()
    backward = layer.backward_layer(x).detach().numpy()[:, ::-1]
    expected = {"sum": forward + backward, "mul": forward * backward,
                "ave": (forward + backward) / 2}[mode]
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


def test_go_backwards_runs_the_reversed_sequence(rng):
    x = rng.standard_normal((2, 6, 3)).astype(np.float32)
    backward = layers.SimpleRNN(4, return_sequences=True, go_backwards=True)
    out = backward(x).detach().numpy()
    forward = layers.SimpleRNN(4, return_sequences=True)
    forward(x)
    forward.set_weights(backward.get_weights())
    np.testing.assert_allclose(out, forward(x[:, ::-1].copy()).detach().numpy(), rtol=1e-5,
                               atol=1e-6)


def test_time_distributed_applies_the_layer_to_every_step(rng):
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    layer = layers.TimeDistributed(layers.Dense(4, activation="tanh"))
    out, xt = _call(layer, x)
    kernel, bias = layer.get_weights()
    np.testing.assert_allclose(out.detach().numpy(), np.tanh(x @ kernel + bias), rtol=1e-5,
                               atol=1e-6)
    assert layer.compute_output_shape((None, 5, 3)) == (None, 5, 4)
    images = rng.standard_normal((2, 3, 6, 6, 1)).astype(np.float32)
    conv = layers.TimeDistributed(layers.Conv2D(2, 3))
    assert conv(images).shape == (2, 3, 4, 4, 2)


def test_reshaping_layers(rng):
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(layers.Permute((2, 1))(x).numpy(), x.transpose(0, 2, 1))
    vectors = rng.standard_normal((2, 5)).astype(np.float32)
    repeated, xt = _call(layers.RepeatVector(3), vectors)
    np.testing.assert_array_equal(repeated.detach().numpy(),
                                  np.repeat(vectors[:, None], 3, axis=1))
    repeated.sum().backward()
    np.testing.assert_array_equal(xt.grad.numpy(), np.full_like(vectors, 3))
    np.testing.assert_array_equal(layers.Reshape((-1, 2))(x).numpy(), x.reshape(2, 6, 2))
    with pytest.raises(ValueError, match="permutation"):
        layers.Permute((1, 3))


def test_leaky_relu_and_activation_match_torch(rng):
    x = rng.standard_normal((4, 7)).astype(np.float32)
    out, xt = _call(layers.LeakyReLU(), x)  # Keras's default slope 0.3
    xx = _torch_leaf(x)
    expected = TF.leaky_relu(xx, 0.3)
    out.sum().backward()
    expected.sum().backward()
    _close(out, expected)
    _close(xt.grad.numpy(), xx.grad)
    assert layers.LeakyReLU(alpha=0.1).negative_slope == 0.1
    np.testing.assert_allclose(layers.Activation("sigmoid")(x).numpy(),
                               torch.sigmoid(torch.tensor(x)).numpy(), rtol=1e-6)


def test_new_layers_reject_bad_arguments():
    with pytest.raises(ValueError, match="padding"):
        layers.Conv1D(4, 3, padding="full")
    with pytest.raises(ValueError, match="output_padding"):
        layers.Conv2DTranspose(4, 3, strides=2, output_padding=2)
    with pytest.raises(ValueError, match="interpolation"):
        layers.UpSampling2D(interpolation="bilinear")
    with pytest.raises(TypeError, match="Bidirectional wraps"):
        layers.Bidirectional(layers.Dense(3))
    with pytest.raises(ValueError, match="3-D input"):
        layers.Conv1D(4, 3)(np.ones((2, 5, 5, 1)))
