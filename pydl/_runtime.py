"""Run-time settings of the CPU kernels."""
from pydl import _C


def set_num_threads(n):
    """Threads the CPU kernels may use (small ops still run on one)."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive int, got {n!r}")
    _C.set_num_threads(n)


def get_num_threads():
    return _C.get_num_threads()


# ---- deterministic algorithms ------------------------------------------------------
# The CPU kernels give the same bits on every run and any number of threads (their
# reductions run in orders fixed by the shapes). Some CUDA kernels sum with atomics,
# in whatever order the blocks finish; with deterministic algorithms on they raise.

class _Deterministic:
    enabled = False
    warn_only = False


def use_deterministic_algorithms(mode, *, warn_only=False):
    """mode=True: an op whose result could differ from run to run raises RuntimeError
    naming it (a UserWarning instead when warn_only=True), as in PyTorch."""
    _Deterministic.enabled = bool(mode)
    _Deterministic.warn_only = bool(warn_only)


def are_deterministic_algorithms_enabled():
    return _Deterministic.enabled


def alert_not_deterministic(op):
    """Called by an implementation whose result may vary between runs."""
    if not _Deterministic.enabled:
        return
    message = (f"{op} does not have a deterministic implementation, but "
               "use_deterministic_algorithms(True) was set")
    if _Deterministic.warn_only:
        import warnings
        warnings.warn(message, UserWarning, stacklevel=3)
    else:
        raise RuntimeError(message)
