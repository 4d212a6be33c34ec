"""Data sets as NumPy arrays, Keras-style: each module's load_data() returns
((x_train, y_train), (x_test, y_test)).

mnist, fashion_mnist (IDX files), cifar10 (python batches): read from a given path, the
cache directory ($PYDL_HOME/datasets/<name>, default ~/.pydl/datasets/<name>), the
system directory of a Debian package (Fashion-MNIST), or downloaded with a SHA-256
check. digits, iris, breast_cancer: scikit-learn's bundled copies; mnist1d: generated
by the mnist1d package (both via `pip install pydl[datasets]`).
"""
from pydl.datasets import (  # noqa: F401
    breast_cancer, cifar10, digits, fashion_mnist, iris, mnist, mnist1d)
from pydl.datasets._files import DatasetNotFoundError, cache_dir  # noqa: F401

__all__ = ["mnist", "fashion_mnist", "cifar10", "digits", "iris", "breast_cancer", "mnist1d",
           "DatasetNotFoundError", "cache_dir"]
