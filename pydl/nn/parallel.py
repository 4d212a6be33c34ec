"""pydl.nn.parallel.DistributedDataParallel: torch's path to pydl.distributed's class
(looked up on first use, since pydl.distributed builds on pydl.nn)."""


def __getattr__(name):
    if name == "DistributedDataParallel":
        from pydl.distributed import DistributedDataParallel
        return DistributedDataParallel
    raise AttributeError(f"module 'pydl.nn.parallel' has no attribute {name!r}")
