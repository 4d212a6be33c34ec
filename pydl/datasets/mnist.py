"""MNIST handwritten digits: 60000 training and 10000 test images, 28 x 28 uint8."""
from pydl.datasets import _mnist_like

MIRRORS = ("https://storage.googleapis.com/cvdf-datasets/mnist/",
           "https://ossci-datasets.s3.amazonaws.com/mnist/")
# SHA-256 of the canonical gzipped files, in _mnist_like.FILENAMES order.
SHA256 = ("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
          "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
          "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
          "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6")


def load_data(path=None):
    """((x_train, y_train), (x_test, y_test)): images (N, 28, 28) uint8, labels (N,)
    uint8. path: a directory holding the four IDX files (gzipped or not); otherwise the
    cache directory, then a download into it."""
    return _mnist_like.load("mnist", SHA256, path, mirrors=MIRRORS)
