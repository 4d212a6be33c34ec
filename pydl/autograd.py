"""Reverse-mode autograd: grad mode, the Function node, and the backward engine.

Every differentiable op is a Function subclass. `forward` maps input arrays to
an output array, or to a tuple of them (then `apply` returns a tuple of
tensors), and keeps (via `save`) what `backward` needs; `backward` takes one
gradient per output and returns one gradient per input (None where an input
needs none). When grad mode is on and an input requires grad, `apply` records
the Function as each output's `grad_fn` (the output's `output_nr` says which
one it is), linking it to its input tensors: that chain of nodes is the graph
`Tensor.backward` walks.

This module sits below pydl.tensor: tensor registers its constructor here
(`register_tensor_wrapper`) rather than being imported.
"""
import functools
import os
import threading
import traceback
import weakref

import numpy as np

from pydl._device import device_of


# ---- grad mode ----------------------------------------------------------------

class _GradState(threading.local):
    enabled = True
    anomaly = False  # detect_anomaly(): check every op's output and gradients


_state = _GradState()


def is_grad_enabled():
    """True when ops record the graph (the default); False inside no_grad().

    >>> with pydl.no_grad():
    ...     print(pydl.is_grad_enabled())
    False
    >>> pydl.is_grad_enabled()
    True
    """
    return _state.enabled


class _GradMode:
    """Sets grad mode for a with-block, or for every call of a decorated function."""

    enabled = True

    def __new__(cls, func=None):
        mode = super().__new__(cls)
        return mode if func is None else mode(func)  # bare decorator: @no_grad

    def __init__(self, func=None):
        self._previous = []

    def __enter__(self):
        self._previous.append(_state.enabled)
        _state.enabled = self.enabled
        return self

    def __exit__(self, *exc_info):
        _state.enabled = self._previous.pop()
        return False

    def __call__(self, func):
        @functools.wraps(func)
        def run_in_mode(*args, **kwargs):
            with type(self)():
                return func(*args, **kwargs)
        return run_in_mode


class no_grad(_GradMode):
    """Turns graph recording off: `with pydl.no_grad(): ...` or `@pydl.no_grad()`.

    >>> x = pydl.ones(2, requires_grad=True)
    >>> with pydl.no_grad():
    ...     y = x * 2
    >>> y.requires_grad
    False
    """
    enabled = False


class enable_grad(_GradMode):
    """Turns graph recording back on, e.g. inside a no_grad block.

    >>> x = pydl.ones(2, requires_grad=True)
    >>> with pydl.no_grad():
    ...     with pydl.enable_grad():
    ...         y = x * 2
    >>> y.requires_grad
    True
    """
    enabled = True


class detect_anomaly:
    """Anomaly mode for a with-block (or a decorated function): every op's output, and
    every gradient backward computes, is checked for NaN and Inf; the first one found
    raises RuntimeError naming the op (and, in backward, where its forward was called).
    Slow (a pass over every array): for debugging, as torch.autograd.detect_anomaly."""

    def __init__(self, check_nan=True):
        self.check_nan = bool(check_nan)
        self._previous = []

    def __enter__(self):
        self._previous.append(_state.anomaly)
        _state.anomaly = self.check_nan
        return self

    def __exit__(self, *exc_info):
        _state.anomaly = self._previous.pop()
        return False

    def __call__(self, func):
        @functools.wraps(func)
        def run_in_mode(*args, **kwargs):
            with detect_anomaly(self.check_nan):
                return func(*args, **kwargs)
        return run_in_mode


def set_detect_anomaly(mode):
    _state.anomaly = bool(mode)


def is_anomaly_enabled():
    return _state.anomaly


def _non_finite(array):
    """'NaN' or 'Inf' when a floating array holds one, else None."""
    if array is None or getattr(array, "dtype", None) is None or array.dtype.kind not in "fc":
        return None
    xp = _xp(array)
    if bool(xp.isnan(array).any()):
        return "NaN"
    if bool(xp.isinf(array).any()):
        return "Inf"
    return None


def _xp(array):
    return np if isinstance(array, np.ndarray) else __import__("cupy")


# ---- the tensor type ------------------------------------------------------------
# Tensor._wrap(array, grad_fn=None, output_nr=0), registered by pydl.tensor when it is
# imported: apply wraps its outputs with it, and leaves' .grad.
_wrap_tensor = None


def register_tensor_wrapper(wrap):
    global _wrap_tensor
    _wrap_tensor = wrap


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _caller():
    """file:line of the innermost frame outside pydl: where the user called the op."""
    for frame in reversed(traceback.extract_stack()):
        if not os.path.abspath(frame.filename).startswith(_PACKAGE_DIR):
            return f"{frame.filename}:{frame.lineno}"
    return "?"


def _check_forward(fn, arrays, outputs):
    found = next(filter(None, map(_non_finite, outputs)), None)
    if found is None:
        return
    received = any(_non_finite(a) for a in arrays)
    raise RuntimeError(f"detect_anomaly: {type(fn).__name__} "
                       f"{'passed on' if received else 'produced'} {found} in its forward output"
                       f"{' (an input held it already)' if received else ''}, called at "
                       f"{_caller()}")


def _check_backward(node, grads):
    for i, g in enumerate(grads):
        found = _non_finite(g)
        if found is not None:
            raise RuntimeError(f"detect_anomaly: {node.name()} returned {found} in the gradient "
                               f"of its input {i}; its forward was called at "
                               f"{getattr(node, 'anomaly_site', '?')}")


# ---- graph nodes --------------------------------------------------------------

class Function:
    """One recorded op. Subclasses implement forward(*arrays) and backward(*grads).

    forward returns one array, or a tuple of arrays for an op of several outputs
    (apply then returns a tuple of tensors). backward receives one gradient per
    output, in order; an output no gradient reached gets zeros of its shape (as
    torch.autograd.Function, whose grads are materialized by default), so the
    formulas need no None case, or None where the class sets
    `materialize_grads = False` (to skip work for unused outputs). backward is not
    called at all when no output got a gradient.

    Keyword arguments of `apply` become attributes before forward runs (the op's
    settings: axes, shapes). `needs_input_grad` is set before forward too, so an
    op can skip saving what backward would never use.

    >>> class SinCos(pydl.autograd.Function):
    ...     def forward(self, x):
    ...         self.save(x)
    ...         return np.sin(x), np.cos(x)
    ...     def backward(self, d_sin, d_cos):
    ...         (x,) = self.saved
    ...         return (d_sin * np.cos(x) - d_cos * np.sin(x),)
    >>> x = pydl.tensor([0.0, 1.0], dtype="float64", requires_grad=True)
    >>> s, c = SinCos.apply(x)
    >>> s.sum().backward()  # c unused: its gradient is zeros
    >>> np.allclose(x.grad.numpy(), np.cos([0.0, 1.0]))
    True
    """

    inputs = ()             # input tensors; None once the graph is freed
    saved = ()              # arrays kept for backward; None once freed
    needs_input_grad = ()
    outputs = None          # (shape, dtype) per output, for several outputs
    materialize_grads = True  # several outputs: zeros, not None, for the unreached ones
    retained = None         # {output_nr: weak reference} of outputs that retain_grad()

    def save(self, *arrays):
        self.saved = arrays

    def forward(self, *arrays):
        raise NotImplementedError

    def backward(self, *grads):
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **settings):
        """Runs the op on tensors `inputs`, recording it when a gradient is needed."""
        fn = cls.__new__(cls)
        fn.__dict__.update(settings)
        arrays = [t.data for t in inputs]
        require_same_device(arrays)
        needs = tuple(t.requires_grad for t in inputs)
        record = _state.enabled and any(needs)
        fn.needs_input_grad = needs if record else (False,) * len(inputs)
        out = fn.forward(*arrays)
        several = isinstance(out, tuple)
        outputs = tuple(map(_as_array, out)) if several else (_as_array(out),)
        if _state.anomaly:
            _check_forward(fn, arrays, outputs)
            if record:
                fn.anomaly_site = _caller()
        if not record:
            tensors = tuple(map(_wrap_tensor, outputs))
        else:
            fn.inputs = inputs
            if several:
                fn.outputs = tuple((a.shape, a.dtype) for a in outputs)
            tensors = tuple(_wrap_tensor(a, fn, i) for i, a in enumerate(outputs))
        return tensors if several else tensors[0]

    def release(self):
        """Frees the saved arrays and the links to the inputs (the graph)."""
        self.inputs = None
        self.saved = None

    def name(self):
        return type(self).__name__ + "Backward"

    def _run_backward(self, grads):
        """backward on the gradients gathered for the outputs: one array, or a list
        with None where no gradient arrived (materialized as zeros here)."""
        if self.outputs is None:
            return self.backward(grads)
        if not self.materialize_grads:
            return self.backward(*grads)
        xp = _xp(next(g for g in grads if g is not None))
        return self.backward(*(xp.zeros(shape, dtype) if g is None else g
                               for g, (shape, dtype) in zip(grads, self.outputs)))


def _as_array(out):
    # NumPy reductions return scalars, not 0-d arrays.
    return np.asarray(out) if isinstance(out, np.generic) else out


def require_same_device(arrays):
    """RuntimeError naming both devices when the arrays are not all on one device."""
    on_cpu = isinstance(arrays[0], np.ndarray)
    if on_cpu and all(isinstance(a, np.ndarray) for a in arrays[1:]):
        return  # the common case, decided without building Device objects
    first = device_of(arrays[0])
    for a in arrays[1:]:
        if device_of(a) != first:
            raise RuntimeError(
                "expected all tensors to be on the same device, but found at least two "
                f"devices, {first} and {device_of(a)}")


# ---- the engine ---------------------------------------------------------------

_FREED = ("Trying to backward through the graph a second time (or to use its results after "
          "they were freed). Pass retain_graph=True to the first backward() call if you need "
          "to backward through the graph again.")


def run_backward(root, grad, retain_graph=False):
    """Propagates `grad` (an array shaped like root) from `root` to every leaf.

    Each node runs once, after all nodes that consume its output have passed
    their gradient to it (Kahn's order over the reversed graph; iterative, so
    a graph of any depth works).
    """
    start = root.grad_fn
    if start is None:
        accumulate_leaf_grad(root, grad)
        _run_post_accumulate_hooks(root)
        return
    # pending[node]: how many consumers still owe `node` a gradient; hooked[id(leaf)]:
    # the same for each leaf with post-accumulate hooks.
    pending, hooked = {}, {}
    stack, seen = [start], {start}
    while stack:
        node = stack.pop()
        if node.inputs is None:
            raise RuntimeError(_FREED)
        for i, t in enumerate(node.inputs):
            parent = t.grad_fn
            if parent is not None:
                pending[parent] = pending.get(parent, 0) + 1
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
            elif id(t) in _post_accumulate_hooks and node.needs_input_grad[i]:
                hooked[id(t)] = hooked.get(id(t), 0) + 1

    grads = {}
    _add_output_grad(grads, start, root.output_nr, grad)
    ready = [start]
    while ready:
        node = ready.pop()
        grad = grads.pop(node, None)  # None: no path from root delivered a gradient
        if grad is not None and node.retained is not None:
            _accumulate_retained(node, grad)
        input_grads = (node._run_backward(grad) if grad is not None
                       else (None,) * len(node.inputs))
        if _state.anomaly:
            _check_backward(node, input_grads)
        for t, needed, g in zip(node.inputs, node.needs_input_grad, input_grads):
            if not needed:
                continue
            if g is not None and g.shape != t.data.shape:
                raise RuntimeError(f"internal error: {node.name()} returned a gradient of shape "
                                   f"{g.shape} for an input of shape {t.data.shape}")
            parent = t.grad_fn
            if parent is None:
                if g is not None:
                    accumulate_leaf_grad(t, g)
                if id(t) in hooked:
                    hooked[id(t)] -= 1
                    if hooked[id(t)] == 0:
                        _run_post_accumulate_hooks(t)
                continue
            if g is not None:
                _add_output_grad(grads, parent, t.output_nr, g)
            pending[parent] -= 1
            if pending[parent] == 0:
                ready.append(parent)
        if not retain_graph:
            node.release()


def _add_output_grad(grads, node, output_nr, g):
    """grads[node] += g for its output `output_nr`: one array for a node of one output,
    a list (None where nothing arrived yet) for several."""
    if node.outputs is None:
        grads[node] = g if node not in grads else grads[node] + g
        return
    slots = grads.get(node)
    if slots is None:
        slots = grads[node] = [None] * len(node.outputs)
    slots[output_nr] = g if slots[output_nr] is None else slots[output_nr] + g


def _accumulate_retained(node, grad):
    per_output = [grad] if node.outputs is None else grad
    for output_nr, ref in node.retained.items():
        out, g = ref(), per_output[output_nr]
        if out is not None and g is not None:
            accumulate_leaf_grad(out, g)


def accumulate_leaf_grad(t, g):
    """t.grad += g; the first gradient is copied so .grad never aliases another array."""
    if isinstance(g, np.generic):
        g = np.asarray(g)
    if t.grad is None:
        t.grad = _wrap_tensor(g.astype(t.data.dtype, order="C", copy=True))
    else:
        t.grad.data += g


# ---- post-accumulate-grad hooks ------------------------------------------------
# id(leaf) -> its hooks. Kept here rather than on the tensor so Tensor stays slotted;
# an entry goes when its tensor is collected.
_post_accumulate_hooks = {}


class RemovableHandle:
    """What register_*_hook returns (tensor and module hooks alike): remove() takes the
    hook out of its registry, a dict from handle id to hook in registration order."""

    _next_id = 0

    def __init__(self, registry, hook):
        self.registry, self.id = registry, RemovableHandle._next_id
        RemovableHandle._next_id += 1
        registry[self.id] = hook

    def remove(self):
        self.registry.pop(self.id, None)


def register_post_accumulate_grad_hook(t, hook):
    """hook(t) runs in each backward once t.grad holds every gradient this backward
    sends to the leaf t (a leaf used several times runs it once, after the last)."""
    hooks = _post_accumulate_hooks.get(id(t))
    if hooks is None:
        hooks = _post_accumulate_hooks[id(t)] = {}
        weakref.finalize(t, _post_accumulate_hooks.pop, id(t), None)
    return RemovableHandle(hooks, hook)


def _run_post_accumulate_hooks(t):
    if t.grad is None:
        return
    for hook in list(_post_accumulate_hooks.get(id(t), {}).values()):
        hook(t)


def retain_output_grad(t):
    fn = t.grad_fn
    fn.retained = {**(fn.retained or {}), t.output_nr: weakref.ref(t)}
