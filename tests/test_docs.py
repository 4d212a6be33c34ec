"""Docs that run: every docstring example in pydl passes (doctest, on the pydl that is
imported: the installed package, or the source tree with the dev build), every public
class and function of the PyTorch-style API has one, and docs/API.md is what
docs/gen_api.py generates from the code today."""
import doctest
import importlib
import inspect
import io
import pathlib
import pkgutil
import runpy

import numpy as np
import pytest

import pydl

ROOT = pathlib.Path(__file__).resolve().parents[1]

# The names the examples may use without importing them (pydl/conftest.py gives
# `pytest --doctest-modules pydl` the same).
NAMESPACE = {"pydl": pydl, "nn": pydl.nn, "F": pydl.nn.functional, "np": np}

MODULES = ["pydl"] + sorted(
    info.name for info in pkgutil.walk_packages(pydl.__path__, "pydl.")
    if not any(part.startswith("_") or part == "conftest" for part in info.name.split(".")))


def load(module_name):
    """The module, or None when it needs an optional package that is not installed."""
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        if error.name and not error.name.startswith("pydl"):
            return None
        raise


def run_examples(module_name):
    """(examples run, failures, failure report) for the docstrings of one module."""
    module = load(module_name)
    if module is None:
        pytest.skip(f"{module_name} needs an optional package that is not installed")
    out = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in doctest.DocTestFinder().find(module, extraglobs=NAMESPACE):
        pydl.manual_seed(0)
        runner.run(test, out=out.write)
    return runner.tries, runner.failures, out.getvalue()


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples_run(module_name):
    _, failures, report = run_examples(module_name)
    assert failures == 0, report


def public_api():
    """(qualified name, object) for every public class and function of the PyTorch-style
    API: pydl's functions, Tensor and its methods that have function forms, pydl.nn,
    pydl.nn.functional, pydl.optim (with its schedulers) and pydl.data."""
    found = []
    for name in pydl.__all__:
        obj = getattr(pydl, name)
        if name in pydl.FUNCTION_FORMS:
            obj = getattr(pydl.Tensor, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            found.append((f"pydl.{name}", obj))
    for module in (pydl.nn, pydl.nn.functional, pydl.optim, pydl.optim.lr_scheduler):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                found.append((f"{module.__name__}.{name}", obj))
    for name in ("Dataset", "TensorDataset", "DataLoader", "default_collate", "Subset",
                 "random_split"):
        found.append((f"pydl.data.{name}", getattr(pydl.data, name)))
    return found


def test_every_public_class_and_function_has_an_example():
    missing = [name for name, obj in public_api() if ">>>" not in (inspect.getdoc(obj) or "")]
    assert not missing, f"no example in the docstring of: {', '.join(missing)}"


def count_examples():
    modules = [m for m in map(load, MODULES) if m is not None]
    return sum(len(test.examples) for module in modules
               for test in doctest.DocTestFinder().find(module))


def test_examples_are_not_lost():
    """A floor under the number of examples, so that removing some is noticed."""
    assert count_examples() >= 442


def test_api_page_is_up_to_date():
    generator = runpy.run_path(str(ROOT / "docs" / "gen_api.py"))
    page = ROOT / "docs" / "API.md"
    assert page.exists() and page.read_text() == generator["render"](), (
        "docs/API.md is stale: run `python docs/gen_api.py`")
