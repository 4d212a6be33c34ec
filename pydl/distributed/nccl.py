"""The "nccl" backend: NCCL through CuPy (cupy.cuda.nccl), on CuPy arrays on this
process's GPU.

Rank and world size come from the launcher's environment (mpirun, srun, torchrun),
the GPU from the local rank. Rank 0's NCCL unique id reaches the others over MPI in an
MPI job, else over TCP at $MASTER_ADDR:$MASTER_PORT. Each collective runs on the
group's own stream after the current stream's work so far (an event orders them), so
it overlaps with kernels queued later; finishing a Work makes the current stream wait
for it.
"""
import importlib

from pydl._device import is_device_array
from pydl.distributed import _launch, _rendezvous
from pydl.distributed.process_group import DistributedError, ProcessGroup, ReduceOp, Work


def import_nccl():
    try:
        import cupy
        nccl = importlib.import_module("cupy.cuda.nccl")
    except ImportError as error:
        raise ImportError("the nccl backend needs CuPy with NCCL: pip install 'pydl[cuda]' and "
                          "NCCL (e.g. pip install nvidia-nccl-cu13)") from error
    return cupy, nccl


def _unique_id(nccl, launch, timeout):
    """Rank 0's id, on every rank: a tuple of 128 signed bytes."""
    if launch.world_size == 1:
        return nccl.get_unique_id()
    if _launch.launched_by_mpi():
        from pydl.distributed.mpi import import_mpi
        world = import_mpi().COMM_WORLD
        return world.bcast(nccl.get_unique_id() if launch.rank == 0 else None, root=0)
    payload = bytes(b % 256 for b in nccl.get_unique_id()) if launch.rank == 0 else None
    data = _rendezvous.share_over_tcp(payload, launch.rank, launch.world_size, timeout)
    return tuple(b - 256 if b > 127 else b for b in data)


class NCCLGroup(ProcessGroup):
    backend = "nccl"

    def __init__(self, timeout, launch=None, communicator=None):
        self.cupy, self.nccl = import_nccl()
        launch = _launch.from_environment() if launch is None else launch
        super().__init__(launch.rank, launch.world_size, timeout)
        cuda = self.cupy.cuda
        self.device = cuda.Device(launch.local_rank % cuda.runtime.getDeviceCount())
        self.device.use()
        self.comm = communicator or self.nccl.NcclCommunicator(
            launch.world_size, _unique_id(self.nccl, launch, self.timeout), launch.rank)
        self.stream = cuda.Stream(non_blocking=True)
        nccl = self.nccl
        self._ops = {ReduceOp.SUM: nccl.NCCL_SUM, ReduceOp.AVG: nccl.NCCL_SUM,
                     ReduceOp.PRODUCT: nccl.NCCL_PROD, ReduceOp.MIN: nccl.NCCL_MIN,
                     ReduceOp.MAX: nccl.NCCL_MAX}
        self._types = {"float32": nccl.NCCL_FLOAT32, "float64": nccl.NCCL_FLOAT64,
                       "int64": nccl.NCCL_INT64, "bool": nccl.NCCL_UINT8}

    def check(self, test, name):
        try:
            self.comm.check_async_error()
            return test()
        except self.nccl.NcclError as error:
            raise DistributedError(f"pydl.distributed: {name} failed on rank {self.rank} of "
                                   f"{self.size}: {error}") from error

    def _type(self, array, name):
        if not is_device_array(array):
            raise TypeError(f"{name}: the nccl backend works on cuda tensors, this one is on "
                            "the cpu (use backend='mpi' for cpu tensors)")
        if str(array.dtype) not in self._types:
            raise TypeError(f"{name}: the nccl backend does not handle {array.dtype}")
        return self._types[str(array.dtype)]

    def _start(self, name, arrays, call, finish=None):
        """Runs call(stream pointer) on the group's stream once the current stream's
        queued work is done; the Work is complete when the stream has run it, and holds
        `arrays` until then (their memory must outlive the collective)."""
        cuda = self.cupy.cuda
        queued = cuda.Event()
        queued.record(cuda.get_current_stream())
        self.stream.wait_event(queued)
        self.check(lambda: call(self.stream.ptr), name)
        done = cuda.Event()
        done.record(self.stream)

        def then():
            cuda.get_current_stream().wait_event(done)
            if finish is not None:
                finish(*arrays)
        return Work(self, name, lambda: done.done, then)

    def allreduce(self, array, op=ReduceOp.SUM):
        dtype = self._type(array, "all_reduce")
        if op == ReduceOp.AVG and array.dtype.kind != "f":
            raise ValueError(f"all_reduce: ReduceOp.AVG needs a floating tensor, got "
                             f"{array.dtype}")
        pointer = _pointer(array)

        def average(reduced):
            reduced /= self.size
        return self._start("all_reduce", (array,), lambda stream: self.comm.allReduce(
            pointer, pointer, array.size, dtype, self._ops[op], stream),
            average if op == ReduceOp.AVG else None)

    def broadcast(self, array, src):
        dtype = self._type(array, "broadcast")
        return self._start("broadcast", (array,), lambda stream: self.comm.bcast(
            _pointer(array), array.size, dtype, src, stream))

    def allgather(self, array, out):
        dtype = self._type(array, "all_gather")
        return self._start("all_gather", (array, out), lambda stream: self.comm.allGather(
            _pointer(array), _pointer(out), array.size, dtype, stream))

    def barrier(self):
        token = self.cupy.zeros(1, self.cupy.float32)
        return self.allreduce(token)

    def destroy(self):
        self.comm.destroy()


def _pointer(array):
    return array.__cuda_array_interface__["data"][0]
