"""MLP, CNN and GRU classifiers on MNIST-1D with the models and recipe of the MNIST-1D
paper (Adam, learning rate 1e-2, batch 100 taken in order through the training set,
8000 steps with --full; the default here is fewer).

Data: generated locally by the mnist1d package (pip install mnist1d) with its default
arguments: 4000 training and 1000 test signals of length 40, ten classes. The CNN's
1-D convolutions are 1xk nn.Conv2d kernels over a (N, 1, 1, 40) view of the signals.

(Named mnist1d_models.py, not mnist1d.py: a script's own directory comes first on
sys.path, so a script called mnist1d.py would shadow the mnist1d package.)

    python examples/mnist1d_models.py --model cnn        # 1000 steps
    python examples/mnist1d_models.py --model gru --full # 8000 steps
"""
import argparse
import time

import numpy as np

import pydl
import pydl.nn as nn
import pydl.nn.functional as F


class MLP(nn.Module):
    """Two hidden layers of 100, the second with a residual connection."""

    def __init__(self, length=40, hidden=100, classes=10):
        super().__init__()
        self.linear1 = nn.Linear(length, hidden)
        self.linear2 = nn.Linear(hidden, hidden)
        self.linear3 = nn.Linear(hidden, classes)

    def forward(self, x):
        h = F.relu(self.linear1(x))
        h = h + F.relu(self.linear2(h))
        return self.linear3(h)


class CNN(nn.Module):
    """Three stride-2 convolutions (25 channels, padding 1) and a linear head: 40 -> 19 ->
    10 -> 5 positions."""

    def __init__(self, channels=25, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, (1, 5), stride=(1, 2), padding=(0, 1))
        self.conv2 = nn.Conv2d(channels, channels, (1, 3), stride=(1, 2), padding=(0, 1))
        self.conv3 = nn.Conv2d(channels, channels, (1, 3), stride=(1, 2), padding=(0, 1))
        self.linear = nn.Linear(channels * 5, classes)

    def forward(self, x):
        h = x.reshape(x.shape[0], 1, 1, x.shape[1])
        for conv in (self.conv1, self.conv2, self.conv3):
            h = F.relu(conv(h))
        return self.linear(h.reshape(h.shape[0], -1))


class GRUClassifier(nn.Module):
    """A bidirectional GRU (6 hidden units each way) reads the signal one value per step;
    its outputs at all 40 steps, flattened, are classified."""

    def __init__(self, length=40, hidden=6, classes=10):
        super().__init__()
        self.gru = nn.GRU(1, hidden, batch_first=True, bidirectional=True)
        self.linear = nn.Linear(2 * hidden * length, classes)

    def forward(self, x):
        output, _ = self.gru(x.reshape(x.shape[0], x.shape[1], 1))
        return self.linear(output.reshape(output.shape[0], -1))


MODELS = {"mlp": MLP, "cnn": CNN, "gru": GRUClassifier}


def accuracy(model, x, y):
    with pydl.no_grad():
        return float((model(x).argmax(dim=1).numpy() == y).mean())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="cnn")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--num-samples", type=int, help="signals generated (default 5000)")
    parser.add_argument("--seed", type=int, default=0, help="initial weights")
    parser.add_argument("--full", action="store_true", help="the recipe's 8000 steps")
    args = parser.parse_args(argv)
    if args.full:
        args.steps = 8000
    pydl.manual_seed(args.seed)

    (x_train, y_train), (x_test, y_test) = pydl.datasets.mnist1d.load_data(
        num_samples=args.num_samples)
    print(f"data: MNIST-1D (mnist1d's local generator), {len(x_train)} train / {len(x_test)} "
          f"test signals of length {x_train.shape[1]}; model {args.model}")
    model = MODELS[args.model]()
    optimizer = pydl.optim.Adam(model.parameters(), lr=args.lr)
    x_test_t = pydl.tensor(x_test)
    losses = []
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        start_row = (step - 1) * args.batch_size % len(x_train)
        rows = slice(start_row, start_row + args.batch_size)
        loss = F.cross_entropy(model(pydl.tensor(x_train[rows])), pydl.tensor(y_train[rows]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % max(1, args.steps // 5) == 0:
            print(f"step {step:5d}  loss {np.mean(losses[-50:]):.4f}  test accuracy "
                  f"{accuracy(model, x_test_t, y_test):.4f}")
    test_acc = accuracy(model, x_test_t, y_test)
    print(f"{args.model}: test accuracy {test_acc:.4f} after {args.steps} steps "
          f"({time.perf_counter() - start:.1f} s)")
    return {"losses": losses, "test_accuracy": test_acc}


if __name__ == "__main__":
    main()
