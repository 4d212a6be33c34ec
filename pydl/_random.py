"""The global random state: one NumPy generator behind every random factory (randn,
rand, ...), and the (seed, offset) counter that names each call's stream of the
counter-based generator (Philox) the dropout kernels use."""
import copy

import numpy as np

_generator = np.random.default_rng()
# A fresh process draws a random Philox seed; manual_seed fixes it.
_philox_seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0])
_philox_offset = 0


def manual_seed(seed):
    """Reseeds the global generator and the Philox stream: the same seed gives the same
    numbers and the same dropout masks.

    >>> pydl.manual_seed(42)
    >>> a = pydl.randn(3)
    >>> pydl.manual_seed(42)
    >>> bool((pydl.randn(3) == a).all())
    True
    """
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


# Bit generators set_rng_state may rebuild (NumPy's own; no other name is looked up).
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")


def get_rng_state():
    """The whole global random state as plain data (nested dicts of ints and strings, so
    pydl.save can store it): the NumPy generator's bit_generator.state and the Philox
    (seed, offset) the next dropout mask will use.

    >>> state = pydl.get_rng_state()
    >>> a = pydl.rand(2)
    >>> pydl.set_rng_state(state)
    >>> bool((pydl.rand(2) == a).all())
    True
    """
    return {"numpy": copy.deepcopy(_generator.bit_generator.state),
            "philox_seed": _philox_seed, "philox_offset": _philox_offset}


def set_rng_state(state):
    """Restores a state from get_rng_state(): the random numbers, shuffles and dropout
    masks that follow are exactly those that followed the get_rng_state() call.

    >>> state = pydl.get_rng_state()
    >>> first = pydl.randn(2).tolist()
    >>> pydl.set_rng_state(state)
    >>> pydl.randn(2).tolist() == first
    True
    """
    global _generator, _philox_seed, _philox_offset
    try:
        numpy_state = dict(state["numpy"])
        name = numpy_state["bit_generator"]
        seed, offset = int(state["philox_seed"]), int(state["philox_offset"])
    except (TypeError, KeyError, ValueError) as error:
        raise ValueError(f"set_rng_state: state must come from get_rng_state(), got {state!r:.200}"
                         ) from error
    if name not in _BIT_GENERATORS:
        raise ValueError(f"set_rng_state: unknown bit generator {name!r}; expected one of "
                         f"{_BIT_GENERATORS}")
    bit_generator = getattr(np.random, name)()
    bit_generator.state = copy.deepcopy(numpy_state)
    _generator = np.random.Generator(bit_generator)
    _philox_seed, _philox_offset = seed, offset
