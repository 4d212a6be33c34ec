"""Runs a call in a forked child so that a crash (a signal, an abort, a hang) is a
result the test can assert on, not the end of the test run.

run(fn, *args) returns Outcome(kind, value): kind "ok" with fn's return value,
"raised" with (exception type name, message), "crashed" with the signal's name,
or "hung" after `timeout` seconds. The child runs its kernels on one thread:
an OpenMP runtime inherited through fork may not survive entering a parallel
region again, and one thread is what makes the child's outcome reproducible.
"""
import os
import pickle
import select
import signal
import time
from typing import Any, NamedTuple


class Outcome(NamedTuple):
    kind: str
    value: Any


def run(fn, *args, timeout=60.0, threads=1, memory_limit=None, **kwargs):
    """memory_limit: bytes of address space the child may add to what it has (a reader
    that allocates past it raises MemoryError there)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into the test runner
        os.close(read_end)
        try:
            from pydl import _C
            _C.set_num_threads(threads)
            if memory_limit is not None:
                import resource
                with open("/proc/self/statm") as statm:
                    size = int(statm.read().split()[0]) * resource.getpagesize()
                resource.setrlimit(resource.RLIMIT_AS, (size + memory_limit, size + memory_limit))
            try:
                result = ("ok", fn(*args, **kwargs))
            except BaseException as e:  # noqa: BLE001 - the outcome is the test's to judge
                result = ("raised", (type(e).__name__, str(e)))
            try:
                data = pickle.dumps(result)
            except Exception as e:  # an unpicklable result still reports its type
                data = pickle.dumps(("ok", f"<unpicklable {type(result[1]).__name__}: {e}>"))
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(data)
        finally:
            os._exit(0)
    os.close(write_end)
    chunks, deadline = [], time.monotonic() + timeout
    with os.fdopen(read_end, "rb") as pipe:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([pipe], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return Outcome("hung", timeout)
            chunk = os.read(pipe.fileno(), 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return Outcome("crashed", signal.Signals(os.WTERMSIG(status)).name)
    if not chunks:
        return Outcome("crashed", f"exit status {os.WEXITSTATUS(status)} without a result")
    kind, value = pickle.loads(b"".join(chunks))
    return Outcome(kind, value)
