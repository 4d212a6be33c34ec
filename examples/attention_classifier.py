"""A self-attention sequence classifier: token and position embeddings, one
nn.MultiheadAttention block with a residual connection and LayerNorm, mean pooling
and a Linear head.

Task (synthetic, generated here): does a sequence of --length tokens contain some
token twice? Half the sequences are distinct tokens; the other half repeat one token
at two random positions. A bag-of-tokens model cannot see the repeat; attention, where
each token can look for its own twin, can.

    python examples/attention_classifier.py       # 1000 steps
    python examples/attention_classifier.py --full
"""
import argparse
import time

import numpy as np

import pydl
import pydl.nn as nn
import pydl.nn.functional as F


def make_sequences(n, vocab, length, rng):
    x = np.stack([rng.permutation(vocab)[:length] for _ in range(n)])
    y = rng.integers(0, 2, n)
    for row in np.nonzero(y)[0]:
        i, j = rng.choice(length, 2, replace=False)
        x[row, j] = x[row, i]
    return x.astype(np.int64), y.astype(np.int64)


class AttentionClassifier(nn.Module):
    def __init__(self, vocab, length, dim=64, heads=4, classes=2):
        super().__init__()
        self.tokens = nn.Embedding(vocab, dim)
        self.positions = nn.Embedding(length, dim)
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, classes))

    def forward(self, x):                                   # x: (N, T) token ids
        h = self.tokens(x) + self.positions(pydl.arange(x.shape[1]))
        attended, _ = self.attention(h, h, h, need_weights=False)
        h = self.norm(h + attended)
        return self.head(h.mean(dim=1))                     # mean-pool over the sequence


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vocab", type=int, default=32)
    parser.add_argument("--length", type=int, default=8)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--test-size", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--full", action="store_true", help="2000 steps, length 16")
    args = parser.parse_args(argv)
    if args.full:
        args.steps, args.length = 2000, 16
    pydl.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    x_test, y_test = make_sequences(args.test_size, args.vocab, args.length, rng)
    print(f"data: synthetic repeated-token detection, vocabulary {args.vocab}, length "
          f"{args.length}, fresh batches of {args.batch_size} per step, {args.test_size} test")

    model = AttentionClassifier(args.vocab, args.length)
    optimizer = pydl.optim.Adam(model.parameters(), lr=args.lr)
    losses = []
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        x, y = make_sequences(args.batch_size, args.vocab, args.length, rng)
        loss = F.cross_entropy(model(pydl.tensor(x)), pydl.tensor(y))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % max(1, args.steps // 5) == 0:
            print(f"step {step:5d}  loss {np.mean(losses[-20:]):.4f}")
    model.eval()
    with pydl.no_grad():
        predicted = model(pydl.tensor(x_test)).argmax(dim=1).numpy()
    test_acc = float((predicted == y_test).mean())
    print(f"test accuracy {test_acc:.4f} (chance 0.5; {time.perf_counter() - start:.1f} s)")
    return {"losses": losses, "test_accuracy": test_acc}


if __name__ == "__main__":
    main()
