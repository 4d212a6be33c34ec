"""Fisher's iris: 150 flowers, 4 measurements each, 3 species."""
from pydl.datasets._sklearn import bundled


def load_data(test_split=0.2, seed=113):
    """((x_train, y_train), (x_test, y_test)): features (N, 4) float32, labels int64."""
    return bundled("load_iris", test_split, seed)
