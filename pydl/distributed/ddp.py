"""Data parallelism: every rank holds the whole model and trains on its share of each
batch; gradients are averaged across ranks during backward, so every rank takes the
same optimizer step a single process would take on the whole batch.

The Reducer flattens gradients into buckets (about bucket_cap_mb each, parameters in
reverse registration order: roughly the order backward produces their gradients,
with a small first bucket so communication starts early). A parameter's
post-accumulate-grad hook copies its gradient, times the rank's weight (1/world size),
into its bucket; the moment a bucket is complete its all-reduce starts without
waiting, and backward goes on computing the earlier layers' gradients while it runs.
Buckets start in index order on every rank, so all ranks issue the same collectives
in the same order. When the last bucket has started, the Reducer waits for them all
and copies the sums back into the .grad of each parameter.
"""
import contextlib
import time

from pydl._device import on
from pydl.autograd import is_grad_enabled
from pydl.distributed.process_group import group_or_default
from pydl.nn.module import Module
from pydl.ops.common import xp_of
from pydl.tensor import Tensor

MB = 1 << 20


class FlatBuffer:
    """Arrays of one dtype and device side by side in one flat array, so one collective
    moves them all: segment(i) is array i's flat slice."""

    def __init__(self, tensors):
        first = tensors[0].data
        self.shapes = [t.shape for t in tensors]
        sizes = [t.numel() for t in tensors]
        self.offsets = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
        with on(tensors[0].device):
            self.array = xp_of(first).empty(self.offsets[-1], first.dtype)

    def segment(self, i):
        return self.array[self.offsets[i]:self.offsets[i + 1]]

    def view(self, i):
        return self.segment(i).reshape(self.shapes[i])

    def pack(self, arrays):
        for i, a in enumerate(arrays):
            self.segment(i)[...] = a.reshape(-1)

    def unpack(self, arrays):
        for i, a in enumerate(arrays):
            a[...] = self.view(i)


def _split(tensors, first_cap_bytes, cap_bytes):
    """Consecutive runs of tensors of one dtype and device, each run at most cap_bytes
    (the first at most first_cap_bytes) unless a single tensor is larger."""
    runs, size, cap = [], 0, first_cap_bytes
    for t in tensors:
        nbytes = t.data.nbytes
        same_kind = runs and (runs[-1][-1].dtype, runs[-1][-1].device) == (t.dtype, t.device)
        if same_kind and size + nbytes <= cap:
            runs[-1].append(t)
            size += nbytes
            continue
        if runs:
            cap = cap_bytes
        runs.append([t])
        size = nbytes
    return runs


def broadcast_tensors(tensors, group, src=0):
    """Copies rank src's values of `tensors` into every rank's, one collective per
    dtype and device (DDP's start: every replica begins from rank 0's weights)."""
    tensors = list(tensors)
    if group.size == 1 or not tensors:
        return
    for run in _split(tensors, float("inf"), float("inf")):
        flat = FlatBuffer(run)
        flat.pack([t.data for t in run])
        group.broadcast(flat.array, src).wait()
        flat.unpack([t.data for t in run])


class _Bucket(FlatBuffer):
    def __init__(self, params):
        super().__init__(params)
        self.params = params
        self.pending = len(params)
        self.work = None


class Reducer:
    """Averages the gradients of `named_params` ((name, parameter) pairs) across the
    group's ranks during each backward that follows prepare()."""

    def __init__(self, named_params, group, bucket_cap_mb=25.0, first_bucket_mb=1.0):
        seen, params, self.names = set(), [], {}
        for name, p in named_params:
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                params.append(p)
                self.names[id(p)] = name
        self.group = group
        self.weight = 1.0 / group.size  # each rank's share of the summed gradient
        self.buckets = [_Bucket(run) for run in _split(
            params[::-1], min(first_bucket_mb, bucket_cap_mb) * MB, bucket_cap_mb * MB)]
        self._slot = {id(p): (b, i) for b in self.buckets for i, p in enumerate(b.params)}
        self._handles = [p.register_post_accumulate_grad_hook(self._grad_ready)
                         for p in params]
        self._state = "idle"  # "armed" by prepare(); "reduced" once the sums are back
        self._next = 0        # the next bucket to start
        self._ready = set()
        self.wait_seconds = 0.0  # how long the last backward waited for its all-reduces

    def prepare(self, unused=()):
        """Arms the reducer for the next backward. `unused` parameters will get no
        gradient in it: they count as ready now, contributing zeros."""
        if self._state == "armed" and self._ready:
            missing = [self.names[id(p)] for b in self.buckets for p in b.params
                       if id(p) not in self._ready]
            raise RuntimeError(
                "DistributedDataParallel: the previous backward did not produce gradients "
                f"for {missing}, so their reduction never finished. Pass "
                "find_unused_parameters=True when some parameters take no part in the loss.")
        for b in self.buckets:
            b.pending, b.work = len(b.params), None
        self._next, self._ready, self._state = 0, set(), "armed"
        for p in unused:
            if id(p) in self._slot:
                self._grad_ready(p)

    def disarm(self):
        """Gradients of the next backward stay local (no_sync())."""
        self._state = "idle"

    def _grad_ready(self, p):
        if self._state != "armed":
            if self._state == "reduced":
                raise RuntimeError("DistributedDataParallel: a second backward after one "
                                   "forward; run forward again (or use no_sync() to "
                                   "accumulate gradients locally)")
            return
        if id(p) in self._ready:
            return
        self._ready.add(id(p))
        bucket, i = self._slot[id(p)]
        segment = bucket.segment(i)
        if p.grad is None:
            segment[...] = 0
        else:
            xp_of(segment).multiply(p.grad.data.reshape(-1), self.weight, out=segment)
        bucket.pending -= 1
        if bucket.pending == 0:
            self._start_ready_buckets()

    def _start_ready_buckets(self):
        while self._next < len(self.buckets) and self.buckets[self._next].pending == 0:
            bucket = self.buckets[self._next]
            bucket.work = self.group.allreduce(bucket.array)
            self._next += 1
        if self._next == len(self.buckets):
            self._finish()

    def _finish(self):
        start = time.perf_counter()
        for bucket in self.buckets:
            bucket.work.wait()
        self.wait_seconds = time.perf_counter() - start
        for bucket in self.buckets:
            for i, p in enumerate(bucket.params):
                if p.grad is None:
                    p.grad = Tensor._wrap(bucket.view(i).copy())
                else:
                    p.grad.data[...] = bucket.view(i)
        self._state = "reduced"

    def remove(self):
        """Unregisters the hooks: gradients stay local from here on."""
        for handle in self._handles:
            handle.remove()


def _tensors_in(value):
    if isinstance(value, Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors_in(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors_in(v)


def reachable_leaves(outputs):
    """ids of the leaf tensors that the graph of `outputs` reaches."""
    leaves, seen = set(), set()
    stack = []
    for t in _tensors_in(outputs):
        (stack.append(t.grad_fn) if t.grad_fn is not None else leaves.add(id(t)))
    while stack:
        node = stack.pop()
        if node in seen or node.inputs is None:
            continue
        seen.add(node)
        for t in node.inputs:
            (stack.append(t.grad_fn) if t.grad_fn is not None else leaves.add(id(t)))
    return leaves


class DistributedDataParallel(Module):
    """Wraps `module` for data-parallel training (torch.nn.parallel's name and
    arguments). At construction every rank takes rank 0's parameters and buffers;
    each forward in training takes rank 0's buffers again (broadcast_buffers); each
    backward averages the gradients across ranks, overlapped with backward (see the
    module docstring). BatchNorm statistics stay per rank unless the model uses
    pydl.nn.SyncBatchNorm. device_ids and output_device are accepted as torch's and
    not needed: the module's parameters are already on this rank's device."""

    def __init__(self, module, device_ids=None, output_device=None, broadcast_buffers=True,
                 process_group=None, bucket_cap_mb=25, find_unused_parameters=False):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel wraps a pydl.nn.Module, got "
                            f"{type(module).__name__}")
        self.module = module
        self.process_group = group_or_default(process_group)
        self.broadcast_buffers = broadcast_buffers
        self.find_unused_parameters = find_unused_parameters
        self.require_backward_grad_sync = True
        broadcast_tensors([*module.parameters(), *module.buffers()], self.process_group)
        self.reducer = Reducer(module.named_parameters(), self.process_group, bucket_cap_mb)

    def forward(self, *inputs, **kwargs):
        if self.broadcast_buffers and self.training:
            broadcast_tensors(self.module.buffers(), self.process_group)
        output = self.module(*inputs, **kwargs)
        if not (is_grad_enabled() and self.require_backward_grad_sync):
            self.reducer.disarm()
            return output
        unused = ()
        if self.find_unused_parameters:
            reached = reachable_leaves(output)
            unused = [p for p in self.module.parameters() if id(p) not in reached]
        self.reducer.prepare(unused)
        return output

    @contextlib.contextmanager
    def no_sync(self):
        """Backward passes inside keep their gradients local (accumulating in .grad);
        the first synchronized backward after it averages the accumulated sums."""
        previous = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = previous
