"""Benchmark suite "cuda": the CUDA kernels of pydl._cuda.

Always, GPU or not: what ptxas gave each kernel (registers, shared memory,
stack, local-memory stores), read from the module's machine code with
`cuobjdump -res-usage` and `-sass`, which need no GPU. ptxas' "spill stores"
are the static bytes of its STL (store-local) instructions, so the STL bytes
column is the spills plus any local arrays (stack > 0 says which kernels have
either).

With a GPU (CuPy importable and a device present), timed with CUDA events in
this run, beside:
- SGEMM FP32 and TF32 (tf32=True) against cupy.matmul (cuBLAS; its TF32
  compute type for the TF32 rows), square sizes 512 to 8192;
- softmax cross-entropy (forward + gradient) against a device-to-device copy
  of the same bytes (logits read, gradient written);
- conv2d forward against torch (cuDNN, TF32 off) when torch has CUDA.
GPU rows carry threads = 0.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

import pydl

SUITE = "cuda"
GPU_THREADS = 0  # the threads column of GPU rows
GEMM_SIZES = [512, 1024, 2048, 4096, 8192]
XENT_SHAPES = [(4096, 1000), (32768, 1000), (256, 32000)]
# (name, N, C_in, H, W, C_out, kernel, stride, padding)
CONV_SHAPES = [
    ("resnet 64->64 56x56", 32, 64, 56, 56, 64, 3, 1, 1),
    ("cifar 32->64 32x32", 128, 32, 32, 32, 64, 3, 1, 1),
    ("stem 3->64 224x224 s2", 32, 3, 224, 224, 64, 7, 2, 3),
]


# ---- resources from the machine code ------------------------------------------------

def _cuobjdump():
    """cuobjdump from PATH, the CUDA toolkit, or the nvidia-cuda-cuobjdump wheel."""
    found = shutil.which("cuobjdump")
    if found:
        return found
    homes = [os.environ.get("CUDA_HOME", ""), os.environ.get("CUDA_PATH", ""), "/usr/local/cuda"]
    candidates = [os.path.join(h, "bin", "cuobjdump") for h in homes if h]
    try:
        import nvidia  # the namespace package of NVIDIA's wheels
        for root in nvidia.__path__:
            candidates += glob.glob(os.path.join(root, "*", "bin", "cuobjdump"))
    except ImportError:
        pass
    return next((c for c in candidates if os.access(c, os.X_OK)), None)


def _cuda_module_file():
    here = Path(pydl.__file__).parent
    files = sorted(p for p in here.glob("_cuda.*") if p.suffix in (".so", ".pyd"))
    return files[0] if files else None


def _demangled(names):
    """Readable kernel names: demangled by c++filt when present, without the
    pydl::cuda and *_detail namespaces or the parameter list."""
    out = list(names)
    if shutil.which("c++filt") and names:
        result = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True,
                                text=True, check=False)
        if result.returncode == 0:
            out = result.stdout.splitlines()
    cleaned = []
    for name in out:
        name = re.sub(r"\b(pydl::cuda::|\w+_detail::)", "", name)
        depth, cut = 0, len(name)
        for i in range(len(name) - 1, -1, -1):  # drop the trailing "(params)"
            if name[i] == ")":
                depth += 1
            elif name[i] == "(":
                depth -= 1
                if depth == 0:
                    cut = i
                    break
        name = name[:cut] if name.endswith(")") else name
        cleaned.append(name.removeprefix("void "))
    return cleaned


# STL[.U8|.S8|.U16|.S16|.64|.128]: bytes stored per instruction.
_STL = re.compile(r"\bSTL(?:\.(U8|S8|U16|S16|64|128))?\b")
_STL_BYTES = {None: 4, "U8": 1, "S8": 1, "U16": 2, "S16": 2, "64": 8, "128": 16}


def _local_store_bytes(cuobjdump, module):
    """{(arch, mangled name): static bytes of STL instructions} from the SASS,
    or the reason there is none (cuobjdump -sass needs nvdisasm)."""
    result = subprocess.run([cuobjdump, "-sass", str(module)], capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        return (result.stderr.strip().splitlines() or ["cuobjdump -sass failed"])[0]
    stores, arch, function = {}, None, None
    sass = result.stdout
    for line in sass.splitlines():
        if line.startswith("arch = "):
            arch = line.split("=", 1)[1].strip()
        elif line.strip().startswith("Function : "):
            function = line.split(":", 1)[1].strip()
            stores[(arch, function)] = 0
        elif function is not None:
            for m in _STL.finditer(line):
                stores[(arch, function)] += _STL_BYTES[m.group(1)]
    return stores


def kernel_resources():
    """[{kernel, arch, registers, shared, stack, local_store_bytes}] for every
    kernel of pydl._cuda; or a string saying why there are none."""
    module = _cuda_module_file()
    if module is None:
        return "pydl._cuda is not built (no CUDA compiler at build time): no kernel resources"
    cuobjdump = _cuobjdump()
    if cuobjdump is None:
        return ("cuobjdump not found (CUDA toolkit, or pip install nvidia-cuda-cuobjdump): "
                "no kernel resources")
    usage = subprocess.run([cuobjdump, "-res-usage", str(module)], capture_output=True,
                           text=True, check=True).stdout
    stores = _local_store_bytes(cuobjdump, module)
    if isinstance(stores, str):
        print(f"  no STL bytes: {stores}")
        stores = {}
    rows, arch, function = [], None, None
    for line in usage.splitlines():
        line = line.strip()
        if line.startswith("arch = "):
            arch = line.split("=", 1)[1].strip()
        elif line.startswith("Function "):
            function = line[len("Function "):].rstrip(":")
        elif function is not None and line.startswith("REG:"):
            fields = dict(f.split(":", 1) for f in line.split())
            rows.append(dict(mangled=function, arch=arch, registers=int(fields["REG"]),
                             shared=int(fields["SHARED"]), stack=int(fields["STACK"]),
                             local_store_bytes=stores.get((arch, function))))
            function = None
    for row, name in zip(rows, _demangled([r.pop("mangled") for r in rows])):
        row["kernel"] = name
    rows.sort(key=lambda r: (r["kernel"], r["arch"]))
    return rows


def resources_markdown(rows):
    lines = ["### CUDA kernel resources (cuobjdump, per architecture)", "",
             "STL bytes: the static bytes of local-memory stores (spills, local arrays) in the "
             "SASS; blank where nvdisasm, which cuobjdump -sass needs, is missing. Stack > 0 "
             "marks the kernels that have either.", "",
             "| kernel | arch | registers | shared bytes | stack bytes | STL bytes |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        stl = "" if r["local_store_bytes"] is None else str(r["local_store_bytes"])
        lines.append(f"| `{r['kernel']}` | {r['arch']} | {r['registers']} | {r['shared']} | "
                     f"{r['stack']} | {stl} |")
    return "\n".join(lines)


# ---- timings on a GPU ------------------------------------------------------------------

def _gpu():
    """(cupy, pydl._cuda) when both import and a device is present, else a reason."""
    try:
        import cupy as cp
    except ImportError:
        return None, "CuPy is not installed"
    try:
        from pydl import _cuda
    except ImportError:
        return None, "pydl._cuda is not built"
    if _cuda.device_count() == 0:
        return None, "no CUDA device"
    return (cp, _cuda), None


def _event_seconds(cp, fn, repeats):
    """Best seconds per call over `repeats` batches timed by CUDA events, each
    batch long enough (about 20 ms) to hide the event resolution."""
    fn()
    start, end = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    fn()
    end.record()
    end.synchronize()
    once = max(cp.cuda.get_elapsed_time(start, end) / 1e3, 1e-6)
    calls = max(1, int(0.02 / once))
    best = float("inf")
    for _ in range(repeats):
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        best = min(best, cp.cuda.get_elapsed_time(start, end) / 1e3 / calls)
    return best


def _cublas_tf32(cp, enabled):
    """Switches cupy.matmul's float32 compute type to TF32 (or back to the
    default); False when this CuPy has no such switch."""
    try:
        from cupy._core import _routines_linalg as linalg
        linalg.set_compute_type(np.float32, linalg.COMPUTE_TYPE_TF32 if enabled
                                else linalg.COMPUTE_TYPE_DEFAULT)
        return True
    except (ImportError, AttributeError):
        return False


def _gemm(bench, cp, gpu, stream):
    sizes = GEMM_SIZES[:3] if bench.quick else GEMM_SIZES
    rng = np.random.default_rng(0)
    for n in sizes:
        a = cp.asarray(rng.standard_normal((n, n), dtype=np.float32))
        b = cp.asarray(rng.standard_normal((n, n), dtype=np.float32))
        ours, theirs = cp.empty((n, n), cp.float32), cp.empty((n, n), cp.float32)
        flops = 2.0 * n ** 3
        for tf32 in (False, True):
            kernel = "sgemm tf32" if tf32 else "sgemm"

            def pydl_gemm():
                gpu.gemm(a, b, out=ours, stream=stream(), tf32=tf32)
            bench.add(SUITE, kernel, f"{n}^3", "pydl", GPU_THREADS,
                      _event_seconds(cp, pydl_gemm, bench.repeats), flops=flops)
            if tf32 and not _cublas_tf32(cp, True):
                print("  this CuPy has no TF32 compute type: no cuBLAS TF32 row")
                continue
            try:
                bench.add(SUITE, kernel, f"{n}^3", "cublas", GPU_THREADS,
                          _event_seconds(cp, lambda: cp.matmul(a, b, out=theirs), bench.repeats),
                          flops=flops)
            finally:
                _cublas_tf32(cp, False)
        del a, b, ours, theirs
        cp.get_default_memory_pool().free_all_blocks()


def _cross_entropy(bench, cp, gpu, stream):
    rng = np.random.default_rng(1)
    for n, c in XENT_SHAPES:
        logits = cp.asarray(3 * rng.standard_normal((n, c), dtype=np.float32))
        target = cp.asarray(rng.integers(0, c, n))
        loss, losses, grad = cp.empty(1, cp.float32), cp.empty(n, cp.float32), cp.empty_like(logits)
        copy_dst = cp.empty_like(logits)
        shape, nbytes = f"{n}x{c}", 2.0 * n * c * 4  # logits read + grad written

        def ours():
            gpu.softmax_cross_entropy(logits, target, reduction="mean", loss=loss, losses=losses,
                                      grad=grad, stream=stream())
        bench.add(SUITE, "xent f+b", shape, "pydl", GPU_THREADS,
                  _event_seconds(cp, ours, bench.repeats), bytes=nbytes)
        bench.add(SUITE, "xent f+b", shape, "d2d copy", GPU_THREADS,
                  _event_seconds(cp, lambda: cp.copyto(copy_dst, logits), bench.repeats),
                  bytes=nbytes)


def _conv(bench, cp, gpu, stream):
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("  torch is not installed: no cuDNN conv rows")
        return
    if not torch.cuda.is_available():
        print("  torch has no CUDA: no cuDNN conv rows")
        return
    torch.backends.cudnn.allow_tf32 = False  # FP32 against FP32
    torch.backends.cudnn.benchmark = True
    rng = np.random.default_rng(2)
    for name, n, cin, h, w, cout, k, s, p in CONV_SHAPES:
        x = cp.asarray(rng.standard_normal((n, cin, h, w), dtype=np.float32))
        weight = cp.asarray(rng.standard_normal((cout, cin, k, k), dtype=np.float32) * 0.1)
        bias = cp.asarray(rng.standard_normal(cout, dtype=np.float32))
        ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        y = cp.empty((n, cout, ho, wo), cp.float32)
        flops = 2.0 * n * cout * ho * wo * cin * k * k

        def ours():
            gpu.conv2d_forward(x, weight, bias, stride=(s, s), padding=(p, p), out=y,
                               stream=stream())
        bench.add(SUITE, "conv fwd", name, "pydl", GPU_THREADS,
                  _event_seconds(cp, ours, bench.repeats), flops=flops)
        tx, tw, tb = (torch.from_dlpack(v) for v in (x, weight, bias))
        torch.cuda.synchronize()
        bench.add(SUITE, "conv fwd", name, "cudnn", GPU_THREADS,
                  _event_seconds(cp, lambda: F.conv2d(tx, tw, tb, stride=s, padding=p),
                                 bench.repeats), flops=flops)


def run(bench):
    rows = kernel_resources()
    if isinstance(rows, str):
        print(f"  {rows}")
        bench.sections.append(f"CUDA kernel resources: {rows}.")
    else:
        bench.info["cuda_kernel_resources"] = rows
        table = resources_markdown(rows)
        print(table)
        bench.sections.append(table)

    found, why = _gpu()
    if found is None:
        print(f"  no GPU timings: {why}")
        bench.sections.append(f"CUDA timings skipped: {why}.")
        return
    cp, gpu = found
    bench.info["cuda_device"] = cp.cuda.runtime.getDeviceProperties(0)["name"].decode()
    stream = lambda: cp.cuda.get_current_stream().ptr  # noqa: E731
    _gemm(bench, cp, gpu, stream)
    _cross_entropy(bench, cp, gpu, stream)
    _conv(bench, cp, gpu, stream)
