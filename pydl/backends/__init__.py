"""Switches that choose how the kernels of a device compute, as torch.backends."""
from pydl.backends import cuda  # noqa: F401
