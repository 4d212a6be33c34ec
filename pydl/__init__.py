"""pydl: a deep-learning library whose kernels are its own."""
import os

# Idle OpenMP workers spin only briefly before sleeping, so threads left over
# from one kernel do not steal the CPU from Python between kernels. Must be set
# before the kernels (and their OpenMP runtime) load.
os.environ.setdefault("GOMP_SPINCOUNT", "20000")

try:
    from pydl import _C  # noqa: E402
except ImportError:
    # Started inside the source tree without a dev build: use the installed copy's
    # compiled modules, or say how to build them.
    from pydl._extensions import compiled_module_folders  # noqa: E402
    folders = compiled_module_folders()
    if not folders:
        raise
    __path__.extend(folders)
    del folders
    from pydl import _C  # noqa: E402
from pydl import backends, cuda, nn, optim, profiler  # noqa: E402
from pydl._device import Device, device  # noqa: E402
from pydl._random import get_rng_state, manual_seed, set_rng_state  # noqa: E402
from pydl._runtime import get_isa, get_num_threads, set_isa, set_num_threads  # noqa: E402
from pydl._runtime import (are_deterministic_algorithms_enabled,  # noqa: E402
                           use_deterministic_algorithms)
from pydl.autograd import enable_grad, is_grad_enabled, no_grad  # noqa: E402
# Data loading, data sets and checkpoints (pydl.save / pydl.load).
from pydl import data, datasets  # noqa: E402
# Export to ONNX (pydl.onnx.export, needs the onnx extra only when called).
from pydl import onnx  # noqa: E402
from pydl.serialization import load, save  # noqa: E402
from pydl.serialization import load_safetensors, save_safetensors  # noqa: E402
# Low precision: bfloat16 autocast and post-training int8 quantization.
from pydl import quantization  # noqa: E402
from pydl.amp import autocast  # noqa: E402
from pydl.tensor import (  # noqa: E402
    FUNCTION_FORMS, Tensor, arange, bool_, cat, concatenate, empty, eye, float32, float64,
    from_dlpack, from_numpy, full, function_form, int64, matmul, ones, ones_like, rand, randint,
    randn, randperm, stack, tensor, where, zeros, zeros_like)
from pydl.tensor import (  # noqa: E402
    einsum, empty_like, full_like, linspace, rand_like, randint_like, randn_like)
from pydl import utils  # noqa: E402  (pydl.utils.data: torch.utils.data's import path)


# pydl.exp(x), pydl.sum(x, dim), ... : the function forms of Tensor methods.
for _name in FUNCTION_FORMS:
    globals()[_name] = function_form(_name)
del _name

# torch-style dtype aliases (defined last: they shadow builtins in this namespace).
bool = bool_  # noqa: A001
float = float32  # noqa: A001
double = float64
long = int64

__all__ = [
    "Tensor", "Device", "device", "cuda", "nn", "optim", "profiler", "tensor", "from_numpy", "from_dlpack", "zeros",
    "ones", "empty", "full", "zeros_like", "ones_like", "randn", "rand", "randint", "randperm",
    "arange", "eye", "cat", "concatenate", "stack", "where", "matmul", "manual_seed", "no_grad",
    "get_rng_state", "set_rng_state", "data", "datasets", "save", "load",
    "save_safetensors", "load_safetensors", "onnx",
    "enable_grad", "is_grad_enabled", "set_num_threads", "get_num_threads", "float32",
    "autocast", "quantization",
    "set_isa", "get_isa",
    "float64", "int64", "bool", "float", "double", "long", *FUNCTION_FORMS]
__all__ += ["einsum", "empty_like", "full_like", "linspace", "rand_like", "randint_like",
            "randn_like", "utils"]
__all__ += ["use_deterministic_algorithms", "are_deterministic_algorithms_enabled"]
