"""Module and Parameter: the PyTorch-style building blocks every layer derives from.

A Module owns Parameters (trainable tensors), buffers (state saved with the
model but not trained, e.g. running statistics) and child modules, all found by
attribute assignment. Names follow PyTorch (`0.weight`, `layer1.bias`), so a
state_dict's keys match the same model's in torch.
"""
import collections

import numpy as np

from pydl._device import is_device_array, to_device
from pydl.autograd import RemovableHandle
from pydl.tensor import Tensor, as_dtype


class Parameter(Tensor):
    """A tensor that is a module's trainable weight: it requires grad by default and
    registers itself when assigned to a Module attribute.

    >>> w = nn.Parameter(pydl.zeros(2))
    >>> w.requires_grad
    True
    >>> layer = nn.Module()
    >>> layer.w = w
    >>> list(layer.state_dict())
    ['w']
    """

    __slots__ = ()

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            data = np.empty(0, np.float32)
        super().__init__(data.data if isinstance(data, Tensor) else data)
        self.requires_grad_(requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of every layer and model: subclasses set parameters and child
    modules as attributes in __init__ and compute in forward().

    >>> class TwoLayer(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.hidden = nn.Linear(4, 8)
    ...         self.out = nn.Linear(8, 2)
    ...     def forward(self, x):
    ...         return self.out(self.hidden(x).relu())
    >>> model = TwoLayer()
    >>> model(pydl.randn(3, 4)).shape
    (3, 2)
    >>> [name for name, _ in model.named_parameters()]
    ['hidden.weight', 'hidden.bias', 'out.weight', 'out.bias']
    """

    def __init__(self):
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", collections.OrderedDict())
        object.__setattr__(self, "_buffers", collections.OrderedDict())
        object.__setattr__(self, "_modules", collections.OrderedDict())

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args, **kwargs):
        for hook in tuple(self.__dict__.get("_forward_pre_hooks", {}).values()):
            result = hook(self, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        output = self.forward(*args, **kwargs)
        for hook in tuple(self.__dict__.get("_forward_hooks", {}).values()):
            replaced = hook(self, args, output)
            if replaced is not None:
                output = replaced
        return output

    def register_forward_hook(self, hook):
        """hook(module, inputs, output) runs after every forward (inputs: the positional
        arguments); a value it returns replaces the output. Returns a handle whose
        remove() unregisters the hook.

        >>> seen = []
        >>> layer = nn.Linear(3, 2)
        >>> handle = layer.register_forward_hook(lambda m, inputs, out: seen.append(out.shape))
        >>> _ = layer(pydl.ones(4, 3))
        >>> handle.remove()
        >>> _ = layer(pydl.ones(4, 3))
        >>> seen
        [(4, 2)]
        """
        hooks = self.__dict__.setdefault("_forward_hooks", collections.OrderedDict())
        return RemovableHandle(hooks, hook)

    def register_forward_pre_hook(self, hook):
        """hook(module, args) runs before each forward; a non-None result replaces the
        positional arguments (a tuple, or a single value). Returns a handle whose remove()
        unregisters it (as in torch).

        >>> layer = nn.Linear(3, 2)
        >>> handle = layer.register_forward_pre_hook(lambda m, args: args[0] * 0)
        >>> layer(pydl.ones(4, 3)).tolist() == [layer.bias.tolist()] * 4
        True
        >>> handle.remove()
        """
        hooks = self.__dict__.setdefault("_forward_pre_hooks", collections.OrderedDict())
        return RemovableHandle(hooks, hook)

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
        """State that is saved in state_dict (when persistent) but not trained.

        >>> layer = nn.Module()
        >>> layer.register_buffer("running_mean", pydl.zeros(3))
        >>> list(layer.state_dict()), list(layer.parameters())
        (['running_mean'], [])
        """
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
        """(name, module) for this module and every descendant, depth first.

        >>> [name for name, _ in nn.Sequential(nn.Linear(2, 2), nn.ReLU()).named_modules()]
        ['', '0', '1']
        """
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
        """Calls fn on every descendant, then on self (as torch: children first).

        >>> def init(m):
        ...     if isinstance(m, nn.Linear):
        ...         nn.init.zeros_(m.weight)
        >>> model = nn.Sequential(nn.Linear(2, 2), nn.ReLU()).apply(init)
        >>> model[0].weight.sum().item()
        0.0
        """
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
        persistent buffer, with PyTorch's key names.

        >>> {k: v.shape for k, v in nn.Linear(3, 2).state_dict().items()}
        {'weight': (2, 3), 'bias': (2,)}
        """
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
        unexpected keys raise; a shape mismatch always raises.

        >>> a, b = nn.Linear(2, 2), nn.Linear(2, 2)
        >>> _ = b.load_state_dict(a.state_dict())
        >>> bool((a.weight == b.weight).all())
        True
        """
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
    """Runs its modules in order: Sequential(a, b, c) or Sequential(OrderedDict(name=module)).

    >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    >>> model(pydl.randn(5, 4)).shape
    (5, 1)
    >>> list(model.state_dict())[:2]
    ['0.weight', '0.bias']
    """

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
    """A list of modules whose parameters the parent module sees.

    >>> layers = nn.ModuleList([nn.Linear(3, 3) for _ in range(2)])
    >>> len(layers), len(list(layers.parameters()))
    (2, 4)
    """

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


class ModuleDict(Module):
    """Modules by name, registered as children (their parameters are the parent's).

    >>> heads = nn.ModuleDict({"age": nn.Linear(4, 1), "kind": nn.Linear(4, 3)})
    >>> heads["kind"](pydl.ones(2, 4)).shape, list(heads.keys())
    ((2, 3), ['age', 'kind'])
    """

    def __init__(self, modules=None):
        super().__init__()
        for name, module in dict(modules or {}).items():
            self.add_module(name, module)

    def __getitem__(self, name):
        return self._modules[name]

    def __setitem__(self, name, module):
        self.add_module(name, module)

    def __contains__(self, name):
        return name in self._modules

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()
