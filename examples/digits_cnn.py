"""A small PyTorch-style CNN (pydl.nn) on scikit-learn's 8x8 handwritten digits:
two 3x3 convolutions, a 2x2 max-pool, dropout and two linear layers, trained with
Adam through a DataLoader.

Data: scikit-learn's bundled digits (1797 images, pip install scikit-learn), split
80/20; pixel values 0..16 scaled to 0..1.

    python examples/digits_cnn.py                 # 10 epochs
    python examples/digits_cnn.py --full          # 30 epochs
"""
import argparse
import time

import numpy as np

import pydl
import pydl.nn as nn
import pydl.nn.functional as F
from pydl.data import DataLoader, TensorDataset


class DigitsCNN(nn.Module):
    def __init__(self, dropout=0.25):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2))                                   # (N, 64, 4, 4)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(64 * 4 * 4, 128), nn.ReLU(),
            nn.Linear(128, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


def accuracy(model, loader):
    model.eval()
    correct = total = 0
    with pydl.no_grad():
        for x, y in loader:
            correct += int((model(x).argmax(dim=1) == y).sum().item())
            total += len(y)
    model.train()
    return correct / total


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--full", action="store_true", help="30 epochs")
    args = parser.parse_args(argv)
    if args.full:
        args.epochs = 30
    pydl.manual_seed(args.seed)

    (x_train, y_train), (x_test, y_test) = pydl.datasets.digits.load_data(test_split=0.2)
    print(f"data: digits (scikit-learn's copy), {len(x_train)} train / {len(x_test)} test, "
          "8x8 images")
    to_images = lambda x: (x / 16.0).astype(np.float32)[:, None]  # noqa: E731  (N, 1, 8, 8)
    train = DataLoader(TensorDataset(to_images(x_train), y_train), batch_size=args.batch_size,
                       shuffle=True)
    test = DataLoader(TensorDataset(to_images(x_test), y_test), batch_size=256)

    model = DigitsCNN()
    optimizer = pydl.optim.Adam(model.parameters(), lr=args.lr)
    losses = []
    start = time.perf_counter()
    for epoch in range(args.epochs):
        total, batches = 0.0, 0
        for x, y in train:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, batches = total + loss.item(), batches + 1
        losses.append(total / batches)
        print(f"epoch {epoch + 1:3d}  loss {losses[-1]:.4f}")
    seconds = time.perf_counter() - start
    test_acc = accuracy(model, test)
    print(f"test accuracy {test_acc:.4f}  train accuracy {accuracy(model, train):.4f}  "
          f"({seconds:.1f} s)")
    return {"losses": losses, "test_accuracy": test_acc}


if __name__ == "__main__":
    main()
