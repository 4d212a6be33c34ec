"""BatchNorm1d, BatchNorm2d and LayerNorm, with torch's arguments, parameter and
buffer names (weight, bias, running_mean, running_var, num_batches_tracked)."""
import numpy as np

from pydl.nn import functional as F
from pydl.nn.module import Module, Parameter
from pydl.tensor import Tensor


class _BatchNorm(Module):
    expected_ndims = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, dtype="float32"):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = Parameter(np.ones(num_features, dtype))
            self.bias = Parameter(np.zeros(num_features, dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", Tensor(np.zeros(num_features, dtype)))
            self.register_buffer("running_var", Tensor(np.ones(num_features, dtype)))
            self.register_buffer("num_batches_tracked", Tensor(np.array(0, np.int64)))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.data[...] = 0
            self.running_var.data[...] = 1
            self.num_batches_tracked.data[...] = 0

    def forward(self, input):
        if input.ndim not in self.expected_ndims:
            ndims = " or ".join(map(str, self.expected_ndims))
            raise ValueError(f"{type(self).__name__}: expected {ndims}-D input, got shape "
                             f"{input.shape}")
        if input.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}({self.num_features}): expected input with "
                             f"{self.num_features} channels (dim 1), got shape {input.shape}")
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data += 1
            if self.momentum is None:  # a cumulative moving average
                momentum = 1.0 / int(self.num_batches_tracked.data)
        # Batch statistics in training, and in evaluation when no running ones are kept.
        use_batch_stats = self.training or self.running_mean is None
        track = self.track_running_stats and (self.training or not use_batch_stats)
        return self._normalize(input, self.running_mean if track else None,
                               self.running_var if track else None, use_batch_stats, momentum)

    def _normalize(self, input, running_mean, running_var, use_batch_stats, momentum):
        # SyncBatchNorm replaces this step with statistics over every rank's batch.
        return F.batch_norm(input, running_mean, running_var, self.weight, self.bias,
                            use_batch_stats, momentum, self.eps)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Over (N, C) or (N, C, L) input.

    >>> bn = nn.BatchNorm1d(3)
    >>> out = bn(pydl.randn(8, 3) * 5 + 2)
    >>> abs(out.mean().item()) < 1e-5
    True
    >>> bn.running_mean.shape
    (3,)
    """
    expected_ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Over (N, C, H, W) input.

    >>> bn = nn.BatchNorm2d(4)
    >>> bn(pydl.randn(2, 4, 5, 5)).shape
    (2, 4, 5, 5)
    >>> bn.eval()(pydl.randn(1, 4, 5, 5)).shape
    (1, 4, 5, 5)
    """
    expected_ndims = (4,)


class LayerNorm(Module):
    """Normalizes over the trailing normalized_shape dimensions, then scales and shifts
    (weight, bias).

    >>> ln = nn.LayerNorm(6)
    >>> out = ln(pydl.randn(2, 6))
    >>> out.mean(dim=-1).abs().max().item() < 1e-5
    True
    """
    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True,
                 dtype="float32"):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else \
            tuple(normalized_shape)
        self.normalized_shape = shape
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(np.ones(shape, dtype))
            if bias:
                self.bias = Parameter(np.zeros(shape, dtype))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, input):
        weight, bias = self.weight, self.bias
        if weight is not None and bias is None:
            return F.layer_norm(input, self.normalized_shape, None, None, self.eps) * weight
        return F.layer_norm(input, self.normalized_shape, weight, bias, self.eps)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")
