"""Keras's MultiHeadAttention on pydl's GEMM and softmax kernels.

Weights in Keras's layout: query/key/value kernels (features, num_heads, head size)
with biases (num_heads, head size), and the output kernel (num_heads, value_dim,
output features) with bias (output features,). For each head h:

    softmax(q_h k_h^T / sqrt(key_dim) + mask) v_h,   q_h = query W_q[:, h] + b_q[h], ...

then the heads' outputs are projected together by the output kernel.
"""
import numpy as np

from pydl.keras.layers import KerasTensor, Layer, _Regularized
from pydl.nn import functional as F
from pydl.tensor import Tensor

# What a masked score becomes before the softmax (Keras's large negative, so that a
# fully masked row is uniform instead of NaN).
MASKED_SCORE = -1e9


class MultiHeadAttention(Layer, _Regularized):
    """Attention of `query` (N, T, features) over `value` (N, S, features), with `key`
    defaulting to value: mha(query, value, key=None, attention_mask=None,
    return_attention_scores=False, training=False, use_causal_mask=False).
    attention_mask (N, T, S) is True (or 1) where query t may attend to key s;
    use_causal_mask lets t attend to s <= t only. Output: (N, T, query features), or
    output_shape features.

    >>> import numpy as np
    >>> from pydl.keras import layers
    >>> mha = layers.MultiHeadAttention(num_heads=2, key_dim=4)
    >>> x = np.random.rand(3, 5, 8)
    >>> out, scores = mha(x, x, return_attention_scores=True)
    >>> out.shape, scores.shape
    ((3, 5, 8), (3, 2, 5, 5))
    """

    def __init__(self, num_heads, key_dim, value_dim=None, dropout=0.0, use_bias=True,
                 output_shape=None, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 **kwargs):
        super().__init__(**kwargs)
        for arg, value in (("num_heads", num_heads), ("key_dim", key_dim),
                           ("value_dim", value_dim if value_dim is not None else key_dim)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"MultiHeadAttention: {arg} must be a positive integer, "
                                 f"got {value!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"MultiHeadAttention: dropout must be in [0, 1), got {dropout!r}")
        self.num_heads, self.key_dim = num_heads, key_dim
        self.value_dim = value_dim if value_dim is not None else key_dim
        self.dropout, self.use_bias = float(dropout), bool(use_bias)
        if isinstance(output_shape, (tuple, list)):
            output_shape = output_shape[-1] if len(output_shape) == 1 else output_shape
        if output_shape is not None and not isinstance(output_shape, int):
            raise ValueError(f"MultiHeadAttention: output_shape must be an int (the output "
                             f"features), got {output_shape!r}")
        self.output_features = output_shape
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        self._init_regularizers(kernel_regularizer=kernel_regularizer,
                                bias_regularizer=bias_regularizer)

    def __call__(self, query, value=None, key=None, attention_mask=None,
                 return_attention_scores=False, training=False, use_causal_mask=False):
        if isinstance(query, list) and value is None:  # [query, value, key(, mask)]
            inputs = list(query)
        elif value is None:
            raise TypeError("MultiHeadAttention is called as mha(query, value[, key]); "
                            "for self-attention pass the same tensor twice")
        else:
            inputs = [query, value, value if key is None else key]
            if attention_mask is not None:
                inputs.append(attention_mask)
        symbolic = [isinstance(x, KerasTensor) for x in inputs]
        if any(symbolic) and not all(symbolic):
            raise TypeError("MultiHeadAttention: in a functional model every input "
                            "(attention_mask too) must be a symbolic tensor (keras.Input)")
        if all(symbolic) and return_attention_scores:
            raise ValueError("MultiHeadAttention: return_attention_scores=True is supported "
                             "when calling the layer on arrays, not in a functional model")
        settings = {"use_causal_mask": bool(use_causal_mask)}
        if return_attention_scores:
            settings["return_attention_scores"] = True
        return super().__call__(inputs, training, **settings)

    def activate(self, pre_activation):
        if isinstance(pre_activation, tuple):  # (output, scores) pass unchanged
            return pre_activation
        return super().activate(pre_activation)

    def build(self, input_shape):
        query, value, key = input_shape[:3]
        for name, shape in (("query", query), ("value", value), ("key", key)):
            if len(shape) != 3 or shape[-1] is None:
                raise ValueError(f"{self.name}: {name} must be (batch, steps, features) with "
                                 f"known features, got shape {shape}")
        heads = self.num_heads

        def projection(features, size, name):
            kernel = self.add_weight((features, heads, size), self.kernel_initializer,
                                     name=f"{name}/kernel", regularizer=self.kernel_regularizer)
            bias = self.add_weight((heads, size), self.bias_initializer, name=f"{name}/bias",
                                   regularizer=self.bias_regularizer) if self.use_bias else None
            return kernel, bias
        self.query_kernel, self.query_bias = projection(query[-1], self.key_dim, "query")
        self.key_kernel, self.key_bias = projection(key[-1], self.key_dim, "key")
        self.value_kernel, self.value_bias = projection(value[-1], self.value_dim, "value")
        features = self.output_features or query[-1]
        self.output_kernel = self.add_weight((heads, self.value_dim, features),
                                             self.kernel_initializer, name="attention_output/kernel",
                                             regularizer=self.kernel_regularizer)
        self.output_bias = self.add_weight((features,), self.bias_initializer,
                                           name="attention_output/bias",
                                           regularizer=self.bias_regularizer) \
            if self.use_bias else None

    def compute_output_shape(self, input_shape):
        query = input_shape[0]
        return (*query[:-1], self.output_features or query[-1])

    def _heads(self, x, kernel, bias):
        """x (N, L, F) projected to (N, heads, L, size)."""
        features, heads, size = kernel.shape
        out = x.matmul(kernel.reshape(features, heads * size))
        if bias is not None:
            out = out + bias.reshape(heads * size)
        return out.reshape(x.shape[0], x.shape[1], heads, size).permute(0, 2, 1, 3)

    def call(self, inputs, training=False, use_causal_mask=False,
             return_attention_scores=False):
        query, value, key = inputs[:3]
        q = self._heads(query, self.query_kernel, self.query_bias) * (1 / np.sqrt(self.key_dim))
        k = self._heads(key, self.key_kernel, self.key_bias)
        v = self._heads(value, self.value_kernel, self.value_bias)
        scores = q.matmul(k.transpose(-2, -1))  # (N, heads, T, S)
        allowed = None
        if len(inputs) > 3:
            allowed = inputs[3].detach().numpy() > 0.5
            if allowed.ndim == 3:
                allowed = allowed[:, None]
        if use_causal_mask:
            causal = np.tril(np.ones(scores.shape[-2:], bool))
            allowed = causal if allowed is None else allowed & causal
        if allowed is not None:
            scores = scores + Tensor(np.where(allowed, 0.0, MASKED_SCORE).astype(scores.dtype))
        weights = scores.softmax(-1)
        attended = F.dropout(weights, self.dropout, training=training and self.dropout > 0)
        heads = attended.matmul(v).permute(0, 2, 1, 3)  # (N, T, heads, value_dim)
        batch, steps = heads.shape[:2]
        out = heads.reshape(batch, steps, self.num_heads * self.value_dim).matmul(
            self.output_kernel.reshape(self.num_heads * self.value_dim, -1))
        if self.output_bias is not None:
            out = out + self.output_bias
        return (out, weights) if return_attention_scores else out

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "key_dim": self.key_dim,
                "value_dim": self.value_dim, "dropout": self.dropout,
                "use_bias": self.use_bias, "output_shape": self.output_features,
                **self._regularizer_config()}


LAYER_CLASSES = {"MultiHeadAttention": MultiHeadAttention}
__all__ = ["MultiHeadAttention"]
