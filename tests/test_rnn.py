"""RNN / LSTM / GRU: the layer kernels against the float64 NumPy reference (both
ISAs, 1 and 2 threads), finite-difference gradients in float64, the modules and
cells against torch.nn with the same weights, and bad arguments."""
import numpy as np
import pytest

import pydl
from pydl import _C, nn
from pydl.ops.rnn import MODES, RecurrentLayer, gate_count, reference_backward, reference_forward
from conftest import check_grad, kernel_settings


def layer_inputs(rng, mode, T, B, I, H, bias=True, dtype=np.float32):
    """Random inputs of one layer call: (x, h0, c0, w_ih, w_hh, b_ih, b_hh)."""
    G = gate_count(mode)

    def r(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(dtype)
    return (r(T, B, I), r(B, H, scale=0.5), r(B, H) if mode == "lstm" else None,
            r(G * H, I, scale=0.4), r(G * H, H, scale=0.4),
            r(G * H, scale=0.3) if bias else None, r(G * H, scale=0.3) if bias else None)


def as64(arrays):
    return [None if a is None else a.astype(np.float64) for a in arrays]


# ---- kernels against the float64 reference --------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reverse", [False, True])
def test_kernels_match_reference(rng, config, mode, reverse):
    T, B, I, H = 5, 3, 7, 13   # H not a multiple of 8: the masked tail runs too
    inputs = layer_inputs(rng, mode, T, B, I, H)
    y, c, saved = _C.rnn_forward(mode, *inputs, reverse=reverse)
    y64, c64, saved64 = reference_forward(mode, *as64(inputs), reverse)
    np.testing.assert_allclose(y, y64, rtol=1e-5, atol=2e-6)
    if mode == "lstm":
        np.testing.assert_allclose(c, c64, rtol=1e-5, atol=2e-6)
    if saved64 is not None:
        np.testing.assert_allclose(saved, saved64, rtol=1e-5, atol=2e-6)
    else:
        assert saved is None

    x, h0, c0, w_ih, w_hh, _, _ = inputs
    dy = rng.standard_normal((T, B, H)).astype(np.float32)
    dc_last = rng.standard_normal((B, H)).astype(np.float32) if mode == "lstm" else None
    got = _C.rnn_backward(mode, dy, dc_last, x, h0, c0, w_ih, w_hh, y, c, saved,
                          reverse=reverse, has_bias=True, need_dx=True)
    want = reference_backward(mode, *as64([dy, dc_last, x, h0, c0, w_ih, w_hh, y64, c64,
                                           saved64]), reverse, True, True)
    names = ["dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh"]
    for name, g, w in zip(names, got, want):
        if w is None:
            assert g is None, name
        else:
            scale = np.abs(w).max()
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5 * scale, err_msg=name)


@pytest.mark.parametrize("mode", MODES)
def test_kernels_without_bias_or_dx(rng, mode):
    T, B, I, H = 4, 2, 5, 16
    inputs = layer_inputs(rng, mode, T, B, I, H, bias=False)
    y, c, saved = _C.rnn_forward(mode, *inputs, reverse=False)
    y64, c64, saved64 = reference_forward(mode, *as64(inputs), False)
    np.testing.assert_allclose(y, y64, rtol=1e-5, atol=2e-6)
    x, h0, c0, w_ih, w_hh, _, _ = inputs
    dy = rng.standard_normal((T, B, H)).astype(np.float32)
    got = _C.rnn_backward(mode, dy, None, x, h0, c0, w_ih, w_hh, y, c, saved,
                          has_bias=False, need_dx=False)
    want = reference_backward(mode, *as64([dy, None, x, h0, c0, w_ih, w_hh, y64, c64, saved64]),
                              False, False, False)
    assert got[0] is None and got[5] is None and got[6] is None
    for g, w in zip(got[1:5], want[1:5]):
        if w is not None:
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5 * np.abs(w).max())


def test_kernel_thread_counts_agree(rng):
    """A long sequence and a batch wide enough for 2 threads in the gate kernels."""
    inputs = layer_inputs(rng, "lstm", 20, 64, 24, 40)
    results = []
    for threads in (1, 2):
        with kernel_settings(_C.isa(), threads):
            results.append(_C.rnn_forward("lstm", *inputs)[0])
    np.testing.assert_allclose(results[0], results[1], rtol=1e-5, atol=1e-6)


# ---- finite differences in float64 --------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reverse", [False, True])
def test_layer_gradients_finite_differences(rng, mode, reverse):
    inputs = [a for a in layer_inputs(rng, mode, 3, 2, 3, 4, dtype=np.float64) if a is not None]
    if mode == "rnn_relu":  # keep pre-activations away from the kink at 0
        inputs[-1] = inputs[-1] + np.where(inputs[-1] >= 0, 0.3, -0.3)

    def layer(*tensors):
        # Every output at once: y, h_n and (LSTM) c_n, each weighted by check_grad.
        outputs = RecurrentLayer.apply(*tensors, mode=mode, reverse=reverse)
        return pydl.cat([out.reshape(-1) for out in outputs])
    check_grad(layer, *inputs, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("output", ["y", "h_n", "c_n"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_layer_gradients_through_one_output(rng, mode, output, dtype):
    # The other outputs get no gradient (None to backward): h_n alone, c_n alone, y
    # alone must each give the finite-difference gradients (float64; the float32
    # kernels against the float64 reference of the same objective).
    if output == "c_n" and mode != "lstm":
        pytest.skip("c_n is LSTM's")
    inputs = [a for a in layer_inputs(rng, mode, 3, 2, 3, 4, dtype=np.float64) if a is not None]
    if mode == "rnn_relu":
        inputs[-1] = inputs[-1] + np.where(inputs[-1] >= 0, 0.3, -0.3)
    pick = {"y": 0, "h_n": 1, "c_n": 2}[output]

    def layer(*tensors):
        return RecurrentLayer.apply(*tensors, mode=mode, reverse=False)[pick]
    grads64 = check_grad(layer, *inputs, atol=1e-7, rtol=1e-5)
    if dtype == np.float32:
        leaves = [pydl.tensor(a.astype(np.float32), requires_grad=True) for a in inputs]
        out = layer(*leaves)
        weights = np.random.default_rng(0).standard_normal(out.shape).astype(np.float32)
        (out * pydl.tensor(weights)).sum().backward()
        for leaf, expected in zip(leaves, grads64):
            np.testing.assert_allclose(leaf.grad.numpy(), expected, rtol=2e-4, atol=2e-5)


def test_lstm_module_gradients_through_h_n_and_c_n():
    # nn.LSTM (2 layers, both directions) in float64: a loss on h_n and c_n only, by
    # finite differences in the input and the initial states.
    rng = np.random.default_rng(3)
    lstm = nn.LSTM(3, 4, num_layers=2, bidirectional=True).double()
    x, h0, c0 = rng.standard_normal((5, 2, 3)), rng.standard_normal((4, 2, 4)), \
        rng.standard_normal((4, 2, 4))

    def states(x, h0, c0):
        _, (h_n, c_n) = lstm(x, (h0, c0))
        return pydl.cat([h_n.reshape(-1), 2 * c_n.reshape(-1)])
    check_grad(states, x, h0, c0, atol=1e-7, rtol=1e-5)


# ---- modules against torch.nn ---------------------------------------------------------

def _random_configs(seed, count):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        yield dict(num_layers=int(rng.integers(1, 3)), bidirectional=bool(rng.integers(2)),
                   batch_first=bool(rng.integers(2)), bias=bool(rng.random() < 0.8),
                   given_state=bool(rng.integers(2)), T=int(rng.choice([1, 2, 5])),
                   B=int(rng.integers(1, 4)), I=int(rng.integers(1, 9)),
                   H=int(rng.choice([3, 8, 11])))


def _torch_pair(kind, cfg, nonlinearity=None):
    torch = pytest.importorskip("torch")
    kw = dict(num_layers=cfg["num_layers"], bias=cfg["bias"], batch_first=cfg["batch_first"],
              bidirectional=cfg["bidirectional"])
    if nonlinearity:
        kw["nonlinearity"] = nonlinearity
    theirs = getattr(torch.nn, kind)(cfg["I"], cfg["H"], **kw)
    ours = getattr(nn, kind)(cfg["I"], cfg["H"], **kw)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    return torch, ours, theirs


def _array(t):
    return t.detach().numpy() if hasattr(t, "detach") else t


def _close(a, b, what):
    a, b = _array(a), _array(b)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(b).max()),
                               err_msg=what)


@pytest.mark.parametrize("kind,nonlinearity", [("RNN", "tanh"), ("RNN", "relu"), ("LSTM", None),
                                               ("GRU", None)])
@pytest.mark.parametrize("seed", range(4))
def test_module_matches_torch(kind, nonlinearity, seed):
    cfg = next(_random_configs(seed * 7 + len(kind), 1))
    torch, ours, theirs = _torch_pair(kind, cfg, nonlinearity)
    rng = np.random.default_rng(seed)
    T, B, I, H = cfg["T"], cfg["B"], cfg["I"], cfg["H"]
    x = rng.standard_normal((B, T, I) if cfg["batch_first"] else (T, B, I)).astype(np.float32)
    count = cfg["num_layers"] * (2 if cfg["bidirectional"] else 1)
    states = [rng.standard_normal((count, B, H)).astype(np.float32)
              for _ in range(2 if kind == "LSTM" else 1)] if cfg["given_state"] else None

    def run(lib, module, tensor):
        xt = tensor(x, requires_grad=True)
        st = [tensor(s, requires_grad=True) for s in states] if states else None
        hx = None if st is None else (tuple(st) if kind == "LSTM" else st[0])
        out, h = module(xt, hx)
        finals = list(h) if kind == "LSTM" else [h]
        w_rng = np.random.default_rng(99)
        loss = (out * tensor(w_rng.standard_normal(out.shape).astype(np.float32))).sum()
        for f in finals:
            loss = loss + (f * tensor(w_rng.standard_normal(f.shape).astype(np.float32))).sum()
        loss.backward()
        return xt, st, out, finals

    xo, so, outo, fo = run(pydl, ours, lambda a, requires_grad=False: pydl.tensor(
        a, requires_grad=requires_grad))
    xt, st, outt, ft = run(torch, theirs, lambda a, requires_grad=False: torch.tensor(
        a, requires_grad=requires_grad))
    _close(outo, outt, "output")
    for a, b, name in zip(fo, ft, ["h_n", "c_n"]):
        _close(a, b, name)
    _close(xo.grad.numpy(), xt.grad, "input grad")
    for a, b in zip(so or [], st or []):
        _close(a.grad.numpy(), b.grad, "initial state grad")
    theirs_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        _close(p.grad.numpy(), theirs_params[name].grad, f"grad of {name}")


def test_state_dict_keys_match_torch():
    torch = pytest.importorskip("torch")
    for kind in ("RNN", "LSTM", "GRU"):
        ours = getattr(nn, kind)(5, 7, num_layers=2, bidirectional=True)
        theirs = getattr(torch.nn, kind)(5, 7, num_layers=2, bidirectional=True)
        assert list(ours.state_dict()) == list(theirs.state_dict())
        for k, v in theirs.state_dict().items():
            assert tuple(ours.state_dict()[k].shape) == tuple(v.shape)


def test_init_is_uniform_and_seeded():
    pydl.manual_seed(3)
    a = _array(nn.LSTM(4, 25).weight_hh_l0)
    pydl.manual_seed(3)
    b = _array(nn.LSTM(4, 25).weight_hh_l0)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a).max() <= 1 / 5 and np.abs(a).max() > 0.9 / 5 and abs(a.mean()) < 0.02


def test_unbatched_input_matches_torch():
    torch = pytest.importorskip("torch")
    theirs = torch.nn.GRU(3, 5, num_layers=2)
    ours = nn.GRU(3, 5, num_layers=2)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    out, h = ours(pydl.tensor(x))
    out_t, h_t = theirs(torch.tensor(x))
    assert out.shape == (4, 5) and h.shape == (2, 5)
    _close(out, out_t, "output")
    _close(h, h_t, "h_n")


def test_dropout_between_layers():
    m = nn.LSTM(4, 6, num_layers=2, dropout=0.5)
    x = pydl.tensor(np.random.default_rng(1).standard_normal((5, 3, 4)).astype(np.float32))
    pydl.manual_seed(0)
    a = _array(m(x)[0])
    pydl.manual_seed(0)
    b = _array(m(x)[0])
    np.testing.assert_array_equal(a, b)          # the mask comes from the global generator
    m.eval()
    c = _array(m(x)[0])
    assert not np.allclose(a, c)                  # training drops units, eval does not
    m.dropout = 1.0
    m.train()
    zeroed = _array(m(x)[0])                      # layer 2 sees only zeros: a constant output
    assert np.isfinite(zeroed).all()
    np.testing.assert_allclose(zeroed, np.broadcast_to(zeroed[:, :1], zeroed.shape), atol=1e-6)


@pytest.mark.parametrize("kind", ["RNNCell", "LSTMCell", "GRUCell"])
def test_cells_match_torch(kind):
    torch = pytest.importorskip("torch")
    theirs = getattr(torch.nn, kind)(6, 9)
    ours = getattr(nn, kind)(6, 9)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    rng = np.random.default_rng(len(kind))
    x = rng.standard_normal((4, 6)).astype(np.float32)
    states = [rng.standard_normal((4, 9)).astype(np.float32)
              for _ in range(2 if kind == "LSTMCell" else 1)]

    def run(module, tensor):
        xt = tensor(x)
        st = [tensor(s) for s in states]
        out = module(xt, tuple(st) if kind == "LSTMCell" else st[0])
        outs = list(out) if kind == "LSTMCell" else [out]
        sum(((o * (i + 1)).sum() for i, o in enumerate(outs)), 0.0 * xt.sum()).backward()
        return [o for o in outs], xt, st

    outs_o, xo, so = run(ours, lambda a: pydl.tensor(a, requires_grad=True))
    outs_t, xt, st = run(theirs, lambda a: torch.tensor(a, requires_grad=True))
    for a, b in zip(outs_o, outs_t):
        _close(a, b, "cell output")
    _close(xo.grad.numpy(), xt.grad, "input grad")
    for a, b in zip(so, st):
        _close(a.grad.numpy(), b.grad, "state grad")
    theirs_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        _close(p.grad.numpy(), theirs_params[name].grad, f"grad of {name}")


# ---- bad arguments --------------------------------------------------------------------

def test_module_bad_arguments():
    m = nn.LSTM(4, 6, num_layers=2)
    with pytest.raises(ValueError, match=r"\(5, 3, 7\).*input_size is 4"):
        m(pydl.zeros(5, 3, 7))
    with pytest.raises(ValueError, match=r"h_0 must have shape \(2, 3, 6\).*got \(1, 3, 6\)"):
        m(pydl.zeros(5, 3, 4), (pydl.zeros(1, 3, 6), pydl.zeros(2, 3, 6)))
    with pytest.raises(TypeError, match="tuple"):
        m(pydl.zeros(5, 3, 4), pydl.zeros(2, 3, 6))
    with pytest.raises(ValueError, match="3-D"):
        m(pydl.zeros(5))
    with pytest.raises(TypeError, match="float64"):
        m(pydl.zeros(5, 3, 4, dtype="float64"))
    with pytest.raises(ValueError, match="nonlinearity"):
        nn.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="hidden_size"):
        nn.GRU(3, 0)
    with pytest.raises(ValueError, match="dropout"):
        nn.GRU(3, 4, dropout=1.5)
    with pytest.raises(ValueError, match=r"input must be \(batch, 3\)"):
        nn.GRUCell(3, 4)(pydl.zeros(2, 5))


def test_kernel_bad_arguments(rng):
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = layer_inputs(rng, "lstm", 3, 2, 5, 4)
    with pytest.raises(ValueError, match=r"w_ih has shape \(16, 6\), expected \(G\*H, I\) = "
                                         r"\(16, 5\)"):
        _C.rnn_forward("lstm", x, h0, c0, np.zeros((16, 6), np.float32), w_hh, b_ih, b_hh)
    with pytest.raises(ValueError, match=r"w_hh must be \(4\*hidden_size, hidden_size\), got "
                                         r"\(12, 4\)"):
        _C.rnn_forward("lstm", x, h0, c0, w_ih, w_hh[:12], b_ih, b_hh)
    with pytest.raises(ValueError, match=r"h0 has shape \(3, 4\), expected \(B, H\) = \(2, 4\)"):
        _C.rnn_forward("lstm", x, np.zeros((3, 4), np.float32), c0, w_ih, w_hh, b_ih, b_hh)
    with pytest.raises(TypeError, match="c0 must be a float32 array"):
        _C.rnn_forward("lstm", x, h0, None, w_ih, w_hh, b_ih, b_hh)
    with pytest.raises(ValueError, match="both b_ih and b_hh"):
        _C.rnn_forward("lstm", x, h0, c0, w_ih, w_hh, b_ih, None)
    with pytest.raises(ValueError, match="mode must be"):
        _C.rnn_forward("elman", x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    with pytest.raises(TypeError, match="x must be float32"):
        _C.rnn_forward("lstm", x.astype(np.float64), h0, c0, w_ih, w_hh, b_ih, b_hh)
    with pytest.raises(ValueError, match=r"x must be \(seq_len, batch, input_size\).*\(0, 2, 5\)"):
        _C.rnn_forward("lstm", x[:0], h0, c0, w_ih, w_hh, b_ih, b_hh)
    y, c, saved = _C.rnn_forward("lstm", x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    with pytest.raises(ValueError, match=r"saved has shape \(3, 2, 15\), expected"):
        _C.rnn_backward("lstm", y, None, x, h0, c0, w_ih, w_hh, y, c, saved[..., :15].copy())
