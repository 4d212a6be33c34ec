"""The Keras CIFAR-10 convnet (three 3x3 convolutions, two max-pools, Dense 64,
Dense 10) trained with Adam at batch 128 on pydl.keras.

Data: CIFAR-10 when its batches are on disk (--data-dir, or pydl's cache
$PYDL_HOME/datasets/cifar10; --download fetches it), else a synthetic stand-in of the
same shape: ten classes, each a fixed smooth random colour pattern, seen at a random
shift with pixel noise, so the run says something without the 170 MB download.

    python examples/cifar10_cnn.py                # small run
    python examples/cifar10_cnn.py --full         # every image, 10 epochs
"""
import argparse
import os
import time

import numpy as np

import pydl
from pydl import keras
from pydl.keras import layers, models
from pydl.datasets import cifar10


def cifar10_on_disk(data_dir=None):
    """The path of cached CIFAR-10 batches or archive, or None."""
    cache = pydl.datasets.cache_dir("cifar10")
    for candidate in (data_dir, os.path.join(cache, cifar10.BATCH_DIR), cache,
                      os.path.join(cache, cifar10.ARCHIVE)):
        if candidate and (os.path.isfile(os.path.join(candidate, cifar10.TEST_BATCH)) or
                          (candidate.endswith(".tar.gz") and os.path.isfile(candidate))):
            return candidate
    return None


def synthetic_cifar(n_train, n_test, rng):
    """Ten classes of 32x32x3 uint8 images: a per-class template (random colour noise
    blurred by averaging 4x4 blocks, then upsampled), rolled by up to 4 pixels each
    way, plus Gaussian pixel noise."""
    coarse = rng.uniform(0, 255, (10, 8, 8, 3))
    templates = coarse.repeat(4, axis=1).repeat(4, axis=2)

    def draw(n):
        labels = rng.integers(0, 10, n)
        images = templates[labels]
        shifts = rng.integers(-4, 5, (n, 2))
        images = np.stack([np.roll(img, tuple(s), axis=(0, 1)) for img, s in zip(images, shifts)])
        images = images + rng.normal(0, 60, images.shape)
        return np.clip(images, 0, 255).astype(np.uint8), labels[:, None].astype(np.uint8)
    return draw(n_train), draw(n_test)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", help="CIFAR-10's batches directory or tar.gz")
    parser.add_argument("--download", action="store_true", help="allow the download")
    parser.add_argument("--synthetic", action="store_true", help="use the stand-in data")
    parser.add_argument("--limit", type=int, default=2000, help="training images used")
    parser.add_argument("--test-limit", type=int, default=1000, help="test images used")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2))
    parser.add_argument("--full", action="store_true", help="every image, 10 epochs")
    args = parser.parse_args(argv)
    if args.full:
        args.limit = args.test_limit = None
        args.epochs = 10
    pydl.manual_seed(args.seed)

    path = None if args.synthetic else cifar10_on_disk(args.data_dir)
    if path is not None or (args.download and not args.synthetic):
        (x_train, y_train), (x_test, y_test) = cifar10.load_data(path)
        source = f"CIFAR-10 ({path or 'downloaded'})"
    else:
        n_train = args.limit or 50000
        n_test = args.test_limit or 10000
        (x_train, y_train), (x_test, y_test) = synthetic_cifar(
            n_train, n_test, np.random.default_rng(args.seed))
        source = ("synthetic stand-in for CIFAR-10 (not found on disk; pass --download or "
                  "--data-dir to use it)")
    x_train, y_train = x_train[:args.limit], y_train[:args.limit]
    x_test, y_test = x_test[:args.test_limit], y_test[:args.test_limit]
    print(f"data: {source}; {len(x_train)} training and {len(x_test)} test images")
    x_train, x_test = x_train.astype("float32") / 255, x_test.astype("float32") / 255

    model = models.Sequential()
    model.add(layers.Conv2D(32, (3, 3), activation="relu", input_shape=(32, 32, 3)))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model.add(layers.Flatten())
    model.add(layers.Dense(64, activation="relu"))
    model.add(layers.Dense(10))
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    start = time.perf_counter()
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                        validation_data=(x_test, y_test), verbose=args.verbose)
    seconds = time.perf_counter() - start
    test_loss, test_acc = model.evaluate(x_test, y_test, verbose=0)
    print(f"test accuracy {test_acc:.4f}  test loss {test_loss:.4f}  "
          f"({seconds:.1f} s for {args.epochs} epochs with validation)")
    return {"data": source, "history": history.history, "test_loss": test_loss,
            "test_accuracy": test_acc}


if __name__ == "__main__":
    main()
