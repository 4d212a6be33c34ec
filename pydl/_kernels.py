"""The dispatch point for every compiled kernel call.

Ops call kernels as attributes of a KernelSet (`kernels_for(x).gemm(...)`).
Normally those attributes are the compiled functions themselves, so dispatch
costs nothing. With PYDL_DEBUG=1 in the environment (read once, at import)
each attribute is wrapped by `_timed_call`, which prints one line per call to
stderr: kernel, shapes, milliseconds, and GFLOP/s (gemm: 2*M*N*K per matrix)
or GB/s (bytes read plus bytes written). pydl.profiler.profile wraps them the same
way while it records, through add_recorder / remove_recorder.
"""
import functools
import os
import sys
import time

import numpy as np

from pydl import _C

DEBUG = os.environ.get("PYDL_DEBUG", "") not in ("", "0")

# Compiled entry points that do arithmetic (the runtime helpers are not timed).
KERNEL_NAMES = tuple(
    ["gemm", "softmax_cross_entropy", "sgd_step", "rmsprop_step", "adagrad_step", "adam_step"]
    + ["dropout_mask", "dropout_forward", "dropout_backward", "embedding_forward",
       "embedding_backward", "batch_norm_forward", "batch_norm_backward", "layer_norm_forward",
       "layer_norm_backward", "rnn_forward", "rnn_backward"]
    + ["gemm_bf16", "int8_linear", "int8_conv2d"]
    + [f"{op}_{pass_}" for op in ("conv2d", "max_pool2d", "avg_pool2d")
       for pass_ in ("forward", "backward")]
    + [f"{op}_{pass_}" for op in ("relu", "sigmoid", "tanh", "gelu", "softmax", "log_softmax")
       for pass_ in ("forward", "backward")])


def _shape(a):
    return "(" + ", ".join(map(str, a.shape)) + ("," if len(a.shape) == 1 else "") + ")"


def _gemm_flops(args, kwargs):
    a, b = args[0], args[1]
    m_axis, k_axis = (-1, -2) if kwargs.get("trans_a") else (-2, -1)
    n_axis = -2 if kwargs.get("trans_b") else -1
    batch = a.shape[0] if a.ndim == 3 else 1
    return 2.0 * batch * a.shape[m_axis] * a.shape[k_axis] * b.shape[n_axis]


def _bytes_moved(args, result):
    # A list argument is a multi-tensor call's arrays (the optimizer steps).
    args = [x for a in args for x in (a if isinstance(a, list) else [a])]
    arrays = [x for x in args if hasattr(x, "nbytes")]
    outputs = result if isinstance(result, tuple) else (result,)
    arrays += [x for x in outputs if hasattr(x, "nbytes")]
    return float(sum(x.nbytes for x in arrays))


def _rate(name, args, kwargs, result):
    """(flops, bytes) of one call: gemm counts 2*M*N*K per matrix, the others the bytes
    read plus written."""
    if name in ("gemm", "gemm_bf16"):
        return _gemm_flops(args, kwargs), None
    return None, _bytes_moved(args, result)


class KernelCall:
    """One timed kernel call, as recorders receive it."""

    __slots__ = ("name", "shapes", "flags", "start", "seconds", "flops", "bytes")

    def __init__(self, name, shapes, flags, start, seconds, flops, bytes_):
        self.name, self.shapes, self.flags = name, shapes, flags
        self.start, self.seconds, self.flops, self.bytes = start, seconds, flops, bytes_

    @property
    def rate(self):
        """'12.3 GFLOP/s' for gemm, '4.5 GB/s' for the others."""
        if self.flops is not None:
            return f"{self.flops / self.seconds / 1e9:.3g} GFLOP/s"
        return f"{self.bytes / self.seconds / 1e9:.3g} GB/s"


def _print_call(call):
    print(f"pydl: {call.name} {call.shapes}{call.flags} {call.seconds * 1e3:.3f} ms {call.rate}",
          file=sys.stderr)


# Who receives each timed call besides the PYDL_DEBUG printer: the active
# pydl.profiler.profile objects. With neither, no call is timed.
_recorders = []


def _timed_call(name, fn, sync, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    if sync is not None:  # a GPU kernel: time it to its end, not its launch
        sync()
    seconds = max(time.perf_counter() - start, 1e-9)
    shapes = " ".join(_shape(a) for a in args if isinstance(a, np.ndarray) or hasattr(a, "shape"))
    flags = "".join(f" {k}={v}" for k, v in kwargs.items() if k != "out")
    flops, bytes_ = _rate(name, args, kwargs, result)
    call = KernelCall(name, shapes, flags, start, seconds, flops, bytes_)
    if DEBUG:
        _print_call(call)
    for record in list(_recorders):
        record(call)
    return result


class KernelSet:
    """The kernels of one compiled module (pydl._C or pydl._cuda) by name, all with
    pydl._C's signatures. `kernels` ({name: function}) gives them where the module's
    own functions have other signatures (see pydl._cuda_kernels). `sync` waits for
    the device (None on the CPU). The attributes are the compiled functions
    themselves unless a recorder listens (see add_recorder)."""

    def __init__(self, module, kernels=None, sync=None):
        self._module_name = module.__name__
        self._sync = sync
        self._raw = {}
        for name in KERNEL_NAMES:
            fn = getattr(module, name, None) if kernels is None else kernels.get(name)
            if fn is not None:  # else a family this device's module does not implement yet
                self._raw[name] = fn
        self._install(bool(_recorders) or DEBUG)
        _sets.append(self)

    def _install(self, timed):
        for name, fn in self._raw.items():
            setattr(self, name, functools.partial(_timed_call, name, fn, self._sync) if timed else fn)

    def __getattr__(self, name):
        # Only reached for kernels the module lacks (found ones are attributes).
        if name in KERNEL_NAMES:
            raise NotImplementedError(f"{name} has no kernel in {self._module_name} yet")
        raise AttributeError(name)


_sets = []  # every KernelSet made, so recorders can switch timing on and off


def add_recorder(record):
    """Times every kernel call from now on and passes each KernelCall to record(call)."""
    _recorders.append(record)
    if len(_recorders) == 1:
        for kernel_set in _sets:
            kernel_set._install(True)


def remove_recorder(record):
    """Stops passing calls to record; with no recorder left the kernels run untimed."""
    _recorders.remove(record)
    if not _recorders and not DEBUG:
        for kernel_set in _sets:
            kernel_set._install(False)


cpu = KernelSet(_C)
_cuda_set = None


def cuda_kernel_set(module):
    """The KernelSet of a CUDA kernel module (pydl._cuda, or pydl._cuda_emu in tests)
    on CuPy arrays."""
    import cupy
    from pydl._cuda_kernels import cuda_kernels
    return KernelSet(module, cuda_kernels(module, cupy),
                     sync=lambda: cupy.cuda.get_current_stream().synchronize())


def cuda():
    global _cuda_set
    if _cuda_set is None:
        from pydl import _cuda
        _cuda_set = cuda_kernel_set(_cuda)
    return _cuda_set
