"""Where this process stands in the job, read from the launcher's environment.

mpirun (OpenMPI: OMPI_COMM_WORLD_*), PMI launchers (MPICH/Intel MPI: PMI_RANK,
PMI_SIZE; PMIx: PMIX_RANK), Slurm's srun (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID)
and torchrun (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) each announce the
rank and world size differently; the first variable set wins, in this order.
"""
import collections
import os

RANK_VARS = ("RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID")
SIZE_VARS = ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS")
LOCAL_RANK_VARS = ("LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID",
                   "SLURM_LOCALID")
# Variables that only an MPI launcher sets: then the MPI library can form the world.
MPI_LAUNCHER_VARS = ("OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE")

Launch = collections.namedtuple("Launch", "rank world_size local_rank source")


def _first(names, environ):
    for name in names:
        value = environ.get(name)
        if value not in (None, ""):
            try:
                return int(value), name
            except ValueError:
                raise ValueError(f"pydl.distributed: ${name}={value!r} is not an integer") \
                    from None
    return None, None


def from_environment(environ=None):
    """The Launch this process was started with; rank 0 of 1 when no launcher is seen."""
    environ = os.environ if environ is None else environ
    rank, rank_var = _first(RANK_VARS, environ)
    size, size_var = _first(SIZE_VARS, environ)
    local_rank, _ = _first(LOCAL_RANK_VARS, environ)
    if (rank is None) != (size is None):
        found = rank_var or size_var
        raise ValueError(f"pydl.distributed: ${found} is set but neither of "
                         f"{SIZE_VARS if size is None else RANK_VARS} is")
    if rank is None:
        return Launch(0, 1, 0, None)
    if not 0 <= rank < size:
        raise ValueError(f"pydl.distributed: rank {rank} (${rank_var}) is outside the world "
                         f"size {size} (${size_var})")
    return Launch(rank, size, rank if local_rank is None else local_rank, rank_var)


def launched_by_mpi(environ=None):
    environ = os.environ if environ is None else environ
    return any(environ.get(name) for name in MPI_LAUNCHER_VARS)
