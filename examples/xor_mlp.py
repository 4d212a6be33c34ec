"""XOR with a two-layer perceptron written against pydl tensors directly: weight
matrices as leaf tensors, tanh and sigmoid by hand, autograd, and pydl.optim.SGD.

XOR is the classic problem a single linear layer cannot solve; one hidden layer can.
Trains on the four corners plus (with --noise) jittered copies of them.

    python examples/xor_mlp.py
"""
import argparse

import numpy as np

import pydl

CORNERS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
TARGETS = np.array([0, 1, 1, 0], np.float32)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=500, help="full-batch steps")
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--copies", type=int, default=32, help="jittered copies per corner")
    parser.add_argument("--noise", type=float, default=0.1, help="std of the jitter")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--full", action="store_true", help="2000 steps")
    args = parser.parse_args(argv)
    if args.full:
        args.epochs = 2000

    pydl.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    x = np.repeat(CORNERS, args.copies, axis=0)
    x = x + args.noise * rng.standard_normal(x.shape).astype(np.float32)
    y = np.repeat(TARGETS, args.copies)[:, None]
    x, y = pydl.tensor(x), pydl.tensor(y)
    print(f"data: XOR, 4 corners x {args.copies} copies with N(0, {args.noise}^2) jitter")

    # Glorot-style scales so tanh starts in its linear range.
    w1 = (pydl.randn(2, args.hidden) * (1 / np.sqrt(2))).requires_grad_()
    b1 = pydl.zeros(args.hidden, requires_grad=True)
    w2 = (pydl.randn(args.hidden, 1) * (1 / np.sqrt(args.hidden))).requires_grad_()
    b2 = pydl.zeros(1, requires_grad=True)
    params = [w1, b1, w2, b2]
    optimizer = pydl.optim.SGD(params, lr=args.lr, momentum=args.momentum)

    def forward(inputs):
        return ((inputs @ w1 + b1).tanh() @ w2 + b2).sigmoid()

    losses = []
    for epoch in range(args.epochs):
        p = forward(x)
        # binary cross-entropy, clamped away from log(0)
        loss = -(y * p.clamp(1e-7, 1).log() + (1 - y) * (1 - p).clamp(1e-7, 1).log()).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if epoch % max(1, args.epochs // 5) == 0:
            print(f"epoch {epoch:5d}  loss {losses[-1]:.4f}")

    with pydl.no_grad():
        corner_probs = forward(pydl.tensor(CORNERS)).numpy()[:, 0]
        accuracy = ((forward(x) > 0.5).float() == y).float().mean().item()
    for corner, prob in zip(CORNERS, corner_probs):
        print(f"  xor{tuple(int(c) for c in corner)} -> {prob:.3f}")
    print(f"final loss {losses[-1]:.4f}  training accuracy {accuracy:.4f}")
    return {"losses": losses, "corner_probs": corner_probs, "accuracy": accuracy}


if __name__ == "__main__":
    main()
