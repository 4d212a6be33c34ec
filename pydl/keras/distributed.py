"""Keras fit() under an initialized pydl.distributed process group.

fit() runs unchanged on every rank; DataParallelFit adjusts it at four points:
- rank 0 alone shows the progress bar and runs the callbacks that write files
  (ModelCheckpoint, CSVLogger); every rank runs the others (EarlyStopping sees the
  same logs everywhere, so all ranks stop together);
- training starts from rank 0's weights, and each epoch's order is rank 0's;
- batch_size stays the global batch: each rank trains on its contiguous slice of
  every batch (sizes differing by at most one), and the Reducer sums the gradients
  weighted by each slice's share of the batch: exactly the gradient of the batch's
  mean loss, as one process computes it;
- the loss and metrics are those of the whole batch: every rank gathers the slices'
  losses and outputs and updates its trackers in batch order, as one process would.
Validation runs on every rank over all of validation_data, so every rank's logs agree.
"""
import numpy as np

from pydl.distributed import process_group
from pydl.distributed.ddp import Reducer, broadcast_tensors
from pydl.keras import callbacks as callbacks_module
from pydl.tensor import Tensor

RANK_ZERO_CALLBACKS = (callbacks_module.ModelCheckpoint, callbacks_module.CSVLogger)


def data_parallel(model):
    """A DataParallelFit for model.fit when a process group is initialized, else None."""
    if not process_group.is_initialized():
        return None
    return DataParallelFit(model, process_group.group_or_default())


class _Captured:
    """Stands in for fit's trackers during a rank's slice: keeps the loss and outputs."""

    def update_state(self, *values):
        self.values = values


class DataParallelFit(callbacks_module.Callback):
    def __init__(self, model, group):
        super().__init__()
        self.group = group
        self.reducer = None
        self.set_model(model)

    def rank_zero_only(self, verbose, callbacks):
        """fit's verbose and callbacks for this rank, this object first among them."""
        callbacks = list(callbacks or [])
        if self.group.rank != 0:
            verbose = 0
            callbacks = [c for c in callbacks if not isinstance(c, RANK_ZERO_CALLBACKS)]
        return verbose, [self, *callbacks]

    def on_train_begin(self, logs=None):
        broadcast_tensors(self.model.weights, self.group)
        named = [(f"weights[{i}]", w) for i, w in enumerate(self.model.trainable_weights)]
        self.reducer = Reducer(named, self.group)

    def on_train_end(self, logs=None):
        self.reducer.remove()

    def same_order(self, order):
        """Rank 0's order of the samples for this epoch."""
        order = np.ascontiguousarray(order, dtype=np.int64)
        self.group.broadcast(order, 0).wait()
        return order

    def _bounds(self, n):
        return [n * r // self.group.size for r in range(self.group.size + 1)]

    def train_batch(self, x, y, sample_weight, trackers):
        """fit's _train_batch for one global batch (x, y, sample_weight or None), on
        this rank's slice."""
        model, n = self.model, len(x)
        bounds = self._bounds(n)
        start, stop = bounds[self.group.rank], bounds[self.group.rank + 1]
        self.reducer.weight = (stop - start) / n
        self.reducer.prepare()
        captured = (_Captured(), [_Captured()])
        if stop > start:
            weight = None if sample_weight is None else sample_weight[start:stop]
            model._train_batch(x[start:stop], y[start:stop], weight, captured)
            loss = captured[0].values[0]
            output = captured[1][0].values[1]
        else:  # a batch smaller than the world: this rank only adds zeros
            if not model.optimizer.built:
                model.optimizer.build(model.trainable_weights)
            model.optimizer.zero_grad()
            self.reducer.prepare(unused=model.trainable_weights)
            model.optimizer.step()
            loss, output = 0.0, None
        self._track_batch(trackers, loss, output, y, bounds)

    def _track_batch(self, trackers, loss, output, y, bounds):
        """Updates trackers with the whole batch's loss and outputs, gathered from the
        ranks (each sends its slice padded to the longest one, and its mean loss)."""
        rows = max(b - a for a, b in zip(bounds, bounds[1:]))
        shape = self.model._output_shape()[1:]
        width = int(np.prod(shape, dtype=np.int64))
        local = np.zeros(rows * width + 1, np.float32)
        if output is not None:
            local[:output.size] = output.reshape(-1)
        local[-1] = loss
        every = np.empty((self.group.size, local.size), np.float32)
        self.group.allgather(local, every).wait()
        counts = np.diff(bounds)
        outputs = np.concatenate([every[r, :counts[r] * width].reshape(counts[r], *shape)
                                  for r in range(self.group.size)])
        mean_loss = (every[:, -1].astype(np.float64) * counts).sum() / counts.sum()
        self.model._track(trackers, Tensor(np.array(mean_loss, np.float32)), Tensor(outputs),
                          y, len(y))
