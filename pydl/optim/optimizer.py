"""Optimizer: the base of every pydl optimizer, with PyTorch's interface.

Parameters live in param groups (a dict of options plus 'params'), per-parameter
state in `optimizer.state[param]`, and state_dict() has torch's structure:
{'state': {index: {name: value}}, 'param_groups': [{options..., 'params': [indices]}]}
with parameters numbered in group order and state arrays as NumPy arrays.

A step calls one kernel per group for all of its parameters that can share a call
(float32 on one device, with the same per-parameter options such as Adam's step
count): the multi-tensor form of the compiled kernels, which takes lists of arrays.
The rest (float64, or every parameter under foreach=False) get one call each.
"""
import numpy as np

from pydl._device import to_device
from pydl.autograd import enable_grad
from pydl.ops.common import writeable, xp_of
from pydl.optim._updates import update_kernel
from pydl.tensor import Tensor


class Optimizer:
    """The base of the optimizers, with torch.optim.Optimizer's interface. foreach
    (None, True or False) means what it does in PyTorch: unless it is False, a step
    updates each group's parameters with one multi-tensor kernel call where it can.

    Subclasses name their kernel (`_kernel_name`, e.g. "adam_step") and define
    `_validate(group)` (raise ValueError for a bad option), `_options(group)` (the
    kernel's keyword options shared by the group) and `_prepare(param, state, group)`:
    one parameter's state arrays in the kernel's order (None where unused) and the
    options of its own (e.g. {"step": 3}), creating its state on the first step.

    >>> w = nn.Parameter(pydl.tensor([0.0]))
    >>> opt = pydl.optim.SGD([{"params": [w], "lr": 0.1}], momentum=0.5)
    >>> opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"]
    (0.1, 0.5)
    >>> ((w - 1) ** 2).sum().backward()
    >>> opt.step()
    >>> opt.zero_grad()
    >>> w.grad is None, round(w.item(), 4)
    (True, 0.2)
    >>> sorted(opt.state_dict())
    ['param_groups', 'state']
    """

    _kernel_name = None

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self._check(self.defaults)
        self.state = {}
        self.param_groups = []
        if isinstance(params, Tensor):
            raise TypeError("params must be an iterable of Tensors or dicts, got a Tensor; "
                            "pass [tensor] or model.parameters()")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def __repr__(self):
        lines = [type(self).__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params"]
        return "\n".join(lines + [")"])

    def add_param_group(self, param_group):
        """Adds a group of parameters with its own options (missing ones from defaults)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        if "params" not in group:
            raise ValueError("param_group must have a 'params' entry")
        params = group["params"]
        if isinstance(params, (set, frozenset)):
            raise TypeError("params must be an ordered iterable (a set's order changes between "
                            "runs, so state would not map back); use a list")
        params = [params] if isinstance(params, Tensor) else list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, got {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
            if p.dtype.kind != "f":
                raise TypeError(f"optimizer can only optimize floating-point Tensors, got {p.dtype}")
        if len({id(p) for p in params}) != len(params):
            raise ValueError("a parameter appears more than once in the group")
        taken = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in taken for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        for name, value in self.defaults.items():
            group.setdefault(name, value)
        self._check(group)
        group["params"] = params
        self.param_groups.append(group)

    def zero_grad(self, set_to_none=True):
        """Drops every gradient (set_to_none) or sets it to zero in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad = Tensor._wrap(xp_of(p.grad.data).zeros_like(p.grad.data))

    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns closure()'s loss,
        where closure (optional) re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            updates = []
            for p in group["params"]:
                if p.grad is None:
                    continue
                param = _updatable(p)
                grad = p.grad.data
                if grad.shape != param.shape:
                    raise ValueError(f"gradient has shape {grad.shape} but its parameter has "
                                     f"shape {param.shape}")
                grad = xp_of(grad).ascontiguousarray(grad, dtype=param.dtype)
                updates.append((param, grad, self.state.setdefault(p, {})))
            self._step_group(group, updates)
        return loss

    # ---- state_dict ------------------------------------------------------------

    def state_dict(self):
        """{'state': {index: {...}}, 'param_groups': [{..., 'params': [indices]}]}, with
        copies of the state arrays (the dict does not change as training goes on)."""
        index = {}
        groups = []
        for group in self.param_groups:
            ids = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": ids})
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p in self.state:
                    state[index[id(p)]] = {k: _copy_value(v) for k, v in self.state[p].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restores the options and state saved by state_dict() of an optimizer over
        parameters of the same shapes, in the same groups."""
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(saved_groups)} parameter groups, this "
                             f"optimizer has {len(self.param_groups)}")
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"loaded state dict's parameter group {i} has "
                                 f"{len(saved['params'])} parameters, this optimizer's has "
                                 f"{len(group['params'])}")
        by_index = {}
        for saved, group in zip(saved_groups, self.param_groups):
            by_index.update(zip(saved["params"], group["params"]))
        new_state = {}
        for key, entries in state_dict["state"].items():
            p = by_index.get(int(key))
            if p is None:
                raise ValueError(f"loaded state dict has state for parameter {key}, which is in "
                                 "no parameter group")
            new_state[p] = {name: _restore_value(value, p, name) for name, value in entries.items()}
        for saved, group in zip(saved_groups, self.param_groups):
            options = {k: v for k, v in saved.items() if k != "params"}
            self._check({**group, **options})
            group.update(options)
        self.state = new_state

    def _step_group(self, group, updates):
        """The kernel calls of one group's step: one per bucket of parameters that can
        share a call, one per parameter for the others (see the module's docstring)."""
        options = self._options(group)
        foreach = group.get("foreach") is not False
        buckets = {}
        for param, grad, state in updates:
            states, own = self._prepare(param, state, group)
            shared = foreach and param.dtype == np.float32
            key = (type(param), _device_id(param), tuple(own.items())) if shared else id(param)
            bucket = buckets.get(key)
            if bucket is None:
                bucket = buckets[key] = (own, shared, [])
            bucket[2].append((param, grad, *states))
        for own, shared, entries in buckets.values():
            kernel = update_kernel(entries[0][0], self._kernel_name)
            if shared:
                # Lists, one array per parameter; a state the options leave unused is None.
                arrays = [None if column[0] is None else list(column) for column in zip(*entries)]
            else:
                arrays = entries[0]
            kernel(*arrays, **options, **own)

    # ---- for subclasses --------------------------------------------------------------

    def _check(self, group):
        foreach = group.get("foreach")
        if foreach is not None and not isinstance(foreach, (bool, np.bool_)):
            raise ValueError(f"foreach must be None, True or False, got {foreach!r}")
        self._validate(group)

    def _validate(self, group):
        pass

    def _options(self, group):
        raise NotImplementedError

    def _prepare(self, param, state, group):
        raise NotImplementedError

    @staticmethod
    def _state_array(state, name, param, fill=0.0):
        """state[name], created as an array like param filled with `fill` if missing."""
        if name not in state:
            state[name] = xp_of(param).full_like(param, fill)
        return state[name]


def _updatable(p):
    """p.data as a C-contiguous writable array (made so once, in place of p.data)."""
    data = p.data
    if not (data.flags.c_contiguous and writeable(data)):
        data = xp_of(data).array(data, order="C")
        p.data = data
    return data


def _device_id(array):
    """Which device of its kind holds the array (CuPy's device number; None on the host)."""
    if type(array) is np.ndarray:
        return None
    return getattr(getattr(array, "device", None), "id", None)


def _copy_value(value):
    return value.copy() if hasattr(value, "shape") and getattr(value, "ndim", 0) > 0 else value


def _restore_value(value, p, name):
    """A saved state entry for parameter p: arrays shaped like p in p's dtype and device
    (from either device, or anything np.asarray takes, e.g. a torch tensor), the step
    count as an int."""
    if name == "step":
        return int(float(value))
    if isinstance(value, Tensor):
        value = value.data
    array = value if hasattr(value, "__cuda_array_interface__") else np.asarray(value)
    if array.ndim == 0:
        return array.item()
    if array.shape != p.shape:
        raise ValueError(f"loaded state '{name}' has shape {array.shape} but its parameter has "
                         f"shape {p.shape}")
    array = to_device(array, p.device)
    return xp_of(array).array(array, dtype=p.dtype, order="C")


def check_lr(group):
    lr = group["lr"]
    if not lr >= 0.0:
        raise ValueError(f"Invalid learning rate: {lr} (must be >= 0)")


def check_nonnegative(group, *names):
    for name in names:
        if not group[name] >= 0.0:
            raise ValueError(f"Invalid {name} value: {group[name]} (must be >= 0)")
