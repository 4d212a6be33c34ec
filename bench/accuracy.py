"""Accuracy beside PyTorch: the same model trained the same way, in pydl and in PyTorch,
over the same seeds. python bench/accuracy.py {mnist1d,fashion} [--seeds 0 1 2]

mnist1d: the MNIST-1D paper's MLP, CNN and GRU (examples/mnist1d_models.py) with its
  recipe: Adam, learning rate 1e-2, batch 100 taken in order, 8000 steps, on the
  package's default 4000/1000 split. PyTorch runs the same models from the same
  initial weights (pydl's for that seed, copied across) on the same batches, so the
  two differ only in their arithmetic.
fashion: the Keras MNIST tutorial CNN (examples/mnist_cnn.py --full) on the real
  Fashion-MNIST: RMSprop (Keras defaults: lr 1e-3, rho 0.9, eps 1e-7), batch 64, 5
  epochs, shuffled each epoch; PyTorch runs the same network (Keras' glorot-uniform
  weights, zero biases, channels-last flatten) the same way.

Prints a markdown table of test accuracies and, with --out, appends it to a file.
"""
from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

import torch  # noqa: E402
import torch.nn as tnn  # noqa: E402
import torch.nn.functional as TF  # noqa: E402


# ---- MNIST-1D -------------------------------------------------------------------------
class TorchMLP(tnn.Module):
    def __init__(self, length=40, hidden=100, classes=10):
        super().__init__()
        self.linear1 = tnn.Linear(length, hidden)
        self.linear2 = tnn.Linear(hidden, hidden)
        self.linear3 = tnn.Linear(hidden, classes)

    def forward(self, x):
        h = self.linear1(x).relu()
        h = h + self.linear2(h).relu()
        return self.linear3(h)


class TorchCNN(tnn.Module):
    def __init__(self, channels=25, classes=10):
        super().__init__()
        self.conv1 = tnn.Conv1d(1, channels, 5, stride=2, padding=1)
        self.conv2 = tnn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.conv3 = tnn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.linear = tnn.Linear(channels * 5, classes)

    def forward(self, x):
        h = x.reshape(x.shape[0], 1, x.shape[1])
        for conv in (self.conv1, self.conv2, self.conv3):
            h = conv(h).relu()
        return self.linear(h.flatten(1))


class TorchGRU(tnn.Module):
    def __init__(self, length=40, hidden=6, classes=10):
        super().__init__()
        self.gru = tnn.GRU(1, hidden, batch_first=True, bidirectional=True)
        self.linear = tnn.Linear(2 * hidden * length, classes)

    def forward(self, x):
        output, _ = self.gru(x.reshape(x.shape[0], x.shape[1], 1))
        return self.linear(output.flatten(1))


TORCH_MNIST1D = {"mlp": TorchMLP, "cnn": TorchCNN, "gru": TorchGRU}


@functools.lru_cache(maxsize=None)
def mnist1d_data():
    import pydl
    return pydl.datasets.mnist1d.load_data()


def torch_mnist1d(model_name, seed, steps, batch_size=100, lr=1e-2):
    import pydl
    import mnist1d_models
    (x_train, y_train), (x_test, y_test) = mnist1d_data()
    pydl.manual_seed(seed)  # the example's initial weights for this seed
    initial = mnist1d_models.MODELS[model_name]().state_dict()
    model = TORCH_MNIST1D[model_name]()
    # (The CNN's 1xk Conv2d kernels become Conv1d ones: the same values, one axis less.)
    model.load_state_dict({name: torch.from_numpy(value.detach().numpy().copy()).reshape(
        theirs.shape) for (name, value), theirs in zip(initial.items(),
                                                        model.state_dict().values())})
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    x_train, y_train = torch.from_numpy(x_train), torch.from_numpy(y_train).long()
    for step in range(steps):
        start = step * batch_size % len(x_train)
        loss = TF.cross_entropy(model(x_train[start:start + batch_size]),
                                y_train[start:start + batch_size])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        predicted = model(torch.from_numpy(x_test)).argmax(1).numpy()
    return float((predicted == y_test).mean())


def pydl_mnist1d(model_name, seed, steps):
    import mnist1d_models
    return mnist1d_models.main(["--model", model_name, "--steps", str(steps),
                                "--seed", str(seed)])["test_accuracy"]


# ---- Fashion-MNIST, the Keras tutorial CNN --------------------------------------------
class TorchKerasCNN(tnn.Module):
    """Conv2D 32/64/64 (3x3, relu), max pools, Dense 64 relu, Dense 10, with Keras' init."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2, self.conv3 = (tnn.Conv2d(1, 32, 3), tnn.Conv2d(32, 64, 3),
                                              tnn.Conv2d(64, 64, 3))
        self.dense1, self.dense2 = tnn.Linear(3 * 3 * 64, 64), tnn.Linear(64, 10)
        for layer in (self.conv1, self.conv2, self.conv3, self.dense1, self.dense2):
            tnn.init.xavier_uniform_(layer.weight)
            tnn.init.zeros_(layer.bias)

    def forward(self, x):
        h = TF.max_pool2d(self.conv1(x).relu(), 2)
        h = TF.max_pool2d(self.conv2(h).relu(), 2)
        h = self.conv3(h).relu()
        h = h.permute(0, 2, 3, 1).flatten(1)  # Keras flattens channels-last
        return self.dense2(self.dense1(h).relu())


def torch_fashion(seed, epochs=5, batch_size=64):
    from mnist_cnn import load_images
    ((x_train, y_train), (x_test, y_test)), _ = load_images("fashion_mnist")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = TorchKerasCNN()
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
    x_train = torch.from_numpy(x_train.astype(np.float32)[:, None] / 255)
    y_train = torch.from_numpy(y_train.astype(np.int64))
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(len(x_train)))
        for first in range(0, len(order), batch_size):
            rows = order[first:first + batch_size]
            loss = TF.cross_entropy(model(x_train[rows]), y_train[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    images_per_s = epochs * len(x_train) / (time.perf_counter() - start)
    with torch.no_grad():
        predicted = model(torch.from_numpy(x_test.astype(np.float32)[:, None] / 255)).argmax(1)
    return float((predicted.numpy() == y_test).mean()), images_per_s


def pydl_fashion(seed):
    import mnist_cnn
    out = mnist_cnn.main(["--full", "--data", "fashion_mnist", "--seed", str(seed),
                          "--verbose", "0"])
    return out["test_accuracy"], out["images_per_s"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("task", choices=("mnist1d", "fashion"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn", "gru"])
    parser.add_argument("--steps", type=int, default=8000, help="mnist1d steps")
    parser.add_argument("--threads", type=int, help="threads for both (default: all cores)")
    parser.add_argument("--out", help="append the markdown table to this file")
    args = parser.parse_args(argv)
    import pydl
    if args.threads:
        pydl.set_num_threads(args.threads)
    torch.set_num_threads(pydl.get_num_threads())

    date = time.strftime("%Y-%m-%d")
    if args.task == "mnist1d":
        lines = [f"MNIST-1D, {args.steps} steps, test accuracy ({date}, "
                 f"{pydl.get_num_threads()} threads)", "",
                 "| model | seed | pydl | PyTorch |", "|---|---|---|---|"]
        for name in args.models:
            for seed in args.seeds:
                ours, theirs = pydl_mnist1d(name, seed, args.steps), torch_mnist1d(
                    name, seed, args.steps)
                lines.append(f"| {name} | {seed} | {ours:.4f} | {theirs:.4f} |")
                print(lines[-1], flush=True)
    else:
        lines = [f"Fashion-MNIST, Keras tutorial CNN, 5 epochs ({date}, "
                 f"{pydl.get_num_threads()} threads)", "",
                 "| seed | pydl | PyTorch | pydl images/s | PyTorch images/s |",
                 "|---|---|---|---|---|"]
        for seed in args.seeds:
            (ours, our_rate), (theirs, their_rate) = pydl_fashion(seed), torch_fashion(seed)
            lines.append(f"| {seed} | {ours:.4f} | {theirs:.4f} | {our_rate:.0f} | "
                         f"{their_rate:.0f} |")
            print(lines[-1], flush=True)
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n" + table)


if __name__ == "__main__":
    main()
