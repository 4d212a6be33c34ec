"""Magnitude pruning under torch.nn.utils.prune's names and semantics.

Pruning `name` of a module replaces its Parameter by two entries: `name_orig` (the same
Parameter object, still trained, so an optimizer built earlier keeps updating it) and
the buffer `name_mask` (1 keeps, 0 prunes). A forward-pre-hook recomputes the plain
attribute `name = name_orig * name_mask` before each forward, so pruned entries stay
zero through fine-tuning and get no gradient. Pruning the same tensor again prunes
among what is left (amount counts the remaining entries or channels) and multiplies
the masks; remove() makes the pruning permanent: `name` becomes a Parameter again
holding the masked values.

amount: a float in [0, 1] (that fraction, rounded as Python's round()) or an int
(that many entries or channels).
"""
import numbers

import numpy as np

from pydl import _random
from pydl.nn.module import Parameter
from pydl.ops.common import xp_of
from pydl.tensor import Tensor


def _check_amount(amount):
    if isinstance(amount, bool) or not (
            (isinstance(amount, numbers.Integral) and amount >= 0) or
            (isinstance(amount, numbers.Real) and 0.0 <= amount <= 1.0)):
        raise ValueError(f"amount must be a float in [0, 1] or a non-negative int, got "
                         f"{amount!r}")
    return amount


def _count_to_prune(amount, size):
    if isinstance(amount, numbers.Integral):
        if amount > size:
            raise ValueError(f"amount={amount} should be smaller than the number of units to "
                             f"prune ({size})")
        return int(amount)
    return round(float(amount) * size)


def _norm(values, n, axes):
    """The L_n norm of `values` over `axes` (n a number, 'fro' = 2 or inf)."""
    xp = xp_of(values)
    if n == "fro":
        n = 2
    magnitude = xp.abs(values.astype(np.float64))
    if n == float("inf"):
        return magnitude.max(axis=axes)
    if n == 0:
        return (magnitude != 0).sum(axis=axes).astype(np.float64)
    return (magnitude ** n).sum(axis=axes) ** (1.0 / n)


def _smallest(scores, k):
    """Indices of the k smallest entries of 1-D `scores`."""
    return xp_of(scores).argsort(scores, kind="stable")[:k]


class BasePruningMethod:
    """compute_mask(t, default_mask) -> the new mask, from the values t (the unpruned
    weights, or importance scores) and the mask in force. PRUNING_TYPE is
    'unstructured' (entries) or 'structured' (slices along `dim`)."""

    PRUNING_TYPE = None

    def compute_mask(self, t, default_mask):
        raise NotImplementedError

    @classmethod
    def apply(cls, module, name, *args, importance_scores=None, **kwargs):
        method = cls(*args, **kwargs)
        _prune(module, name, method, importance_scores)
        return module


class _UnstructuredByScore(BasePruningMethod):
    """Prunes the `amount` entries of lowest _scores(t) (t flattened)."""

    PRUNING_TYPE = "unstructured"

    def __init__(self, amount):
        self.amount = _check_amount(amount)

    def compute_mask(self, t, default_mask):
        mask = default_mask.copy()
        k = _count_to_prune(self.amount, t.size)
        if k:  # scores only when something is pruned: random draws stay as they were
            mask.reshape(-1)[_smallest(self._scores(t), k)] = 0
        return mask


class L1Unstructured(_UnstructuredByScore):
    """Prunes the `amount` entries of smallest absolute value."""

    def _scores(self, t):
        return xp_of(t).abs(t).reshape(-1)


class RandomUnstructured(_UnstructuredByScore):
    """Prunes `amount` entries drawn at random (pydl's generator: pydl.manual_seed)."""

    def _scores(self, t):
        return xp_of(t).asarray(_random.generator().random(t.size))


class LnStructured(BasePruningMethod):
    """Prunes the `amount` slices along `dim` (channels: dim=0 of a weight are its output
    units) of smallest L_n norm, the norm taken over every other axis."""

    PRUNING_TYPE = "structured"

    def __init__(self, amount, n, dim=-1):
        self.amount, self.n, self.dim = _check_amount(amount), n, dim

    def compute_mask(self, t, default_mask):
        dim = self.dim % t.ndim
        k = _count_to_prune(self.amount, t.shape[dim])
        if not k:
            return default_mask.copy()
        axes = tuple(a for a in range(t.ndim) if a != dim)
        norms = _norm(t, self.n, axes)
        # Keep the t.shape[dim] - k largest (torch.topk of the norms).
        keep = xp_of(norms).argsort(-norms, kind="stable")[:t.shape[dim] - k]
        mask = xp_of(t).zeros_like(default_mask)
        index = [slice(None)] * t.ndim
        index[dim] = keep
        mask[tuple(index)] = 1
        return mask * default_mask


class CustomFromMask(BasePruningMethod):
    PRUNING_TYPE = "global"

    def __init__(self, mask):
        self.mask = mask

    def compute_mask(self, t, default_mask):
        return default_mask * self.mask.astype(default_mask.dtype)


class Identity(BasePruningMethod):
    PRUNING_TYPE = "unstructured"

    def compute_mask(self, t, default_mask):
        return default_mask.copy()


class _MaskHook:
    """The forward-pre-hook of one pruned tensor: name = name_orig * name_mask."""

    def __init__(self, name):
        self.name = name

    def apply_mask(self, module):
        return getattr(module, self.name + "_orig") * getattr(module, self.name + "_mask")

    def __call__(self, module, inputs):
        object.__setattr__(module, self.name, self.apply_mask(module))


def _hook_of(module, name):
    for hook in module.__dict__.get("_forward_pre_hooks", {}).values():
        if isinstance(hook, _MaskHook) and hook.name == name:
            return hook
    return None


def _combined_mask(method, t, mask):
    """The new mask: `method` applied to what the mask in force leaves (its kept entries
    for unstructured pruning, its kept slices along method.dim for structured)."""
    if method.PRUNING_TYPE == "global":
        return method.compute_mask(t, mask)
    new_mask = mask.copy()
    if method.PRUNING_TYPE == "unstructured":
        kept = mask == 1
        new_mask[kept] = method.compute_mask(t[kept], mask[kept])
        return new_mask
    dim = method.dim % t.ndim
    kept = mask.sum(axis=tuple(a for a in range(t.ndim) if a != dim)) != 0
    index = [slice(None)] * t.ndim
    index[dim] = kept
    index = tuple(index)
    new_mask[index] = method.compute_mask(t[index], mask[index])
    return new_mask


def _prune(module, name, method, importance_scores=None):
    hook = _hook_of(module, name)
    if hook is None:
        weight = module._parameters.get(name)
        if weight is None:
            names = sorted(k for k, v in module._parameters.items() if v is not None)
            raise AttributeError(f"prune: {type(module).__name__} has no parameter {name!r} "
                                 f"(it has {names})")
        mask = xp_of(weight.data).ones_like(weight.data)
    else:
        weight = getattr(module, name + "_orig")
        mask = getattr(module, name + "_mask").data
    scores = weight.data if importance_scores is None else _array(importance_scores)
    if scores.shape != weight.shape:
        raise ValueError(f"prune: importance_scores of shape {scores.shape} for {name} of "
                         f"shape {tuple(weight.shape)}")
    new_mask = _combined_mask(method, scores, mask)
    if hook is None:
        del module._parameters[name]
        module.register_parameter(name + "_orig", weight)
        module.register_buffer(name + "_mask", Tensor(new_mask))
        hook = _MaskHook(name)
        module.register_forward_pre_hook(hook)
    else:
        getattr(module, name + "_mask").data = new_mask
    hook(module, ())
    return module


def _array(value):
    return value.data if isinstance(value, Tensor) else np.asarray(value)


# ---- the functions, as in torch.nn.utils.prune ------------------------------------------

def identity(module, name):
    """Pruning that prunes nothing: the _orig/_mask reparametrization with a mask of ones."""
    return Identity.apply(module, name)


def random_unstructured(module, name, amount):
    return RandomUnstructured.apply(module, name, amount)


def l1_unstructured(module, name, amount, importance_scores=None):
    """Prunes the `amount` entries of module.name with the smallest |value| (or the
    smallest importance_scores)."""
    return L1Unstructured.apply(module, name, amount, importance_scores=importance_scores)


def ln_structured(module, name, amount, n, dim, importance_scores=None):
    """Prunes the `amount` slices along `dim` of module.name with the smallest L_n norm
    (n: a number, 'fro' or float('inf'))."""
    return LnStructured.apply(module, name, amount, n, dim, importance_scores=importance_scores)


def custom_from_mask(module, name, mask):
    return CustomFromMask.apply(module, name, _array(mask))


def global_unstructured(parameters, pruning_method, importance_scores=None, **kwargs):
    """Prunes the (module, name) tensors together as one vector: e.g. with
    pruning_method=L1Unstructured and amount=0.9, the 90% of all their (still unpruned)
    entries of smallest magnitude, wherever they are. importance_scores maps
    (module, name) to a score array; by default the current (masked) values."""
    parameters = list(parameters)
    if not parameters:
        raise ValueError("global_unstructured: no parameters to prune")
    method = pruning_method(**kwargs)
    if method.PRUNING_TYPE != "unstructured":
        raise TypeError(f"global_unstructured needs an unstructured pruning method, got "
                        f"{pruning_method.__name__} ({method.PRUNING_TYPE})")
    scores = importance_scores or {}
    values, masks = [], []
    for module, name in parameters:
        score = scores.get((module, name))
        values.append((_array(score) if score is not None else getattr(module, name).data)
                      .reshape(-1))
        hook = _hook_of(module, name)
        masks.append(getattr(module, name + "_mask").data.reshape(-1) if hook else
                     xp_of(values[-1]).ones_like(values[-1]))
    xp = xp_of(values[0])
    final = _combined_mask(method, xp.concatenate(values), xp.concatenate(masks))
    start = 0
    for (module, name), value in zip(parameters, values):
        shape = getattr(module, name).shape
        custom_from_mask(module, name, final[start:start + value.size].reshape(shape))
        start += value.size


def remove(module, name):
    """Makes the pruning of module.name permanent: name becomes a Parameter (the same
    object that was name_orig) holding name_orig * name_mask; _orig, _mask and the hook
    go."""
    hook = _hook_of(module, name)
    if hook is None:
        raise ValueError(f"Parameter {name!r} of module {type(module).__name__} has to be "
                         "pruned before pruning can be removed")
    weight = module._parameters[name + "_orig"]
    weight.data = hook.apply_mask(module).data
    hooks = module.__dict__["_forward_pre_hooks"]
    for key in [k for k, h in hooks.items() if h is hook]:
        del hooks[key]
    del module._parameters[name + "_orig"]
    del module._buffers[name + "_mask"]
    module.__dict__.pop(name, None)
    module.register_parameter(name, weight)
    return module


def is_pruned(module):
    """Whether module or any descendant has a pruned tensor."""
    return any(isinstance(h, _MaskHook) for m in module.modules()
               for h in m.__dict__.get("_forward_pre_hooks", {}).values())


__all__ = ["BasePruningMethod", "L1Unstructured", "RandomUnstructured", "LnStructured",
           "CustomFromMask", "Identity", "identity", "random_unstructured", "l1_unstructured",
           "ln_structured", "custom_from_mask", "global_unstructured", "remove", "is_pruned"]
