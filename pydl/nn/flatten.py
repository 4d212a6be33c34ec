"""Flatten: merges the dimensions start_dim..end_dim into one (Tensor.flatten)."""
from pydl.nn.module import Module
from pydl.tensor import _as_tensor


class Flatten(Module):
    """Merges the dimensions start_dim..end_dim (by default all but the batch).

    >>> nn.Flatten()(pydl.ones(2, 3, 4)).shape
    (2, 12)
    """
    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, input):
        return _as_tensor(input).flatten(self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
