"""A PyTorch-style TextClassifier (Embedding -> LSTM -> the mean and the maximum of
its states over the snippet -> Linear) that tells which Python documentation topic a
snippet of text is from.

Data: `pydoc_data.topics`, the help texts that ship with Python (offline). The
--topics longest topics are the classes; each topic's words are cut into blocks of
10 snippets, every fifth block for testing and the others for training (so no test
snippet overlaps a training one, and both sample the whole topic); snippets are
--length consecutive words. The vocabulary is the training words seen at least twice,
the rest mapping to <unk>. Pooling every state, rather than reading the last one,
lets each word vote for the topic wherever it stands.

    python examples/text_classifier.py            # 8 epochs
    python examples/text_classifier.py --full     # 20 epochs
"""
import argparse
import collections
import re
import time

import numpy as np

import pydl
import pydl.nn as nn
import pydl.nn.functional as F
from pydl.data import DataLoader, TensorDataset

UNK = 0


def tokenize(text):
    """Lower-case words, numbers and single punctuation marks."""
    return re.findall(r"[a-z_]+|\d+|[^\sa-z_\d]", text.lower())


def snippets(tokens, length, stride):
    return [tokens[i:i + length] for i in range(0, len(tokens) - length + 1, stride)]


def build_dataset(num_topics, length, min_count=2):
    from pydoc_data.topics import topics
    names = sorted(topics, key=lambda name: -len(topics[name]))[:num_topics]
    train, test = [], []
    for label, name in enumerate(names):
        tokens = tokenize(topics[name])
        block = 10 * length
        for start in range(0, len(tokens), block):
            words = tokens[start:start + block]
            if start // block % 5 == 4:
                test += [(s, label) for s in snippets(words, length, length)]
            else:
                train += [(s, label) for s in snippets(words, length, length // 2)]
    counts = collections.Counter(word for words, _ in train for word in words)
    vocab = {"<unk>": UNK}
    for word, count in counts.most_common():
        if count >= min_count:
            vocab[word] = len(vocab)

    def encode(pairs):
        ids = np.array([[vocab.get(w, UNK) for w in words] for words, _ in pairs], np.int64)
        return ids, np.array([label for _, label in pairs], np.int64)
    return names, vocab, encode(train), encode(test)


class TextClassifier(nn.Module):
    def __init__(self, vocab_size, num_classes, embed_dim=48, hidden=64, dropout=0.3):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * hidden, num_classes)

    def forward(self, tokens):                       # tokens: (N, T) int64
        states, _ = self.lstm(self.dropout(self.embedding(tokens)))   # (N, T, hidden)
        pooled = pydl.cat([states.mean(dim=1), states.amax(dim=1)], dim=1)
        return self.fc(self.dropout(pooled))


def evaluate(model, loader):
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
    parser.add_argument("--topics", type=int, default=6, help="number of classes")
    parser.add_argument("--length", type=int, default=32, help="words per snippet")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--limit", type=int, help="training snippets used")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--full", action="store_true", help="20 epochs")
    args = parser.parse_args(argv)
    if args.full:
        args.epochs = 20
    pydl.manual_seed(args.seed)

    names, vocab, (x_train, y_train), (x_test, y_test) = build_dataset(args.topics, args.length)
    if args.limit:
        keep = np.random.default_rng(args.seed).permutation(len(x_train))[:args.limit]
        x_train, y_train = x_train[keep], y_train[keep]
    print(f"data: pydoc_data.topics, classes {names}; {len(x_train)} train / {len(x_test)} "
          f"test snippets of {args.length} words; vocabulary {len(vocab)}")
    train = DataLoader(TensorDataset(x_train, y_train), batch_size=args.batch_size, shuffle=True)
    test = DataLoader(TensorDataset(x_test, y_test), batch_size=256)

    model = TextClassifier(len(vocab), len(names))
    optimizer = pydl.optim.Adam(model.parameters(), lr=args.lr)
    losses = []
    start = time.perf_counter()
    for epoch in range(args.epochs):
        total, batches = 0.0, 0
        for x, y in train:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            total, batches = total + loss.item(), batches + 1
        losses.append(total / batches)
        print(f"epoch {epoch + 1:3d}  loss {losses[-1]:.4f}  test accuracy "
              f"{evaluate(model, test):.4f}")
    test_acc = evaluate(model, test)
    chance = np.bincount(y_test).max() / len(y_test)
    print(f"test accuracy {test_acc:.4f} (majority class {chance:.4f}, "
          f"{time.perf_counter() - start:.1f} s)")
    return {"losses": losses, "test_accuracy": test_acc, "majority": chance,
            "classes": names}


if __name__ == "__main__":
    main()
