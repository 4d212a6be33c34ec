"""pydl.onnx: export a model to ONNX (checked by onnx.checker), read its weights back.

How export works. The model runs on the example input in evaluation mode, with every
weight requiring grad so that each op is recorded, and the autograd graph from the
output back to the input is what gets written: one converter per op (each Function
type), the weights as initializers under their own names (state_dict keys for an
nn.Module, Keras weight names for a Keras model). So any forward code is covered,
nn.Sequential, a custom Module's forward or a Keras Sequential/functional model, as
long as every op on the path has a converter; a few layers whose ops have none are
written whole (nn.LeakyReLU as LeakyRelu). Refused, with an error naming the op and
the layer it ran in: other ops without a converter (e.g. the Where of F.leaky_relu
called in a forward, whose condition is computed outside the graph), training-only ops
(dropout in training, a loss), advanced indexing other than one index array, and
constants that depend on the input's values (caught when they change between the two
runs below; one that keeps a single value, say a mask of an all-positive example,
cannot be told from a true constant). The model must be on the CPU.

Dynamic batch: the model runs a second time on a batch one larger (the example's
first item appended). Every size that differs between the two runs is taken as
a * batch + b and written as a shape computed from the input's batch size at run
time; constants whose shape depends on the batch (zero initial states, padding) must
hold one value and become ConstantOfShape. Recurrent layers become ONNX's LSTM, GRU
and RNN operators, the gates reordered inside the graph (PyTorch LSTM i, f, g, o ->
ONNX i, o, f, c; GRU r, z, n -> z, r, h with linear_before_reset=1), so that the
initializers stay the model's own tensors.
"""
import json

import numpy as np

from pydl import autograd
from pydl.keras.models import Model
from pydl.nn.module import Module, Parameter
from pydl.tensor import Tensor

OPSET = 17
_INT64_MAX = np.iinfo(np.int64).max
_INT64_MIN = np.iinfo(np.int64).min
# Gate order in ONNX for each of pydl's recurrent modes (pydl's own order indexed).
_GATE_ORDER = {"lstm": [0, 3, 1, 2], "gru": [1, 0, 2], "rnn_tanh": [0], "rnn_relu": [0]}
_RECURRENT_OP = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN", "rnn_relu": "RNN"}


def _onnx():
    try:
        import onnx
    except ImportError as error:
        raise ImportError("pydl.onnx needs the onnx package: pip install 'pydl[onnx]'") \
            from error
    return onnx


# ---- the model's weights by name ---------------------------------------------------

def _is_keras(model):
    return isinstance(model, Model)


def _named_tensors(model):
    """name -> Tensor for every weight and buffer of an nn.Module or Keras model."""
    if _is_keras(model):
        return {name: weight for layer in model.layers for weight, _, name in layer._weights}
    if not isinstance(model, Module):
        raise TypeError(f"pydl.onnx: expected a pydl.nn.Module or a pydl.keras model, got "
                        f"{type(model).__name__}")
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


# ---- tracing -------------------------------------------------------------------------

def _tensors_in(value):
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors_in(v)]
    return []


class _LayerTags:
    """Each layer's call, wrapped while tracing. After a call returns, the ops between its
    inputs and outputs that no inner layer claimed are tagged with its name (for error
    messages), and the outputs of the layers written whole (_LAYER_CONVERTERS) are
    remembered with their inputs."""

    def __init__(self, model):
        self.names = {}
        self.calls = {}   # id(output) -> (layer, input) for the layers in _LAYER_CONVERTERS
        self.wrapped = []
        if _is_keras(model):
            layers = [(layer.name, layer, "call") for layer in model.layers]
        else:
            layers = [(name or type(model).__name__, module, "forward")
                      for name, module in model.named_modules()]
        for name, layer, method in layers:
            self._wrap(f"{name} ({type(layer).__name__})", layer, method)

    def _wrap(self, name, layer, method):
        original = getattr(layer, method)

        def traced(*args, **kwargs):
            out = original(*args, **kwargs)
            self._tag(name, _tensors_in(out), _tensors_in(list(args) + list(kwargs.values())))
            if type(layer).__name__ in _LAYER_CONVERTERS and isinstance(out, Tensor):
                self.calls[id(out)] = (layer, args[0])
            return out
        layer.__dict__[method] = traced
        self.wrapped.append((layer, method))

    def _tag(self, name, outputs, inputs):
        stop = {id(t.grad_fn) for t in inputs if t.grad_fn is not None}
        stack = [t.grad_fn for t in outputs if t.grad_fn is not None]
        seen = set()
        while stack:
            fn = stack.pop()
            if id(fn) in seen or id(fn) in stop:
                continue
            seen.add(id(fn))
            self.names.setdefault(id(fn), name)
            stack.extend(t.grad_fn for t in fn.inputs if t.grad_fn is not None)

    def restore(self):
        for layer, method in self.wrapped:
            del layer.__dict__[method]

    def of(self, fn):
        return self.names.get(id(fn), "the model's own forward code")


def _run(model, example):
    """The model's outputs on `example` (a Tensor), every op recorded."""
    with autograd.enable_grad():
        out = model(example, training=False) if _is_keras(model) else model(example)
    outputs = _tensors_in(out)
    if not outputs or (not isinstance(out, Tensor) and len(outputs) != len(out)):
        raise TypeError(f"pydl.onnx.export: the model must return a Tensor or a tuple of "
                        f"Tensors, got {type(out).__name__}")
    return outputs


def _trace(model, examples):
    """The model's outputs for each example input, in evaluation mode, with every weight
    requiring grad; the model's modes and flags are restored afterwards."""
    weights = [t for t in _named_tensors(model).values() if isinstance(t, Parameter)]
    flags = [w.requires_grad for w in weights]
    training = None if _is_keras(model) else [(m, m.training) for m in model.modules()]
    tags = _LayerTags(model)
    try:
        if training is not None:
            model.eval()
        for w in weights:
            w.requires_grad_(True)
        return [_run(model, x) for x in examples], tags
    finally:
        tags.restore()
        for w, flag in zip(weights, flags):
            w.requires_grad_(flag)
        for module, mode in training or ():
            object.__setattr__(module, "training", mode)


def _example_tensor(value):
    array = value.data if isinstance(value, Tensor) else np.asarray(value)
    if array.dtype.kind == "f":
        return Tensor(array, requires_grad=True)
    return Tensor(array)


# ---- the graph builder -----------------------------------------------------------------

class _Refused(Exception):
    pass


class _Graph:
    """ONNX nodes and initializers written while the two traces are walked together."""

    def __init__(self, onnx, names, inputs, batch_axis, tags):
        self.onnx = onnx
        self.helper = onnx.helper
        self.weight_names = {}
        for name, t in names.items():
            if t is not None:
                self.weight_names[id(t)] = (name, t)
                self.weight_names[id(t.data)] = (name, t)
        self.inputs = inputs          # the example input of each trace
        self.batch_axis = batch_axis
        self.batch = inputs[1].shape[batch_axis] - 1 if inputs[0] is not inputs[1] else None
        self.tags = tags
        self.nodes, self.initializers, self.done = [], {}, {}
        self.counter = 0
        self._batch_value = None

    def fresh(self, hint):
        self.counter += 1
        return f"{hint}_{self.counter}"

    def node(self, op, inputs, outputs=1, **attrs):
        names = [self.fresh(op) for _ in range(outputs)]
        self.nodes.append(self.helper.make_node(op, list(inputs), names, **attrs))
        return names[0] if outputs == 1 else names

    def const(self, array, hint="const"):
        name = self.fresh(hint)
        self.initializers[name] = self.onnx.numpy_helper.from_array(np.asarray(array), name)
        return name

    def ints(self, values):
        return self.const(np.asarray(values, np.int64), "ints")

    def weight(self, name, array):
        if name not in self.initializers:
            self.initializers[name] = self.onnx.numpy_helper.from_array(
                np.asarray(array).copy(order="C"), name)
        return name

    # ---- sizes that depend on the batch ----

    def batch_size(self):
        """A 1-element int64 value: the input's batch size at run time."""
        if self._batch_value is None:
            axis = self.batch_axis
            self._batch_value = self.node("Shape", ["input"], start=axis, end=axis + 1)
        return self._batch_value

    def shape(self, first, second):
        """An int64 shape value for a tensor of shape `first` in the first trace and
        `second` in the second: constant sizes as they are, the others a * batch + b."""
        if len(first) != len(second):
            raise _Refused(f"its rank depends on the batch size ({first} vs {second})")
        if tuple(first) == tuple(second):
            return self.ints(list(first))
        parts = []
        for a, b in zip(first, second):
            if a == b:
                parts.append(self.ints([a]))
                continue
            slope = b - a
            offset = a - slope * self.batch
            scaled = self.node("Mul", [self.batch_size(), self.ints([slope])])
            parts.append(self.node("Add", [scaled, self.ints([offset])]) if offset else scaled)
        return self.node("Concat", parts, axis=0)

    # ---- walking the traces ----

    def value(self, first, second):
        """The ONNX value name of tensor `first` (trace 1) / `second` (trace 2)."""
        key = id(first)
        if key not in self.done:
            self.done[key] = self._convert(first, second)
        return self.done[key]

    def _convert(self, first, second):
        if first is self.inputs[0]:
            return "input"
        if id(first) in self.weight_names:
            name, tensor = self.weight_names[id(first)]
            return self.weight(name, tensor.data)
        call = self.tags.calls.get(id(first))
        if call is not None:
            layer, layer_input = call
            value = self.value(layer_input, self.tags.calls[id(second)][1])
            return _LAYER_CONVERTERS[type(layer).__name__](self, layer, value)
        fn = first.grad_fn
        if fn is None:
            return self.constant(first.data, second.data)
        other = second.grad_fn
        if type(other) is not type(fn):
            raise ValueError(f"pydl.onnx.export: the model runs different ops at another "
                             f"batch size ({fn.name()} vs {type(other).__name__}) in "
                             f"{self.tags.of(fn)}")
        converter = _CONVERTERS.get(type(fn).__name__)
        if converter is None:
            raise NotImplementedError(
                f"pydl.onnx.export: op {type(fn).__name__} (in {self.tags.of(fn)}) has no ONNX "
                f"converter; supported ops: {', '.join(sorted(_CONVERTERS))}")
        if id(fn) in self.done:  # an op of several outputs, converted for another one
            return self.done[id(fn)][first.output_nr]
        inputs = [self.value(a, b) for a, b in zip(fn.inputs, other.inputs)]
        try:
            names = converter(self, fn, other, inputs, first, second)
            if fn.outputs is None:
                return names
            self.done[id(fn)] = names  # one value name per output
            return names[first.output_nr]
        except _Refused as reason:
            raise NotImplementedError(f"pydl.onnx.export: op {type(fn).__name__} (in "
                                      f"{self.tags.of(fn)}) cannot be exported: {reason}") \
                from None

    def constant(self, first, second):
        """A tensor that no op recorded: an initializer, or ConstantOfShape when its shape
        depends on the batch (then every element must hold one value)."""
        first, second = np.asarray(first), np.asarray(second)
        name = self.weight_names.get(id(first))
        if name is not None:
            return self.weight(name[0], first)
        if first.shape == second.shape:
            if not np.array_equal(first, second, equal_nan=first.dtype.kind == "f"):
                raise NotImplementedError(
                    "pydl.onnx.export: a constant of the graph changes with the input's values "
                    "(computed from the input outside recorded ops, e.g. a mask or indices "
                    "built with NumPy); compute it with tensor ops instead")
            return self.const(first)
        flat = first.reshape(-1)
        if flat.size == 0 or not (np.all(flat == flat[0]) and np.all(second == flat[0])):
            raise NotImplementedError(
                f"pydl.onnx.export: a constant whose shape depends on the batch "
                f"({first.shape} vs {second.shape}) holds more than one value")
        fill = self.onnx.numpy_helper.from_array(flat[:1].copy(), "value")
        return self.node("ConstantOfShape", [self.shape(first.shape, second.shape)],
                         value=fill)



# ---- converters: (graph, fn of trace 1, fn of trace 2, input names, out shapes) -> name ----

def _same(op):
    """An op with an ONNX namesake taking the same inputs and no attributes."""
    return lambda g, fn, other, inputs, out, out2: g.node(op, inputs)


def _linear(g, fn, other, inputs, out, out2):
    x, weight = inputs[:2]
    if out.ndim == 2:
        return g.node("Gemm", inputs, transB=1)
    y = g.node("MatMul", [x, g.node("Transpose", [weight], perm=[1, 0])])
    return g.node("Add", [y, inputs[2]]) if len(inputs) == 3 else y


def _conv(g, fn, other, inputs, out, out2):
    p = list(fn.padding)
    return g.node("Conv", inputs, strides=list(fn.stride), pads=p + p,
                  dilations=list(fn.dilation), group=fn.groups)


def _max_pool(g, fn, other, inputs, out, out2):
    if fn.indices_out is not None:
        raise _Refused("return_indices=True has no ONNX equivalent here")
    p = list(fn.padding)
    return g.node("MaxPool", inputs, kernel_shape=list(fn.kernel), strides=list(fn.stride),
                  pads=p + p, dilations=list(fn.dilation), ceil_mode=int(fn.ceil_mode))


def _avg_pool(g, fn, other, inputs, out, out2):
    p = list(fn.padding)
    return g.node("AveragePool", inputs, kernel_shape=list(fn.kernel), strides=list(fn.stride),
                  pads=p + p, ceil_mode=int(fn.ceil_mode),
                  count_include_pad=int(fn.count_include_pad))


def _adaptive_avg_pool(g, fn, other, inputs, out, out2):
    if tuple(fn.output_size) != (1, 1):
        raise _Refused(f"output_size {tuple(fn.output_size)} does not tile the input evenly "
                       "(only even tilings and (1, 1) export)")
    return g.node("GlobalAveragePool", inputs)


def _affine_inputs(g, inputs, shape, dtype):
    """scale and bias: the layer's, or ones and zeros of `shape` when it has none."""
    if len(inputs) == 3:
        return inputs[1:]
    return [g.const(np.ones(shape, dtype)), g.const(np.zeros(shape, dtype))]


def _batch_norm(g, fn, other, inputs, out, out2):
    if fn.training:
        raise _Refused("batch statistics (training mode, or no running statistics) do not "
                       "export; call eval() and keep track_running_stats=True")
    scale, bias = _affine_inputs(g, inputs, out.shape[1], out.dtype)
    mean = g.constant(fn.running_mean, other.running_mean)
    var = g.constant(fn.running_var, other.running_var)
    return g.node("BatchNormalization", [inputs[0], scale, bias, mean, var], epsilon=fn.eps)


def _layer_norm(g, fn, other, inputs, out, out2):
    k = fn.normalized_ndim
    scale, bias = _affine_inputs(g, inputs, out.shape[-k:], out.dtype)
    return g.node("LayerNormalization", [inputs[0], scale, bias], axis=-k, epsilon=fn.eps)


def _embedding(g, fn, other, inputs, out, out2):
    if fn.indices is g.inputs[0].data:
        indices = "input"
    else:
        indices = g.constant(fn.indices, other.indices)
    return g.node("Gather", [inputs[0], indices], axis=0)


def _gelu(g, fn, other, inputs, out, out2):
    # x Phi(x) = 0.5 x (1 + erf(x / sqrt 2))
    x = inputs[0]
    dtype = out.dtype
    half = g.const(np.asarray(0.5, dtype))
    one = g.const(np.asarray(1.0, dtype))
    erf = g.node("Erf", [g.node("Mul", [x, g.const(np.asarray(1 / np.sqrt(2), dtype))])])
    return g.node("Mul", [g.node("Mul", [x, half]), g.node("Add", [erf, one])])


def _softmax(op):
    return lambda g, fn, other, inputs, out, out2: g.node(op, inputs, axis=fn.dim)


def _clamp(g, fn, other, inputs, out, out2):
    bounds = ["" if v is None else g.const(np.asarray(v, out.dtype)) for v in (fn.low, fn.high)]
    return g.node("Clip", inputs + bounds)


def _as_type(g, fn, other, inputs, out, out2):
    to = g.helper.np_dtype_to_tensor_dtype(np.dtype(fn.dtype))
    return g.node("Cast", inputs, to=to)


def _reduce(op, axes_as_input):
    def convert(g, fn, other, inputs, out, out2):
        keep = int(fn.keepdim)
        if fn.axes is None:
            return g.node(op, inputs, keepdims=keep)
        if axes_as_input:
            return g.node(op, inputs + [g.ints(list(fn.axes))], keepdims=keep)
        return g.node(op, inputs, axes=list(fn.axes), keepdims=keep)
    return convert


def _reshape(g, fn, other, inputs, out, out2):
    return g.node("Reshape", [inputs[0], g.shape(out.shape, out2.shape)])


def _expand(g, fn, other, inputs, out, out2):
    return g.node("Expand", [inputs[0], g.shape(out.shape, out2.shape)])


def _permute(g, fn, other, inputs, out, out2):
    return g.node("Transpose", inputs, perm=[int(d) for d in fn.dims])


def _cat(g, fn, other, inputs, out, out2):
    return g.node("Concat", inputs, axis=fn.dim)


def _stack(g, fn, other, inputs, out, out2):
    axis = g.ints([fn.dim])
    return g.node("Concat", [g.node("Unsqueeze", [x, axis]) for x in inputs], axis=fn.dim)


def _slice_bounds(part):
    step = 1 if part.step is None else int(part.step)
    if step > 0:
        start = 0 if part.start is None else int(part.start)
        stop = _INT64_MAX if part.stop is None else int(part.stop)
    else:
        start = _INT64_MAX if part.start is None else int(part.start)
        stop = _INT64_MIN if part.stop is None else int(part.stop)
    return start, stop, step


def _get_item(g, fn, other, inputs, out, out2):
    """Basic indexing (ints, slices, None, Ellipsis) as one Slice, Gathers for the ints
    (last axis first, so earlier axis numbers stay put) and one Unsqueeze for the Nones;
    a single integer index array on one axis as a Gather."""
    index = fn.index if isinstance(fn.index, tuple) else (fn.index,)
    ndim = len(fn.source_shape)
    arrays = [i for i, p in enumerate(index) if hasattr(p, "shape") and np.ndim(p) > 0]
    if arrays:
        part = np.asarray(index[arrays[0]])
        rest = [p for i, p in enumerate(index) if i != arrays[0]]
        if len(arrays) > 1 or part.dtype.kind not in "iu" or \
                any(p is not Ellipsis and p != slice(None) for p in rest):
            raise _Refused("only one integer index array on one axis exports (as Gather)")
        if repr(fn.index) != repr(other.index):
            raise _Refused("the index array changes with the batch size")
        axis = arrays[0] if Ellipsis not in index[:arrays[0]] else \
            ndim - (len(index) - arrays[0])
        return g.node("Gather", [inputs[0], g.const(part.astype(np.int64))], axis=axis)
    if Ellipsis in index:
        at = index.index(Ellipsis)
        used = sum(1 for p in index if p is not None and p is not Ellipsis)
        index = index[:at] + (slice(None),) * (ndim - used) + index[at + 1:]
    starts, stops, steps, axes, picks, nones = [], [], [], [], [], []
    axis = out_axis = 0
    for part in index:
        if part is None:
            nones.append(out_axis)
            out_axis += 1
            continue
        if isinstance(part, slice):
            if part != slice(None):
                start, stop, step = _slice_bounds(part)
                starts.append(start), stops.append(stop), steps.append(step), axes.append(axis)
            out_axis += 1
        else:
            picks.append((axis, int(part)))
        axis += 1
    x = inputs[0]
    if axes:
        x = g.node("Slice", [x, g.ints(starts), g.ints(stops), g.ints(axes), g.ints(steps)])
    for axis, position in reversed(picks):
        x = g.node("Gather", [x, g.const(np.asarray(position, np.int64))], axis=axis)
    if nones:
        x = g.node("Unsqueeze", [x, g.ints(nones)])
    return x if x is not inputs[0] else g.node("Identity", [x])


def _reordered_gates(g, name, gates, mode):
    """A (G*H, ...) weight or (G*H,) bias with its gate blocks in ONNX's order."""
    parts = g.node("Split", [name], outputs=gates, axis=0) if gates > 1 else [name]
    parts = [parts] if isinstance(parts, str) else parts
    return g.node("Concat", [parts[i] for i in _GATE_ORDER[mode]], axis=0) \
        if gates > 1 else name


def _recurrent(g, fn, other, inputs, out, out2):
    """One RecurrentLayer (a layer, a direction) as ONNX's LSTM/GRU/RNN operator."""
    mode, lstm = fn.mode, fn.mode == "lstm"
    x, h0 = inputs[:2]
    c0, rest = (inputs[2], inputs[3:]) if lstm else (None, inputs[2:])
    gates = len(_GATE_ORDER[mode])
    hidden = fn.inputs[4 if lstm else 3].shape[1]  # w_hh is (G * H, H)
    zero = g.ints([0])
    weights = [g.node("Unsqueeze", [_reordered_gates(g, w, gates, mode), zero])
               for w in rest[:2]]
    bias = ""
    if len(rest) == 4:
        bias = g.node("Unsqueeze", [g.node("Concat", [_reordered_gates(g, b, gates, mode)
                                                      for b in rest[2:]], axis=0), zero])
    args = [x, *weights, bias, "", g.node("Unsqueeze", [h0, zero])]
    attrs = {"hidden_size": int(hidden), "direction": "reverse" if fn.reverse else "forward"}
    if lstm:
        args.append(g.node("Unsqueeze", [c0, zero]))
    elif mode == "gru":
        attrs["linear_before_reset"] = 1
    else:
        attrs["activations"] = ["Tanh" if mode == "rnn_tanh" else "Relu"]
    results = g.node(_RECURRENT_OP[mode], args, outputs=3 if lstm else 2, **attrs)
    # pydl's op gives y (T, B, H), h_n and c_n (B, H); ONNX's Y is (T, 1, B, H), Y_h
    # and Y_c (1, B, H).
    return (g.node("Squeeze", [results[0], g.ints([1])]),
            *(g.node("Squeeze", [state, g.ints([0])]) for state in results[1:]))


def _identity(g, fn, other, inputs, out, out2):
    return g.node("Identity", inputs)


_CONVERTERS = {
    "Linear": _linear, "MatMul": _same("MatMul"), "Conv2d": _conv, "MaxPool2d": _max_pool,
    "AvgPool2d": _avg_pool, "AdaptiveAvgPool2d": _adaptive_avg_pool,
    "BatchNorm": _batch_norm, "LayerNorm": _layer_norm, "Embedding": _embedding,
    "Add": _same("Add"), "Sub": _same("Sub"), "Mul": _same("Mul"), "Div": _same("Div"),
    "Pow": _same("Pow"), "Maximum": _same("Max"), "Minimum": _same("Min"),
    "Neg": _same("Neg"), "Abs": _same("Abs"), "Exp": _same("Exp"), "Log": _same("Log"),
    "Sqrt": _same("Sqrt"), "Relu": _same("Relu"), "Sigmoid": _same("Sigmoid"),
    "Tanh": _same("Tanh"), "Gelu": _gelu, "Clamp": _clamp, "AsType": _as_type,
    "Softmax": _softmax("Softmax"), "LogSoftmax": _softmax("LogSoftmax"),
    "Sum": _reduce("ReduceSum", True), "Mean": _reduce("ReduceMean", False),
    "Amax": _reduce("ReduceMax", False), "Amin": _reduce("ReduceMin", False),
    "Reshape": _reshape, "Expand": _expand, "Permute": _permute, "GetItem": _get_item,
    "Cat": _cat, "Stack": _stack, "RecurrentLayer": _recurrent, "ToDevice": _identity,
}


# Layers whose ops have no converter, written whole: (graph, layer, input name) -> name.
_LAYER_CONVERTERS = {
    "LeakyReLU": lambda g, layer, x: g.node("LeakyRelu", [x], alpha=float(layer.negative_slope)),
}


# ---- the public functions ---------------------------------------------------------------

def _grown(example, axis):
    """The example with its first item along `axis` appended: a batch one larger."""
    array = example.data
    first = np.take(array, [0], axis=axis)
    return _example_tensor(np.concatenate([array, first], axis=axis))


def _value_info(helper, name, array, first_shape, second_shape, dynamic):
    dims = []
    for a, b in zip(first_shape, second_shape):
        dims.append(a if a == b or not dynamic else ("batch" if b == a + 1 else None))
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(array.dtype),
                                         dims)


def export(model, example_input, path, dynamic_batch=True, batch_axis=0, opset=OPSET):
    """Writes `model` (a pydl.nn.Module or a pydl.keras model) as an ONNX file at `path`,
    traced on `example_input` (see the module's docstring); checked with onnx.checker.

    dynamic_batch: the input's axis `batch_axis` (and every size that follows from it)
    may have any size at run time. Returns the onnx ModelProto."""
    onnx = _onnx()
    weights = _named_tensors(model)
    on_device = [n for n, t in weights.items() if t is not None and t.device.type != "cpu"]
    if on_device:
        raise ValueError(f"pydl.onnx.export: the model's weights must be on the CPU "
                         f"({on_device[0]} is on {weights[on_device[0]].device}); call "
                         "model.cpu() first")
    examples = [_example_tensor(example_input)]
    if dynamic_batch:
        examples.append(_grown(examples[0], batch_axis))
    (outputs, *others), tags = _trace(model, examples)
    second = others[0] if others else outputs
    graph = _Graph(onnx, _named_tensors(model), (examples[0], examples[-1]), batch_axis, tags)
    names = []
    for k, (a, b) in enumerate(zip(outputs, second)):
        value = graph.value(a, b)
        name = "output" if len(outputs) == 1 else f"output_{k}"
        graph.nodes.append(onnx.helper.make_node("Identity", [value], [name]))
        names.append(name)
    x = examples[0].data
    helper = onnx.helper
    graph_proto = helper.make_graph(
        graph.nodes, type(model).__name__,
        [_value_info(helper, "input", x, x.shape, examples[-1].shape, dynamic_batch)],
        [_value_info(helper, n, a.data, a.shape, b.shape, dynamic_batch)
         for n, a, b in zip(names, outputs, second)],
        list(graph.initializers.values()))
    proto = helper.make_model(graph_proto, producer_name="pydl",
                              opset_imports=[helper.make_opsetid("", opset)])
    # The names of the weights written (those the graph uses), in the model's order:
    # load_weights pairs a Keras model's weights by position, as Keras does, since layer
    # names differ between model instances.
    written = [n for n in weights if n in graph.initializers]
    helper.set_model_props(proto, {"pydl.weight_names": json.dumps(written)})
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
    return proto


def load_weights(path, model, strict=True):
    """Copies the weights stored in the ONNX file at `path` (the initializers export
    wrote under the model's weight and buffer names) into the model; nothing in the file
    is executed. A Keras model whose weight names are not those in the file (another
    instance of the same architecture) takes them by position, in the order export
    recorded. With strict, KeyError when a parameter of the model is not in the file or a
    weight of the file is not in the model (buffers the graph never read, such as
    num_batches_tracked, are not written); a shape mismatch always raises ValueError.
    Returns the names loaded."""
    onnx = _onnx()
    proto = onnx.load(str(path), load_external_data=False)
    initializers = {init.name: init for init in proto.graph.initializer}
    props = {p.key: p.value for p in proto.metadata_props}
    written = json.loads(props.get("pydl.weight_names", "[]"))
    targets = {n: t for n, t in _named_tensors(model).items() if t is not None}
    if _is_keras(model) and any(n not in targets for n in written) and \
            len(written) == len(targets):
        stored = {n: initializers[w] for n, w in zip(targets, written)}
    else:
        stored = {n: initializers[n] for n in written}
    missing = [n for n, t in targets.items() if n not in stored and isinstance(t, Parameter)]
    unexpected = [n for n in stored if n not in targets]
    if strict and (missing or unexpected):
        raise KeyError(f"pydl.onnx.load_weights: {path} and the model differ: parameters "
                       f"missing from the file {missing}, weights of the file not in the "
                       f"model {unexpected}")
    loaded = []
    for name, target in targets.items():
        if name not in stored:
            continue
        array = onnx.numpy_helper.to_array(stored[name])
        if array.shape != tuple(target.shape):
            raise ValueError(f"pydl.onnx.load_weights: {name} has shape {array.shape} in "
                             f"{path} but {tuple(target.shape)} in the model")
        target.data[...] = array.astype(target.dtype, copy=False)
        loaded.append(name)
    return loaded


__all__ = ["export", "load_weights"]
