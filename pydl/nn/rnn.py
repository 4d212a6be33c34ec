"""Recurrent layers RNN, LSTM, GRU and their one-step cells, as in torch.nn.

Constructor arguments, parameter names (weight_ih_l{k}[_reverse], ...), shapes
and gate order match PyTorch, so a torch state_dict loads as it is. Each layer
and direction runs as one RecurrentLayer op over the whole sequence (the input
projection as one GEMM, then per step one GEMM and one fused gate kernel); this
module stacks the layers and joins the two directions.
"""
import math
import numbers


from pydl._random import generator
from pydl.nn.init import uniform_parameter
from pydl.nn.module import Module
from pydl.ops.rnn import RecurrentLayer, gate_count
from pydl.tensor import _as_tensor, cat, stack, tensor, zeros


def _check_sizes(name, input_size, hidden_size):
    for arg, value in (("input_size", input_size), ("hidden_size", hidden_size)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name}: {arg} must be a positive integer, got {value!r}")


def _layer(x, h0, c0, weights, mode, reverse):
    """One layer, one direction: (y (T, B, H), h_n, c_n or None)."""
    if mode != "lstm":
        return RecurrentLayer.apply(x, h0, *weights, mode=mode, reverse=reverse) + (None,)
    return RecurrentLayer.apply(x, h0, c0, *weights, mode=mode, reverse=reverse)


class RNNBase(Module):
    """The stacked, optionally bidirectional recurrent layer behind RNN, LSTM and GRU."""

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False):
        super().__init__()
        name = type(self).__name__
        _check_sizes(name, input_size, hidden_size)
        if not isinstance(num_layers, numbers.Integral) or num_layers < 1:
            raise ValueError(f"{name}: num_layers must be a positive integer, got {num_layers!r}")
        if not isinstance(dropout, numbers.Real) or not 0 <= dropout <= 1:
            raise ValueError(f"{name}: dropout must be a number in [0, 1], got {dropout!r}")
        self.mode = mode
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first = bool(bias), bool(batch_first)
        self.dropout, self.bidirectional = float(dropout), bool(bidirectional)
        directions = 2 if bidirectional else 1
        rows, bound = gate_count(mode) * hidden_size, 1 / math.sqrt(hidden_size)
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * directions
            for suffix in ("", "_reverse")[:directions]:
                setattr(self, f"weight_ih_l{layer}{suffix}",
                        uniform_parameter((rows, layer_input), bound))
                setattr(self, f"weight_hh_l{layer}{suffix}",
                        uniform_parameter((rows, hidden_size), bound))
                if self.bias:
                    setattr(self, f"bias_ih_l{layer}{suffix}", uniform_parameter((rows,), bound))
                    setattr(self, f"bias_hh_l{layer}{suffix}", uniform_parameter((rows,), bound))

    def _weights(self, layer, direction):
        suffix = "_reverse" if direction else ""
        names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if self.bias else [])
        return [getattr(self, f"{n}_l{layer}{suffix}") for n in names]

    def _initial_state(self, state, what, batch, batched, like):
        """The (layers * directions, B, H) initial state `state`, or zeros (in the dtype
        and on the device of tensor `like`) for None."""
        dtype = like.dtype
        name = type(self).__name__
        count = self.num_layers * (2 if self.bidirectional else 1)
        expected = (count, batch, self.hidden_size) if batched else (count, self.hidden_size)
        if state is None:
            return zeros(count, batch, self.hidden_size, dtype=dtype, device=like.device)
        state = _as_tensor(state)
        if tuple(state.shape) != expected:
            raise ValueError(f"{name}: {what} must have shape {expected} (num_layers * "
                             f"num_directions, batch, hidden_size), got {tuple(state.shape)}")
        if state.dtype != dtype:
            raise TypeError(f"{name}: {what} is {state.dtype} but the input is {dtype}")
        return state if batched else state.unsqueeze(1)

    def forward(self, input, hx=None):
        name, lstm = type(self).__name__, self.mode == "lstm"
        input = _as_tensor(input)
        if input.ndim not in (2, 3):
            raise ValueError(f"{name}: input must be 3-D (seq_len, batch, input_size), or 2-D "
                             f"(seq_len, input_size) unbatched; got shape {tuple(input.shape)}")
        batched = input.ndim == 3
        if input.shape[-1] != self.input_size:
            raise ValueError(f"{name}: input has shape {tuple(input.shape)} but input_size is "
                             f"{self.input_size} (the last axis must match it)")
        weight_dtype = self.weight_ih_l0.dtype
        if input.dtype != weight_dtype:
            raise TypeError(f"{name}: input is {input.dtype} but the weights are {weight_dtype}; "
                            "convert one of them (e.g. module.double() or input.float())")
        if not batched:
            x = input.unsqueeze(1)
        elif self.batch_first:
            x = input.transpose(0, 1)
        else:
            x = input
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"{name}: input of shape {tuple(input.shape)} has an empty sequence "
                             "or batch")
        batch = x.shape[1]
        if lstm:
            if hx is not None and not (isinstance(hx, (tuple, list)) and len(hx) == 2):
                raise TypeError(f"{name}: hx must be a tuple (h_0, c_0), got {type(hx).__name__}")
            h0, c0 = (None, None) if hx is None else hx
            h0 = self._initial_state(h0, "h_0", batch, batched, x)
            c0 = self._initial_state(c0, "c_0", batch, batched, x)
        else:
            h0 = self._initial_state(hx, "hx", batch, batched, x)
            c0 = None
        directions = 2 if self.bidirectional else 1
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(directions):
                k = layer * directions + direction
                y, h_last, c_last = _layer(x, h0[k], c0[k] if lstm else None,
                                           self._weights(layer, direction), self.mode,
                                           bool(direction))
                outputs.append(y)
                h_n.append(h_last)
                c_n.append(c_last)
            x = outputs[0] if directions == 1 else cat(outputs, dim=2)
            if self.training and self.dropout > 0 and layer < self.num_layers - 1:
                keep = generator().random(x.shape) >= self.dropout
                scale = 1 / (1 - self.dropout) if self.dropout < 1 else 0.0  # p = 1 drops all
                x = x * tensor((keep * scale).astype(x.dtype), device=x.device)
        output = x
        h_n = stack(h_n)
        c_n = stack(c_n) if lstm else None
        if not batched:
            output, h_n = output.squeeze(1), h_n.squeeze(1)
            c_n = c_n.squeeze(1) if lstm else None
        elif self.batch_first:
            output = output.transpose(0, 1)
        return (output, (h_n, c_n)) if lstm else (output, h_n)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.mode == "rnn_relu":
            s += ", nonlinearity='relu'"
        for attr, default in (("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False)):
            if getattr(self, attr) != default:
                s += f", {attr}={getattr(self, attr)}"
        return s


def _rnn_mode(name, nonlinearity):
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"{name}: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    return "rnn_" + nonlinearity


class RNN(RNNBase):
    """Elman RNN: h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), act tanh or relu.

    >>> rnn = nn.RNN(input_size=4, hidden_size=6, num_layers=2)
    >>> out, h = rnn(pydl.randn(7, 3, 4))
    >>> out.shape, h.shape
    ((7, 3, 6), (2, 3, 6))
    """

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False):
        super().__init__(_rnn_mode("RNN", nonlinearity), input_size, hidden_size, num_layers,
                         bias, batch_first, dropout, bidirectional)
        self.nonlinearity = nonlinearity


class LSTM(RNNBase):
    """LSTM with gates (i, f, g, o): c_t = f c_{t-1} + i g, h_t = o tanh(c_t).
    forward(input, (h_0, c_0)=None) returns (output, (h_n, c_n)).

    >>> lstm = nn.LSTM(4, 6, batch_first=True)
    >>> out, (h, c) = lstm(pydl.randn(3, 7, 4))
    >>> out.shape, h.shape, c.shape
    ((3, 7, 6), (1, 3, 6), (1, 3, 6))
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False):
        super().__init__("lstm", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional)


class GRU(RNNBase):
    """GRU with gates (r, z, n): n = tanh(W_in x + b_in + r (W_hn h + b_hn)),
    h_t = (1 - z) n + z h_{t-1}.

    >>> gru = nn.GRU(4, 6, bidirectional=True)
    >>> out, h = gru(pydl.randn(7, 3, 4))
    >>> out.shape, h.shape
    ((7, 3, 12), (2, 3, 6))
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False):
        super().__init__("gru", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional)


# ---- cells: one time step -------------------------------------------------------

class RNNCellBase(Module):
    def __init__(self, mode, input_size, hidden_size, bias):
        super().__init__()
        _check_sizes(type(self).__name__, input_size, hidden_size)
        self.mode, self.input_size, self.hidden_size, self.bias = (
            mode, input_size, hidden_size, bool(bias))
        rows, bound = gate_count(mode) * hidden_size, 1 / math.sqrt(hidden_size)
        self.weight_ih = uniform_parameter((rows, input_size), bound)
        self.weight_hh = uniform_parameter((rows, hidden_size), bound)
        if self.bias:
            self.bias_ih = uniform_parameter((rows,), bound)
            self.bias_hh = uniform_parameter((rows,), bound)

    def _state(self, state, what, batch, batched, like):
        name = type(self).__name__
        expected = (batch, self.hidden_size) if batched else (self.hidden_size,)
        if state is None:
            return zeros(batch, self.hidden_size, dtype=like.dtype, device=like.device)
        state = _as_tensor(state)
        if tuple(state.shape) != expected:
            raise ValueError(f"{name}: {what} must have shape {expected} (batch, hidden_size), "
                             f"got {tuple(state.shape)}")
        return state if batched else state.unsqueeze(0)

    def forward(self, input, hx=None):
        name, lstm = type(self).__name__, self.mode == "lstm"
        input = _as_tensor(input)
        if input.ndim not in (1, 2) or input.shape[-1] != self.input_size:
            raise ValueError(f"{name}: input must be (batch, {self.input_size}) or "
                             f"({self.input_size},) for input_size {self.input_size}, got shape "
                             f"{tuple(input.shape)}")
        if input.dtype != self.weight_ih.dtype:
            raise TypeError(f"{name}: input is {input.dtype} but the weights are "
                            f"{self.weight_ih.dtype}")
        batched = input.ndim == 2
        x = input if batched else input.unsqueeze(0)
        batch = x.shape[0]
        if lstm:
            h0, c0 = (None, None) if hx is None else hx
            h0 = self._state(h0, "h_0", batch, batched, x)
            c0 = self._state(c0, "c_0", batch, batched, x)
        else:
            h0, c0 = self._state(hx, "hx", batch, batched, x), None
        weights = [self.weight_ih, self.weight_hh] + (
            [self.bias_ih, self.bias_hh] if self.bias else [])
        _, h, c = _layer(x.unsqueeze(0), h0, c0, weights, self.mode, False)
        if not batched:
            h, c = h[0], (c[0] if lstm else None)
        return (h, c) if lstm else h

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")


class RNNCell(RNNCellBase):
    """One step of RNN: h' = act(W_ih x + b_ih + W_hh h + b_hh).

    >>> cell = nn.RNNCell(4, 6)
    >>> cell(pydl.randn(3, 4)).shape
    (3, 6)
    """

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh"):
        super().__init__(_rnn_mode("RNNCell", nonlinearity), input_size, hidden_size, bias)
        self.nonlinearity = nonlinearity


class LSTMCell(RNNCellBase):
    """One step of LSTM: forward(input, (h, c)=None) returns (h', c').

    >>> h, c = nn.LSTMCell(4, 6)(pydl.randn(3, 4))
    >>> h.shape, c.shape
    ((3, 6), (3, 6))
    """

    def __init__(self, input_size, hidden_size, bias=True):
        super().__init__("lstm", input_size, hidden_size, bias)


class GRUCell(RNNCellBase):
    """One step of GRU: forward(input, h=None) returns h'.

    >>> nn.GRUCell(4, 6)(pydl.randn(3, 4)).shape
    (3, 6)
    """

    def __init__(self, input_size, hidden_size, bias=True):
        super().__init__("gru", input_size, hidden_size, bias)
