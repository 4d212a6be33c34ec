"""The one global random generator behind every random factory (randn, rand, ...)."""
import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed):
    """Reseeds the global generator: the same seed gives the same numbers."""
    global _generator
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"manual_seed: seed must be a non-negative integer, got {seed!r}")
    _generator = np.random.default_rng(int(seed))


def generator():
    """The global numpy Generator (read it at call time: manual_seed replaces it)."""
    return _generator
