"""keras.datasets: the pydl.datasets loaders under Keras's names, e.g.
`(x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()`.
Imported on first use, so pydl.keras works without pydl.datasets."""
import importlib

_NAMES = ("mnist", "fashion_mnist", "cifar10")


def __getattr__(name):
    if name not in _NAMES:
        raise AttributeError(f"module 'pydl.keras.datasets' has no attribute {name!r}")
    try:
        return importlib.import_module(f"pydl.datasets.{name}")
    except ModuleNotFoundError as error:
        raise ImportError(f"keras.datasets.{name} needs pydl.datasets.{name}, which this "
                          "installation of pydl lacks") from error


__all__ = list(_NAMES)
