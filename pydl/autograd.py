"""Reverse-mode autograd: grad mode, the Function node, and the backward engine.

Every differentiable op is a Function subclass. `forward` maps input arrays to
an output array and keeps (via `save`) what `backward` needs; `backward` maps
the gradient of the output to one gradient per input (None where an input
needs none). When grad mode is on and an input requires grad, `apply` records
the Function as the output's `grad_fn`, linking it to its input tensors: that
chain of nodes is the graph `Tensor.backward` walks.
"""
import functools
import os
import threading
import traceback
import weakref

import numpy as np


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


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _caller():
    """file:line of the innermost frame outside pydl: where the user called the op."""
    for frame in reversed(traceback.extract_stack()):
        if not os.path.abspath(frame.filename).startswith(_PACKAGE_DIR):
            return f"{frame.filename}:{frame.lineno}"
    return "?"


def _check_forward(fn, arrays, out):
    found = _non_finite(out)
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
    """One recorded op. Subclasses implement forward(*arrays) and backward(grad).

    Keyword arguments of `apply` become attributes before forward runs (the op's
    settings: axes, shapes). `needs_input_grad` is set before forward too, so an
    op can skip saving what backward would never use.
    """

    inputs = ()             # input tensors; None once the graph is freed
    saved = ()              # arrays kept for backward; None once freed
    needs_input_grad = ()
    retained = None         # weak reference to the output when retain_grad() was asked

    def save(self, *arrays):
        self.saved = arrays

    def forward(self, *arrays):
        raise NotImplementedError

    def backward(self, grad):
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
        if isinstance(out, np.generic):  # NumPy reductions return scalars, not 0-d arrays
            out = np.asarray(out)
        if _state.anomaly:
            _check_forward(fn, arrays, out)
            if record:
                fn.anomaly_site = _caller()
        if not record:
            return _tensor_module.Tensor._wrap(out)
        fn.inputs = inputs
        return _tensor_module.Tensor._wrap(out, grad_fn=fn)

    def release(self):
        """Frees the saved arrays and the links to the inputs (the graph)."""
        self.inputs = None
        self.saved = None

    def name(self):
        return type(self).__name__ + "Backward"


def require_same_device(arrays):
    """RuntimeError naming both devices when the arrays are not all on one device."""
    on_cpu = isinstance(arrays[0], np.ndarray)
    if on_cpu and all(isinstance(a, np.ndarray) for a in arrays[1:]):
        return  # the common case, decided without building Device objects
    from pydl._device import device_of
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

    grads = {start: grad}
    ready = [start]
    while ready:
        node = ready.pop()
        grad = grads.pop(node, None)  # None: no path from root delivered a gradient
        if grad is not None and node.retained is not None:
            out = node.retained()
            if out is not None:
                accumulate_leaf_grad(out, grad)
        input_grads = node.backward(grad) if grad is not None else (None,) * len(node.inputs)
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
                grads[parent] = g if parent not in grads else grads[parent] + g
            pending[parent] -= 1
            if pending[parent] == 0:
                ready.append(parent)
        if not retain_graph:
            node.release()


def accumulate_leaf_grad(t, g):
    """t.grad += g; the first gradient is copied so .grad never aliases another array."""
    if isinstance(g, np.generic):
        g = np.asarray(g)
    if t.grad is None:
        t.grad = _tensor_module.Tensor._wrap(g.astype(t.data.dtype, order="C", copy=True))
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
    t.grad_fn.retained = weakref.ref(t)


# Last, because pydl.tensor (through the ops) imports Function from this module.
import pydl.tensor as _tensor_module  # noqa: E402
