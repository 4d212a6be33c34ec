"""pydl.nn: neural-network building blocks (the stateless forms in pydl.nn.functional)."""
from pydl.nn import functional

__all__ = ["functional"]
