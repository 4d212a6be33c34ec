"""Dropout and Dropout2d: random zeroing in training, the identity in evaluation."""
from pydl.nn import functional as F
from pydl.nn.module import Module


class Dropout(Module):
    """Zeroes elements with probability p in training (F.dropout).

    >>> drop = nn.Dropout(0.5).eval()
    >>> drop(pydl.ones(3)).tolist()
    [1.0, 1.0, 1.0]
    """

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p
        self.inplace = inplace

    def forward(self, input):
        return F.dropout(input, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class Dropout2d(Dropout):
    """Zeroes whole channels of (N, C, H, W) input with probability p in training
    (F.dropout2d).

    >>> pydl.manual_seed(0)
    >>> out = nn.Dropout2d(0.5)(pydl.ones(1, 4, 2, 2))
    >>> sorted(set(out.flatten().tolist())) in ([0.0, 2.0], [0.0], [2.0])
    True
    """

    def forward(self, input):
        return F.dropout2d(input, self.p, self.training)
