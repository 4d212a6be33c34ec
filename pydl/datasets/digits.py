"""scikit-learn's handwritten digits: 1797 images of 8 x 8 pixels valued 0..16."""
from pydl.datasets._sklearn import bundled


def load_data(test_split=0.2, seed=113):
    """((x_train, y_train), (x_test, y_test)): images (N, 8, 8) float32, labels int64."""
    return bundled("load_digits", test_split, seed)
