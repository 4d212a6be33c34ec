"""Embedding: a (num_embeddings, embedding_dim) table looked up by index."""
import numpy as np

from pydl.nn import functional as F
from pydl.nn import init
from pydl.nn.module import Module, Parameter


class Embedding(Module):
    """Rows start N(0, 1); the row padding_idx starts at zero and gets no gradient.

    >>> table = nn.Embedding(10, 3, padding_idx=0)
    >>> table(pydl.tensor([[1, 2, 0]])).shape
    (1, 3, 3)
    >>> table.weight[0].tolist()
    [0.0, 0.0, 0.0]
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, _weight=None,
                 dtype="float32"):
        super().__init__()
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(f"padding_idx {padding_idx} must be within num_embeddings "
                                 f"{num_embeddings}")
            padding_idx %= num_embeddings
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.padding_idx = padding_idx
        if _weight is None:
            self.weight = Parameter(np.empty((num_embeddings, embedding_dim), dtype))
            self.reset_parameters()
        else:
            self.weight = Parameter(_weight)

    def reset_parameters(self):
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0

    def forward(self, input):
        return F.embedding(input, self.weight, self.padding_idx)

    def extra_repr(self):
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"
