"""Regression tests for bad input that once crashed pydl or gave a silently wrong
answer: each must now raise a clear exception (crashes are caught by running the
call in a forked child, tests/isolated.py) or give the reference's answer."""
import numpy as np
import pytest

import isolated
from pydl import _C

emu = pytest.importorskip("pydl._cuda_emu", reason="built without PYDL_CUDA_EMULATION")


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def raises_in_child(fn, *args, match, error=ValueError, **kwargs):
    """fn(*args) raises `error` with `match` in its message, in a forked child."""
    outcome = isolated.run(fn, *args, **kwargs)
    assert outcome.kind == "raised", outcome
    name, message = outcome.value
    assert name == error.__name__ and match in message, outcome


# ---- max pooling: windows wholly in the padding -----------------------------------

@pytest.mark.parametrize("shape, dilation", [((1, 1, 2, 2 ** 20), (3, 1)),
                                             ((1, 1, 1, 2 ** 20), (2, 1))])
def test_max_pool_padding_only_window_is_refused(shape, dilation):
    # These read outside the input (a SIGSEGV, or indices past the plane) before.
    x = np.ones(shape, np.float32)
    raises_in_child(_C.max_pool2d_forward, x, kernel_size=(2, 1), stride=(2, 1),
                    padding=(1, 0), dilation=dilation, match="wholly in the padding")


def pool_configs(rng, count):
    # The case first: a window of W = 1 with dilation 2 steps over the input.
    yield dict(shape=(2, 1, 7, 1), kernel_size=(2, 2), stride=(2, 2), padding=(1, 1),
               dilation=(2, 2), ceil_mode=False)
    for _ in range(count):
        k = [int(v) for v in rng.integers(1, 5, 2)]
        yield dict(shape=(2, 2, int(rng.integers(1, 9)), int(rng.integers(1, 9))),
                   kernel_size=tuple(k), stride=tuple(int(v) for v in rng.integers(1, 4, 2)),
                   padding=tuple(int(rng.integers(0, kk // 2 + 2)) for kk in k),
                   dilation=tuple(int(v) for v in rng.integers(1, 4, 2)),
                   ceil_mode=bool(rng.integers(2)))


def test_max_pool_against_torch(rng):
    """Where PyTorch raises, pydl raises; where PyTorch returns -inf (a window in the
    padding), pydl refuses; everywhere else the values and argmax indices are PyTorch's."""
    torch = pytest.importorskip("torch")
    seen = {"torch raises": 0, "padding-only window": 0, "equal": 0}
    for cfg in pool_configs(rng, 400):
        x = rand(rng, *cfg.pop("shape"))
        try:
            ty, ti = torch.nn.functional.max_pool2d(torch.from_numpy(x), return_indices=True,
                                                    **cfg)
        except RuntimeError:
            with pytest.raises(ValueError):
                _C.max_pool2d_forward(x, **cfg)
            seen["torch raises"] += 1
            continue
        for module in (_C, emu):
            if module is emu:
                y = np.empty(ty.shape, np.float32)
                i = np.empty(ty.shape, np.int64)
                call = lambda: emu.max_pool2d_forward(x, **cfg, out=y, indices=i)  # noqa: E731
            else:
                call = lambda: _C.max_pool2d_forward(x, **cfg)  # noqa: E731
            if torch.isinf(ty).any():
                with pytest.raises(ValueError, match="wholly in the padding"):
                    call()
                continue
            result = call()
            y, i = result if module is _C else (y, i)
            np.testing.assert_array_equal(y, ty.numpy())
            np.testing.assert_array_equal(i, ti.numpy())
        seen["padding-only window" if torch.isinf(ty).any() else "equal"] += 1
    assert min(seen.values()) >= 3, seen  # every branch was exercised


def test_avg_pool_divisor_of_a_huge_window(rng):
    # kernel 2**40 x 2**40: the window's area (2**80) overflowed int64 before.
    x = rand(rng, 1, 1, 3, 3)
    k, pad = 2 ** 40, 2 ** 39
    y = _C.avg_pool2d_forward(x, kernel_size=(k, k), stride=(1, 1), padding=(pad, pad))
    # Every window covers the whole input; its area clipped to the padded input is
    # (min(start + k, 3 + pad) - start)^2 with start = o - pad.
    for oh in range(y.shape[2]):
        for ow in range(y.shape[3]):
            rows = min(oh - pad + k, 3 + pad) - (oh - pad)
            cols = min(ow - pad + k, 3 + pad) - (ow - pad)
            expected = x.astype(np.float64).sum() / (float(rows) * float(cols))
            assert y[0, 0, oh, ow] == pytest.approx(expected, rel=1e-5)


# ---- sizes that overflow ---------------------------------------------------------

def test_embedding_backward_huge_table_is_an_error():
    dy = np.ones((3, 0), np.float32)
    idx = np.zeros(3, np.int64)
    for v in (2 ** 61, 2 ** 62, 2 ** 63 - 1):
        outcome = isolated.run(_C.embedding_backward, dy, idx, v)
        assert outcome.kind == "raised" and outcome.value[0] in ("ValueError", "MemoryError"), outcome
    outcome = isolated.run(_C.embedding_backward, np.ones((3, 4), np.float32), idx, 2 ** 61)
    assert outcome.kind == "raised" and "too large" in outcome.value[1], outcome


def test_size_arithmetic_overflow_is_a_value_error(rng):
    x = rand(rng, 1, 1, 3, 3)
    with pytest.raises(ValueError, match="too large"):
        _C.conv2d_forward(x, rand(rng, 1, 1, 3, 3), dilation=(2 ** 62, 1))
    with pytest.raises(ValueError, match="too large"):
        _C.max_pool2d_forward(x, kernel_size=(3, 3), stride=(1, 1), dilation=(2 ** 62, 1))
    with pytest.raises(ValueError, match="too large"):
        _C.empty([2 ** 40, 2 ** 40])
    with pytest.raises(ValueError, match="too large"):
        _C.dropout_mask([2 ** 32, 2 ** 32], 0.5, 0, 0)


def test_allocation_failure_names_the_size():
    with pytest.raises(MemoryError, match="cannot allocate 140737488355328 bytes"):
        _C.empty([2 ** 45])  # 128 TiB


# ---- aliasing between outputs and inputs ------------------------------------------

@pytest.mark.parametrize("n", [31, 32, 48, 64])
def test_gemm_out_sharing_an_input_is_refused(rng, n):
    a = rand(rng, n, n)
    b = rand(rng, n, n)
    for out, args in [(a, (a, b)), (b, (a, b)), (a, (a.T, b)), (a[: n // 2], (a[n // 2:], b))]:
        if out is args[0] or np.shares_memory(out, args[0]) or np.shares_memory(out, args[1]):
            shape = (args[0].shape[0], n)
            if out.shape != shape:
                continue
            with pytest.raises(ValueError, match="out shares memory with"):
                _C.gemm(*args, out=out)
            with pytest.raises(ValueError, match="out shares memory with"):
                emu.gemm(*args, out=out)
    # Disjoint halves of one buffer are fine: out = top @ b written to the bottom.
    buf = rand(rng, 2 * n, n)
    expected = buf[:n].astype(np.float64) @ b
    _C.gemm(buf[:n], b, out=buf[n:])
    np.testing.assert_allclose(buf[n:], expected, rtol=1e-4, atol=1e-4)


OPTIM_STATE_CALLS = {
    "sgd_step": lambda m, p, g, s: m.sgd_step(p, g, s, lr=0.1, momentum=0.9),
    "rmsprop_step": lambda m, p, g, s: m.rmsprop_step(p, g, s, lr=0.1),
    "adagrad_step": lambda m, p, g, s: m.adagrad_step(p, g, s, lr=0.1, step=1),
    "adam_step": lambda m, p, g, s: m.adam_step(p, g, s, np.zeros_like(p), lr=0.1, step=1),
}


@pytest.mark.parametrize("kernel", sorted(OPTIM_STATE_CALLS))
@pytest.mark.parametrize("module", [_C, emu], ids=["cpu", "emu"])
def test_optimizer_state_that_is_the_param_is_refused(rng, kernel, module):
    p, g = rand(rng, 8), rand(rng, 8)
    before = p.copy()
    with pytest.raises(ValueError, match="shares memory with param"):
        OPTIM_STATE_CALLS[kernel](module, p, g, p)
    np.testing.assert_array_equal(p, before)  # nothing was written


@pytest.mark.parametrize("call, match", [
    (lambda m, p, g: m.sgd_step(p, g, lr=float("nan")), "lr must be >= 0"),
    (lambda m, p, g: m.sgd_step(p, g, lr=-1.0), "lr must be >= 0"),
    (lambda m, p, g: m.sgd_step(p, g, lr=0.1, weight_decay=-1.0), "weight_decay must be >= 0"),
    (lambda m, p, g: m.sgd_step(p, g, np.zeros_like(p), lr=0.1, momentum=-0.5),
     "momentum must be >= 0"),
    (lambda m, p, g: m.sgd_step(p, g, lr=0.1, nesterov=True), "Nesterov"),
    (lambda m, p, g: m.adam_step(p, g, np.zeros_like(p), np.zeros_like(p), lr=0.1, beta1=1.5,
                                 step=1), "beta1 must be in [0, 1)"),
    (lambda m, p, g: m.adam_step(p, g, np.zeros_like(p), np.zeros_like(p), lr=0.1, beta2=1.0,
                                 step=1), "beta2 must be in [0, 1)"),
    (lambda m, p, g: m.adam_step(p, g, np.zeros_like(p), np.zeros_like(p), lr=0.1, eps=-1.0,
                                 step=1), "eps must be >= 0"),
    (lambda m, p, g: m.rmsprop_step(p, g, np.zeros_like(p), lr=0.1, alpha=-1.0),
     "alpha must be >= 0"),
    (lambda m, p, g: m.adagrad_step(p, g, np.zeros_like(p), lr=0.1, lr_decay=-1.0, step=1),
     "lr_decay must be >= 0"),
])
@pytest.mark.parametrize("module", [_C, emu], ids=["cpu", "emu"])
def test_optimizer_hyperparameters_are_checked_by_the_kernels(rng, call, match, module):
    p, g = rand(rng, 8), rand(rng, 8)
    before = p.copy()
    with pytest.raises(ValueError, match=match.replace("[", r"\[").replace(")", r"\)")):
        call(module, p, g)
    np.testing.assert_array_equal(p, before)


def test_batch_norm_running_statistics_sharing_memory_are_refused(rng):
    x = rand(rng, 4, 3)
    stats = np.abs(rand(rng, 2, 3))
    for rm, rv, w in [(x[0], stats[1], None), (stats[0], stats[0], None),
                      (stats[0], stats[1], stats[0])]:
        with pytest.raises(ValueError, match="shares memory with"):
            _C.batch_norm_forward(x, w, None, rm, rv, True, 0.1, 1e-5)
    for eps, momentum in [(float("inf"), 0.1), (1e-5, float("nan"))]:
        with pytest.raises(ValueError, match="must be finite"):
            _C.batch_norm_forward(x, None, None, stats[0].copy(), stats[1].copy(), True,
                                  momentum, eps)


@pytest.mark.parametrize("padding_idx", [-5, 5, 7])
def test_embedding_padding_idx_outside_the_table_is_refused(rng, padding_idx):
    dy, idx = rand(rng, 3, 4), np.array([0, 1, 4])
    with pytest.raises(ValueError, match="padding_idx must be -1"):
        _C.embedding_backward(dy, idx, 5, padding_idx)
    with pytest.raises(ValueError, match="padding_idx must be -1"):
        emu.embedding_backward(dy, idx, 5, padding_idx, out=np.empty((5, 4), np.float32))


def test_emulated_outputs_sharing_inputs_are_refused(rng):
    x = rand(rng, 2, 3, 8, 8)
    front = x.reshape(-1)  # a view of x's memory, reshaped as each output needs
    with pytest.raises(ValueError, match="out shares memory with input"):
        emu.conv2d_forward(x, rand(rng, 4, 3, 3, 3), out=front[: 2 * 4 * 36].reshape(2, 4, 6, 6))
    with pytest.raises(ValueError, match="out shares memory with x"):
        emu.relu_forward(x, out=x)
    with pytest.raises(ValueError, match="out shares memory with input"):
        emu.avg_pool2d_forward(x, kernel_size=(2, 2), stride=(2, 2),
                               out=front[:96].reshape(2, 3, 4, 4))
    with pytest.raises(ValueError, match="grad shares memory with logits"):
        logits = rand(rng, 4, 5)
        emu.softmax_cross_entropy(logits, np.zeros(4, np.int64), loss=np.empty(1, np.float32),
                                  losses=np.empty(4, np.float32), grad=logits)


# ---- the public surface ------------------------------------------------------------

def test_bce_refuses_values_outside_0_1_and_has_pytorch_gradient_at_0_and_1(rng):
    torch = pytest.importorskip("torch")
    import pydl
    import pydl.nn.functional as F
    for bad in ([1.5, 0.5], [-0.1, 0.5], [float("nan"), 0.5]):
        with pytest.raises(ValueError, match="input should be between 0 and 1"):
            F.binary_cross_entropy(pydl.tensor(np.array(bad)), pydl.tensor(np.array([1.0, 0.0])))
    with pytest.raises(ValueError, match="target should be between 0 and 1"):
        F.binary_cross_entropy(pydl.tensor(np.array([0.5])), pydl.tensor(np.array([1.5])))
    x = np.concatenate([[0.0, 1.0, 0.0, 1.0], rng.uniform(0.01, 0.99, 6)])
    t = np.concatenate([[0.0, 1.0, 1.0, 0.0], rng.uniform(0, 1, 6)])
    for reduction in ("mean", "sum"):
        px, pt = pydl.tensor(x, requires_grad=True), pydl.tensor(t, requires_grad=True)
        loss = F.binary_cross_entropy(px, pt, reduction=reduction)
        loss.backward()
        tx = torch.tensor(x, requires_grad=True)
        tt = torch.tensor(t, requires_grad=True)
        expected = torch.nn.functional.binary_cross_entropy(tx, tt, reduction=reduction)
        expected.backward()
        assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
        np.testing.assert_allclose(px.grad.numpy(), tx.grad.numpy(), rtol=1e-12)
        np.testing.assert_allclose(pt.grad.numpy(), tt.grad.numpy(), rtol=1e-12)


def test_std_of_a_constant_has_a_zero_gradient():
    torch = pytest.importorskip("torch")
    import pydl
    for shape, dim in [((5,), None), ((3, 4), 1), ((3, 4), 0)]:
        data = np.full(shape, 2.5)
        data[0] += 1.0  # one varying slice beside constant ones along dim 1
        x = pydl.tensor(data, requires_grad=True)
        x.std(dim).sum().backward()
        tx = torch.tensor(data, requires_grad=True)
        tx.std(dim).sum().backward()
        assert np.all(np.isfinite(x.grad.numpy()))
        np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_cross_entropy_with_every_target_ignored_is_nan_like_pytorch(rng):
    torch = pytest.importorskip("torch")
    import pydl
    import pydl.nn.functional as F
    logits = rand(rng, 4, 3)
    target = np.full(4, -100)
    x = pydl.tensor(logits, requires_grad=True)
    loss = F.cross_entropy(x, target)
    loss.backward()
    expected = torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(target))
    assert np.isnan(loss.item()) and torch.isnan(expected)
    assert not np.any(x.grad.numpy())  # PyTorch's gradient there is 0 too


def test_layers_with_no_inputs_build_as_in_pytorch():
    import pydl
    import pydl.nn as nn
    with pytest.warns(UserWarning, match="zero-element"):
        linear = nn.Linear(0, 8)
    assert linear(pydl.zeros(2, 0)).shape == (2, 8)
    with pytest.warns(UserWarning, match="zero-element"):
        nn.init.kaiming_normal_(pydl.zeros(4, 0))
    assert nn.Conv2d(0, 8, 3).weight.shape == (8, 0, 3, 3)


def test_batch_norm_channel_mismatch_names_the_channels():
    import pydl
    import pydl.nn as nn
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3\): expected input with 3 channels"):
        nn.BatchNorm2d(3)(pydl.randn(2, 4, 3, 3))


def test_keras_fit_refuses_what_would_train_nothing():
    from pydl import keras
    model = keras.Sequential([keras.layers.Dense(2)])
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = np.ones((4, 3), np.float32), np.zeros(4)
    for batch_size in (-1, 0, 2.5, True):
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            model.fit(x, y, batch_size=batch_size, verbose=0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        model.predict(x, batch_size=0, verbose=0)
    with pytest.raises(ValueError, match="no samples"):
        model.fit(x[:0], y[:0], verbose=0)
    with pytest.raises(ValueError, match="sparse target holds 0.5"):
        model.fit(x, np.array([0.5, 1, 0, 1]), verbose=0)
    model.fit(x, np.array([0.0, 1, 0, 1]), verbose=0)  # whole numbers as floats are labels


def test_max_pool_layer_refuses_padding_only_windows_in_float64_too():
    import pydl
    import pydl.nn.functional as F
    x = np.random.default_rng(0).standard_normal((2, 1, 7, 1))
    for dtype in ("float32", "float64"):
        with pytest.raises(ValueError, match="wholly in the padding"):
            F.max_pool2d(pydl.tensor(x, dtype=dtype), 2, 2, 1, 2)
