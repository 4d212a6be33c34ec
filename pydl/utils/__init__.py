"""pydl.utils: torch.utils's import paths. pydl.utils.data is the module pydl.data
itself (one module under two names), so `from pydl.utils.data import DataLoader,
TensorDataset` works as it does in PyTorch.

>>> from pydl.utils.data import DataLoader, TensorDataset
>>> pydl.utils.data is pydl.data
True
"""
import sys

from pydl import data

sys.modules[__name__ + ".data"] = data

__all__ = ["data"]
