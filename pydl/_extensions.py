"""Finding pydl's compiled modules (_C, _cuda_emu, _cuda) when this pydl folder has
none: Python started inside the source tree imports the sources, and their compiled
modules are in the installed copy (pip install .) or not built yet.
"""
import glob
import os
import sys

SOURCE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(SOURCE)

DEV_BUILD = ("cmake -S . -B build/dev -G Ninja -Dpybind11_DIR=$(python -m pybind11 --cmakedir)"
             " && cmake --build build/dev")


def _has_compiled_module(folder):
    return bool(glob.glob(os.path.join(folder, "_C.*")))


def compiled_module_folders():
    """The folders pydl's __path__ needs to import its compiled modules: none when
    they are built here; else the installed copies of pydl found on sys.path. With
    neither, an ImportError saying how to build them."""
    if _has_compiled_module(SOURCE):
        return []  # they are here: the ImportError was something else, shown as is
    installed = []
    for entry in sys.path:
        folder = os.path.join(os.path.abspath(entry or os.curdir), "pydl")
        if folder != SOURCE and folder not in installed and _has_compiled_module(folder):
            installed.append(folder)
    if installed:
        return installed[:1]
    raise ImportError(
        f"pydl's compiled kernels (pydl._C) are not built: Python imported the pydl "
        f"sources in {SOURCE}, which hold no compiled modules, and no installed pydl was "
        f"found. Either install it, `pip install {ROOT}` (then this source folder uses "
        f"the installed kernels), or build them in place for development, in {ROOT}: "
        f"`{DEV_BUILD}` (the modules land in pydl/; then run with PYTHONPATH={ROOT}).") \
        from None
