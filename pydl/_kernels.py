"""The dispatch point for every compiled kernel call.

Ops call kernels as attributes of a KernelSet (`kernels_for(x).gemm(...)`).
Normally those attributes are the compiled functions themselves, so dispatch
costs nothing. With PYDL_DEBUG=1 in the environment (read once, at import)
each attribute is wrapped by `_timed_call`, which prints one line per call to
stderr: kernel, shapes, milliseconds, and GFLOP/s (gemm: 2*M*N*K per matrix)
or GB/s (bytes read plus bytes written).
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
    arrays = [x for x in args if hasattr(x, "nbytes")]
    outputs = result if isinstance(result, tuple) else (result,)
    arrays += [x for x in outputs if hasattr(x, "nbytes")]
    return float(sum(x.nbytes for x in arrays))


def _timed_call(name, fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    seconds = max(time.perf_counter() - start, 1e-9)
    shapes = " ".join(_shape(a) for a in args if isinstance(a, np.ndarray) or hasattr(a, "shape"))
    flags = "".join(f" {k}={v}" for k, v in kwargs.items() if k != "out")
    if name in ("gemm", "gemm_bf16"):
        rate = f"{_gemm_flops(args, kwargs) / seconds / 1e9:.3g} GFLOP/s"
    else:
        rate = f"{_bytes_moved(args, result) / seconds / 1e9:.3g} GB/s"
    print(f"pydl: {name} {shapes}{flags} {seconds * 1e3:.3f} ms {rate}", file=sys.stderr)
    return result


class KernelSet:
    """The kernels of one compiled module (pydl._C or pydl._cuda) by name, all with
    pydl._C's signatures. `kernels` ({name: function}) gives them where the module's
    own functions have other signatures (see pydl._cuda_kernels)."""

    def __init__(self, module, kernels=None):
        self._module_name = module.__name__
        for name in KERNEL_NAMES:
            fn = getattr(module, name, None) if kernels is None else kernels.get(name)
            if fn is None:  # a family this device's module does not implement yet
                continue
            setattr(self, name, functools.partial(_timed_call, name, fn) if DEBUG else fn)

    def __getattr__(self, name):
        # Only reached for kernels the module lacks (found ones are attributes).
        if name in KERNEL_NAMES:
            raise NotImplementedError(f"{name} has no kernel in {self._module_name} yet")
        raise AttributeError(name)


cpu = KernelSet(_C)
_cuda_set = None


def cuda_kernel_set(module):
    """The KernelSet of a CUDA kernel module (pydl._cuda, or pydl._cuda_emu in tests)
    on CuPy arrays."""
    import cupy
    from pydl._cuda_kernels import cuda_kernels
    kernels = cuda_kernels(module, cupy)
    if DEBUG:  # time each kernel, not its launch: wait for the stream after each call
        kernels = {name: _synchronized(fn, cupy) for name, fn in kernels.items()}
    return KernelSet(module, kernels)


def _synchronized(fn, cupy):
    def call(*args, **kwargs):
        result = fn(*args, **kwargs)
        cupy.cuda.get_current_stream().synchronize()
        return result
    return call


def cuda():
    global _cuda_set
    if _cuda_set is None:
        from pydl import _cuda
        _cuda_set = cuda_kernel_set(_cuda)
    return _cuda_set
