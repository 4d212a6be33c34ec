"""Run-time settings of the CPU kernels."""
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
