"""The shared loader of MNIST and Fashion-MNIST: the same four IDX files, the same
shapes (28 x 28 uint8 images, uint8 labels 0..9)."""
from pydl.datasets import _files
from pydl.datasets._idx import load_idx

TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"
FILENAMES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)


def read_split(images_path, labels_path):
    """(images (N, 28, 28) uint8, labels (N,) uint8) from an image and a label file."""
    images, labels = load_idx(images_path), load_idx(labels_path)
    if images.dtype != "uint8" or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"{images_path}: expected uint8 images of shape (N, 28, 28), got "
                         f"{images.dtype} {images.shape}")
    if labels.dtype != "uint8" or labels.ndim != 1:
        raise ValueError(f"{labels_path}: expected uint8 labels of shape (N,), got "
                         f"{labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(f"{labels_path}: {len(labels)} labels for the {len(images)} images "
                         f"in {images_path}")
    if labels.size and labels.max() > 9:
        raise ValueError(f"{labels_path}: label {labels.max()} outside 0..9")
    return images, labels


def load(name, sha256s, path=None, system_dirs=(), mirrors=(), hint=""):
    """((x_train, y_train), (x_test, y_test)) for one of the IDX datasets."""
    paths = _files.locate(name, dict(zip(FILENAMES, sha256s)), path, system_dirs, mirrors, hint)
    return read_split(paths[0], paths[1]), read_split(paths[2], paths[3])
