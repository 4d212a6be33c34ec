"""pydl.distributed: data-parallel training over MPI (CPUs) or NCCL (GPUs), with
torch.distributed's names.

    pydl.distributed.init_process_group("mpi")      # under mpirun -n 4 python train.py
    model = pydl.distributed.DistributedDataParallel(model)
    loader = pydl.data.DataLoader(data, batch_size=32,
                                  sampler=pydl.data.DistributedSampler(data))

Keras models need nothing more than init_process_group: fit() then splits each batch
across the ranks (pydl.keras.distributed).
"""
from pydl.data import DistributedSampler
from pydl.distributed.ddp import DistributedDataParallel, Reducer, broadcast_tensors
from pydl.distributed.process_group import (
    DistributedError, ProcessGroup, ReduceOp, Work, all_gather, all_reduce, barrier, broadcast,
    destroy_process_group, get_backend, get_rank, get_world_size, init_process_group,
    is_available, is_initialized)

__all__ = ["init_process_group", "destroy_process_group", "is_available", "is_initialized",
           "get_rank", "get_world_size", "get_backend", "barrier", "all_reduce", "broadcast",
           "all_gather", "ReduceOp", "Work", "ProcessGroup", "DistributedError",
           "DistributedDataParallel", "DistributedSampler", "Reducer", "broadcast_tensors"]
