"""Embedding lookup: out = weight[indices], d weight = dy rows summed by index.

float32 runs the kernels (the CPU gather checks bounds; deterministic
scatter-add); float64 uses the array forms below. The row padding_idx gets no
gradient. The CUDA gather does not check bounds (a bad index gives a NaN row),
so on the GPU the indices are checked here first: one reduction and one sync.
"""
import numpy as np

from pydl._device import kernels_for
from pydl.autograd import Function
from pydl.ops.common import contiguous, xp_of


def check_indices(indices, num_embeddings):
    bad = (indices < 0) | (indices >= num_embeddings)
    if bad.any():
        position = int(xp_of(bad).flatnonzero(bad.reshape(-1))[0])
        raise ValueError(f"embedding: index {int(indices.reshape(-1)[position])} at position "
                         f"{position} is out of range for an embedding table of "
                         f"{num_embeddings} rows (expected 0 <= index < {num_embeddings})")


class Embedding(Function):
    """Settings: indices (int64 array), padding_idx (>= 0, or -1 for none)."""

    def forward(self, weight):
        self.num_embeddings = weight.shape[0]
        if weight.dtype == np.float32:
            if not isinstance(weight, np.ndarray):
                check_indices(self.indices, self.num_embeddings)
            return kernels_for(weight).embedding_forward(contiguous(weight),
                                                         contiguous(self.indices))
        check_indices(self.indices, self.num_embeddings)
        return weight[self.indices]

    def backward(self, g):
        if g.dtype == np.float32:
            return (kernels_for(g).embedding_backward(contiguous(g), contiguous(self.indices),
                                                      self.num_embeddings, self.padding_idx),)
        xp = xp_of(g)
        dweight = xp.zeros((self.num_embeddings, g.shape[-1]), g.dtype)
        xp.add.at(dweight, self.indices.reshape(-1), g.reshape(-1, g.shape[-1]))
        if self.padding_idx >= 0:
            dweight[self.padding_idx] = 0
        return (dweight,)
