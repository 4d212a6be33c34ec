"""The process group: which processes train together, and the collectives among them.

A backend (pydl.distributed.mpi, pydl.distributed.nccl) subclasses ProcessGroup and
starts each collective on raw arrays without waiting (MPI's nonblocking calls, NCCL on
its own stream), returning a Work. Every wait goes through Work.wait, which polls
until the collective is done or the group's timeout passes, so a rank that died or
never arrived makes the others raise a DistributedError instead of hanging.
"""
import datetime
import os
import sys
import time
import traceback

import numpy as np

from pydl._device import cuda_is_available, is_device_array
from pydl.ops.common import contiguous, xp_of
from pydl.tensor import Tensor

DEFAULT_TIMEOUT = datetime.timedelta(minutes=10)


class DistributedError(RuntimeError):
    """A collective failed: a rank died, raised, or did not arrive within the timeout."""


class ReduceOp:
    SUM = "sum"
    AVG = "avg"
    PRODUCT = "product"
    MIN = "min"
    MAX = "max"
    ALL = (SUM, AVG, PRODUCT, MIN, MAX)


class Work:
    """A collective in flight. `test()` says whether it has finished (and drives the
    backend's progress); `finish()`, run once when it has, copies staged results back."""

    def __init__(self, group, name, test, finish=None):
        self.group, self.name = group, name
        self._test, self._finish = test, finish
        self._done = False

    def is_completed(self):
        if not self._done and self.group.check(self._test, self.name):
            self._done = True
            if self._finish is not None:
                self._finish()
        return self._done

    def wait(self, timeout=None):
        """Returns once the collective is done; DistributedError on failure or timeout."""
        limit = self.group.timeout if timeout is None else _seconds(timeout)
        deadline = time.monotonic() + limit
        polls = 0
        while not self.is_completed():
            if time.monotonic() > deadline:
                raise DistributedError(
                    f"pydl.distributed: {self.name} timed out after {limit:g} s on rank "
                    f"{self.group.rank} of {self.group.size}: another rank never reached it "
                    "(it died, hangs, or called a different collective)")
            polls += 1
            if polls > 1000:  # after ~1 ms of spinning, yield the core between polls
                time.sleep(min(1e-3, 1e-6 * (polls - 1000)))
        return True


class ProcessGroup:
    """rank and size of this process in the group, plus the backend's collectives on
    arrays (NumPy or CuPy, C-contiguous), each returning a Work."""

    backend = None

    def __init__(self, rank, size, timeout):
        self.rank, self.size, self.timeout = rank, size, _seconds(timeout)

    def check(self, test, name):
        """test(), with the backend's errors turned into a DistributedError naming the
        collective and the failed ranks when the backend can tell."""
        return test()

    # Each backend implements these on arrays.
    def allreduce(self, array, op=ReduceOp.SUM):
        raise NotImplementedError

    def broadcast(self, array, src):
        raise NotImplementedError

    def allgather(self, array, out):
        """out (size, *array.shape) receives every rank's array, in rank order."""
        raise NotImplementedError

    def barrier(self):
        raise NotImplementedError

    def destroy(self):
        pass

    def __repr__(self):
        return f"<{type(self).__name__} rank {self.rank} of {self.size}>"


def _seconds(timeout):
    if isinstance(timeout, datetime.timedelta):
        timeout = timeout.total_seconds()
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds or a timedelta, got "
                         f"{timeout!r}")
    return float(timeout)


# ---- the default group and the torch.distributed-style functions -------------------

_default = None
_previous_excepthook = None


def init_process_group(backend=None, init_method=None, timeout=DEFAULT_TIMEOUT, world_size=-1,
                       rank=-1):
    """Joins this process to the job its launcher started (mpirun, srun or torchrun).

    backend: "mpi" (CPU arrays; CuPy arrays are staged through host memory) or "nccl"
    (CuPy arrays on this process's GPU); None picks "nccl" when CUDA is available, else
    "mpi". The rank and world size come from MPI itself or from the launcher's
    environment (pydl.distributed._launch); world_size and rank, when given, must
    agree with them. A collective that has not finished after `timeout` raises a
    DistributedError, and so does one whose peer process died (when the MPI library
    can tell: OpenMPI's `mpirun --with-ft ulfm`). An exception that nothing catches
    ends this rank at once, with its rank in the message, so the launcher stops the
    job instead of the others waiting for a rank that is gone."""
    global _default, _previous_excepthook
    if _default is not None:
        raise RuntimeError("init_process_group: the default process group is already "
                           "initialized; call destroy_process_group() first")
    if init_method not in (None, "env://"):
        raise ValueError(f"init_process_group: init_method {init_method!r} is not supported; "
                         "the launcher's environment (env://) is read")
    if backend is None:
        backend = "nccl" if cuda_is_available() else "mpi"
    if backend == "mpi":
        from pydl.distributed import mpi
        group = mpi.MPIGroup(timeout)
    elif backend == "nccl":
        from pydl.distributed import nccl
        group = nccl.NCCLGroup(timeout)
    else:
        raise ValueError(f"init_process_group: unknown backend {backend!r}; use 'mpi' or "
                         "'nccl'")
    for name, given, actual in (("world_size", world_size, group.size),
                                ("rank", rank, group.rank)):
        if given not in (-1, None) and given != actual:
            group.destroy()
            raise ValueError(f"init_process_group: {name}={given} was passed but the launcher "
                             f"started this process with {name} {actual}")
    _default = group
    _previous_excepthook = sys.excepthook
    sys.excepthook = _end_rank_on_uncaught_exception


def _end_rank_on_uncaught_exception(kind, value, tb):
    # Exiting normally would run MPI_Finalize, which waits for the other ranks, and
    # they wait in their next collective for this one: the job would hang. Leave at
    # once instead; the launcher sees the failure and stops the job.
    group = _default
    sys.stderr.write(f"pydl.distributed: rank {group.rank} of {group.size} stops on an "
                     "uncaught exception:\n" + "".join(traceback.format_exception(kind, value,
                                                                                   tb)))
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(1)


def destroy_process_group():
    global _default
    if _default is None:
        return
    group, _default = _default, None
    sys.excepthook = _previous_excepthook
    group.destroy()


def is_available():
    """True when a backend's library imports: mpi4py (for "mpi") or CuPy's NCCL."""
    import importlib.util
    return any(importlib.util.find_spec(name) is not None for name in ("mpi4py", "cupy"))


def is_initialized():
    return _default is not None


def group_or_default(group=None):
    if group is not None:
        return group
    if _default is None:
        raise RuntimeError("pydl.distributed: the default process group has not been "
                           "initialized; call pydl.distributed.init_process_group() first")
    return _default


def get_rank(group=None):
    return group_or_default(group).rank


def get_world_size(group=None):
    return group_or_default(group).size


def get_backend(group=None):
    return group_or_default(group).backend


def _array_of(tensor, what):
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{what}: expected a pydl.Tensor, got {type(tensor).__name__}")
    array = tensor.data
    if not (isinstance(array, np.ndarray) or is_device_array(array)):
        raise TypeError(f"{what}: the tensor's data is a {type(array).__name__}")
    return array


def _in_place(tensor, what, start):
    """Runs start(contiguous array) on the tensor's data, copying a strided array into a
    contiguous one and back when the collective is done."""
    array = _array_of(tensor, what)
    if array.flags.c_contiguous:
        return start(array)
    staged = contiguous(array)
    work = start(staged)

    def copy_back():
        array[...] = staged
    return Work(work.group, work.name, work.is_completed, copy_back)


def _finish(work, async_op):
    if async_op:
        return work
    work.wait()
    return None


def all_reduce(tensor, op=ReduceOp.SUM, group=None, async_op=False):
    """Reduces `tensor` over every rank, in place (op: ReduceOp.SUM, AVG, PRODUCT, MIN,
    MAX). With async_op, returns a Work to wait() on."""
    if op not in ReduceOp.ALL:
        raise ValueError(f"all_reduce: unknown op {op!r}; use one of {ReduceOp.ALL}")
    g = group_or_default(group)
    return _finish(_in_place(tensor, "all_reduce", lambda a: g.allreduce(a, op)), async_op)


def broadcast(tensor, src, group=None, async_op=False):
    """Copies rank src's tensor into every other rank's, in place."""
    g = group_or_default(group)
    if not 0 <= src < g.size:
        raise ValueError(f"broadcast: src {src} is not a rank of a group of {g.size}")
    return _finish(_in_place(tensor, "broadcast", lambda a: g.broadcast(a, src)), async_op)


def all_gather(tensor_list, tensor, group=None, async_op=False):
    """tensor_list[r] receives rank r's tensor (a list of world-size tensors shaped like
    `tensor`, as torch's)."""
    g = group_or_default(group)
    array = _array_of(tensor, "all_gather")
    if len(tensor_list) != g.size or any(t.shape != tensor.shape or t.dtype != tensor.dtype
                                         for t in tensor_list):
        raise ValueError(f"all_gather: tensor_list must hold {g.size} tensors of shape "
                         f"{tuple(tensor.shape)} and dtype {tensor.dtype}")
    out = xp_of(array).empty((g.size, *array.shape), array.dtype)
    work = g.allgather(contiguous(array), out)

    def scatter():
        for t, row in zip(tensor_list, out):
            t.data[...] = row
    return _finish(Work(g, work.name, work.is_completed, finish=scatter), async_op)


def barrier(group=None, async_op=False):
    """Returns once every rank has called barrier()."""
    return _finish(group_or_default(group).barrier(), async_op)
