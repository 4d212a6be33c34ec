"""`import pydl` inside a source tree that has no compiled modules: it uses an
installed copy's, or raises an ImportError saying how to build them (never the
misleading 'partially initialized module' message)."""
import os
import pathlib
import shutil
import subprocess
import sys

import pydl

PACKAGE = pathlib.Path(pydl.__file__).resolve().parent


def _sources_only(folder):
    """A copy of the pydl sources without compiled modules, as in a fresh clone."""
    shutil.copytree(PACKAGE, folder / "pydl",
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))


# Hides any pydl installed in the environment (CI installs one) except extra_path's;
# numpy is imported first, since it may share the hidden site-packages with that pydl.
IMPORT = ("import os, sys, numpy; keep = ('', os.getcwd(), os.environ['PYTHONPATH']); "
          "sys.path[:] = [p for p in sys.path if p in keep or "
          "not os.path.isdir(os.path.join(p, 'pydl'))]; "
          "import pydl; print(pydl._C.__file__)")


def _import_in(folder, extra_path=None):
    env = {**os.environ, "PYTHONPATH": str(extra_path or "")}
    return subprocess.run([sys.executable, "-c", IMPORT], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=120)


def test_import_without_compiled_modules_says_how_to_build(tmp_path):
    _sources_only(tmp_path)
    result = _import_in(tmp_path)
    assert result.returncode != 0
    assert "ImportError: pydl's compiled kernels (pydl._C) are not built" in result.stderr
    assert "pip install" in result.stderr and "cmake --build build/dev" in result.stderr
    assert "partially initialized" not in result.stderr


def test_import_inside_the_sources_uses_the_installed_modules(tmp_path):
    clone, site = tmp_path / "clone", tmp_path / "site"
    _sources_only(clone)
    (site / "pydl").mkdir(parents=True)
    for module in PACKAGE.glob("_C.*"):
        shutil.copy(module, site / "pydl")
    result = _import_in(clone, extra_path=site)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(str(site / "pydl"))
