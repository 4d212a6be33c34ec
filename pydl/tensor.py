"""pydl.Tensor, dtypes, and the functions that create tensors.

A Tensor wraps an array (`.data`: NumPy on "cpu", CuPy on "cuda") and, when it
takes part in a differentiable computation, the autograd node that made it
(`.grad_fn`). Its methods turn Python scalars and arrays into tensors of one
dtype and call the ops in pydl.ops, which record the graph.
"""
import collections
import numbers

import numpy as np

from pydl import _device, _random, autograd
from pydl._kernels import _C
from pydl.ops import elementwise as ew
from pydl.ops import gemm, reduce
from pydl.ops import shape as shape_ops
from pydl.ops.common import normalize_axes, normalize_axis, xp_of

# ---- dtypes -----------------------------------------------------------------------

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int64 = np.dtype(np.int64)
bool_ = np.dtype(np.bool_)
SUPPORTED_DTYPES = (float32, float64, int64, bool_)


def as_dtype(spec):
    """A supported numpy dtype from a dtype, a name ("float32") or a type; None stays None."""
    if spec is None:
        return None
    try:
        dtype = np.dtype(spec)
    except TypeError:
        dtype = None
    if dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"unsupported dtype {spec!r}; pydl supports float32, float64, int64 "
                        "and bool")
    return dtype


def _is_float(dtype):
    return dtype.kind == "f"


def _promote(a, b):
    """The dtype two tensor operands are computed in: the wider float if either is
    a float (float32 with float64 gives float64), else int64 (bool with bool stays bool)."""
    if a == b:
        return a
    if _is_float(a) or _is_float(b):
        return float64 if float64 in (a, b) else float32
    return int64


def _scalar_dtype(value, tensor_dtype):
    """The dtype a Python scalar takes next to a tensor: the tensor's when that holds
    it (2.5 next to float32 stays float32), else float32 for floats and int64 for ints."""
    if isinstance(value, (bool, np.bool_)):
        return tensor_dtype
    if isinstance(value, numbers.Integral):
        return int64 if tensor_dtype == bool_ else tensor_dtype
    if isinstance(value, numbers.Real):
        return tensor_dtype if _is_float(tensor_dtype) else float32
    raise TypeError(f"unsupported operand type {type(value).__name__} for a tensor operation")


def _to_array(data, dtype=None, copy=True):
    """An array of a supported dtype from Python data or an array: on the CPU, or for a
    device array (CuPy) on its device.

    With no dtype given, Python floats become float32 and Python ints int64
    (like torch.tensor); NumPy float64 data stays float64."""
    if isinstance(data, Tensor):
        data = data.data
    device_data = _device.is_device_array(data)
    if dtype is not None:
        return data.astype(dtype, copy=copy) if device_data else \
            np.array(data, dtype=dtype, copy=copy)
    from_numpy_data = device_data or isinstance(data, (np.ndarray, np.generic))
    array = data.copy() if device_data and copy else data if device_data else \
        np.array(data, copy=copy)
    if array.dtype in SUPPORTED_DTYPES and not (array.dtype == float64 and not from_numpy_data):
        return array
    kind = array.dtype.kind
    if kind == "f":
        return array.astype(float32)
    if kind in "iu":
        return array.astype(int64)
    raise TypeError(f"cannot make a tensor from data of dtype {array.dtype}; pydl supports "
                    "float32, float64, int64 and bool")


# ---- the Tensor -------------------------------------------------------------------

MinMax = collections.namedtuple("MinMax", ["values", "indices"])


class Tensor:
    """An n-dimensional array with reverse-mode automatic differentiation."""

    __slots__ = ("data", "requires_grad", "grad", "grad_fn", "__weakref__")
    __array_ufunc__ = None  # numpy_array + tensor calls Tensor.__radd__, not NumPy
    __hash__ = object.__hash__  # == compares elementwise; hashing stays by identity

    def __init__(self, data, dtype=None, requires_grad=False):
        self.data = data if isinstance(data, np.ndarray) and dtype is None and \
            data.dtype in SUPPORTED_DTYPES else _to_array(data, as_dtype(dtype), copy=False)
        self.grad = None
        self.grad_fn = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_()

    @classmethod
    def _wrap(cls, array, grad_fn=None):
        """A tensor around `array` without copying or checking (for ops and factories)."""
        t = object.__new__(cls)
        t.data = array
        t.grad = None
        t.grad_fn = grad_fn
        t.requires_grad = grad_fn is not None
        return t

    # -- attributes --

    @property
    def shape(self):
        return self.data.shape

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def device(self):
        return _device.device_of(self.data)

    @property
    def is_leaf(self):
        return self.grad_fn is None

    @property
    def T(self):
        return self.permute(*reversed(range(self.ndim)))

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[normalize_axis(dim, self.ndim)]

    def dim(self):
        return self.ndim

    def numel(self):
        return int(self.data.size)

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    # -- conversion --

    def numpy(self):
        """The data as a NumPy array (shared, not copied)."""
        if self.requires_grad:
            raise RuntimeError("Can't call numpy() on a tensor that requires grad. "
                               "Use tensor.detach().numpy() instead.")
        if not isinstance(self.data, np.ndarray):
            raise TypeError(f"can't convert a {self.device} tensor to numpy; "
                            "call .cpu() first")
        return self.data

    def __array__(self, dtype=None, copy=None):
        array = self.numpy()
        return array if dtype is None else array.astype(dtype, copy=False)

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"only one-element tensors can be converted to Python scalars, "
                             f"this one has shape {self.shape}")
        return self.data.item()

    def tolist(self):
        return self.data.tolist()

    def __bool__(self):
        return bool(self.data)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __format__(self, spec):
        if self.data.size == 1 and spec:
            return format(self.item(), spec)
        return format(repr(self), spec)

    def __repr__(self):
        body = np.array2string(np.asarray(_device.to_device(self.data, _device.CPU)),
                               separator=", ", prefix="tensor(", precision=4,
                               threshold=1000)
        extras = []
        if self.dtype == float64:
            extras.append("dtype=pydl.float64")
        if self.device.type != "cpu":
            extras.append(f"device='{self.device}'")
        if self.grad_fn is not None:
            extras.append(f"grad_fn=<{self.grad_fn.name()}>")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + ", ".join([body] + extras) + ")"

    def __dlpack__(self, *args, **kwargs):
        if self.requires_grad:
            raise RuntimeError("Can't export a tensor that requires grad through DLPack; "
                               "use tensor.detach()")
        return self.data.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self.data.__dlpack_device__()

    def to(self, *args, device=None, dtype=None):
        """Converts dtype and/or device: t.to("cuda"), t.to(pydl.float64), t.to(other)."""
        for arg in args:
            if isinstance(arg, Tensor):
                device, dtype = arg.device, arg.dtype
            elif isinstance(arg, _device.Device) or (
                    isinstance(arg, str) and arg.partition(":")[0] in ("cpu", "cuda")):
                device = arg
            else:
                dtype = arg
        result = self
        if dtype is not None and as_dtype(dtype) != self.dtype:
            result = ew.AsType.apply(result, dtype=as_dtype(dtype))
        if device is not None:
            target = _device.require_available(_device.device(device))
            if target != result.device:
                result = shape_ops.ToDevice.apply(result, device=target)
        return result

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def float(self):
        return self.to(float32)

    def double(self):
        return self.to(float64)

    def long(self):
        return self.to(int64)

    # -- autograd --

    def requires_grad_(self, requires_grad=True):
        if requires_grad and not _is_float(self.dtype):
            raise RuntimeError(f"only floating point tensors can require gradients, "
                               f"this one is {self.dtype}")
        if not self.is_leaf and not requires_grad:
            raise RuntimeError("requires_grad_(False) is only allowed on leaf tensors; "
                               "use detach() for a non-leaf")
        self.requires_grad = bool(requires_grad)
        return self

    def detach(self):
        """The same data, cut from the graph."""
        return Tensor._wrap(self.data)

    def clone(self):
        return ew.AsType.apply(self, dtype=self.dtype)

    def contiguous(self):
        # Layout is NumPy's concern: ops that need contiguous memory make it so.
        return self

    def retain_grad(self):
        """Keep .grad for this non-leaf tensor after backward (leaves always keep it)."""
        if not self.requires_grad:
            raise RuntimeError("retain_grad() on a tensor that doesn't require grad")
        if self.grad_fn is not None:
            autograd.retain_output_grad(self)

    def backward(self, gradient=None, retain_graph=False):
        """Accumulates d self / d leaf into every leaf's .grad.

        `gradient` (shaped like self) is needed unless self has one element. The
        graph is freed afterwards unless retain_graph=True."""
        if not self.requires_grad:
            raise RuntimeError("element 0 of tensors does not require grad and does not have "
                               "a grad_fn")
        xp = xp_of(self.data)
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(f"grad can be implicitly created only for scalar outputs; "
                                   f"pass gradient= with shape {self.shape}")
            grad = xp.ones_like(self.data)
        else:
            if isinstance(gradient, Tensor):
                autograd.require_same_device([self.data, gradient.data])
                grad = gradient.data
            else:
                grad = xp.asarray(gradient)
            if grad.shape != self.shape:
                raise ValueError(f"backward: gradient has shape {grad.shape} but the tensor "
                                 f"has shape {self.shape}")
            grad = grad.astype(self.dtype, copy=False)
        autograd.run_backward(self, grad, retain_graph)

    # -- in-place updates (no graph: for tensors that need no grad, or leaves
    #    under no_grad(), as in optimizer steps) --

    def _check_inplace(self, op):
        if self.requires_grad and (self.grad_fn is not None or autograd.is_grad_enabled()):
            raise RuntimeError(
                f"{op}: in-place operations on a tensor that requires grad are not supported "
                "while recording the graph; do it inside pydl.no_grad() (leaf tensors only) or "
                "use the out-of-place form")

    def _inplace(self, op, ufunc, other):
        self._check_inplace(op)
        if isinstance(other, Tensor):
            autograd.require_same_device([self.data, other.data])
            other = other.data
        ufunc(self.data, other, out=self.data)
        return self

    def add_(self, other, alpha=1):
        return self._inplace("add_", np.add, other if alpha == 1 else other * alpha)

    def sub_(self, other, alpha=1):
        return self._inplace("sub_", np.subtract, other if alpha == 1 else other * alpha)

    def mul_(self, other):
        return self._inplace("mul_", np.multiply, other)

    def div_(self, other):
        return self._inplace("div_", np.true_divide, other)

    __iadd__ = add_
    __isub__ = sub_
    __imul__ = mul_
    __itruediv__ = div_

    def zero_(self):
        return self.fill_(0)

    def fill_(self, value):
        self._check_inplace("fill_")
        self.data[...] = value
        return self

    def copy_(self, source):
        """Copies source's values in (from any device, as torch's copy_ does)."""
        self._check_inplace("copy_")
        if isinstance(source, Tensor):
            source = _device.to_device(source.data, self.device)
        elif not isinstance(source, numbers.Number):
            source = xp_of(self.data).asarray(source)
        self.data[...] = source
        return self

    def __setitem__(self, index, value):
        self._check_inplace("__setitem__")
        if isinstance(value, Tensor):
            autograd.require_same_device([self.data, value.data])
            value = value.data
        elif not isinstance(value, numbers.Number):
            value = xp_of(self.data).asarray(value)
        self.data[_index_arrays(index, self.data)] = value

    # -- arithmetic --

    def __add__(self, other):
        return ew.Add.apply(*_coerce(self, other))

    def __radd__(self, other):
        return ew.Add.apply(*_coerce(other, self))

    def __sub__(self, other):
        return ew.Sub.apply(*_coerce(self, other))

    def __rsub__(self, other):
        return ew.Sub.apply(*_coerce(other, self))

    def __mul__(self, other):
        return ew.Mul.apply(*_coerce(self, other))

    def __rmul__(self, other):
        return ew.Mul.apply(*_coerce(other, self))

    def __truediv__(self, other):
        return ew.Div.apply(*_coerce(self, other, need_float=True))

    def __rtruediv__(self, other):
        return ew.Div.apply(*_coerce(other, self, need_float=True))

    def __pow__(self, exponent):
        return ew.Pow.apply(*_coerce(self, exponent))

    def __rpow__(self, base):
        return ew.Pow.apply(*_coerce(base, self))

    def __neg__(self):
        return ew.Neg.apply(self)

    def __abs__(self):
        return ew.Abs.apply(self)

    def __matmul__(self, other):
        return self.matmul(other)

    def __rmatmul__(self, other):
        return matmul(other, self)

    add = __add__
    sub = __sub__
    mul = __mul__
    div = __truediv__
    pow = __pow__
    neg = __neg__
    abs = __abs__

    def exp(self):
        return ew.Exp.apply(self)

    def log(self):
        return ew.Log.apply(self)

    def sqrt(self):
        return ew.Sqrt.apply(self)

    def clamp(self, min=None, max=None):
        if min is None and max is None:
            raise ValueError("clamp: at least one of min and max must be given")
        return ew.Clamp.apply(self, low=min, high=max)

    clip = clamp

    def maximum(self, other):
        return ew.Maximum.apply(*_coerce(self, other))

    def minimum(self, other):
        return ew.Minimum.apply(*_coerce(self, other))

    def where(self, condition, other):
        return where(condition, self, other)

    def matmul(self, other):
        """Matrix product with numpy.matmul's rules (1-D operands, broadcast batches)."""
        a, b = _coerce(self, other)
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"matmul: both operands need at least 1 dimension, got shapes "
                             f"{a.shape} and {b.shape}")
        a2 = a.unsqueeze(0) if a.ndim == 1 else a
        b2 = b.unsqueeze(-1) if b.ndim == 1 else b
        try:
            np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
            compatible = a2.shape[-1] == b2.shape[-2]
        except ValueError:
            compatible = False
        if not compatible:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} cannot be multiplied "
                             f"(inner sizes {a2.shape[-1]} and {b2.shape[-2]}, batch shapes "
                             f"{a2.shape[:-2]} and {b2.shape[:-2]} must broadcast)")
        out = gemm.MatMul.apply(a2, b2)
        if a.ndim == 1:
            out = out.squeeze(-2)
        if b.ndim == 1:
            out = out.squeeze(-1)
        return out

    # -- comparisons (no gradient; bool results) --

    def _compare(self, ufunc, other):
        a, b = _coerce(self, other)
        autograd.require_same_device([a.data, b.data])
        return Tensor._wrap(ufunc(a.data, b.data))

    def __eq__(self, other):
        return self._compare(np.equal, other)

    def __ne__(self, other):
        return self._compare(np.not_equal, other)

    def __lt__(self, other):
        return self._compare(np.less, other)

    def __le__(self, other):
        return self._compare(np.less_equal, other)

    def __gt__(self, other):
        return self._compare(np.greater, other)

    def __ge__(self, other):
        return self._compare(np.greater_equal, other)

    eq, ne, lt, le, gt, ge = __eq__, __ne__, __lt__, __le__, __gt__, __ge__

    def __invert__(self):
        return Tensor._wrap(~self.data)

    def __and__(self, other):
        return self._compare(np.logical_and, other)

    def __or__(self, other):
        return self._compare(np.logical_or, other)

    # -- reductions --

    def sum(self, dim=None, keepdim=False, *, axis=None):
        axes = normalize_axes(_dim_or_axis(dim, axis), self.ndim)
        return reduce.Sum.apply(self, axes=axes, keepdim=keepdim)

    def mean(self, dim=None, keepdim=False, *, axis=None):
        axes = normalize_axes(_dim_or_axis(dim, axis), self.ndim)
        return reduce.Mean.apply(self, axes=axes, keepdim=keepdim)

    def amax(self, dim=None, keepdim=False, *, axis=None):
        axes = normalize_axes(_dim_or_axis(dim, axis), self.ndim)
        return reduce.Amax.apply(self, axes=axes, keepdim=keepdim)

    def amin(self, dim=None, keepdim=False, *, axis=None):
        axes = normalize_axes(_dim_or_axis(dim, axis), self.ndim)
        return reduce.Amin.apply(self, axes=axes, keepdim=keepdim)

    def max(self, dim=None, keepdim=False, *, axis=None):
        """The largest element; with dim, a (values, indices) pair; with a tensor, maximum."""
        return self._extreme(self.amax, self.argmax, self.maximum, dim, keepdim, axis)

    def min(self, dim=None, keepdim=False, *, axis=None):
        return self._extreme(self.amin, self.argmin, self.minimum, dim, keepdim, axis)

    def _extreme(self, values, indices, elementwise, dim, keepdim, axis):
        if isinstance(dim, Tensor):
            return elementwise(dim)
        dim = _dim_or_axis(dim, axis)
        if dim is None:
            return values()
        return MinMax(values(dim, keepdim), indices(dim, keepdim))

    def var(self, dim=None, unbiased=True, keepdim=False, *, correction=None, axis=None):
        """Variance; divides by n - 1 (unbiased) unless unbiased=False or correction=."""
        axes = normalize_axes(_dim_or_axis(dim, axis), self.ndim)
        if correction is None:
            correction = 1 if unbiased else 0
        return reduce.Var.apply(self, axes=axes, keepdim=keepdim, correction=correction)

    def std(self, dim=None, unbiased=True, keepdim=False, *, correction=None, axis=None):
        variance = self.var(dim, unbiased, keepdim, correction=correction, axis=axis)
        return reduce.SqrtOfVariance.apply(variance)

    def argmax(self, dim=None, keepdim=False, *, axis=None):
        return self._arg_extreme("argmax", _dim_or_axis(dim, axis), keepdim)

    def argmin(self, dim=None, keepdim=False, *, axis=None):
        return self._arg_extreme("argmin", _dim_or_axis(dim, axis), keepdim)

    def _arg_extreme(self, method, dim, keepdim):
        axis = None if dim is None else normalize_axis(dim, self.ndim)
        found = getattr(self.data, method)(axis=axis, keepdims=keepdim and axis is not None)
        return Tensor._wrap(xp_of(self.data).asarray(found, dtype=int64))

    # -- shapes --

    def reshape(self, *shape):
        shape = _shape_arg(shape)
        return self if shape == self.shape else shape_ops.Reshape.apply(self, shape=shape)

    view = reshape

    def flatten(self, start_dim=0, end_dim=-1):
        if self.ndim == 0:
            return self.reshape(1)
        start, end = normalize_axis(start_dim, self.ndim), normalize_axis(end_dim, self.ndim)
        if start > end:
            raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
        s = self.shape
        return self.reshape(s[:start] + (int(np.prod(s[start:end + 1])),) + s[end + 1:])

    def permute(self, *dims):
        dims = _shape_arg(dims)
        if len(dims) != self.ndim:
            raise ValueError(f"permute: got {len(dims)} dims {dims} for a tensor with "
                             f"{self.ndim} dimensions")
        axes = tuple(normalize_axis(d, self.ndim) for d in dims)
        if sorted(axes) != list(range(self.ndim)):
            raise ValueError(f"permute: dims {dims} are not a permutation of the axes")
        return shape_ops.Permute.apply(self, dims=axes)

    def transpose(self, dim0, dim1):
        axes = list(range(self.ndim))
        d0, d1 = normalize_axis(dim0, self.ndim), normalize_axis(dim1, self.ndim)
        axes[d0], axes[d1] = axes[d1], axes[d0]
        return shape_ops.Permute.apply(self, dims=tuple(axes))

    swapaxes = transpose

    def squeeze(self, dim=None):
        """Drops axes of size 1 (only those in dim, when given; others stay)."""
        axes = normalize_axes(dim, self.ndim)
        kept = [n for i, n in enumerate(self.shape)
                if n != 1 or (axes is not None and i not in axes)]
        return self if len(kept) == self.ndim else self.reshape(tuple(kept))

    def unsqueeze(self, dim):
        axis = normalize_axis(dim, self.ndim + 1)
        return self.reshape(self.shape[:axis] + (1,) + self.shape[axis:])

    def expand(self, *sizes):
        """Broadcasts to `sizes` (-1 keeps an axis); new axes go in front."""
        sizes = _shape_arg(sizes)
        lead = len(sizes) - self.ndim
        if lead < 0:
            raise ValueError(f"expand: shape {sizes} has fewer dimensions than the tensor's "
                             f"{self.shape}")
        target = tuple(self.shape[i - lead] if n == -1 and i >= lead else n
                       for i, n in enumerate(sizes))
        for i, n in enumerate(self.shape):
            if n != 1 and n != target[lead + i]:
                raise ValueError(f"expand: cannot expand shape {self.shape} to {sizes}")
        return self if target == self.shape else shape_ops.Expand.apply(self, shape=target)

    def broadcast_to(self, shape):
        return self.expand(*shape)

    def expand_as(self, other):
        return self.expand(*other.shape)

    def __getitem__(self, index):
        return shape_ops.GetItem.apply(self, index=_index_arrays(index, self.data))

    # -- activations --

    def relu(self):
        return ew.Relu.apply(self)

    def sigmoid(self):
        return ew.Sigmoid.apply(self)

    def tanh(self):
        return ew.Tanh.apply(self)

    def softmax(self, dim=-1):
        return ew.Softmax.apply(self, dim=normalize_axis(dim, self.ndim))

    def log_softmax(self, dim=-1):
        return ew.LogSoftmax.apply(self, dim=normalize_axis(dim, self.ndim))


# ---- argument helpers ---------------------------------------------------------------

def _coerce(a, b, need_float=False):
    """Two tensors of one dtype for a binary op, from tensors, Python scalars or arrays."""
    if not isinstance(a, Tensor):
        a = _operand(a, b)
    if not isinstance(b, Tensor):
        b = _operand(b, a)
    dtype = _promote(a.dtype, b.dtype)
    if need_float and not _is_float(dtype):
        dtype = float32
    if a.dtype != dtype:
        a = ew.AsType.apply(a, dtype=dtype)
    if b.dtype != dtype:
        b = ew.AsType.apply(b, dtype=dtype)
    return a, b


def _operand(value, like):
    """A constant tensor, on `like`'s device, for a scalar or array operand. A scalar is
    filled in on the device (on CUDA a fill kernel, not a host-to-device copy)."""
    xp = xp_of(like.data)
    if isinstance(value, (numbers.Number, np.bool_)) and not isinstance(value, np.ndarray):
        return Tensor._wrap(xp.full((), value, dtype=_scalar_dtype(value, like.dtype)))
    return Tensor._wrap(xp.asarray(_to_array(value, copy=False)))


def _dim_or_axis(dim, axis):
    if axis is None:
        return dim
    if dim is not None:
        raise TypeError("pass either dim or axis, not both")
    return axis


def _shape_arg(sizes):
    """(2, 3) from f(2, 3) or f((2, 3)) or f([2, 3])."""
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = sizes[0]
    for n in sizes:
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool):
            raise TypeError(f"shape entries must be ints, got {sizes!r}")
    return tuple(int(n) for n in sizes)


def _index_arrays(index, array):
    """An index for `array` from one that may hold tensors, lists or NumPy arrays; their
    values are copied to `array`'s device (indices may come from the host, as in torch)."""
    def convert(part):
        if isinstance(part, Tensor):
            if part.dtype not in (int64, bool_):
                raise IndexError(f"tensors used as indices must be int64 or bool, "
                                 f"got {part.dtype}")
            part = part.data
        elif isinstance(part, list):
            part = np.asarray(part)
        if hasattr(part, "shape") and not isinstance(part, np.generic):
            return _device.to_device(part, _device.device_of(array))
        return part
    if isinstance(index, tuple):
        return tuple(convert(p) for p in index)
    return convert(index)


def _as_tensor(value):
    return value if isinstance(value, Tensor) else Tensor._wrap(_to_array(value, copy=False))


# ---- functions over several tensors -------------------------------------------------

def matmul(input, other):
    return _as_tensor(input).matmul(other)


def where(condition, input, other):
    """input where condition is true, else other (scalars allowed; broadcasting)."""
    condition = _as_tensor(condition)
    if condition.dtype != bool_:
        raise TypeError(f"where: condition must be a bool tensor, got {condition.dtype}")
    if not isinstance(input, Tensor) and not isinstance(other, Tensor):
        input = _as_tensor(input)
    a, b = _coerce(input, other)
    autograd.require_same_device([a.data, condition.data])
    return ew.Where.apply(a, b, condition=condition.data)


def _same_dtype(tensors, op):
    tensors = [_as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError(f"{op}: expected a non-empty sequence of tensors")
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = _promote(dtype, t.dtype)
    return [t.to(dtype=dtype) for t in tensors]


def cat(tensors, dim=0):
    """Joins tensors along an existing axis."""
    tensors = _same_dtype(tensors, "cat")
    axis = normalize_axis(dim, tensors[0].ndim)
    for t in tensors[1:]:
        if t.ndim != tensors[0].ndim or any(
                n != m for i, (n, m) in enumerate(zip(t.shape, tensors[0].shape)) if i != axis):
            raise ValueError(f"cat: shapes {tensors[0].shape} and {t.shape} differ outside "
                             f"dim {dim}")
    return shape_ops.Cat.apply(*tensors, dim=axis)


concatenate = cat


def stack(tensors, dim=0):
    """Joins same-shaped tensors along a new axis."""
    tensors = _same_dtype(tensors, "stack")
    for t in tensors[1:]:
        if t.shape != tensors[0].shape:
            raise ValueError(f"stack: all tensors must have the same shape, got "
                             f"{tensors[0].shape} and {t.shape}")
    return shape_ops.Stack.apply(*tensors, dim=normalize_axis(dim, tensors[0].ndim + 1))


# The function forms of Tensor methods: pydl.exp(x) is x.exp(), and so on.
FUNCTION_FORMS = (
    "add", "sub", "mul", "div", "pow", "neg", "abs", "exp", "log", "sqrt", "clamp", "clip",
    "maximum", "minimum", "sum", "mean", "amax", "amin", "max", "min", "var", "std",
    "argmax", "argmin", "reshape", "flatten", "permute", "transpose", "squeeze", "unsqueeze",
    "broadcast_to", "relu", "sigmoid", "tanh", "softmax", "log_softmax",
    "eq", "ne", "lt", "le", "gt", "ge")


def function_form(name):
    """pydl.<name>(input, ...) calling input.<name>(...)."""
    method = getattr(Tensor, name)

    def function(input, *args, **kwargs):
        return method(_as_tensor(input), *args, **kwargs)
    function.__name__ = function.__qualname__ = name
    function.__doc__ = method.__doc__
    return function


# ---- factories ----------------------------------------------------------------------

def _place(array, device, requires_grad):
    """The tensor for a freshly made array, moved to `device` (None: where it is)."""
    target = _device.require_available(
        _device.device_of(array) if device is None else _device.device(device))
    t = Tensor._wrap(_device.to_device(array, target))
    return t.requires_grad_() if requires_grad else t


def _float_dtype(dtype, op):
    dtype = as_dtype(dtype) or float32
    if not _is_float(dtype):
        raise TypeError(f"{op}: dtype must be float32 or float64, got {dtype}")
    return dtype


def tensor(data, dtype=None, device=None, requires_grad=False):
    """A new tensor holding a copy of `data` (a list, scalar, array or tensor), on
    `device`, or without one on the device of a CuPy array or tensor given (else "cpu").

    Without dtype: Python floats give float32, ints int64, bools bool;
    NumPy arrays keep their dtype where pydl supports it."""
    return _place(_to_array(data, as_dtype(dtype)), device, requires_grad)


def from_numpy(array):
    """A tensor sharing memory with a NumPy array of a supported dtype."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy expects a numpy.ndarray, got {type(array).__name__}")
    if array.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"from_numpy: unsupported dtype {array.dtype}; pydl supports float32, "
                        "float64, int64 and bool")
    return Tensor._wrap(array)


def from_dlpack(obj):
    """A tensor sharing memory with any object that exports DLPack (__dlpack__)."""
    kind, _ = obj.__dlpack_device__()
    if kind == 1:  # kDLCPU
        array = np.from_dlpack(obj)
    else:
        _device.require_available(_device.Device("cuda", 0))
        import cupy
        array = cupy.from_dlpack(obj)
    if array.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"from_dlpack: unsupported dtype {array.dtype}; pydl supports float32, "
                        "float64, int64 and bool")
    return Tensor._wrap(array)


def _filled(shape, fill, dtype, device, requires_grad):
    """A tensor of `fill`, made on its device (no host array copied over)."""
    target = _device.require_available(_device.device(device))
    with _device.on(target):
        t = Tensor._wrap(_device.array_module(target).full(shape, fill, dtype))
    return t.requires_grad_() if requires_grad else t


def zeros(*size, dtype=None, device=None, requires_grad=False):
    return _filled(_shape_arg(size), 0, as_dtype(dtype) or float32, device, requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False):
    return _filled(_shape_arg(size), 1, as_dtype(dtype) or float32, device, requires_grad)


def empty(*size, dtype=None, device=None, requires_grad=False):
    """Uninitialized memory (on the CPU from the kernels' caching allocator)."""
    target = _device.require_available(_device.device(device))
    shape, dtype = _shape_arg(size), as_dtype(dtype) or float32
    if target.type == "cpu":
        t = Tensor._wrap(_C.empty(list(shape), str(dtype)))
    else:
        with _device.on(target):
            t = Tensor._wrap(_device.array_module(target).empty(shape, dtype))
    return t.requires_grad_() if requires_grad else t


def full(size, fill_value, dtype=None, device=None, requires_grad=False):
    """A tensor of `fill_value`; the dtype follows the value (float32, int64 or bool)."""
    dtype = as_dtype(dtype) or _to_array(fill_value).dtype
    return _filled(_shape_arg((size,)), fill_value, dtype, device, requires_grad)


def _filled_like(fill, t, dtype, device, requires_grad):
    return _filled(t.shape, fill, as_dtype(dtype) or t.dtype, device or t.device, requires_grad)


def zeros_like(input, dtype=None, device=None, requires_grad=False):
    return _filled_like(0, input, dtype, device, requires_grad)


def ones_like(input, dtype=None, device=None, requires_grad=False):
    return _filled_like(1, input, dtype, device, requires_grad)


def randn(*size, dtype=None, device=None, requires_grad=False):
    """Standard normal samples from the global generator (see pydl.manual_seed)."""
    array = _random.generator().standard_normal(_shape_arg(size),
                                                dtype=_float_dtype(dtype, "randn"))
    return _place(array, device, requires_grad)


def rand(*size, dtype=None, device=None, requires_grad=False):
    """Uniform samples in [0, 1) from the global generator."""
    array = _random.generator().random(_shape_arg(size), dtype=_float_dtype(dtype, "rand"))
    return _place(array, device, requires_grad)


def randint(low, high=None, size=(), dtype=None, device=None):
    """Integers uniform in [low, high) (randint(high, size=...) starts at 0)."""
    if high is None:
        low, high = 0, low
    array = _random.generator().integers(low, high, _shape_arg((size,)), dtype=np.int64)
    return _place(array.astype(as_dtype(dtype) or int64, copy=False), device, False)


def randperm(n, device=None):
    """A random permutation of 0 .. n-1 (int64)."""
    return _place(_random.generator().permutation(n).astype(int64), device, False)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False):
    """Values from start to end (exclusive); int64 when all arguments are ints, else float32."""
    if end is None:
        start, end = 0, start
    if dtype is None:
        all_ints = all(isinstance(v, (int, np.integer)) for v in (start, end, step))
        dtype = int64 if all_ints else float32
    return _place(np.arange(start, end, step, dtype=as_dtype(dtype)), device, requires_grad)


def eye(n, m=None, dtype=None, device=None, requires_grad=False):
    return _place(np.eye(n, m, dtype=as_dtype(dtype) or float32), device, requires_grad)
