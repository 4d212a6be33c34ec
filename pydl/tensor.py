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
SortResult = collections.namedtuple("SortResult", ["values", "indices"])
TopK = collections.namedtuple("TopK", ["values", "indices"])


class Tensor:
    """An n-dimensional array with reverse-mode automatic differentiation.

    >>> x = pydl.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    >>> y = (x * x).sum()
    >>> y.backward()
    >>> x.grad
    tensor([[2., 4.],
            [6., 8.]])
    """

    # output_nr: which output of grad_fn this tensor is (0 but for ops of several outputs).
    __slots__ = ("data", "requires_grad", "grad", "grad_fn", "output_nr", "__weakref__")
    __array_ufunc__ = None  # numpy_array + tensor calls Tensor.__radd__, not NumPy
    __hash__ = object.__hash__  # == compares elementwise; hashing stays by identity

    def __init__(self, data, dtype=None, requires_grad=False):
        self.data = data if isinstance(data, np.ndarray) and dtype is None and \
            data.dtype in SUPPORTED_DTYPES else _to_array(data, as_dtype(dtype), copy=False)
        self.grad = None
        self.grad_fn = None
        self.output_nr = 0
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_()

    @classmethod
    def _wrap(cls, array, grad_fn=None, output_nr=0):
        """A tensor around `array` without copying or checking (for ops and factories)."""
        t = object.__new__(cls)
        t.data = array
        t.grad = None
        t.grad_fn = grad_fn
        t.output_nr = output_nr
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
        """The data as a NumPy array (shared, not copied).

        >>> pydl.tensor([1.0, 2.0]).numpy()
        array([1., 2.], dtype=float32)
        """
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
        """The value of a one-element tensor as a Python number.

        >>> pydl.tensor([[2.5]]).item()
        2.5
        """
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
        """Converts dtype and/or device: t.to("cuda"), t.to(pydl.float64), t.to(other).

        >>> pydl.tensor([1, 2]).to(pydl.float32)
        tensor([1., 2.])
        >>> pydl.zeros(2).to("cpu").device
        device(type='cpu')
        """
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
        """The same data, cut from the graph.

        >>> x = pydl.ones(2, requires_grad=True)
        >>> (x * 2).detach().requires_grad
        False
        """
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

    def register_post_accumulate_grad_hook(self, hook):
        """hook(tensor) runs in every backward after this leaf's .grad has received all
        of that backward's gradient (as torch's). Returns a handle with remove()."""
        if not self.is_leaf or not self.requires_grad:
            raise RuntimeError("register_post_accumulate_grad_hook: only a leaf tensor that "
                               "requires grad accumulates a gradient")
        return autograd.register_post_accumulate_grad_hook(self, hook)

    def backward(self, gradient=None, retain_graph=False):
        """Accumulates d self / d leaf into every leaf's .grad.

        `gradient` (shaped like self) is needed unless self has one element. The
        graph is freed afterwards unless retain_graph=True.

        >>> x = pydl.tensor([1.0, 2.0], requires_grad=True)
        >>> (3 * x).sum().backward()
        >>> x.grad
        tensor([3., 3.])
        """
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
        """In place: self += alpha * other (no graph: under no_grad for a leaf that requires grad).

        >>> w = pydl.ones(2, requires_grad=True)
        >>> with pydl.no_grad():
        ...     w -= 0.5 * pydl.ones(2)
        ...     _ = w.add_(pydl.ones(2), alpha=0.25)
        >>> w
        tensor([0.75, 0.75], requires_grad=True)
        """
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
        """In place: every element 0 (e.g. a gradient between steps).

        >>> pydl.ones(3).zero_()
        tensor([0., 0., 0.])
        """
        return self.fill_(0)

    def normal_(self, mean=0.0, std=1.0):
        """In place: samples from N(mean, std^2) drawn from the global generator.

        >>> pydl.manual_seed(0)
        >>> w = pydl.empty(1000).normal_(2.0, 0.5)
        >>> print(f"{w.mean().item():.1f} {w.std().item():.1f}")
        2.0 0.5
        """
        self._check_inplace("normal_")
        return self.copy_(_random.generator().normal(mean, std, self.shape))

    def uniform_(self, a=0.0, b=1.0):
        """In place: samples from U(a, b) drawn from the global generator.

        >>> bool(((pydl.empty(100).uniform_(-1, 1)).abs() <= 1).all())
        True
        """
        self._check_inplace("uniform_")
        return self.copy_(_random.generator().uniform(a, b, self.shape))

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

    def clamp_(self, min=None, max=None):
        """In-place clamp (e.g. weight clipping under no_grad).

        >>> w = pydl.tensor([-2.0, 0.5, 3.0])
        >>> w.clamp_(-1, 1)
        tensor([-1. ,  0.5,  1. ])
        """
        self._check_inplace("clamp_")
        if min is None and max is None:
            raise ValueError("clamp_: at least one of min and max must be given")
        xp_of(self.data).clip(self.data, min, max, out=self.data)
        return self

    def masked_fill_(self, mask, value):
        """In place: value where the bool mask (broadcast to self) is True."""
        self._check_inplace("masked_fill_")
        mask = _mask_array(mask, self)
        self.data[xp_of(self.data).broadcast_to(mask, self.shape)] = _fill_value(value, self)
        return self

    def scatter_(self, dim, index, src=None, *, value=None):
        """In place: self[..., index[i][j], ...] = src[i][j] along dim (src a tensor, or
        value / a number). See scatter.

        >>> pydl.zeros(2, 3).scatter_(1, pydl.tensor([[2], [0]]), 1.0)
        tensor([[0., 0., 1.],
                [1., 0., 0.]])
        """
        self._check_inplace("scatter_")
        where_, source = self._scatter_args(dim, index, src, value, "scatter_")
        self.data[where_] = source
        return self

    def scatter_add_(self, dim, index, src):
        """In place: self[..., index[i][j], ...] += src[i][j] along dim (repeats add up)."""
        self._check_inplace("scatter_add_")
        where_, source = self._scatter_args(dim, index, src, None, "scatter_add_")
        xp_of(self.data).add.at(self.data, where_, source)
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
        """self + other (broadcasting; the function form pydl.add).

        >>> pydl.tensor([1.0, 2.0]).add(pydl.tensor([10.0]))
        tensor([11., 12.])
        """
        return ew.Add.apply(*_coerce(self, other))

    def __radd__(self, other):
        return ew.Add.apply(*_coerce(other, self))

    def __sub__(self, other):
        """self - other (broadcasting; pydl.sub).

        >>> pydl.sub(pydl.tensor([5.0, 7.0]), 2)
        tensor([3., 5.])
        """
        return ew.Sub.apply(*_coerce(self, other))

    def __rsub__(self, other):
        return ew.Sub.apply(*_coerce(other, self))

    def __mul__(self, other):
        """self * other (broadcasting; pydl.mul).

        >>> pydl.mul(pydl.tensor([1.0, 2.0]), pydl.tensor([[1.0], [3.0]]))
        tensor([[1., 2.],
                [3., 6.]])
        """
        return ew.Mul.apply(*_coerce(self, other))

    def __rmul__(self, other):
        return ew.Mul.apply(*_coerce(other, self))

    def __truediv__(self, other):
        """self / other, always in floating point (pydl.div).

        >>> pydl.div(pydl.tensor([1, 2]), 4)
        tensor([0.25, 0.5 ])
        """
        return ew.Div.apply(*_coerce(self, other, need_float=True))

    def __rtruediv__(self, other):
        return ew.Div.apply(*_coerce(other, self, need_float=True))

    def __pow__(self, exponent):
        """self ** exponent (pydl.pow).

        >>> pydl.pow(pydl.tensor([2.0, 3.0]), 2)
        tensor([4., 9.])
        """
        return ew.Pow.apply(*_coerce(self, exponent))

    def __rpow__(self, base):
        return ew.Pow.apply(*_coerce(base, self))

    def __neg__(self):
        """-self (pydl.neg).

        >>> pydl.neg(pydl.tensor([1.0, -2.0]))
        tensor([-1.,  2.])
        """
        return ew.Neg.apply(self)

    def __abs__(self):
        """|self| (pydl.abs); the gradient is sign(self).

        >>> pydl.abs(pydl.tensor([-1.5, 2.0]))
        tensor([1.5, 2. ])
        """
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
        """e ** self.

        >>> pydl.tensor([0.0, 1.0]).exp()
        tensor([1.    , 2.7183])
        """
        return ew.Exp.apply(self)

    def log(self):
        """The natural logarithm.

        >>> pydl.tensor([1.0, 100.0]).log()
        tensor([0.    , 4.6052])
        """
        return ew.Log.apply(self)

    def sqrt(self):
        """The square root.

        >>> pydl.sqrt(pydl.tensor([4.0, 9.0]))
        tensor([2., 3.])
        """
        return ew.Sqrt.apply(self)

    def square(self):
        """self * self.

        >>> pydl.square(pydl.tensor([-2.0, 3.0]))
        tensor([4., 9.])
        """
        return self * self

    def log1p(self):
        """log(1 + self), accurate for small values.

        >>> print(f"{pydl.log1p(pydl.tensor(1e-8)).item():.3e}")
        1.000e-08
        """
        return ew.Log1p.apply(self)

    def sin(self):
        """The sine, elementwise.

        >>> pydl.sin(pydl.tensor([0.0]))
        tensor([0.])
        """
        return ew.Sin.apply(self)

    def cos(self):
        """The cosine, elementwise.

        >>> pydl.cos(pydl.tensor([0.0]))
        tensor([1.])
        """
        return ew.Cos.apply(self)

    def sign(self):
        """-1, 0 or 1 by the sign of each element (a constant: no gradient flows through).

        >>> pydl.sign(pydl.tensor([-2.0, 0.0, 3.0]))
        tensor([-1.,  0.,  1.])
        """
        return self._constant(xp_of(self.data).sign(self.data))

    def round(self):
        """Each element rounded to the nearest integer, halves to even (no gradient).

        >>> pydl.round(pydl.tensor([0.5, 1.5, 2.7]))
        tensor([0., 2., 3.])
        """
        return self._constant(xp_of(self.data).round(self.data))

    def floor(self):
        """Each element rounded down (no gradient).

        >>> pydl.floor(pydl.tensor([-0.5, 1.5]))
        tensor([-1.,  1.])
        """
        return self._constant(xp_of(self.data).floor(self.data))

    def ceil(self):
        """Each element rounded up (no gradient).

        >>> pydl.ceil(pydl.tensor([-0.5, 1.5]))
        tensor([-0.,  2.])
        """
        return self._constant(xp_of(self.data).ceil(self.data))

    def isnan(self):
        """True where an element is NaN.

        >>> pydl.isnan(pydl.tensor([1.0, float("nan")]))
        tensor([False,  True])
        """
        return Tensor._wrap(xp_of(self.data).isnan(self.data))

    def isinf(self):
        """True where an element is +-inf.

        >>> pydl.isinf(pydl.tensor([1.0, float("inf")]))
        tensor([False,  True])
        """
        return Tensor._wrap(xp_of(self.data).isinf(self.data))

    def isfinite(self):
        """True where an element is neither NaN nor +-inf.

        >>> pydl.isfinite(pydl.tensor([1.0, float("inf")]))
        tensor([ True, False])
        """
        return Tensor._wrap(xp_of(self.data).isfinite(self.data))

    def allclose(self, other, rtol=1e-05, atol=1e-08, equal_nan=False):
        """Whether |self - other| <= atol + rtol |other| everywhere (a Python bool).

        >>> pydl.allclose(pydl.tensor([1.0, 2.0]), pydl.tensor([1.0, 2.0 + 1e-7]))
        True
        """
        a, b = _coerce(self, other)
        autograd.require_same_device([a.data, b.data])
        return bool(xp_of(a.data).allclose(a.data, b.data, rtol=rtol, atol=atol,
                                           equal_nan=equal_nan))

    def _constant(self, array):
        return Tensor._wrap(array.astype(self.dtype, copy=False))

    def clamp(self, min=None, max=None):
        """Each element limited to [min, max] (numbers or broadcasting tensors; either may
        be None); the gradient passes inside, and to a tensor bound where it is taken.

        >>> pydl.tensor([-2.0, 0.5, 3.0]).clamp(min=-1, max=1)
        tensor([-1. ,  0.5,  1. ])
        >>> pydl.clip(pydl.tensor([-2.0, 3.0]), 0)
        tensor([0., 3.])
        >>> pydl.tensor([-2.0, 3.0]).clamp(max=pydl.tensor([0.0, 5.0]))
        tensor([-2.,  3.])
        """
        if min is None and max is None:
            raise ValueError("clamp: at least one of min and max must be given")
        if isinstance(min, Tensor) or isinstance(max, Tensor):
            out = self if min is None else where(self < min, min, self)
            return out if max is None else where(out > max, max, out)
        return ew.Clamp.apply(self, low=min, high=max)

    clip = clamp

    def maximum(self, other):
        """The elementwise larger of self and other (ties share the gradient).

        >>> pydl.maximum(pydl.tensor([1.0, 5.0]), pydl.tensor([3.0, 2.0]))
        tensor([3., 5.])
        """
        return ew.Maximum.apply(*_coerce(self, other))

    def minimum(self, other):
        """The elementwise smaller of self and other.

        >>> pydl.minimum(pydl.tensor([1.0, 5.0]), pydl.tensor([3.0, 2.0]))
        tensor([1., 2.])
        """
        return ew.Minimum.apply(*_coerce(self, other))

    def where(self, condition, other):
        return where(condition, self, other)

    def matmul(self, other):
        """Matrix product with numpy.matmul's rules (1-D operands, broadcast batches).

        >>> (pydl.ones(2, 3) @ pydl.ones(3, 4)).shape
        (2, 4)
        >>> pydl.matmul(pydl.ones(5, 2, 3), pydl.ones(3)).shape
        (5, 2)
        """
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

    def mm(self, mat2):
        """The product of two matrices (2-D only; see matmul for the general rules).

        >>> pydl.mm(pydl.ones(2, 3), pydl.ones(3, 4)).shape
        (2, 4)
        """
        return self._product("mm", mat2, 2)

    def bmm(self, mat2):
        """Batched matrix products of (B, N, M) and (B, M, P) tensors (3-D only).

        >>> pydl.bmm(pydl.ones(5, 2, 3), pydl.ones(5, 3, 4)).shape
        (5, 2, 4)
        """
        mat2 = _as_tensor(mat2)
        if self.ndim == mat2.ndim == 3 and self.shape[0] != mat2.shape[0]:
            raise ValueError(f"bmm: batch sizes differ: {self.shape} and {mat2.shape}")
        return self._product("bmm", mat2, 3)

    def _product(self, op, other, ndim):
        other = _as_tensor(other)
        if self.ndim != ndim or other.ndim != ndim:
            raise ValueError(f"{op}: expects {ndim}-D tensors, got shapes {self.shape} and "
                             f"{other.shape}")
        return self.matmul(other)

    def outer(self, vec2):
        """The outer product of two vectors: out[i, j] = self[i] * vec2[j].

        >>> pydl.outer(pydl.tensor([1.0, 2.0]), pydl.tensor([1.0, 10.0]))
        tensor([[ 1., 10.],
                [ 2., 20.]])
        """
        vec2 = _as_tensor(vec2)
        if self.ndim != 1 or vec2.ndim != 1:
            raise ValueError(f"outer: expects 1-D tensors, got shapes {self.shape} and "
                             f"{vec2.shape}")
        return self.unsqueeze(1) * vec2.unsqueeze(0)

    # -- comparisons (no gradient; bool results) --

    def _compare(self, ufunc, other):
        a, b = _coerce(self, other)
        autograd.require_same_device([a.data, b.data])
        # asarray: NumPy returns a scalar, not a 0-d array, for 0-d operands.
        return Tensor._wrap(xp_of(a.data).asarray(ufunc(a.data, b.data)))

    def __eq__(self, other):
        """Elementwise self == other as a bool tensor.

        >>> x = pydl.tensor([1.0, 2.0, 3.0])
        >>> x == 2.0
        tensor([False,  True, False])
        >>> pydl.eq(x, pydl.tensor([1.0, 0.0, 3.0]))
        tensor([ True, False,  True])
        """
        return self._compare(np.equal, other)

    def __ne__(self, other):
        """Elementwise self != other as a bool tensor.

        >>> pydl.ne(pydl.tensor([1, 2]), 2)
        tensor([ True, False])
        """
        return self._compare(np.not_equal, other)

    def __lt__(self, other):
        """Elementwise self < other as a bool tensor.

        >>> pydl.lt(pydl.tensor([1, 2]), 2)
        tensor([ True, False])
        """
        return self._compare(np.less, other)

    def __le__(self, other):
        """Elementwise self <= other as a bool tensor.

        >>> pydl.le(pydl.tensor([1, 2]), 2)
        tensor([ True,  True])
        """
        return self._compare(np.less_equal, other)

    def __gt__(self, other):
        """Elementwise self > other as a bool tensor.

        >>> pydl.gt(pydl.tensor([1, 2]), 1)
        tensor([False,  True])
        """
        return self._compare(np.greater, other)

    def __ge__(self, other):
        """Elementwise self >= other as a bool tensor.

        >>> pydl.ge(pydl.tensor([1, 2]), 2)
        tensor([False,  True])
        """
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
        """The sum over dim (an int, a tuple, or None for all elements).

        >>> x = pydl.tensor([[1.0, 2.0], [3.0, 4.0]])
        >>> x.sum(), x.sum(dim=0), pydl.sum(x, 1, keepdim=True).shape
        (tensor(10.), tensor([4., 6.]), (2, 1))
        """
        axes = normalize_axes(_dim_or_axis(dim, axis), self.ndim)
        return reduce.Sum.apply(self, axes=axes, keepdim=keepdim)

    def mean(self, dim=None, keepdim=False, *, axis=None):
        """The mean over dim (an int, a tuple, or None for all elements).

        >>> pydl.mean(pydl.tensor([[1.0, 2.0], [3.0, 4.0]]), dim=1)
        tensor([1.5, 3.5])
        """
        axes = normalize_axes(_dim_or_axis(dim, axis), self.ndim)
        return reduce.Mean.apply(self, axes=axes, keepdim=keepdim)

    def amax(self, dim=None, keepdim=False, *, axis=None):
        """The largest value over dim; ties share the gradient evenly.

        >>> pydl.amax(pydl.tensor([[1.0, 5.0], [3.0, 4.0]]), dim=0)
        tensor([3., 5.])
        >>> pydl.amin(pydl.tensor([[1.0, 5.0], [3.0, 4.0]]), dim=1)
        tensor([1., 3.])
        """
        axes = normalize_axes(_dim_or_axis(dim, axis), self.ndim)
        return reduce.Amax.apply(self, axes=axes, keepdim=keepdim)

    def amin(self, dim=None, keepdim=False, *, axis=None):
        """The smallest value over dim; ties share the gradient evenly.

        >>> pydl.tensor([[1.0, 5.0], [3.0, 4.0]]).amin()
        tensor(1.)
        """
        axes = normalize_axes(_dim_or_axis(dim, axis), self.ndim)
        return reduce.Amin.apply(self, axes=axes, keepdim=keepdim)

    def max(self, dim=None, keepdim=False, *, axis=None):
        """The largest element; with dim, a (values, indices) pair; with a tensor, maximum.

        >>> x = pydl.tensor([[1.0, 5.0], [3.0, 4.0]])
        >>> x.max()
        tensor(5.)
        >>> pydl.max(x, dim=1)
        MinMax(values=tensor([5., 4.]), indices=tensor([1, 1]))
        >>> x.max(pydl.tensor(4.5))
        tensor([[4.5, 5. ],
                [4.5, 4.5]])
        """
        return self._extreme(self.amax, self.argmax, self.maximum, dim, keepdim, axis)

    def min(self, dim=None, keepdim=False, *, axis=None):
        """The smallest element; with dim, a (values, indices) pair; with a tensor, minimum.

        >>> pydl.min(pydl.tensor([[1.0, 5.0], [3.0, 4.0]]), dim=0)
        MinMax(values=tensor([1., 4.]), indices=tensor([0, 1]))
        """
        return self._extreme(self.amin, self.argmin, self.minimum, dim, keepdim, axis)

    def _extreme(self, values, indices, elementwise, dim, keepdim, axis):
        if isinstance(dim, Tensor):
            return elementwise(dim)
        dim = _dim_or_axis(dim, axis)
        if dim is None:
            return values()
        return MinMax(values(dim, keepdim), indices(dim, keepdim))

    def var(self, dim=None, unbiased=True, keepdim=False, *, correction=None, axis=None):
        """Variance; divides by n - 1 (unbiased) unless unbiased=False or correction=.

        >>> x = pydl.tensor([1.0, 2.0, 3.0, 4.0])
        >>> x.var(), pydl.var(x, unbiased=False)
        (tensor(1.6667), tensor(1.25))
        """
        axes = normalize_axes(_dim_or_axis(dim, axis), self.ndim)
        if correction is None:
            correction = 1 if unbiased else 0
        return reduce.Var.apply(self, axes=axes, keepdim=keepdim, correction=correction)

    def std(self, dim=None, unbiased=True, keepdim=False, *, correction=None, axis=None):
        """The standard deviation (the square root of var, with the same arguments).

        >>> print(f"{pydl.std(pydl.tensor([1.0, 2.0, 3.0, 4.0])).item():.4f}")
        1.2910
        """
        variance = self.var(dim, unbiased, keepdim, correction=correction, axis=axis)
        return reduce.SqrtOfVariance.apply(variance)

    def cumsum(self, dim):
        """The running sum along dim.

        >>> pydl.cumsum(pydl.tensor([1.0, 2.0, 3.0]), 0)
        tensor([1., 3., 6.])
        """
        return reduce.Cumsum.apply(self, axis=normalize_axis(dim, self.ndim))

    def logsumexp(self, dim, keepdim=False):
        """log(sum(exp(self))) over dim, computed stably (the max is taken out first).

        >>> print(f"{pydl.logsumexp(pydl.tensor([1000.0, 1000.0]), 0).item():.2f}")
        1000.69
        """
        peak = self.detach().amax(dim, keepdim=True)
        peak = peak.where(peak.isfinite(), 0.0)
        out = (self - peak).exp().sum(dim, keepdim=True).log() + peak
        return out if keepdim else out.squeeze(dim)

    def norm(self, p="fro", dim=None, keepdim=False):
        """The vector norm over dim (all elements when None): p = 2 or 'fro' (Euclidean),
        1, or inf (the largest magnitude).

        >>> pydl.tensor([3.0, -4.0]).norm(), pydl.tensor([3.0, -4.0]).norm(1)
        (tensor(5.), tensor(7.))
        """
        if p in (2, "fro"):
            return (self * self).sum(dim, keepdim).sqrt()
        if p == 1:
            return abs(self).sum(dim, keepdim)
        if p == float("inf"):
            return abs(self).amax(dim, keepdim)
        raise NotImplementedError(f"norm: p={p!r} is not supported (2, 'fro', 1 or inf)")

    def all(self, dim=None, keepdim=False):
        """True where every element (along dim, when given) is nonzero; bool, no gradient.

        >>> (pydl.ones(3) > 0).all()
        tensor(True)
        """
        return self._logical_reduce("all", dim, keepdim)

    def any(self, dim=None, keepdim=False):
        """True where some element (along dim, when given) is nonzero; bool, no gradient."""
        return self._logical_reduce("any", dim, keepdim)

    def _logical_reduce(self, method, dim, keepdim):
        axes = normalize_axes(dim, self.ndim)
        found = getattr(self.data, method)(axis=axes, keepdims=keepdim)
        return Tensor._wrap(xp_of(self.data).asarray(found, dtype=bool_))

    def argmax(self, dim=None, keepdim=False, *, axis=None):
        """The index of the largest element (flattened, or along dim); int64, no gradient.

        >>> x = pydl.tensor([[1.0, 5.0], [3.0, 4.0]])
        >>> pydl.argmax(x), x.argmax(dim=1)
        (tensor(1), tensor([1, 1]))
        """
        return self._arg_extreme("argmax", _dim_or_axis(dim, axis), keepdim)

    def argmin(self, dim=None, keepdim=False, *, axis=None):
        """The index of the smallest element (flattened, or along dim); int64.

        >>> pydl.argmin(pydl.tensor([[1.0, 5.0], [3.0, 0.0]]), dim=0)
        tensor([0, 1])
        """
        return self._arg_extreme("argmin", _dim_or_axis(dim, axis), keepdim)

    def _arg_extreme(self, method, dim, keepdim):
        axis = None if dim is None else normalize_axis(dim, self.ndim)
        found = getattr(self.data, method)(axis=axis, keepdims=keepdim and axis is not None)
        return Tensor._wrap(xp_of(self.data).asarray(found, dtype=int64))

    # -- shapes --

    def reshape(self, *shape):
        """The same elements in a new shape (one entry may be -1); view is the same.

        >>> pydl.arange(6).reshape(2, 3)
        tensor([[0, 1, 2],
                [3, 4, 5]])
        >>> pydl.reshape(pydl.arange(6), (3, -1)).shape
        (3, 2)
        """
        shape = _shape_arg(shape)
        return self if shape == self.shape else shape_ops.Reshape.apply(self, shape=shape)

    view = reshape

    def flatten(self, start_dim=0, end_dim=-1):
        """Merges the dimensions start_dim..end_dim into one.

        >>> pydl.ones(2, 3, 4).flatten(1).shape
        (2, 12)
        >>> pydl.flatten(pydl.ones(2, 3, 4)).shape
        (24,)
        """
        if self.ndim == 0:
            return self.reshape(1)
        start, end = normalize_axis(start_dim, self.ndim), normalize_axis(end_dim, self.ndim)
        if start > end:
            raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
        s = self.shape
        return self.reshape(s[:start] + (int(np.prod(s[start:end + 1])),) + s[end + 1:])

    def permute(self, *dims):
        """The dimensions in the order dims.

        >>> pydl.ones(2, 3, 4).permute(2, 0, 1).shape
        (4, 2, 3)
        >>> pydl.permute(pydl.ones(2, 3, 4), (1, 0, 2)).shape
        (3, 2, 4)
        """
        dims = _shape_arg(dims)
        if len(dims) != self.ndim:
            raise ValueError(f"permute: got {len(dims)} dims {dims} for a tensor with "
                             f"{self.ndim} dimensions")
        axes = tuple(normalize_axis(d, self.ndim) for d in dims)
        if sorted(axes) != list(range(self.ndim)):
            raise ValueError(f"permute: dims {dims} are not a permutation of the axes")
        return shape_ops.Permute.apply(self, dims=axes)

    def transpose(self, dim0, dim1):
        """dim0 and dim1 swapped.

        >>> pydl.transpose(pydl.ones(2, 3, 4), 0, 2).shape
        (4, 3, 2)
        >>> pydl.tensor([[1, 2, 3]]).T
        tensor([[1],
                [2],
                [3]])
        """
        axes = list(range(self.ndim))
        d0, d1 = normalize_axis(dim0, self.ndim), normalize_axis(dim1, self.ndim)
        axes[d0], axes[d1] = axes[d1], axes[d0]
        return shape_ops.Permute.apply(self, dims=tuple(axes))

    swapaxes = transpose

    def squeeze(self, dim=None):
        """Drops axes of size 1 (only those in dim, when given; others stay).

        >>> pydl.ones(2, 1, 3, 1).squeeze().shape, pydl.squeeze(pydl.ones(2, 1, 3, 1), 1).shape
        ((2, 3), (2, 3, 1))
        """
        axes = normalize_axes(dim, self.ndim)
        kept = [n for i, n in enumerate(self.shape)
                if n != 1 or (axes is not None and i not in axes)]
        return self if len(kept) == self.ndim else self.reshape(tuple(kept))

    def unsqueeze(self, dim):
        """A new axis of size 1 at dim.

        >>> pydl.unsqueeze(pydl.ones(2, 3), 0).shape, pydl.ones(2, 3).unsqueeze(-1).shape
        ((1, 2, 3), (2, 3, 1))
        """
        axis = normalize_axis(dim, self.ndim + 1)
        return self.reshape(self.shape[:axis] + (1,) + self.shape[axis:])

    def expand(self, *sizes):
        """Broadcasts to `sizes` (-1 keeps an axis); new axes go in front.

        >>> pydl.tensor([[1.0], [2.0]]).expand(-1, 3)
        tensor([[1., 1., 1.],
                [2., 2., 2.]])
        """
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
        """self broadcast to shape (a view; the gradient is summed back).

        >>> pydl.broadcast_to(pydl.tensor([1.0, 2.0]), (2, 2))
        tensor([[1., 2.],
                [1., 2.]])
        """
        return self.expand(*shape)

    def expand_as(self, other):
        return self.expand(*other.shape)

    def __getitem__(self, index):
        """Indexing as in NumPy (ints, slices, None, ..., bool and int64 index tensors);
        differentiable.

        >>> x = pydl.arange(6).reshape(2, 3)
        >>> x[1], x[:, 1:], x[x > 3]
        (tensor([3, 4, 5]), tensor([[1, 2],
                [4, 5]]), tensor([4, 5]))
        """
        return shape_ops.GetItem.apply(self, index=_index_arrays(index, self.data))

    def chunk(self, chunks, dim=0):
        """Splits into `chunks` pieces along dim, each ceil(size / chunks) long (the last
        may be shorter, and there may be fewer pieces, as in torch).

        >>> [t.shape for t in pydl.arange(5).chunk(2)]
        [(3,), (2,)]
        """
        if not isinstance(chunks, (int, np.integer)) or chunks < 1:
            raise ValueError(f"chunk: chunks must be a positive int, got {chunks!r}")
        size = self.shape[normalize_axis(dim, self.ndim)]
        return self.split(max(-(-size // int(chunks)), 1), dim)

    def split(self, split_size_or_sections, dim=0):
        """Pieces along dim: of split_size each (the last may be shorter), or of the
        listed section sizes, which must add up to the size of dim.

        >>> [t.tolist() for t in pydl.arange(5).split([1, 4])]
        [[0], [1, 2, 3, 4]]
        """
        axis = normalize_axis(dim, self.ndim)
        size = self.shape[axis]
        if isinstance(split_size_or_sections, (int, np.integer)):
            step = int(split_size_or_sections)
            if step < 1:
                raise ValueError(f"split: split_size must be positive, got {step}")
            sections = [min(step, size - start) for start in range(0, size, step)] or [0]
        else:
            sections = [int(n) for n in split_size_or_sections]
            if sum(sections) != size or min(sections, default=0) < 0:
                raise ValueError(f"split: sections {sections} must be non-negative and add up "
                                 f"to {size}, the size of dim {dim}")
        lead = (slice(None),) * axis
        bounds = np.cumsum([0] + sections)
        return tuple(self[lead + (slice(int(a), int(b)),)] for a, b in zip(bounds, bounds[1:]))

    def narrow(self, dim, start, length):
        """The slice start:start + length along dim (a view; differentiable).

        >>> pydl.arange(6).narrow(0, 2, 3)
        tensor([2, 3, 4])
        """
        axis = normalize_axis(dim, self.ndim)
        if not 0 <= start <= start + length <= self.shape[axis]:
            raise ValueError(f"narrow: start {start} and length {length} do not fit dim {dim} "
                             f"of size {self.shape[axis]}")
        return self[(slice(None),) * axis + (slice(start, start + length),)]

    def flip(self, *dims):
        """The elements in reverse order along each of dims.

        >>> pydl.tensor([[1, 2], [3, 4]]).flip(1)
        tensor([[2, 1],
                [4, 3]])
        """
        axes = normalize_axes(_shape_arg(dims), self.ndim) if self.ndim else ()
        return self[tuple(slice(None, None, -1) if i in axes else slice(None)
                          for i in range(self.ndim))]

    def repeat(self, *sizes):
        """The tensor tiled sizes[i] times along each dimension (leading sizes add
        dimensions), as torch's Tensor.repeat and numpy.tile.

        >>> pydl.tensor([1, 2]).repeat(2, 2)
        tensor([[1, 2, 1, 2],
                [1, 2, 1, 2]])
        """
        sizes = _shape_arg(sizes)
        if len(sizes) < self.ndim:
            raise ValueError(f"repeat: {len(sizes)} sizes for a tensor with {self.ndim} "
                             "dimensions; give at least one per dimension")
        shape = (1,) * (len(sizes) - self.ndim) + self.shape
        # (n0, n1, ...) -> (1, n0, 1, n1, ...) -> expand to (r0, n0, r1, n1, ...) -> merge.
        spread = self.reshape(tuple(d for n in shape for d in (1, n)))
        tiled = spread.expand(*(d for r, n in zip(sizes, shape) for d in (r, n)))
        return tiled.reshape(tuple(r * n for r, n in zip(sizes, shape)))

    def index_select(self, dim, index):
        """The entries at the int64 indices `index` (1-D) along dim; the gradient adds up
        at repeated indices.

        >>> pydl.tensor([[1, 2], [3, 4], [5, 6]]).index_select(0, pydl.tensor([2, 0]))
        tensor([[5, 6],
                [1, 2]])
        """
        index = _as_tensor(index)
        axis = normalize_axis(dim, self.ndim)
        if index.dtype != int64 or index.ndim != 1:
            raise TypeError(f"index_select: index must be a 1-D int64 tensor, got "
                            f"{index.dtype} of shape {index.shape}")
        size = self.shape[axis]
        if index.numel() and (int(index.data.min()) < 0 or int(index.data.max()) >= size):
            raise IndexError(f"index_select: indices must lie in [0, {size}) for dim {dim}")
        return self[(slice(None),) * axis + (index,)]

    def nonzero(self, as_tuple=False):
        """The indices of the nonzero elements: an (n, ndim) int64 tensor, or with
        as_tuple one index tensor per dimension.

        >>> pydl.tensor([[0, 1], [2, 0]]).nonzero()
        tensor([[0, 1],
                [1, 0]])
        """
        found = xp_of(self.data).nonzero(self.data)
        if as_tuple:
            return tuple(Tensor._wrap(i.astype(int64, copy=False)) for i in found)
        return Tensor._wrap(xp_of(self.data).stack(found, axis=1).astype(int64, copy=False))

    def tril(self, diagonal=0):
        """The lower triangle of the last two dimensions (the rest zero); differentiable.

        >>> pydl.ones(3, 3).tril()
        tensor([[1., 0., 0.],
                [1., 1., 0.],
                [1., 1., 1.]])
        """
        rows, cols = self.shape[-2:]
        return self * Tensor._wrap(xp_of(self.data).tri(rows, cols, diagonal, dtype=self.dtype))

    def triu(self, diagonal=0):
        """The upper triangle of the last two dimensions (the rest zero); differentiable.

        >>> pydl.ones(2, 3).triu(1)
        tensor([[0., 1., 1.],
                [0., 0., 1.]])
        """
        rows, cols = self.shape[-2:]
        lower = xp_of(self.data).tri(rows, cols, diagonal - 1, dtype=self.dtype)
        return self * Tensor._wrap(1 - lower)

    def new_zeros(self, *size, dtype=None, device=None, requires_grad=False):
        """Zeros of the given size with self's dtype and device (unless given).

        >>> pydl.zeros(1, dtype=pydl.float64).new_zeros(2).dtype
        dtype('float64')
        """
        return zeros(*size, dtype=dtype or self.dtype, device=device or self.device,
                     requires_grad=requires_grad)

    def new_ones(self, *size, dtype=None, device=None, requires_grad=False):
        """Ones of the given size with self's dtype and device (unless given).

        >>> pydl.tensor([1, 2]).new_ones(3)
        tensor([1, 1, 1])
        """
        return ones(*size, dtype=dtype or self.dtype, device=device or self.device,
                    requires_grad=requires_grad)

    def new_full(self, size, fill_value, dtype=None, device=None, requires_grad=False):
        """fill_value in the given size with self's dtype and device (unless given).

        >>> pydl.zeros(1).new_full((2,), 3)
        tensor([3., 3.])
        """
        return full(size, fill_value, dtype=dtype or self.dtype, device=device or self.device,
                    requires_grad=requires_grad)

    def new_tensor(self, data, dtype=None, device=None, requires_grad=False):
        """A copy of data with self's dtype and device (unless given).

        >>> pydl.zeros(1, dtype=pydl.float64).new_tensor([1, 2])
        tensor([1., 2.], dtype=pydl.float64)
        """
        return tensor(data, dtype=dtype or self.dtype, device=device or self.device,
                      requires_grad=requires_grad)

    def type_as(self, other):
        """self converted to other's dtype.

        >>> pydl.tensor([1, 2]).type_as(pydl.zeros(1))
        tensor([1., 2.])
        """
        return self.to(dtype=other.dtype)

    def unbind(self, dim=0):
        """The slices along dim, with that dim removed.

        >>> pydl.unbind(pydl.tensor([[1, 2], [3, 4]]), 1)
        (tensor([1, 3]), tensor([2, 4]))
        """
        axis = normalize_axis(dim, self.ndim)
        return tuple(self[(slice(None),) * axis + (i,)] for i in range(self.shape[axis]))

    # -- selection: sort, topk, gather, scatter, masked_fill --

    def argsort(self, dim=-1, descending=False, stable=False):
        """The indices that sort dim (stably: ties keep their order).

        >>> pydl.tensor([3.0, 1.0, 2.0]).argsort()
        tensor([1, 2, 0])
        """
        axis = normalize_axis(dim, self.ndim)
        keys = self.data.astype(int64) if self.dtype == bool_ else self.data
        found = xp_of(keys).argsort(-keys if descending else keys, axis=axis, kind="stable")
        return Tensor._wrap(found.astype(int64, copy=False))

    def sort(self, dim=-1, descending=False, stable=False):
        """(values, indices) sorted along dim; values carry the gradient.

        >>> pydl.tensor([3.0, 1.0, 2.0]).sort(descending=True)
        SortResult(values=tensor([3., 2., 1.]), indices=tensor([0, 2, 1]))
        """
        indices = self.argsort(dim, descending)
        return SortResult(self.gather(dim, indices), indices)

    def topk(self, k, dim=-1, largest=True, sorted=True):
        """The k largest (or smallest) elements along dim and their indices, in order.

        >>> pydl.tensor([[1.0, 5.0, 3.0]]).topk(2)
        TopK(values=tensor([[5., 3.]]), indices=tensor([[1, 2]]))
        """
        axis = normalize_axis(dim, self.ndim)
        size = self.shape[axis] if self.ndim else 1
        if not 0 <= k <= size:
            raise ValueError(f"topk: k={k} is out of range for dim {dim} of size {size}")
        order = self.argsort(axis, descending=largest)
        indices = Tensor._wrap(order.data[(slice(None),) * axis + (slice(0, k),)])
        return TopK(self.gather(axis, indices), indices)

    def gather(self, dim, index):
        """out[i][j] = self[index[i][j]][j] for dim=0 (and so on): index is int64 with
        self's number of dimensions and no larger than self outside dim. The gradient
        is added back at the gathered positions.

        >>> pydl.tensor([[1.0, 2.0], [3.0, 4.0]]).gather(1, pydl.tensor([[1], [0]]))
        tensor([[2.],
                [3.]])
        """
        return shape_ops.GetItem.apply(self, index=self._gather_index(dim, index, "gather"))

    def scatter(self, dim, index, src=None, *, value=None):
        """A copy of self with out[index[i][j]][j] = src[i][j] for dim=0 (and so on); src
        is a tensor (its first index.shape elements are used) or a number (value=).
        Differentiable in self and src.

        >>> pydl.zeros(3).scatter(0, pydl.tensor([2, 0]), pydl.tensor([5.0, 6.0]))
        tensor([6., 0., 5.])
        """
        return self._scatter(dim, index, src, value, accumulate=False, op="scatter")

    def scatter_add(self, dim, index, src):
        """A copy of self with src added at index along dim (repeated indices add up).

        >>> pydl.zeros(2).scatter_add(0, pydl.tensor([1, 1, 0]), pydl.ones(3))
        tensor([1., 2.])
        """
        return self._scatter(dim, index, src, None, accumulate=True, op="scatter_add")

    def _scatter(self, dim, index, src, value, accumulate, op):
        where_ = self._gather_index(dim, index, op)
        shape = _as_tensor(index).shape
        if src is None or not isinstance(src, Tensor):
            fill = value if src is None else src
            if fill is None:
                raise TypeError(f"{op}: pass src (a tensor) or value (a number)")
            source = _filled(shape, _fill_value(fill, self), self.dtype, self.device, False)
        else:
            source = src.to(dtype=self.dtype)
            if source.ndim != self.ndim or any(s < n for s, n in zip(source.shape, shape)):
                raise ValueError(f"{op}: src of shape {src.shape} must have index's number of "
                                 f"dimensions and be at least index's shape {shape}")
            if source.shape != shape:
                source = source[tuple(slice(0, n) for n in shape)]
        return shape_ops.Scatter.apply(self, source, index=where_, accumulate=accumulate)

    def _scatter_args(self, dim, index, src, value, op):
        """(index tuple, source array) for the in-place scatters."""
        where_ = self._gather_index(dim, index, op)
        if isinstance(src, Tensor):
            autograd.require_same_device([self.data, src.data])
            shape = _as_tensor(index).shape
            return where_, src.data[tuple(slice(0, n) for n in shape)]
        fill = value if src is None else src
        if fill is None:
            raise TypeError(f"{op}: pass src (a tensor) or value (a number)")
        return where_, _fill_value(fill, self)

    def _gather_index(self, dim, index, op):
        """The tuple of index arrays that picks, for every position of `index`, the
        element of self it names along dim (torch.gather's rule)."""
        index = _as_tensor(index)
        if index.dtype != int64:
            raise TypeError(f"{op}: index must be int64, got {index.dtype}")
        autograd.require_same_device([self.data, index.data])
        axis = normalize_axis(dim, self.ndim)
        if index.ndim != max(self.ndim, 1) or any(
                n > m for i, (n, m) in enumerate(zip(index.shape, self.shape)) if i != axis):
            raise ValueError(f"{op}: index of shape {index.shape} must have the input's "
                             f"{self.ndim} dimensions and be no larger than its shape "
                             f"{self.shape} outside dim {dim}")
        size = self.shape[axis] if self.ndim else 1
        if index.numel() and (int(index.data.min()) < 0 or int(index.data.max()) >= size):
            raise IndexError(f"{op}: index values must lie in [0, {size}) for dim {dim}, got "
                             f"{int(index.data.min())} to {int(index.data.max())}")
        if self.ndim == 0:
            return ()
        xp = xp_of(self.data)
        grids = [xp.arange(n).reshape((1,) * i + (n,) + (1,) * (index.ndim - i - 1))
                 for i, n in enumerate(index.shape)]
        grids[axis] = index.data
        return tuple(grids)

    def masked_fill(self, mask, value):
        """value where the bool mask (broadcast to self) is True, else self; the gradient
        passes where the mask is False.

        >>> x = pydl.tensor([1.0, 2.0, 3.0])
        >>> x.masked_fill(x > 1.5, 0.0)
        tensor([1., 0., 0.])
        """
        mask = Tensor._wrap(_mask_array(mask, self))
        if isinstance(value, Tensor) and value.numel() != 1:
            raise ValueError(f"masked_fill: value must be a number or a one-element tensor, "
                             f"got shape {value.shape}")
        fill = value.reshape(()) if isinstance(value, Tensor) else _fill_value(value, self)
        return where(mask, fill, self)

    # -- activations --

    def relu(self):
        """max(self, 0) (the relu kernel for float32).

        >>> pydl.relu(pydl.tensor([-1.0, 2.0]))
        tensor([0., 2.])
        """
        return ew.Relu.apply(self)

    def sigmoid(self):
        """1 / (1 + exp(-self)), computed without overflow.

        >>> pydl.sigmoid(pydl.tensor([0.0]))
        tensor([0.5])
        """
        return ew.Sigmoid.apply(self)

    def tanh(self):
        """The hyperbolic tangent.

        >>> pydl.tanh(pydl.tensor([0.0, 100.0]))
        tensor([0., 1.])
        """
        return ew.Tanh.apply(self)

    def softmax(self, dim=-1):
        """exp(self) / sum(exp(self)) along dim, stably (the softmax kernel).

        >>> pydl.softmax(pydl.tensor([[0.0, 0.0]]), dim=1)
        tensor([[0.5, 0.5]])
        """
        return ew.Softmax.apply(self, dim=normalize_axis(dim, self.ndim))

    def log_softmax(self, dim=-1):
        """log(softmax(self)) along dim, stably.

        >>> print(f"{pydl.log_softmax(pydl.tensor([0.0, 0.0]), dim=0)[0].item():.4f}")
        -0.6931
        """
        return ew.LogSoftmax.apply(self, dim=normalize_axis(dim, self.ndim))


# Every op's outputs are made tensors by autograd's Function.apply, which sits below
# this module and so is handed the constructor rather than importing it.
autograd.register_tensor_wrapper(Tensor._wrap)


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


def _mask_array(mask, like):
    """A bool mask's array on `like`'s device (TypeError naming any other dtype)."""
    mask = _as_tensor(mask)
    if mask.dtype != bool_:
        raise TypeError(f"mask must be a bool tensor, got {mask.dtype}")
    autograd.require_same_device([like.data, mask.data])
    return mask.data


def _fill_value(value, like):
    """A number (or one-element tensor) as a scalar of like's dtype."""
    if isinstance(value, Tensor):
        value = value.item()
    if not isinstance(value, (numbers.Number, np.generic)):
        raise TypeError(f"expected a number as the fill value, got {type(value).__name__}")
    return like.dtype.type(value)


def _as_tensor(value):
    return value if isinstance(value, Tensor) else Tensor._wrap(_to_array(value, copy=False))


# ---- functions over several tensors -------------------------------------------------

def matmul(input, other):
    """The matrix product input @ other (see Tensor.matmul).

    >>> pydl.matmul(pydl.ones(2, 3), pydl.ones(3, 2))
    tensor([[3., 3.],
            [3., 3.]])
    """
    return _as_tensor(input).matmul(other)


def where(condition, input=None, other=None):
    """input where condition is true, else other (scalars allowed; broadcasting). With
    the condition alone, the indices where it is true, one int64 tensor per dimension.

    >>> x = pydl.tensor([-1.0, 2.0, -3.0])
    >>> pydl.where(x > 0, x, 0.0)
    tensor([0., 2., 0.])
    >>> pydl.where(x > 0)
    (tensor([1]),)
    """
    condition = _as_tensor(condition)
    if condition.dtype != bool_:
        raise TypeError(f"where: condition must be a bool tensor, got {condition.dtype}")
    if input is None and other is None:
        return tuple(Tensor._wrap(i.astype(int64, copy=False))
                     for i in xp_of(condition.data).nonzero(condition.data))
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
    """Joins tensors along an existing axis.

    >>> pydl.cat([pydl.zeros(1, 2), pydl.ones(2, 2)]).shape
    (3, 2)
    >>> pydl.concatenate([pydl.zeros(2, 1), pydl.ones(2, 3)], dim=1).shape
    (2, 4)
    """
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
    """Joins same-shaped tensors along a new axis.

    >>> pydl.stack([pydl.zeros(2), pydl.ones(2)], dim=1)
    tensor([[0., 1.],
            [0., 1.]])
    """
    tensors = _same_dtype(tensors, "stack")
    for t in tensors[1:]:
        if t.shape != tensors[0].shape:
            raise ValueError(f"stack: all tensors must have the same shape, got "
                             f"{tensors[0].shape} and {t.shape}")
    return shape_ops.Stack.apply(*tensors, dim=normalize_axis(dim, tensors[0].ndim + 1))


def einsum(equation, *operands):
    """Einstein summation: einsum("ij,jk->ik", a, b) is a @ b. Operands are contracted
    two at a time as one batched matrix product each (the GEMM kernel), after summing
    away the letters only one operand has; "..." and the implicit output (the letters
    seen once, sorted) work as in torch. A letter repeated within one operand (a
    diagonal or trace) is not supported.

    >>> a, b = pydl.ones(2, 3), pydl.ones(3, 4)
    >>> pydl.einsum("ij,jk->ik", a, b).shape
    (2, 4)
    >>> pydl.einsum("bi,bi->b", a, a)
    tensor([3., 3.])
    """
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = operands[0]
    operands = _same_dtype(operands, "einsum")
    inputs, output = _einsum_subscripts(equation, [t.ndim for t in operands])
    sizes = {}
    for subs, t in zip(inputs, operands):
        if len(set(subs)) != len(subs):
            raise NotImplementedError(f"einsum: {equation!r} repeats a letter within one "
                                      "operand (diagonal or trace), which pydl does not support")
        for letter, n in zip(subs, t.shape):
            if sizes.get(letter, 1) not in (1, n) and n != 1:
                raise ValueError(f"einsum: {equation!r}: letter {letter!r} has sizes "
                                 f"{sizes[letter]} and {n}")
            sizes[letter] = max(sizes.get(letter, 1), n)
    # Size-1 axes broadcast against the other operands' sizes.
    operands = [t.expand(*(sizes[c] for c in subs)) for t, subs in zip(operands, inputs)]
    result, subs = _einsum_reduce(operands[0], inputs[0], set(output).union(*inputs[1:]))
    for i in range(1, len(operands)):
        later = set(output).union(*inputs[i + 1:])
        other, other_subs = _einsum_reduce(operands[i], inputs[i], later | set(subs))
        result, subs = _einsum_pair(result, subs, other, other_subs, later)
    result, subs = _einsum_reduce(result, subs, set(output))
    if not output:
        return result.reshape(())
    return result.permute(*(subs.index(c) for c in output))


def _einsum_subscripts(equation, ndims):
    """(input subscripts, output subscripts) as strings of letters, "..." spelled out."""
    equation = equation.replace(" ", "")
    lhs, arrow, rhs = equation.partition("->")
    inputs = lhs.split(",")
    if len(inputs) != len(ndims):
        raise ValueError(f"einsum: {equation!r} names {len(inputs)} operands, got {len(ndims)}")
    spare = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
             if c not in equation]
    ellipsis_ndim = 0
    spelled = []
    for subs, ndim in zip(inputs, ndims):
        if not all(c.isalpha() for c in subs.replace("...", "")):
            raise ValueError(f"einsum: subscripts must be letters (and '...'), got {subs!r}")
        letters = len(subs.replace("...", ""))
        extra = ndim - letters if "..." in subs else 0
        if letters + extra != ndim or extra < 0:
            raise ValueError(f"einsum: subscripts {subs!r} do not fit an operand with {ndim} "
                             "dimensions")
        ellipsis_ndim = max(ellipsis_ndim, extra)
        spelled.append((subs, extra))
    dots = "".join(spare[:ellipsis_ndim])
    inputs = [subs.replace("...", dots[ellipsis_ndim - extra:]) for subs, extra in spelled]
    if arrow:
        output = rhs.replace("...", dots)
    else:
        counts = collections.Counter("".join(inputs))
        output = dots + "".join(sorted(c for c in counts if counts[c] == 1 and c not in dots))
    unknown = set(output) - set("".join(inputs))
    if unknown or len(set(output)) != len(output):
        raise ValueError(f"einsum: output subscripts {rhs!r} must be distinct letters of the "
                         "inputs")
    return inputs, output


def _einsum_reduce(t, subs, keep):
    """t summed over its letters not in keep: (tensor, remaining subscripts)."""
    gone = [i for i, c in enumerate(subs) if c not in keep]
    if not gone:
        return t, subs
    return t.sum(dim=tuple(gone)), "".join(c for c in subs if c in keep)


def _einsum_pair(a, sa, b, sb, keep):
    """The contraction of a and b as one batched matmul (batch, M, K) @ (batch, K, N):
    batch letters are in both and kept, K letters in both and summed, M and N letters in
    one operand only. Returns (tensor, subscripts batch + M + N)."""
    batch = [c for c in sa if c in sb and c in keep]
    summed = [c for c in sa if c in sb and c not in keep]
    rows = [c for c in sa if c not in sb]
    cols = [c for c in sb if c not in sa]

    def size(t, subs, letters):
        return int(np.prod([t.shape[subs.index(c)] for c in letters], dtype=np.int64))

    def arranged(t, subs, order, shape):
        return t.permute(*(subs.index(c) for c in order)).reshape(shape)

    nb, nk = size(a, sa, batch), size(a, sa, summed)
    nm, nn = size(a, sa, rows), size(b, sb, cols)
    left = arranged(a, sa, batch + rows + summed, (nb, nm, nk))
    right = arranged(b, sb, batch + summed + cols, (nb, nk, nn))
    shape = [a.shape[sa.index(c)] for c in batch + rows] + [b.shape[sb.index(c)] for c in cols]
    return left.matmul(right).reshape(tuple(shape)), "".join(batch + rows + cols)


# The function forms of Tensor methods: pydl.exp(x) is x.exp(), and so on.
FUNCTION_FORMS = (
    "add", "sub", "mul", "div", "pow", "neg", "abs", "exp", "log", "sqrt", "clamp", "clip",
    "maximum", "minimum", "sum", "mean", "amax", "amin", "max", "min", "var", "std",
    "argmax", "argmin", "reshape", "flatten", "permute", "transpose", "squeeze", "unsqueeze",
    "broadcast_to", "relu", "sigmoid", "tanh", "softmax", "log_softmax",
    "eq", "ne", "lt", "le", "gt", "ge",
    "sort", "argsort", "topk", "gather", "scatter", "scatter_add", "masked_fill", "chunk",
    "split", "unbind", "square", "log1p", "sin", "cos", "sign", "round", "floor", "ceil",
    "isnan", "isinf", "isfinite", "allclose", "cumsum", "logsumexp", "norm", "narrow", "flip",
    "index_select", "nonzero", "tril", "triu", "mm", "bmm", "outer")


def function_form(name):
    """pydl.<name>(input, ...) calling input.<name>(...)."""
    method = getattr(Tensor, name)

    def function(input, *args, **kwargs):
        return method(_as_tensor(input), *args, **kwargs)
    function.__name__ = function.__qualname__ = name
    function.__doc__ = method.__doc__
    function.__wrapped__ = method  # inspect.signature shows the method's arguments
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
    NumPy arrays keep their dtype where pydl supports it.

    >>> pydl.tensor([[1, 2], [3, 4]])
    tensor([[1, 2],
            [3, 4]])
    >>> pydl.tensor([1.5, 2.0], dtype=pydl.float64, requires_grad=True)
    tensor([1.5, 2. ], dtype=pydl.float64, requires_grad=True)
    """
    return _place(_to_array(data, as_dtype(dtype)), device, requires_grad)


def from_numpy(array):
    """A tensor sharing memory with a NumPy array of a supported dtype.

    >>> a = np.zeros(3, np.float32)
    >>> t = pydl.from_numpy(a)
    >>> a[0] = 5
    >>> t
    tensor([5., 0., 0.])
    """
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy expects a numpy.ndarray, got {type(array).__name__}")
    if array.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"from_numpy: unsupported dtype {array.dtype}; pydl supports float32, "
                        "float64, int64 and bool")
    return Tensor._wrap(array)


def from_dlpack(obj):
    """A tensor sharing memory with any object that exports DLPack (__dlpack__).

    >>> pydl.from_dlpack(np.arange(3.0))
    tensor([0., 1., 2.], dtype=pydl.float64)
    """
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
    """A tensor of zeros of the given size (float32 unless dtype says otherwise).

    >>> pydl.zeros(2, 3).shape, pydl.zeros((2,), dtype=pydl.int64)
    ((2, 3), tensor([0, 0]))
    """
    return _filled(_shape_arg(size), 0, as_dtype(dtype) or float32, device, requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False):
    """A tensor of ones of the given size (float32 unless dtype says otherwise).

    >>> pydl.ones(2, 2)
    tensor([[1., 1.],
            [1., 1.]])
    """
    return _filled(_shape_arg(size), 1, as_dtype(dtype) or float32, device, requires_grad)


def empty(*size, dtype=None, device=None, requires_grad=False):
    """Uninitialized memory (on the CPU from the kernels' caching allocator).

    >>> pydl.empty(2, 3).shape
    (2, 3)
    """
    target = _device.require_available(_device.device(device))
    shape, dtype = _shape_arg(size), as_dtype(dtype) or float32
    if target.type == "cpu":
        t = Tensor._wrap(_C.empty(list(shape), str(dtype)))
    else:
        with _device.on(target):
            t = Tensor._wrap(_device.array_module(target).empty(shape, dtype))
    return t.requires_grad_() if requires_grad else t


def full(size, fill_value, dtype=None, device=None, requires_grad=False):
    """A tensor of `fill_value`; the dtype follows the value (float32, int64 or bool).

    >>> pydl.full((2, 2), 7), pydl.full((2,), 0.5)
    (tensor([[7, 7],
            [7, 7]]), tensor([0.5, 0.5]))
    """
    dtype = as_dtype(dtype) or _to_array(fill_value).dtype
    return _filled(_shape_arg((size,)), fill_value, dtype, device, requires_grad)


def _filled_like(fill, t, dtype, device, requires_grad):
    return _filled(t.shape, fill, as_dtype(dtype) or t.dtype, device or t.device, requires_grad)


def zeros_like(input, dtype=None, device=None, requires_grad=False):
    """Zeros with input's shape, dtype and device (unless given).

    >>> pydl.zeros_like(pydl.ones(2, dtype=pydl.int64))
    tensor([0, 0])
    """
    return _filled_like(0, input, dtype, device, requires_grad)


def ones_like(input, dtype=None, device=None, requires_grad=False):
    """Ones with input's shape, dtype and device (unless given).

    >>> pydl.ones_like(pydl.zeros(1, 2))
    tensor([[1., 1.]])
    """
    return _filled_like(1, input, dtype, device, requires_grad)


def full_like(input, fill_value, dtype=None, device=None, requires_grad=False):
    """A tensor of fill_value with input's shape (and dtype and device, unless given).

    >>> pydl.full_like(pydl.zeros(2), 7.0)
    tensor([7., 7.])
    """
    return _filled_like(fill_value, input, dtype, device, requires_grad)


def empty_like(input, dtype=None, device=None, requires_grad=False):
    """Uninitialized memory with input's shape, dtype and device (unless given).

    >>> pydl.empty_like(pydl.zeros(2, 3, dtype=pydl.float64)).dtype
    dtype('float64')
    """
    return empty(*input.shape, dtype=dtype or input.dtype, device=device or input.device,
                 requires_grad=requires_grad)


def _float_like(input, dtype):
    dtype = as_dtype(dtype) or input.dtype
    return dtype if _is_float(dtype) else float32


def randn_like(input, dtype=None, device=None, requires_grad=False):
    """Standard normal samples with input's shape (its dtype when floating, else float32).

    >>> pydl.randn_like(pydl.zeros(2, 3)).shape
    (2, 3)
    """
    return randn(*input.shape, dtype=_float_like(input, dtype), device=device or input.device,
                 requires_grad=requires_grad)


def rand_like(input, dtype=None, device=None, requires_grad=False):
    """Uniform samples in [0, 1) with input's shape (its dtype when floating, else float32).

    >>> pydl.rand_like(pydl.zeros(4)).shape
    (4,)
    """
    return rand(*input.shape, dtype=_float_like(input, dtype), device=device or input.device,
                requires_grad=requires_grad)


def randint_like(input, low=0, high=None, dtype=None, device=None):
    """Integers uniform in [low, high) with input's shape and dtype (randint_like(x, high)
    starts at 0).

    >>> bool((pydl.randint_like(pydl.zeros(100), 3) < 3).all())
    True
    """
    return randint(low, high, input.shape, dtype=dtype or input.dtype,
                   device=device or input.device)


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False):
    """steps values evenly spaced from start to end, both included (float32 by default).

    >>> pydl.linspace(0, 1, 5)
    tensor([0.  , 0.25, 0.5 , 0.75, 1.  ])
    """
    array = np.linspace(start, end, steps, dtype=_float_dtype(dtype, "linspace"))
    return _place(array, device, requires_grad)


def randn(*size, dtype=None, device=None, requires_grad=False):
    """Standard normal samples from the global generator (see pydl.manual_seed).

    >>> pydl.manual_seed(0)
    >>> pydl.randn(2, 3).shape
    (2, 3)
    """
    array = _random.generator().standard_normal(_shape_arg(size),
                                                dtype=_float_dtype(dtype, "randn"))
    return _place(array, device, requires_grad)


def rand(*size, dtype=None, device=None, requires_grad=False):
    """Uniform samples in [0, 1) from the global generator.

    >>> bool(((pydl.rand(100) >= 0) & (pydl.rand(100) < 1)).all())
    True
    """
    array = _random.generator().random(_shape_arg(size), dtype=_float_dtype(dtype, "rand"))
    return _place(array, device, requires_grad)


def randint(low, high=None, size=(), dtype=None, device=None):
    """Integers uniform in [low, high) (randint(high, size=...) starts at 0).

    >>> pydl.randint(0, 10, (3,)).dtype
    dtype('int64')
    >>> bool((pydl.randint(5, size=(100,)) < 5).all())
    True
    """
    if high is None:
        low, high = 0, low
    array = _random.generator().integers(low, high, _shape_arg((size,)), dtype=np.int64)
    return _place(array.astype(as_dtype(dtype) or int64, copy=False), device, False)


def randperm(n, device=None):
    """A random permutation of 0 .. n-1 (int64).

    >>> sorted(pydl.randperm(5).tolist())
    [0, 1, 2, 3, 4]
    """
    return _place(_random.generator().permutation(n).astype(int64), device, False)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False):
    """Values from start to end (exclusive); int64 when all arguments are ints, else float32.

    >>> pydl.arange(4), pydl.arange(0, 1, 0.25)
    (tensor([0, 1, 2, 3]), tensor([0.  , 0.25, 0.5 , 0.75]))
    """
    if end is None:
        start, end = 0, start
    if dtype is None:
        all_ints = all(isinstance(v, (int, np.integer)) for v in (start, end, step))
        dtype = int64 if all_ints else float32
    return _place(np.arange(start, end, step, dtype=as_dtype(dtype)), device, requires_grad)


def eye(n, m=None, dtype=None, device=None, requires_grad=False):
    """The n x m identity matrix (m defaults to n).

    >>> pydl.eye(2)
    tensor([[1., 0.],
            [0., 1.]])
    """
    return _place(np.eye(n, m, dtype=as_dtype(dtype) or float32), device, requires_grad)
