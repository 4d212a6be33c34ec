"""Recurrent layers: one layer in one direction over a whole sequence.

float32 runs the compiled kernels (rnn_forward / rnn_backward); float64 runs the
NumPy reference below, the same math step by step (for finite-difference checks,
and the reference the kernel tests compare with). Both use one layout:

  x (T, B, I), h0 and c0 (B, H), w_ih (G*H, I), w_hh (G*H, H), b_ih and b_hh
  (G*H,); gates in PyTorch's order: LSTM i, f, g, o (G = 4), GRU r, z, n (G = 3),
  RNN G = 1 with tanh or relu. y (T, B, H) holds h at every time step in time
  order, also when `reverse` runs t = T-1 .. 0. `saved` (T, B, 4H) is what
  backward needs besides y: LSTM (i, f, g, o) after activation, GRU (r, z, n, hn)
  with hn = W_hn h_prev + b_hn; c (T, B, H) the LSTM cell states.
"""
import numpy as np

from pydl._device import kernels_for
from pydl.autograd import Function
from pydl.ops.common import contiguous, require_host, xp_of

MODES = ("rnn_tanh", "rnn_relu", "lstm", "gru")


def gate_count(mode):
    return {"lstm": 4, "gru": 3}.get(mode, 1)


def _sigmoid(a):
    return 0.5 * (1 + np.tanh(0.5 * a))  # never overflows


def reference_forward(mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse):
    """(y, c or None, saved or None), as the rnn_forward kernel returns them."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    zero = np.zeros(gate_count(mode) * H, x.dtype)
    b_ih = zero if b_ih is None else b_ih
    b_hh = zero if b_hh is None else b_hh
    gi = x @ w_ih.T + b_ih
    y = np.empty((T, B, H), x.dtype)
    c = np.empty((T, B, H), x.dtype) if mode == "lstm" else None
    saved = np.empty((T, B, 4 * H), x.dtype) if mode in ("lstm", "gru") else None
    h, cell = h0, c0
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        gh = h @ w_hh.T + b_hh
        if mode == "lstm":
            a = gi[t] + gh
            i, f, o = _sigmoid(a[:, :H]), _sigmoid(a[:, H:2 * H]), _sigmoid(a[:, 3 * H:])
            g = np.tanh(a[:, 2 * H:3 * H])
            cell = f * cell + i * g
            h = o * np.tanh(cell)
            saved[t] = np.concatenate([i, f, g, o], axis=1)
            c[t] = cell
        elif mode == "gru":
            r = _sigmoid(gi[t, :, :H] + gh[:, :H])
            z = _sigmoid(gi[t, :, H:2 * H] + gh[:, H:2 * H])
            hn = gh[:, 2 * H:]
            n = np.tanh(gi[t, :, 2 * H:] + r * hn)
            h = (1 - z) * n + z * h
            saved[t] = np.concatenate([r, z, n, hn], axis=1)
        else:
            a = gi[t] + gh
            h = np.tanh(a) if mode == "rnn_tanh" else np.maximum(a, 0)
        y[t] = h
    return y, c, saved


def reference_backward(mode, dy, dc_last, x, h0, c0, w_ih, w_hh, y, c, saved, reverse,
                       has_bias, need_dx):
    """(dx or None, dh0, dc0 or None, dw_ih, dw_hh, db_ih or None, db_hh or None),
    as the rnn_backward kernel returns them. dgi / dgh: the gradients of the input
    and hidden gate pre-activations (they differ only in the GRU's n block)."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    steps = list(range(T - 1, -1, -1) if reverse else range(T))
    dgi = np.zeros((T, B, gate_count(mode) * H), x.dtype)
    dgh = np.zeros_like(dgi)
    dw_hh = np.zeros_like(w_hh)
    dh = np.zeros_like(h0)
    dc = None
    if mode == "lstm":
        dc = np.zeros_like(c0) if dc_last is None else dc_last.copy()
    for k in range(T - 1, -1, -1):
        t = steps[k]
        h_prev = h0 if k == 0 else y[steps[k - 1]]
        dh = dh + dy[t]
        if mode == "lstm":
            i, f, g, o = np.split(saved[t], 4, axis=1)
            c_prev = c0 if k == 0 else c[steps[k - 1]]
            tc = np.tanh(c[t])
            dc = dc + dh * o * (1 - tc * tc)
            dgh[t] = np.concatenate([dc * g * i * (1 - i), dc * c_prev * f * (1 - f),
                                     dc * i * (1 - g * g), dh * tc * o * (1 - o)], axis=1)
            dgi[t] = dgh[t]
            dc = dc * f
            dh = dgh[t] @ w_hh
        elif mode == "gru":
            r, z, n, hn = np.split(saved[t], 4, axis=1)
            dn = dh * (1 - z) * (1 - n * n)
            dz = dh * (h_prev - n) * z * (1 - z)
            dr = dn * hn * r * (1 - r)
            dgi[t] = np.concatenate([dr, dz, dn], axis=1)
            dgh[t] = np.concatenate([dr, dz, dn * r], axis=1)
            dh = dh * z + dgh[t] @ w_hh
        else:
            slope = 1 - y[t] * y[t] if mode == "rnn_tanh" else (y[t] > 0).astype(x.dtype)
            dgh[t] = dgi[t] = dh * slope
            dh = dgh[t] @ w_hh
        dw_hh += dgh[t].T @ h_prev
    flat_dgi = dgi.reshape(T * B, -1)
    dw_ih = flat_dgi.T @ x.reshape(T * B, -1)
    dx = (flat_dgi @ w_ih).reshape(x.shape) if need_dx else None
    db_ih = dgi.sum(axis=(0, 1)) if has_bias else None
    db_hh = dgh.sum(axis=(0, 1)) if has_bias else None
    return dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh


class RecurrentLayer(Function):
    """One layer, one direction. Inputs: x, h0, then c0 for LSTM, w_ih, w_hh, then
    b_ih, b_hh when the layer has a bias. Settings: mode, reverse.

    Outputs: y (T, B, H), h_n (B, H) (y's last step in time order: y[0] when
    `reverse`, a view of y), and for LSTM c_n (B, H), the final cell state. backward
    takes None for an output that no gradient reached (materialize_grads off):
    dh_n is added into dy's last step, dc_n goes to the kernel as dc_last.
    """

    materialize_grads = False

    def _last_step(self, steps):
        return 0 if self.reverse else steps - 1

    def forward(self, x, h0, *rest):
        lstm = self.mode == "lstm"
        c0, rest = (rest[0], rest[1:]) if lstm else (None, rest)
        w_ih, w_hh = rest[:2]
        b_ih, b_hh = rest[2:] if len(rest) == 4 else (None, None)
        args = [None if a is None else contiguous(a)
                for a in (x, h0, c0, w_ih, w_hh, b_ih, b_hh)]
        if x.dtype == np.float32:
            y, c, saved = kernels_for(x).rnn_forward(self.mode, *args, reverse=self.reverse)
        else:
            require_host(x, self.mode)
            y, c, saved = reference_forward(self.mode, *args, self.reverse)
        self.has_bias = b_ih is not None
        self.save(*args[:5], y, c, saved)
        last = self._last_step(x.shape[0])
        return (y, y[last], c[last]) if lstm else (y, y[last])

    def backward(self, dy, dh_n, dc_n=None):
        x, h0, c0, w_ih, w_hh, y, c, saved = self.saved
        if dy is None:
            dy = xp_of(y).zeros(y.shape, y.dtype)
        elif dh_n is not None:
            dy = dy.copy()  # never write into a gradient another node may hold
        if dh_n is not None:  # h_n is y's last step: its gradient joins dy's there
            dy[self._last_step(x.shape[0])] += dh_n
        dy = contiguous(dy)
        dc_last = None if dc_n is None else contiguous(dc_n)
        args = (self.mode, dy, dc_last, x, h0, c0, w_ih, w_hh, y, c, saved)
        need_dx = self.needs_input_grad[0]
        if x.dtype == np.float32:
            grads = kernels_for(x).rnn_backward(*args, reverse=self.reverse,
                                                has_bias=self.has_bias, need_dx=need_dx)
        else:
            grads = reference_backward(*args, self.reverse, self.has_bias, need_dx)
        dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh = grads
        out = [dx, dh0] + ([dc0] if self.mode == "lstm" else []) + [dw_ih, dw_hh]
        return tuple(out + ([db_ih, db_hh] if self.has_bias else []))
