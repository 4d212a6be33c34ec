"""Elementwise arithmetic and activations, plus row-wise softmax.

Binary ops broadcast like NumPy; their backward sums each gradient back to its
input's shape. Activations and softmax on float32 run the compiled kernels;
other dtypes (float64 for gradient checks) use the NumPy forms below, which
state the math each kernel implements.
"""
import math

import numpy as np

from pydl._device import kernels_for
from pydl.autograd import Function
from pydl.ops.common import contiguous, memory_order, unbroadcast, xp_of


# ---- arithmetic -----------------------------------------------------------------

class Add(Function):
    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a + b

    def backward(self, g):
        return unbroadcast(g, self.shapes[0]), unbroadcast(g, self.shapes[1])


class Sub(Function):
    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a - b

    def backward(self, g):
        need_a, need_b = self.needs_input_grad
        return (unbroadcast(g, self.shapes[0]) if need_a else None,
                unbroadcast(-g, self.shapes[1]) if need_b else None)


class Mul(Function):
    def forward(self, a, b):
        self.save(a, b)
        return a * b

    def backward(self, g):
        a, b = self.saved
        need_a, need_b = self.needs_input_grad
        return (unbroadcast(g * b, a.shape) if need_a else None,
                unbroadcast(g * a, b.shape) if need_b else None)


class Div(Function):
    # d(a/b)/da = 1/b,  d(a/b)/db = -a/b^2
    def forward(self, a, b):
        self.save(a, b)
        return a / b

    def backward(self, g):
        a, b = self.saved
        need_a, need_b = self.needs_input_grad
        return (unbroadcast(g / b, a.shape) if need_a else None,
                unbroadcast(-g * a / (b * b), b.shape) if need_b else None)


class Pow(Function):
    # d(a^b)/da = b a^(b-1),  d(a^b)/db = a^b log a (taken as 0 where a == 0, like 0^b)
    def forward(self, a, b):
        out = a ** b
        self.save(a, b, out)
        return out

    def backward(self, g):
        a, b, out = self.saved
        need_a, need_b = self.needs_input_grad
        ga = gb = None
        if need_a:
            ga = unbroadcast(g * b * a ** (b - 1), a.shape)
        if need_b:
            xp = xp_of(a)
            safe_a = xp.where(a == 0, 1, a)
            gb = unbroadcast(g * out * xp.log(safe_a), b.shape)
        return ga, gb


class Neg(Function):
    def forward(self, a):
        return -a

    def backward(self, g):
        return (-g,)


class Abs(Function):
    def forward(self, a):
        self.save(a)
        return abs(a)

    def backward(self, g):
        (a,) = self.saved
        return (g * xp_of(a).sign(a),)


class Exp(Function):
    def forward(self, a):
        out = xp_of(a).exp(a)
        self.save(out)
        return out

    def backward(self, g):
        return (g * self.saved[0],)


class Log(Function):
    def forward(self, a):
        self.save(a)
        return xp_of(a).log(a)

    def backward(self, g):
        return (g / self.saved[0],)


class Sqrt(Function):
    # d sqrt(a) = 1 / (2 sqrt(a))
    def forward(self, a):
        out = xp_of(a).sqrt(a)
        self.save(out)
        return out

    def backward(self, g):
        return (g / (2 * self.saved[0]),)


class Log1p(Function):
    # d log(1 + a) = 1 / (1 + a)
    def forward(self, a):
        self.save(a)
        return xp_of(a).log1p(a)

    def backward(self, g):
        return (g / (1 + self.saved[0]),)


class Sin(Function):
    def forward(self, a):
        self.save(a)
        return xp_of(a).sin(a)

    def backward(self, g):
        return (g * xp_of(g).cos(self.saved[0]),)


class Cos(Function):
    def forward(self, a):
        self.save(a)
        return xp_of(a).cos(a)

    def backward(self, g):
        return (-g * xp_of(g).sin(self.saved[0]),)


class Clamp(Function):
    """clamp(a, low, high); the gradient passes where low <= a <= high."""

    def forward(self, a):
        xp = xp_of(a)
        out = a
        # Bounds as scalars of a's dtype: no array is made for them (on CUDA: no copy).
        if self.low is not None:
            out = xp.maximum(out, a.dtype.type(self.low))
        if self.high is not None:
            out = xp.minimum(out, a.dtype.type(self.high))
        self.save(a)
        return out

    def backward(self, g):
        (a,) = self.saved
        inside = True
        if self.low is not None:
            inside = inside & (a >= self.low)
        if self.high is not None:
            inside = inside & (a <= self.high)
        return (g * inside,)


class _Extremum(Function):
    """maximum/minimum; where both inputs tie, each gets half the gradient."""

    pick = None  # "maximum" or "minimum", of the arrays' module

    def forward(self, a, b):
        out = getattr(xp_of(a), self.pick)(a, b)
        self.save(a, b, out)
        return out

    def backward(self, g):
        a, b, out = self.saved
        share_a = xp_of(a).where(a == b, 0.5, a == out).astype(g.dtype)
        return unbroadcast(g * share_a, a.shape), unbroadcast(g * (1 - share_a), b.shape)


class Maximum(_Extremum):
    pick = "maximum"


class Minimum(_Extremum):
    pick = "minimum"


class Where(Function):
    """where(condition, a, b) with `condition` a boolean array setting."""

    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return xp_of(a).where(self.condition, a, b)

    def backward(self, g):
        zero = g.dtype.type(0)
        xp = xp_of(g)
        return (unbroadcast(xp.where(self.condition, g, zero), self.shapes[0]),
                unbroadcast(xp.where(self.condition, zero, g), self.shapes[1]))


class AsType(Function):
    def forward(self, a):
        self.source_dtype = a.dtype
        return a.astype(self.dtype)

    def backward(self, g):
        return (g.astype(self.source_dtype),)


# ---- activations ----------------------------------------------------------------

_host_erf = np.vectorize(math.erf, otypes=[np.float64])


def _erf(x):
    if isinstance(x, np.ndarray):
        return _host_erf(x)
    import cupyx.scipy.special  # CuPy's erf, for float64 on the GPU
    return cupyx.scipy.special.erf(x)


class _Activation(Function):
    """y = f(x) elementwise. float32 calls `<kernel>_forward/_backward`; other dtypes
    use reference()/reference_grad(). Backward needs x, or y when `saves_output`."""

    kernel = None
    saves_output = False

    def forward(self, x):
        if x.dtype == np.float32:
            # A dense permuted view (e.g. channels-last over NCHW) keeps its layout: the
            # kernel runs on the block in memory order, with no copy.
            self.order = memory_order(x)
            if self.order is None:
                x, self.order = contiguous(x), tuple(range(x.ndim))
            y = self._in_memory_order(self.kernel + "_forward", x)
        else:
            y = self.reference(x)
        self.save(y if self.saves_output else x)
        return y

    def backward(self, g):
        (s,) = self.saved
        if s.dtype == np.float32:
            return (self._in_memory_order(self.kernel + "_backward", g, s),)
        return (self.reference_grad(g, s),)

    def _in_memory_order(self, kernel, *arrays):
        """kernel(*arrays) on the arrays transposed to self.order (made C-contiguous),
        its result transposed back."""
        blocks = [contiguous(a.transpose(self.order)) for a in arrays]
        out = getattr(kernels_for(blocks[0]), kernel)(*blocks)
        return out.transpose(tuple(np.argsort(self.order)))


class Relu(_Activation):
    kernel = "relu"

    def reference(self, x):
        return xp_of(x).maximum(x, 0)

    def reference_grad(self, g, x):
        return g * (x > 0)


class Sigmoid(_Activation):
    # sigmoid(x) = (1 + tanh(x/2)) / 2, which never overflows; dy/dx = y (1 - y)
    kernel = "sigmoid"
    saves_output = True

    def reference(self, x):
        return 0.5 * (1 + xp_of(x).tanh(0.5 * x))

    def reference_grad(self, g, y):
        return g * y * (1 - y)


class Tanh(_Activation):
    # dy/dx = 1 - y^2
    kernel = "tanh"
    saves_output = True

    def reference(self, x):
        return xp_of(x).tanh(x)

    def reference_grad(self, g, y):
        return g * (1 - y * y)


class Gelu(_Activation):
    # gelu(x) = x Phi(x) with Phi(x) = (1 + erf(x / sqrt 2)) / 2;  dy/dx = Phi(x) + x phi(x)
    kernel = "gelu"

    def reference(self, x):
        return 0.5 * x * (1 + _erf(x / math.sqrt(2)))

    def reference_grad(self, g, x):
        phi = xp_of(x).exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
        return g * (0.5 * (1 + _erf(x / math.sqrt(2))) + x * phi)


class _RowSoftmax(Function):
    """softmax / log_softmax over axis `dim`: the kernels work on the last axis, so
    other axes are moved there (and the result moved back)."""

    kernel = None

    def forward(self, x):
        xp = xp_of(x)
        x_last = contiguous(xp.moveaxis(x, self.dim, -1))
        if x.dtype == np.float32:
            y_last = getattr(kernels_for(x), self.kernel + "_forward")(x_last)
        else:
            y_last = self.reference(x_last)
        self.save(y_last)
        return xp.moveaxis(y_last, -1, self.dim)

    def backward(self, g):
        (y_last,) = self.saved
        xp = xp_of(y_last)
        g_last = contiguous(xp.moveaxis(g, self.dim, -1))
        if y_last.dtype == np.float32:
            dx_last = getattr(kernels_for(y_last), self.kernel + "_backward")(g_last, y_last)
        else:
            dx_last = self.reference_grad(g_last, y_last)
        return (xp.moveaxis(dx_last, -1, self.dim),)


class Softmax(_RowSoftmax):
    # y = exp(x - max) / sum exp(x - max);  dx = y (dy - sum(dy y))
    kernel = "softmax"

    def reference(self, x):
        e = xp_of(x).exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    def reference_grad(self, g, y):
        return y * (g - (g * y).sum(axis=-1, keepdims=True))


class LogSoftmax(_RowSoftmax):
    # y = x - max - log sum exp(x - max);  dx = dy - exp(y) sum(dy)
    kernel = "log_softmax"

    def reference(self, x):
        shifted = x - x.max(axis=-1, keepdims=True)
        xp = xp_of(x)
        return shifted - xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))

    def reference_grad(self, g, y):
        return g - xp_of(y).exp(y) * g.sum(axis=-1, keepdims=True)
