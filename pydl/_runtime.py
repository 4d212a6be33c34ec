"""Run-time settings of the CPU kernels."""
import os

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
