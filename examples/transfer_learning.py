"""Transfer learning: load a saved model, freeze its feature layers, replace its head and
fine-tune it on scikit-learn's digits, in pydl.nn (requires_grad_(False)) or pydl.keras
(layer.trainable = False).

The saved model is the Fashion-MNIST CNN (examples/mnist_cnn.py's network), trained
here first and saved when --pretrained names no existing file. Without Fashion-MNIST
(Debian's dataset-fashion-mnist, or pydl's cache), or with --source digits, the source
task is digits 0-4 and the new task digits 5-9, so it runs offline.

    python examples/transfer_learning.py                  # pydl.nn
    python examples/transfer_learning.py --api keras
"""
import argparse
import os
import sys
import tempfile

import numpy as np

import pydl
import pydl.nn as nn
import pydl.nn.functional as F
from pydl import keras
from pydl.keras import layers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the tutorial beside us
from mnist_cnn import digits_as_28x28, load_images, nn_network  # noqa: E402


def source_and_target(source, limit):
    """(x, y) of the source task, (x_train, y_train) and (x_test, y_test) of the digits
    task, a description; images (N, 28, 28) as float32 in 0..1, labels int64 from 0."""
    (d_train, dy_train), (d_test, dy_test) = digits_as_28x28()
    if source in ("auto", "fashion_mnist"):
        ((x, y), _), name = load_images("fashion_mnist" if source == "fashion_mnist" else "auto")
        if not name.startswith("scikit-learn"):
            tasks = ((x[:limit], y[:limit]), (d_train, dy_train), (d_test, dy_test))
            return (*_scaled(tasks), f"{name} -> digits 0-9")
    # Offline: digits 0-4 are the source task, 5-9 (relabelled 0-4) the new one.
    low, high = dy_train < 5, dy_test >= 5
    tasks = ((d_train[low], dy_train[low]), (d_train[~low], dy_train[~low] - 5),
             (d_test[high], dy_test[high] - 5))
    return (*_scaled(tasks), "digits 0-4 -> digits 5-9")


def _scaled(pairs):
    return [(x.astype(np.float32) / 255, y.astype(np.int64)) for x, y in pairs]


# ---- pydl.nn -------------------------------------------------------------------------

def fit_nn(model, x, y, epochs, lr, seed):
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = pydl.optim.Adam(trainable, lr=lr)
    rng = np.random.default_rng(seed)
    model.train()
    losses = []
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), 64):
            batch = order[start:start + 64]
            loss = F.cross_entropy(model(pydl.tensor(x[batch, None])), pydl.tensor(y[batch]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return losses


def accuracy_nn(model, x, y):
    model.eval()
    with pydl.no_grad():
        return float((model(pydl.tensor(x[:, None])).numpy().argmax(1) == y).mean())


def transfer_nn(args, source, target, path):
    (x_source, y_source), (x_train, y_train), (x_test, y_test) = source, *target
    classes = int(y_train.max()) + 1
    if not os.path.exists(path):
        pretrained = nn_network(int(y_source.max()) + 1)
        fit_nn(pretrained, x_source, y_source, args.pretrain_epochs, 1e-3, args.seed)
        pydl.save(pretrained.state_dict(), path)
    state = pydl.load(path)
    model = nn_network(state["11.weight"].shape[0])  # [11] is the head, [9] the hidden dense
    model.load_state_dict(state)
    model.requires_grad_(False)                  # freeze everything ...
    model.add_module("11", nn.Linear(64, classes))  # ... and a new, trainable head in its place
    if args.unfreeze_dense:
        model[9].requires_grad_(True)
    frozen = {n: p.detach().numpy().copy() for n, p in model.named_parameters()
              if not p.requires_grad}
    losses = fit_nn(model, x_train, y_train, args.epochs, args.lr, args.seed + 1)
    unchanged = all(np.array_equal(p.detach().numpy(), frozen[n])
                    for n, p in model.named_parameters() if n in frozen)
    return losses, accuracy_nn(model, x_test, y_test), len(frozen), unchanged


# ---- pydl.keras ----------------------------------------------------------------------

def keras_network(classes):
    """examples/mnist_cnn.py's tutorial model."""
    model = keras.Sequential()
    model.add(layers.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model.add(layers.Flatten())
    model.add(layers.Dense(64, activation="relu"))
    model.add(layers.Dense(classes, activation="softmax"))
    return model


def transfer_keras(args, source, target, path):
    (x_source, y_source), (x_train, y_train), (x_test, y_test) = source, *target
    classes = int(y_train.max()) + 1
    if not os.path.exists(path):
        pretrained = keras_network(int(y_source.max()) + 1)
        pretrained.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                           metrics=["accuracy"])
        pretrained.fit(x_source[..., None], y_source, epochs=args.pretrain_epochs,
                       batch_size=64, verbose=0)
        pretrained.save(path)
    model = keras.models.load_model(path)
    for layer in model.layers:
        layer.trainable = layer.name.startswith("dense") and args.unfreeze_dense
    model.pop()                                  # the old head
    model.add(layers.Dense(classes, activation="softmax"))
    model.compile(optimizer=keras.optimizers.Adam(args.lr),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    frozen = [w.detach().numpy().copy() for w in model.non_trainable_weights]
    history = model.fit(x_train[..., None], y_train, epochs=args.epochs, batch_size=64,
                        verbose=0)
    unchanged = all(np.array_equal(w.detach().numpy(), before)
                    for w, before in zip(model.non_trainable_weights, frozen))
    _, test_accuracy = model.evaluate(x_test[..., None], y_test, verbose=0)
    return history.history["loss"], float(test_accuracy), len(frozen), unchanged


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--api", choices=("nn", "keras"), default="nn")
    parser.add_argument("--source", choices=("auto", "fashion_mnist", "digits"), default="auto")
    parser.add_argument("--source-limit", type=int, default=6000, help="source images used")
    parser.add_argument("--pretrained", help="the saved model (pydl.save state_dict for nn, "
                        "model.save for keras); trained and saved there when missing")
    parser.add_argument("--pretrain-epochs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5, help="fine-tuning epochs")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--unfreeze-dense", action="store_true",
                        help="also fine-tune the hidden dense layer (64 units)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    pydl.manual_seed(args.seed)
    source, *target, description = source_and_target(args.source, args.source_limit)
    print(f"data: {description}")
    with tempfile.TemporaryDirectory() as scratch:
        path = args.pretrained or os.path.join(scratch, f"pretrained.{args.api}.pydl")
        transfer = transfer_nn if args.api == "nn" else transfer_keras
        losses, test_accuracy, frozen, unchanged = transfer(args, source, target, path)
    print(f"{args.api}: {frozen} frozen weight tensors ({'unchanged' if unchanged else 'CHANGED'}"
          f" by fine-tuning), new head fine-tuned {args.epochs} epochs: test accuracy "
          f"{test_accuracy:.4f}")
    return {"data": description, "losses": losses, "test_accuracy": test_accuracy,
            "frozen_tensors": frozen, "frozen_unchanged": unchanged}


if __name__ == "__main__":
    main()
