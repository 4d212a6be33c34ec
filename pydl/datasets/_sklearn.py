"""The small classic data sets scikit-learn ships inside its package (no download)."""
import numpy as np

INSTALL_HINT = "pip install pydl[datasets]"


def bundled(loader_name, test_split, seed):
    """((x_train, y_train), (x_test, y_test)) from sklearn.datasets.<loader_name>: features
    float32, labels int64, split by a permutation drawn from `seed`."""
    try:
        from sklearn import datasets
    except ImportError as error:
        raise ImportError(f"this data set is read from scikit-learn's bundled copy; install "
                          f"it with `{INSTALL_HINT}` (or `pip install scikit-learn`)") from error
    if not 0 <= test_split < 1:
        raise ValueError(f"test_split must be in [0, 1), got {test_split!r}")
    bunch = getattr(datasets, loader_name)()
    x = np.asarray(bunch.images if loader_name == "load_digits" else bunch.data, np.float32)
    y = np.asarray(bunch.target, np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(len(y) * test_split))
    test, train = order[:n_test], order[n_test:]
    return (x[train], y[train]), (x[test], y[test])
