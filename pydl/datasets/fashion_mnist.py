"""Fashion-MNIST (Zalando article images): the layout of MNIST, ten clothing classes."""
from pydl.datasets import _mnist_like

MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
# Debian's package dataset-fashion-mnist installs the four gzipped files here.
SYSTEM_DIRS = ("/usr/share/datasets/fashion-mnist",)
SHA256 = ("08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
          "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
          "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
          "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf")
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot")


def load_data(path=None):
    """((x_train, y_train), (x_test, y_test)): images (N, 28, 28) uint8, labels (N,)
    uint8. Looks in path, the cache directory, /usr/share/datasets/fashion-mnist (Debian's
    dataset-fashion-mnist), then downloads."""
    return _mnist_like.load("fashion-mnist", SHA256, path, SYSTEM_DIRS, MIRRORS,
                            hint="On Debian/Ubuntu, `apt-get install dataset-fashion-mnist` "
                                 "provides them.")
