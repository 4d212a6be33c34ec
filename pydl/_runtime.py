"""Run-time settings of the CPU kernels."""
import os
import warnings

from pydl import _C


def set_num_threads(n):
    """Threads the CPU kernels may use (small ops still run on one).

    >>> before = pydl.get_num_threads()
    >>> pydl.set_num_threads(1)
    >>> pydl.get_num_threads()
    1
    >>> pydl.set_num_threads(before)
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive int, got {n!r}")
    _C.set_num_threads(n)


def get_num_threads():
    """The number of threads the CPU kernels may use (see set_num_threads).

    >>> pydl.get_num_threads() >= 1
    True
    """
    return _C.get_num_threads()


def set_isa(name):
    """The instruction set the CPU kernels run: 'avx512', 'avx2' or 'portable', at or
    below the best this CPU supports (pydl.get_isa() after import without PYDL_ISA).
    A higher one is a ValueError naming the CPU's best.

    >>> best = pydl.get_isa()
    >>> pydl.set_isa("portable")
    >>> pydl.get_isa()
    'portable'
    >>> pydl.set_isa(best)
    """
    if not isinstance(name, str):
        raise ValueError(f"set_isa: name must be a str, got {name!r}")
    _C.set_isa(name)


def get_isa():
    """The instruction set the CPU kernels run now.

    >>> pydl.get_isa() in ("avx512", "avx2", "portable")
    True
    """
    return _C.isa()


# PYDL_ISA picks a lower path for the whole process, e.g. to measure the AVX2
# kernels on an AVX-512 machine.
if os.environ.get("PYDL_ISA"):
    try:
        set_isa(os.environ["PYDL_ISA"])
    except ValueError as e:
        raise ValueError(f"PYDL_ISA={os.environ['PYDL_ISA']!r}: {e}") from None


# ---- deterministic algorithms ------------------------------------------------------
# The CPU kernels give the same bits on every run and any number of threads (their
# reductions run in orders fixed by the shapes). Some CUDA kernels sum with atomics,
# in whatever order the blocks finish; with deterministic algorithms on they raise.

class _Deterministic:
    enabled = False
    warn_only = False


def use_deterministic_algorithms(mode, *, warn_only=False):
    """mode=True: an op whose result could differ from run to run raises RuntimeError
    naming it (a UserWarning instead when warn_only=True), as in PyTorch.

    >>> pydl.use_deterministic_algorithms(True)
    >>> pydl.are_deterministic_algorithms_enabled()
    True
    >>> pydl.use_deterministic_algorithms(False)
    """
    _Deterministic.enabled = bool(mode)
    _Deterministic.warn_only = bool(warn_only)


def are_deterministic_algorithms_enabled():
    """Whether use_deterministic_algorithms(True) is in force.

    >>> pydl.are_deterministic_algorithms_enabled()
    False
    """
    return _Deterministic.enabled


def alert_not_deterministic(op):
    """Called by an implementation whose result may vary between runs."""
    if not _Deterministic.enabled:
        return
    message = (f"{op} does not have a deterministic implementation, but "
               "use_deterministic_algorithms(True) was set")
    if _Deterministic.warn_only:
        warnings.warn(message, UserWarning, stacklevel=3)
    else:
        raise RuntimeError(message)
