"""The Keras MNIST convnet tutorial on pydl.keras: the same program as the
Keras/TensorFlow one, with only the imports changed.

Data, first found wins (offline by default): MNIST's four IDX files in --data-dir or
pydl's cache ($PYDL_HOME/datasets/mnist, default ~/.pydl/datasets/mnist); else
Fashion-MNIST from the cache or Debian's dataset-fashion-mnist package
(/usr/share/datasets/fashion-mnist); else scikit-learn's 8x8 digits, upsampled 3x and
padded to 28x28. --download lets pydl fetch MNIST when it is not on disk.

By default it trains on the whole training set it found for one epoch (MNIST and
Fashion-MNIST: 60000 images; the 1438 digits images: 5 epochs), tests on the whole
test set, and saves a History.plot of the run. One change to the tutorial's recipe:
RMSprop's learning rate starts at 2e-3 and decays to 0 over the run (Keras's
CosineDecay), which one epoch needs to reach the accuracy the tutorial's 5 reach.

    python examples/mnist_cnn.py                  # every image, one epoch
    python examples/mnist_cnn.py --full           # the tutorial's 5 epochs
"""
import argparse
import os
import tempfile
import time

import numpy as np

import pydl
from pydl import keras
from pydl.keras import layers, models  # Keras: from tensorflow.keras import layers, models
from pydl.datasets import fashion_mnist, mnist

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")


def _has_idx_files(directory):
    """Whether directory holds the four IDX files (each gzipped or not)."""
    return all(os.path.isfile(os.path.join(directory, name)) or
               os.path.isfile(os.path.join(directory, name + ".gz")) for name in IDX_FILES)


def digits_as_28x28():
    """scikit-learn's 8x8 digits (values 0..16) as MNIST-shaped uint8 images: each pixel
    repeated 3x3 (24x24), then a 2-pixel border of zeros, scaled to 0..255."""
    (x_train, y_train), (x_test, y_test) = pydl.datasets.digits.load_data()

    def resize(images):
        big = images.repeat(3, axis=1).repeat(3, axis=2)
        big = np.pad(big, ((0, 0), (2, 2), (2, 2)))
        return np.round(big * (255 / 16)).astype(np.uint8)
    return (resize(x_train), y_train), (resize(x_test), y_test)


def load_images(choice, data_dir=None, download=False):
    """((x_train, y_train), (x_test, y_test)) as uint8 (N, 28, 28) and labels, plus a
    description of the data used."""
    mnist_dirs = [d for d in (data_dir, pydl.datasets.cache_dir("mnist")) if d]
    if choice in ("auto", "mnist"):
        for directory in mnist_dirs:
            if _has_idx_files(directory):
                return mnist.load_data(directory), f"MNIST ({directory})"
        if download:
            return mnist.load_data(), "MNIST (downloaded)"
        if choice == "mnist":
            raise SystemExit(f"MNIST files not found in {' or '.join(mnist_dirs)}; pass "
                             "--download, or --data-dir a directory holding them")
    if choice in ("auto", "fashion_mnist"):
        for directory in (pydl.datasets.cache_dir("fashion-mnist"), *fashion_mnist.SYSTEM_DIRS):
            if _has_idx_files(directory):
                return fashion_mnist.load_data(directory), f"Fashion-MNIST ({directory})"
        if download:
            return fashion_mnist.load_data(), "Fashion-MNIST (downloaded)"
        if choice == "fashion_mnist":
            raise SystemExit("Fashion-MNIST not found; `apt-get install dataset-fashion-mnist` "
                             "or pass --download")
    return digits_as_28x28(), "scikit-learn digits, upsampled 8x8 -> 24x24, padded to 28x28"


def nn_network(classes=10):
    """The tutorial's network below as a pydl.nn.Sequential on (N, 1, 28, 28) input, for
    the tools that work on nn.Modules (pruning, distillation)."""
    nn = pydl.nn
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3), nn.ReLU(),
        nn.Flatten(), nn.Linear(64 * 3 * 3, 64), nn.ReLU(), nn.Linear(64, classes))


class Throughput(keras.callbacks.Callback):
    """Training images per second, timed over the epochs' batches only."""

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds = getattr(self, "seconds", 0.0) + time.perf_counter() - self.start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=("auto", "mnist", "fashion_mnist", "digits"),
                        default="auto")
    parser.add_argument("--data-dir", help="a directory holding MNIST's IDX files")
    parser.add_argument("--download", action="store_true", help="allow a download")
    parser.add_argument("--limit", type=int, help="training images used (default: all)")
    parser.add_argument("--test-limit", type=int, help="test images used (default: all)")
    parser.add_argument("--epochs", type=int,
                        help="default 1 (5 with --full, and on the small digits set)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, help="kernel threads (default: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2),
                        help="1: a progress bar on a terminal (plain lines otherwise)")
    parser.add_argument("--full", action="store_true", help="the tutorial's 5 epochs")
    parser.add_argument("--plot", default=os.path.join(tempfile.gettempdir(),
                                                       "pydl_mnist_cnn_history.png"),
                        help="where to save the History.plot PNG ('' for none)")
    args = parser.parse_args(argv)
    if args.threads:
        pydl.set_num_threads(args.threads)
    pydl.manual_seed(args.seed)

    ((train_images, train_labels), (test_images, test_labels)), source = \
        load_images(args.data, args.data_dir, args.download)
    train_images, train_labels = train_images[:args.limit], train_labels[:args.limit]
    test_images, test_labels = test_images[:args.test_limit], test_labels[:args.test_limit]
    print(f"data: {source}; {len(train_images)} training and {len(test_images)} test images")
    if args.epochs is None:
        args.epochs = 5 if args.full or len(train_images) < 10000 else 1

    # ---- the tutorial, unchanged from here but for the learning-rate schedule ----
    model = models.Sequential()
    model.add(layers.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model.add(layers.Flatten())
    model.add(layers.Dense(64, activation="relu"))
    model.add(layers.Dense(10, activation="softmax"))
    if args.verbose:
        model.summary()

    train_images = train_images.reshape((len(train_images), 28, 28, 1)).astype("float32") / 255
    test_images = test_images.reshape((len(test_images), 28, 28, 1)).astype("float32") / 255
    train_labels = keras.utils.to_categorical(train_labels, 10)
    test_labels = keras.utils.to_categorical(test_labels, 10)

    steps = args.epochs * -(-len(train_images) // args.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(2e-3, decay_steps=steps)
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=schedule),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    throughput = Throughput()
    history = model.fit(train_images, train_labels, epochs=args.epochs,
                        batch_size=args.batch_size, callbacks=[throughput], verbose=args.verbose)
    test_loss, test_acc = model.evaluate(test_images, test_labels, verbose=0)
    # ---- end of the tutorial ----

    images_per_s = args.epochs * len(train_images) / throughput.seconds
    print(f"test accuracy {test_acc:.4f}  test loss {test_loss:.4f}  "
          f"training {images_per_s:.0f} images/s on {pydl.get_num_threads()} threads "
          f"({throughput.seconds:.1f} s for {args.epochs} epoch{'s' * (args.epochs > 1)})")
    plot = save_plot(history, args.plot)
    return {"data": source, "history": history.history, "test_loss": test_loss,
            "test_accuracy": test_acc, "images_per_s": images_per_s, "plot": plot}


def save_plot(history, path):
    """history.plot() to path (None without a path or without matplotlib), saying where."""
    if not path:
        return None
    try:
        history.plot(path)
    except ImportError:
        print("no training plot: History.plot needs matplotlib (pip install matplotlib)")
        return None
    print(f"training curves: {path}")
    return path


if __name__ == "__main__":
    main()
