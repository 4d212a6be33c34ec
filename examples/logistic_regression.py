"""Logistic regression written against pydl tensors directly: two parameters (w, b),
the loss as a formula, autograd for the gradient and a hand-written SGD step.

Data: two Gaussian classes in `--features` dimensions whose labels come from a known
linear rule with a little label noise (generated here, so it runs offline).

    python examples/logistic_regression.py            # small default run
    python examples/logistic_regression.py --full     # more samples and steps
"""
import argparse
import time

import numpy as np

import pydl


def make_data(n, features, rng):
    """x ~ N(0, I); y = 1 when x . w_true + b_true > 0, with 5% of labels flipped."""
    w_true = rng.standard_normal(features)
    b_true = 0.5
    x = rng.standard_normal((n, features)).astype(np.float32)
    y = (x @ w_true + b_true > 0).astype(np.float32)
    flip = rng.random(n) < 0.05
    y[flip] = 1 - y[flip]
    return x, y, w_true, b_true


def bce_with_logits(z, y):
    """mean over samples of -[y log s(z) + (1 - y) log(1 - s(z))], written in the
    overflow-free form max(z, 0) - y z + log(1 + exp(-|z|))."""
    return (z.relu() - y * z + (1 + (-z.abs()).exp()).log()).mean()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--steps", type=int, default=300, help="full-batch gradient steps")
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--full", action="store_true", help="20000 samples, 2000 steps")
    args = parser.parse_args(argv)
    if args.full:
        args.samples, args.steps = 20000, 2000

    pydl.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    x, y, w_true, b_true = make_data(args.samples, args.features, rng)
    split = int(0.8 * len(x))
    x_train, y_train = pydl.tensor(x[:split]), pydl.tensor(y[:split])
    x_test, y_test = pydl.tensor(x[split:]), pydl.tensor(y[split:])
    print(f"data: synthetic, {split} train / {len(x) - split} test samples, "
          f"{args.features} features, 5% label noise")

    w = pydl.zeros(args.features, requires_grad=True)
    b = pydl.zeros(1, requires_grad=True)
    start = time.perf_counter()
    losses = []
    for step in range(args.steps):
        loss = bce_with_logits(x_train @ w + b, y_train)
        w.grad = b.grad = None
        loss.backward()
        with pydl.no_grad():  # plain gradient descent: p <- p - lr * dL/dp
            w.sub_(args.lr * w.grad)
            b.sub_(args.lr * b.grad)
        losses.append(loss.item())
        if step % max(1, args.steps // 5) == 0:
            print(f"step {step:5d}  loss {losses[-1]:.4f}")
    elapsed = time.perf_counter() - start

    with pydl.no_grad():
        test_loss = bce_with_logits(x_test @ w + b, y_test).item()
        test_acc = ((x_test @ w + b > 0).float() == y_test).float().mean().item()
    direction = w.detach().numpy()
    cosine = float(direction @ w_true / (np.linalg.norm(direction) * np.linalg.norm(w_true)))
    print(f"final train loss {losses[-1]:.4f}  test loss {test_loss:.4f}  "
          f"test accuracy {test_acc:.4f}  cos(w, w_true) {cosine:.4f}  ({elapsed:.2f} s)")
    return {"losses": losses, "test_loss": test_loss, "test_accuracy": test_acc,
            "cosine": cosine}


if __name__ == "__main__":
    main()
