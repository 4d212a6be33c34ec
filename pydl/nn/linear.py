"""Linear (y = x W^T + b) and Identity."""
import math

import numpy as np

from pydl.nn import functional as F
from pydl.nn import init
from pydl.nn.module import Module, Parameter


class Identity(Module):
    """Returns its input; takes (and ignores) any constructor arguments, like torch.

    >>> nn.Identity(54, unused="ignored")(pydl.ones(2)).tolist()
    [1.0, 1.0]
    """

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


class Linear(Module):
    """y = x W^T + b with weight (out_features, in_features) and bias (out_features,).

    Both start uniform in +-1/sqrt(in_features): kaiming_uniform_ with a = sqrt(5)
    for the weight, as torch does.

    >>> layer = nn.Linear(20, 30)
    >>> layer(pydl.randn(128, 20)).shape
    (128, 30)
    >>> layer.weight.shape
    (30, 20)
    """

    def __init__(self, in_features, out_features, bias=True, dtype="float32"):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(np.empty((out_features, in_features), dtype))
        if bias:
            self.bias = Parameter(np.empty(out_features, dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input):
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")
