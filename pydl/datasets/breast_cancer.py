"""Wisconsin diagnostic breast cancer: 569 samples, 30 features, 2 classes."""
from pydl.datasets._sklearn import bundled


def load_data(test_split=0.2, seed=113):
    """((x_train, y_train), (x_test, y_test)): features (N, 30) float32, labels int64."""
    return bundled("load_breast_cancer", test_split, seed)
