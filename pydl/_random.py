"""The global random state: one NumPy generator behind every random factory (randn,
rand, ...), and the (seed, offset) counter that names each call's stream of the
counter-based generator (Philox) the dropout kernels use."""
import numpy as np

_generator = np.random.default_rng()
# A fresh process draws a random Philox seed; manual_seed fixes it.
_philox_seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0])
_philox_offset = 0


def manual_seed(seed):
    """Reseeds the global generator and the Philox stream: the same seed gives the same
    numbers and the same dropout masks."""
    global _generator, _philox_seed, _philox_offset
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"manual_seed: seed must be a non-negative integer, got {seed!r}")
    _generator = np.random.default_rng(int(seed))
    _philox_seed = int(seed) % 2**64
    _philox_offset = 0


def generator():
    """The global numpy Generator (read it at call time: manual_seed replaces it)."""
    return _generator


def philox_next():
    """(seed, offset) naming a fresh Philox stream; each call advances the offset."""
    global _philox_offset
    offset = _philox_offset
    _philox_offset += 1
    return _philox_seed, offset
