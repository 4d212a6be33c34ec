"""For `pytest --doctest-modules pydl`: the names the docstring examples use without
importing them, and a fixed seed per example (tests/test_docs.py runs the same examples
on whichever pydl is imported, so plain `pytest` covers them too)."""
import numpy as np
import pytest

import pydl


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace):
    doctest_namespace.update(pydl=pydl, nn=pydl.nn, F=pydl.nn.functional, np=np)
    pydl.manual_seed(0)
