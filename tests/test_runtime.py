"""Runtime: threads, PYDL_DEBUG kernel logging, the caching allocator, CUDA probing."""
import os
import re
import subprocess
import sys

import numpy as np

import pydl
from pydl import _C, _kernels

# The folder holding the pydl these tests import (the installed one, or the source
# tree in a dev build), for the child processes.
PYDL_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(pydl.__file__)))


def test_set_and_get_num_threads():
    before = pydl.get_num_threads()
    try:
        pydl.set_num_threads(1)
        assert pydl.get_num_threads() == 1 == _C.get_num_threads()
        pydl.set_num_threads(2)
        assert pydl.get_num_threads() == 2
    finally:
        pydl.set_num_threads(before)
    for bad in (0, -1, 1.5, "2"):
        try:
            pydl.set_num_threads(bad)
        except ValueError as e:
            assert "set_num_threads" in str(e)
        else:
            raise AssertionError(f"set_num_threads({bad!r}) was accepted")


def test_openmp_spin_count_is_set_before_the_kernels_load():
    assert os.environ.get("GOMP_SPINCOUNT")


def _run_with_debug(code):
    # Run from PYDL_ROOT: `python -c` puts the working directory first on the path.
    env = dict(os.environ, PYDL_DEBUG="1", PYTHONPATH=PYDL_ROOT)
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=PYDL_ROOT,
                          capture_output=True, text=True, timeout=60, check=True)


def test_debug_logs_every_kernel_call_with_shape_time_and_rate():
    result = _run_with_debug(
        "import pydl, pydl.nn.functional as F\n"
        "a = pydl.randn(64, 32, requires_grad=True)\n"
        "b = pydl.randn(32, 16)\n"
        "F.cross_entropy((a @ b).relu(), pydl.tensor([1] * 64)).backward()\n")
    lines = result.stderr.splitlines()
    gemm = [line for line in lines if line.startswith("pydl: gemm")]
    assert gemm, result.stderr
    forward = re.fullmatch(r"pydl: gemm \(64, 32\) \(32, 16\) trans_a=False trans_b=False "
                           r"([0-9.]+) ms ([0-9.e+-]+) GFLOP/s", gemm[0])
    assert forward, gemm[0]
    assert float(forward.group(1)) > 0 and float(forward.group(2)) > 0
    # The backward gemm for a's gradient passes b transposed as a flag, not a copy.
    assert any(re.match(r"pydl: gemm \(64, 16\) \(32, 16\) trans_a=False trans_b=True ", line)
               for line in gemm), gemm
    for name in ("relu_forward", "relu_backward", "softmax_cross_entropy"):
        assert any(re.match(rf"pydl: {name} .* ms [0-9.e+-]+ GB/s$", line) for line in lines), name
    assert result.stdout == ""


def test_debug_off_calls_the_kernels_directly():
    if _kernels.DEBUG:
        return
    assert _kernels.cpu.gemm is _C.gemm and _kernels.cpu.relu_forward is _C.relu_forward


def test_allocator_reuses_kernel_output_buffers(rng):
    x = pydl.tensor(rng.standard_normal((64, 64)), dtype="float32")
    w = pydl.tensor(rng.standard_normal((64, 64)), dtype="float32")
    (x @ w).relu()  # warm the cache for these sizes
    start = _C.allocator_stats()
    for _ in range(10):
        y = (x @ w).relu()
        del y
    end = _C.allocator_stats()
    assert end["hits"] >= start["hits"] + 20  # one gemm and one relu output per step
    assert end["misses"] == start["misses"]
    np.testing.assert_allclose((x @ w).relu().numpy(),
                               np.maximum(x.numpy().astype(np.float64) @ w.numpy(), 0),
                               rtol=1e-4, atol=1e-4)


def test_cuda_probe_never_raises():
    assert isinstance(pydl.cuda.is_available(), bool)
    assert pydl.cuda.device_count() >= 0
    if not pydl.cuda.is_available():
        assert pydl.cuda.device_count() == 0


# ---- instruction sets --------------------------------------------------------------

LADDER = ["portable", "avx2", "avx512"]


def test_isa_ladder_matches_the_cpu_features():
    features = _C.cpu_features()
    best = _C.best_isa()
    assert best == ("avx512" if features["avx512"] else "avx2" if features["avx2"] else "portable")
    # Each rung needs the one below; the extensions need their vector width.
    assert not features["avx512"] or features["avx2"]
    assert not (features["avx512_vnni"] or features["avx512_bf16"]) or features["avx512"]
    assert not features["avx_vnni"] or features["avx2"]
    if os.environ.get("PYDL_ISA") is None:
        assert pydl.get_isa() == best


def test_set_isa_goes_down_the_ladder_and_back():
    best = _C.best_isa()
    try:
        for name in LADDER[:LADDER.index(best) + 1]:
            pydl.set_isa(name)
            assert pydl.get_isa() == _C.isa() == name
    finally:
        pydl.set_isa(best)


def test_set_isa_rejects_unknown_names_and_paths_above_the_cpu():
    best = _C.best_isa()
    for bad in ("avx3", "AVX2", "", 2):
        try:
            pydl.set_isa(bad)
        except ValueError as e:
            assert "set_isa" in str(e)
        else:
            raise AssertionError(f"set_isa({bad!r}) was accepted")
    for above in LADDER[LADDER.index(best) + 1:]:
        try:
            pydl.set_isa(above)
        except ValueError as e:
            assert above in str(e) and f"best it supports is '{best}'" in str(e)
        else:
            raise AssertionError(f"set_isa({above!r}) was accepted above {best}")
    assert pydl.get_isa() == _C.isa()


def _isa_in_child(value):
    env = dict(os.environ, PYTHONPATH=PYDL_ROOT, PYDL_ISA=value)
    return subprocess.run([sys.executable, "-c", "import pydl; print(pydl.get_isa())"],
                          env=env, cwd=PYDL_ROOT, capture_output=True, text=True, timeout=60)


def test_pydl_isa_environment_variable_picks_the_path_at_import():
    for name in LADDER[:LADDER.index(_C.best_isa()) + 1]:
        result = _isa_in_child(name)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == name
    result = _isa_in_child("avx3")
    assert result.returncode != 0 and "PYDL_ISA='avx3'" in result.stderr
