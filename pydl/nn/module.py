"""Module and Parameter: the PyTorch-style building blocks every layer derives from.

A Module owns Parameters (trainable tensors), buffers (state saved with the
model but not trained, e.g. running statistics) and child modules, all found by
attribute assignment. Names follow PyTorch (`0.weight`, `layer1.bias`), so a
state_dict's keys match the same model's in torch.
"""
import collections

import numpy as np

from pydl._device import is_device_array, to_device
from pydl.tensor import Tensor, as_dtype


class Parameter(Tensor):
    """A tensor that is a module's trainable weight: it requires grad by default and
    registers itself when assigned to a Module attribute."""

    __slots__ = ()

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            data = np.empty(0, np.float32)
        super().__init__(data.data if isinstance(data, Tensor) else data)
        self.requires_grad_(requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class _RemovableHandle:
    """What register_*_hook returns: remove() takes the hook out again."""

    def __init__(self, hooks, key):
        self.hooks, self.key = hooks, key

    def remove(self):
        self.hooks.pop(self.key, None)


class Module:
    """Base class of every layer and model: subclasses set parameters and child
    modules as attributes in __init__ and compute in forward()."""

    def __init__(self):
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", collections.OrderedDict())
        object.__setattr__(self, "_buffers", collections.OrderedDict())
        object.__setattr__(self, "_modules", collections.OrderedDict())

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args, **kwargs):
        for hook in list(self.__dict__.get("_forward_pre_hooks", {}).values()):
            result = hook(self, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        return self.forward(*args, **kwargs)

    def register_forward_pre_hook(self, hook):
        """hook(module, args) runs before each forward; a non-None result replaces the
        positional arguments (a tuple, or a single value). Returns a handle whose remove()
        unregisters it (as in torch)."""
        hooks = self.__dict__.setdefault("_forward_pre_hooks", collections.OrderedDict())
        key = object()
        hooks[key] = hook
        return _RemovableHandle(hooks, key)

    # ---- registration ----------------------------------------------------------

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}.__init__ must call super().__init__() "
                                 f"before assigning {name!r}")
        for registry in (self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        elif name in self.__dict__.get("_buffer_names", ()):
            self._buffers[name] = value
        else:
            object.__setattr__(self, name, value)
            return
        self.__dict__.pop(name, None)

    def __getattr__(self, name):
        # Only called when normal lookup fails: parameters, buffers and children.
        for registry in ("_parameters", "_buffers", "_modules"):
            entries = self.__dict__.get(registry)
            if entries is not None and name in entries:
                return entries[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for registry in (self._parameters, self._buffers, self._modules):
            if name in registry:
                del registry[name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name, param):
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter({name!r}): expected a Parameter or None, got "
                            f"{type(param).__name__}")
        if param is None:
            self._parameters[name] = None
        else:
            setattr(self, name, param)

    def register_buffer(self, name, tensor, persistent=True):
        """State that is saved in state_dict (when persistent) but not trained."""
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"register_buffer({name!r}): expected a Tensor or None, got "
                            f"{type(tensor).__name__}")
        names = self.__dict__.setdefault("_buffer_names", set())
        names.add(name)
        if not persistent:
            self.__dict__.setdefault("_non_persistent", set()).add(name)
        self.__dict__.pop(name, None)
        self._buffers[name] = tensor

    def add_module(self, name, module):
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module({name!r}): expected a Module, got {type(module).__name__}")
        self._modules[name] = module

    # ---- traversal ---------------------------------------------------------------

    def named_modules(self, prefix=""):
        """(name, module) for this module and every descendant, depth first."""
        stack = [(prefix, self)]
        seen = set()
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [(f"{name}.{child_name}" if name else child_name, child)
                        for child_name, child in module._modules.items() if child is not None]
            stack.extend(reversed(children))

    def modules(self):
        return (m for _, m in self.named_modules())

    def named_children(self):
        return ((n, m) for n, m in self._modules.items() if m is not None)

    def children(self):
        return (m for _, m in self.named_children())

    def _named_members(self, registry, recurse):
        seen = set()
        modules = self.named_modules() if recurse else [("", self)]
        for prefix, module in modules:
            for name, value in getattr(module, registry).items():
                if value is None or id(value) in seen:
                    continue
                seen.add(id(value))
                yield (f"{prefix}.{name}" if prefix else name), value

    def named_parameters(self, recurse=True):
        return self._named_members("_parameters", recurse)

    def parameters(self, recurse=True):
        return (p for _, p in self.named_parameters(recurse))

    def named_buffers(self, recurse=True):
        return self._named_members("_buffers", recurse)

    def buffers(self, recurse=True):
        return (b for _, b in self.named_buffers(recurse))

    def apply(self, fn):
        """Calls fn on every descendant, then on self (as torch: children first)."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # ---- modes and gradients -----------------------------------------------------

    def train(self, mode=True):
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        for p in self.parameters():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.data[...] = 0

    # ---- dtype and device --------------------------------------------------------

    def _convert(self, fn):
        # In place: the Parameter objects stay the same, so an optimizer built
        # before .to() still updates this module's weights.
        for module in self.modules():
            for registry in (module._parameters, module._buffers):
                for value in registry.values():
                    if value is not None:
                        value.data = fn(value.detach()).data
        return self

    def to(self, target):
        """Moves or casts every parameter and buffer: a device ("cpu", "cuda") or a
        floating dtype; integer buffers keep their dtype on a cast."""
        try:
            dtype = as_dtype(target)
        except TypeError:
            dtype = None
        if dtype is not None:
            return self._convert(lambda t: t.to(dtype) if t.dtype.kind == "f" else t)
        return self._convert(lambda t: t.to(target))

    def cuda(self):
        return self.to("cuda")

    def cpu(self):
        return self.to("cpu")

    def float(self):
        return self.to("float32")

    def double(self):
        return self.to("float64")

    # ---- state -------------------------------------------------------------------

    def state_dict(self):
        """name -> tensor (detached, sharing memory) for every parameter and
        persistent buffer, with PyTorch's key names."""
        state = collections.OrderedDict()
        for prefix, module in self.named_modules():
            skip = module.__dict__.get("_non_persistent", set())
            for registry in (module._parameters, module._buffers):
                for name, value in registry.items():
                    if value is not None and name not in skip:
                        state[f"{prefix}.{name}" if prefix else name] = value.detach()
        return state

    def load_state_dict(self, state_dict, strict=True):
        """Copies values (tensors or arrays, e.g. from torch's state_dict().numpy())
        into this module's parameters and buffers. With strict, missing or
        unexpected keys raise; a shape mismatch always raises."""
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict for {type(self).__name__}: missing keys {missing}, "
                           f"unexpected keys {unexpected}")
        for key, target in own.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            array = value.data if isinstance(value, Tensor) else value
            if not (isinstance(array, np.ndarray) or is_device_array(array)):
                array = np.asarray(array)
            if tuple(array.shape) != tuple(target.shape):
                raise ValueError(f"load_state_dict: {key} has shape {tuple(array.shape)} in the "
                                 f"state dict but {tuple(target.shape)} in the model")
            # Values from any device go to the parameter's (as torch's copy_ does).
            target.data[...] = to_device(array, target.device).astype(target.dtype, copy=False)
        return collections.namedtuple("IncompatibleKeys", "missing_keys unexpected_keys")(
            missing, unexpected)

    # ---- printing ----------------------------------------------------------------

    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"({name}): " + repr(child).replace("\n", "\n  ")
                 for name, child in self._modules.items()]
        extra = self.extra_repr()
        if not lines:
            return f"{type(self).__name__}({extra})"
        body = "\n  ".join(([extra] if extra else []) + lines)
        return f"{type(self).__name__}(\n  {body}\n)"


class _ModuleSequence(Module):
    """Children named "0", "1", ... in order, with list-style access."""

    def append(self, module):
        self.add_module(str(len(self._modules)), module)
        return self

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        modules = list(self._modules.values())
        return type(self)._of(modules[index]) if isinstance(index, slice) else modules[index]


class Sequential(_ModuleSequence):
    """Runs its modules in order: Sequential(a, b, c) or Sequential(OrderedDict(name=module))."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], collections.OrderedDict):
            for name, module in modules[0].items():
                self.add_module(name, module)
        else:
            for module in modules:
                self.append(module)

    @classmethod
    def _of(cls, modules):
        return cls(*modules)

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x


class ModuleList(_ModuleSequence):
    """A list of modules whose parameters the parent module sees."""

    def __init__(self, modules=()):
        super().__init__()
        self.extend(modules)

    @classmethod
    def _of(cls, modules):
        return cls(modules)

    def extend(self, modules):
        for module in modules:
            self.append(module)
        return self
