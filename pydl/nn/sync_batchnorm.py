"""SyncBatchNorm: batch normalization whose training statistics cover the batches of
every rank of a process group (torch.nn.SyncBatchNorm), so N ranks with batches of B
normalize exactly as one process with a batch of N x B. Without an initialized process
group, or in evaluation, it is BatchNorm."""
from pydl.nn.normalization import _BatchNorm
from pydl.ops import sync_norm


class SyncBatchNorm(_BatchNorm):
    """Over (N, C, ...) input of 2 to 5 dimensions. Without a process group it
    normalizes as BatchNorm does:

    >>> bn = pydl.nn.SyncBatchNorm(3)
    >>> bn(pydl.randn(8, 3, 4, 4)).shape
    (8, 3, 4, 4)
    >>> model = pydl.nn.SyncBatchNorm.convert_sync_batchnorm(
    ...     pydl.nn.Sequential(pydl.nn.Conv2d(1, 3, 3), pydl.nn.BatchNorm2d(3)))
    >>> type(model[1]).__name__
    'SyncBatchNorm'
    """
    expected_ndims = (2, 3, 4, 5)

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, process_group=None, dtype="float32"):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, dtype)
        self.process_group = process_group

    def _group(self):
        # Looked up at each call: pydl.distributed builds on pydl.nn, not the reverse.
        from pydl.distributed import process_group
        if self.process_group is not None:
            return self.process_group
        return process_group.group_or_default() if process_group.is_initialized() else None

    def _normalize(self, input, running_mean, running_var, use_batch_stats, momentum):
        group = self._group() if use_batch_stats else None
        if group is None or group.size == 1:
            return super()._normalize(input, running_mean, running_var, use_batch_stats,
                                      momentum)
        affine = () if self.weight is None else (self.weight, self.bias)
        return sync_norm.SyncBatchNorm.apply(
            input, *affine, group=group, momentum=float(momentum), eps=float(self.eps),
            running_mean=None if running_mean is None else running_mean.data,
            running_var=None if running_var is None else running_var.data)

    @classmethod
    def convert_sync_batchnorm(cls, module, process_group=None):
        """`module` with every BatchNorm1d/2d inside replaced by a SyncBatchNorm holding
        the same parameters and buffers (the tensors themselves, not copies)."""
        if isinstance(module, _BatchNorm) and not isinstance(module, cls):
            converted = cls(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats, process_group)
            for registry in ("_parameters", "_buffers"):
                getattr(converted, registry).update(getattr(module, registry))
            converted.train(module.training)
            return converted
        for name, child in list(module.named_children()):
            module.add_module(name, cls.convert_sync_batchnorm(child, process_group))
        return module


__all__ = ["SyncBatchNorm"]
