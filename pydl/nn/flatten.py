"""Flatten merges the dimensions start_dim..end_dim into one (Tensor.flatten);
Unflatten splits one dimension into several."""
from pydl.nn.module import Module
from pydl.ops.common import normalize_axis
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


class Unflatten(Module):
    """Splits dimension dim into unflattened_size.

    >>> nn.Unflatten(1, (2, 3))(pydl.ones(4, 6)).shape
    (4, 2, 3)
    """

    def __init__(self, dim, unflattened_size):
        super().__init__()
        self.dim, self.unflattened_size = dim, tuple(unflattened_size)

    def forward(self, input):
        input = _as_tensor(input)
        axis = normalize_axis(self.dim, input.ndim)
        return input.reshape(input.shape[:axis] + self.unflattened_size + input.shape[axis + 1:])

    def extra_repr(self):
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"
