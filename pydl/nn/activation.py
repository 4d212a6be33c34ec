"""Activation modules: the stateless functions of pydl.nn.functional as layers."""
from pydl.nn import functional as F
from pydl.nn.module import Module


class ReLU(Module):
    """max(x, 0) elementwise (the relu kernel).

    >>> nn.ReLU()(pydl.tensor([-1.0, 2.0]))
    tensor([0., 2.])
    """
    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace  # accepted for torch compatibility; pydl never works in place

    def forward(self, input):
        return F.relu(input)


class LeakyReLU(Module):
    """x for x > 0, negative_slope * x otherwise.

    >>> nn.LeakyReLU(0.1)(pydl.tensor([-1.0, 2.0]))
    tensor([-0.1,  2. ])
    """
    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__()
        self.negative_slope = negative_slope
        self.inplace = inplace

    def forward(self, input):
        return F.leaky_relu(input, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class Sigmoid(Module):
    """1 / (1 + exp(-x)) elementwise (the sigmoid kernel).

    >>> nn.Sigmoid()(pydl.tensor([0.0]))
    tensor([0.5])
    """
    def forward(self, input):
        return F.sigmoid(input)


class Tanh(Module):
    """tanh(x) elementwise (the tanh kernel).

    >>> nn.Tanh()(pydl.tensor([0.0]))
    tensor([0.])
    """
    def forward(self, input):
        return F.tanh(input)


class GELU(Module):
    """x Phi(x) (approximate='none'), or its tanh approximation (approximate='tanh').

    >>> print(f"{nn.GELU()(pydl.tensor(1.0)).item():.4f}")
    0.8413
    >>> print(f"{nn.GELU(approximate='tanh')(pydl.tensor(1.0)).item():.4f}")
    0.8412
    """

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, input):
        if self.approximate == "none":
            return F.gelu(input)
        # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        inner = (input + 0.044715 * input ** 3) * 0.7978845608028654
        return 0.5 * input * (1 + F.tanh(inner))


class SiLU(Module):
    """x sigmoid(x).

    >>> print(f"{nn.SiLU()(pydl.tensor(1.0)).item():.4f}")
    0.7311
    """

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def forward(self, input):
        return F.silu(input)


class ELU(Module):
    """x for x > 0, alpha (exp(x) - 1) otherwise.

    >>> nn.ELU()(pydl.tensor([1.0, 0.0])).tolist()
    [1.0, 0.0]
    """

    def __init__(self, alpha=1.0, inplace=False):
        super().__init__()
        self.alpha = alpha
        self.inplace = inplace

    def forward(self, input):
        return F.elu(input, self.alpha)

    def extra_repr(self):
        return f"alpha={self.alpha}"


def _legacy_softmax_dim(ndim):
    # torch's choice when dim is not given.
    return 0 if ndim in (0, 1, 3) else 1


class Softmax(Module):
    """softmax along dim (torch's legacy choice of dim when None).

    >>> nn.Softmax(dim=1)(pydl.zeros(1, 4))
    tensor([[0.25, 0.25, 0.25, 0.25]])
    """
    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        dim = _legacy_softmax_dim(input.ndim) if self.dim is None else self.dim
        return F.softmax(input, dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """log(softmax) along dim, stably.

    >>> print(f"{nn.LogSoftmax(dim=1)(pydl.zeros(1, 2))[0, 0].item():.4f}")
    -0.6931
    """
    def forward(self, input):
        dim = _legacy_softmax_dim(input.ndim) if self.dim is None else self.dim
        return F.log_softmax(input, dim)


class Softplus(Module):
    """log(1 + exp(beta x)) / beta (x itself above threshold).

    >>> print(f"{nn.Softplus()(pydl.tensor(0.0)).item():.4f}")
    0.6931
    """

    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__()
        self.beta, self.threshold = beta, threshold

    def forward(self, input):
        return F.softplus(input, self.beta, self.threshold)

    def extra_repr(self):
        return f"beta={self.beta}, threshold={self.threshold}"


class Hardtanh(Module):
    """x clipped to [min_val, max_val].

    >>> nn.Hardtanh()(pydl.tensor([-3.0, 0.5]))
    tensor([-1. ,  0.5])
    """

    def __init__(self, min_val=-1.0, max_val=1.0, inplace=False):
        super().__init__()
        self.min_val, self.max_val, self.inplace = min_val, max_val, inplace

    def forward(self, input):
        return F.hardtanh(input, self.min_val, self.max_val)

    def extra_repr(self):
        return f"min_val={self.min_val}, max_val={self.max_val}"


class ReLU6(Hardtanh):
    """min(max(x, 0), 6).

    >>> nn.ReLU6()(pydl.tensor([-1.0, 9.0]))
    tensor([0., 6.])
    """

    def __init__(self, inplace=False):
        super().__init__(0.0, 6.0, inplace)
