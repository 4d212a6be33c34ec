"""Fisher's iris with the classic Keras MLP: Dense 10 relu, Dense 10 relu, Dense 3
softmax, Adam, 100 epochs at batch 10, on an 80/20 split.

Data: scikit-learn's bundled copy (pip install scikit-learn). Features are
standardized with the training split's mean and standard deviation.

    python examples/iris_mlp.py                   # the whole recipe (a few seconds)
"""
import argparse

import numpy as np

import pydl
from pydl import keras
from pydl.keras import layers


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--split-seed", type=int, default=113, help="seed of the 80/20 split")
    parser.add_argument("--seed", type=int, default=0, help="weights and shuffling")
    parser.add_argument("--verbose", type=int, default=0, choices=(0, 1, 2))
    parser.add_argument("--full", action="store_true", help="the recipe as is (the default)")
    args = parser.parse_args(argv)
    if args.full:
        args.epochs, args.batch_size = 100, 10
    pydl.manual_seed(args.seed)

    (x_train, y_train), (x_test, y_test) = pydl.datasets.iris.load_data(
        test_split=0.2, seed=args.split_seed)
    print(f"data: iris (scikit-learn's copy), {len(x_train)} train / {len(x_test)} test")
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    y_train, y_test = keras.utils.to_categorical(y_train, 3), keras.utils.to_categorical(y_test, 3)

    model = keras.Sequential([
        layers.Dense(10, activation="relu", input_shape=(4,)),
        layers.Dense(10, activation="relu"),
        layers.Dense(3, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                        verbose=args.verbose)
    losses = history.history["loss"]
    test_loss, test_acc = model.evaluate(x_test, y_test, verbose=0)
    print(f"training loss {losses[0]:.4f} -> {losses[-1]:.4f}; test loss {test_loss:.4f}  "
          f"test accuracy {test_acc:.4f}")
    return {"losses": losses, "test_loss": test_loss, "test_accuracy": test_acc}


if __name__ == "__main__":
    main()
