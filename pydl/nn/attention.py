"""MultiheadAttention with torch's arguments and parameter names (in_proj_weight,
in_proj_bias, out_proj.weight, out_proj.bias).

Per head h (E = embed_dim split into H heads of E/H):
  Q = query Wq^T + bq,  K = key Wk^T + bk,  V = value Wv^T + bv   (Wq;Wk;Wv = in_proj_weight)
  A_h = softmax(Q_h K_h^T / sqrt(E/H) + mask),  out = concat_h(A_h V_h) Wo^T + bo
The heads run as one batched matmul over (batch * heads) and the softmax kernel.
"""
import numpy as np

from pydl.nn import functional as F
from pydl.nn import init
from pydl.nn.linear import Linear
from pydl.nn.module import Module, Parameter
from pydl.ops.common import xp_of
from pydl.tensor import Tensor


class MultiheadAttention(Module):
    """Multi-head scaled dot-product attention with torch's parameters (in_proj_weight, out_proj).

    >>> attention = nn.MultiheadAttention(embed_dim=8, num_heads=2, batch_first=True)
    >>> x = pydl.randn(3, 5, 8)
    >>> out, weights = attention(x, x, x)
    >>> out.shape, weights.shape
    ((3, 5, 8), (3, 5, 5))
    """
    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, batch_first=False,
                 dtype="float32"):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads "
                             f"({num_heads})")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.in_proj_weight = Parameter(np.empty((3 * embed_dim, embed_dim), dtype))
        if bias:
            self.in_proj_bias = Parameter(np.zeros(3 * embed_dim, dtype))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, dtype=dtype)
        init.xavier_uniform_(self.in_proj_weight)
        if bias:
            init.zeros_(self.out_proj.bias)

    def _project(self, x, part):
        E = self.embed_dim
        rows = slice(part * E, (part + 1) * E)
        bias = None if self.in_proj_bias is None else self.in_proj_bias[rows]
        return F.linear(x, self.in_proj_weight[rows], bias)

    def _mask(self, attn_mask, key_padding_mask, batch, length, source, scores):
        """One additive (batch * heads, L, S) mask for `scores` from attn_mask ((L, S) or
        (batch * heads, L, S)) and key_padding_mask ((batch, S)); bool True = masked."""
        if attn_mask is None and key_padding_mask is None:
            return None
        total = xp_of(scores.data).zeros((batch, self.num_heads, length, source), scores.dtype)
        if attn_mask is not None:
            mask = F._additive_mask(attn_mask, scores, allowed_when_true=False)
            if mask.shape == (length, source):
                total += mask
            elif mask.shape == (batch * self.num_heads, length, source):
                total += mask.reshape(total.shape)
            else:
                raise ValueError(f"attn_mask must have shape ({length}, {source}) or "
                                 f"({batch * self.num_heads}, {length}, {source}), got "
                                 f"{mask.shape}")
        if key_padding_mask is not None:
            mask = F._additive_mask(key_padding_mask, scores, allowed_when_true=False)
            if mask.shape != (batch, source):
                raise ValueError(f"key_padding_mask must have shape ({batch}, {source}), got "
                                 f"{mask.shape}")
            total += mask[:, None, None, :]
        return Tensor._wrap(total.reshape(-1, length, source))

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True,
                attn_mask=None, average_attn_weights=True, is_causal=False):
        unbatched = query.ndim == 2
        if unbatched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            if key_padding_mask is not None:
                key_padding_mask = F._data_like(key_padding_mask, query)[None]
        elif self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        # (L, N, E) from here on.
        length, batch, E = query.shape
        source = key.shape[0]
        if E != self.embed_dim:
            raise ValueError(f"MultiheadAttention: query has embedding size {E}, expected "
                             f"{self.embed_dim}")
        if is_causal and attn_mask is None:
            attn_mask = np.triu(np.ones((length, source), bool), k=1)
        H, d = self.num_heads, self.head_dim

        def heads(x, steps):  # (steps, N, E) -> (N*H, steps, d)
            return x.reshape(steps, batch * H, d).transpose(0, 1)

        q = heads(self._project(query, 0), length)
        k = heads(self._project(key, 1), source)
        v = heads(self._project(value, 2), source)
        scores = q.matmul(k.transpose(1, 2)) * (1.0 / np.sqrt(d))
        mask = self._mask(attn_mask, key_padding_mask, batch, length, source, scores)
        if mask is not None:
            scores = scores + mask
        weights = F.dropout(scores.softmax(-1), self.dropout, self.training)
        out = weights.matmul(v).transpose(0, 1).reshape(length, batch, E)
        out = self.out_proj(out)
        if need_weights:
            weights = weights.reshape(batch, H, length, source)
            if average_attn_weights:
                weights = weights.mean(1)
            if unbatched:
                weights = weights.squeeze(0)
        else:
            weights = None
        if unbatched:
            out = out.squeeze(1)
        elif self.batch_first:
            out = out.transpose(0, 1)
        return out, weights

    def extra_repr(self):
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}"
