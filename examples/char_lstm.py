"""A character-level LSTM language model on Python's own help texts, reporting its
validation loss against the corpus's unigram entropy and sampling text from it.

Data: `pydoc_data.topics` (ships with Python), all topics joined; the last 10% of the
characters is the validation text. The unigram entropy H = -sum p(c) log p(c) of the
training characters' frequencies, measured on the validation text as a cross-entropy,
is what a model that ignores context would score; an LSTM that learned anything is
well below it. Losses are in nats per character.

    python examples/char_lstm.py                  # 300 steps
    python examples/char_lstm.py --full           # 3000 steps, 2 layers of 256
"""
import argparse
import time

import numpy as np

import pydl
import pydl.nn as nn
import pydl.nn.functional as F


def load_corpus():
    from pydoc_data.topics import topics
    text = "\n\n".join(topics[name] for name in sorted(topics))
    # Characters seen fewer than 5 times become one rare-character symbol.
    chars, counts = np.unique(list(text), return_counts=True)
    kept = sorted(c for c, n in zip(chars, counts) if n >= 5)
    return text, kept


class CharLSTM(nn.Module):
    def __init__(self, vocab, embed=32, hidden=256, layers=1):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, tokens, state=None):
        output, state = self.lstm(self.embedding(tokens), state)
        return self.head(output), state


def batches(ids, batch, length, rng):
    """Random windows: inputs ids[s:s+length] and targets ids[s+1:s+length+1]."""
    starts = rng.integers(0, len(ids) - length - 1, batch)
    window = starts[:, None] + np.arange(length + 1)
    chunk = ids[window]
    return pydl.tensor(chunk[:, :-1]), pydl.tensor(chunk[:, 1:])


def validation_loss(model, ids, length, vocab):
    """Mean next-character loss over consecutive windows of the validation text."""
    n = (len(ids) - 1) // length
    x = ids[:n * length].reshape(n, length)
    y = ids[1:n * length + 1].reshape(n, length)
    model.eval()
    with pydl.no_grad():
        logits, _ = model(pydl.tensor(x))
        loss = F.cross_entropy(logits.reshape(-1, vocab), pydl.tensor(y.reshape(-1))).item()
    model.train()
    return loss


def sample(model, stoi, itos, prompt, count, temperature, rng):
    model.eval()
    out = list(prompt)
    with pydl.no_grad():
        logits, state = model(pydl.tensor(np.array([[stoi.get(c, 0) for c in prompt]])))
        for _ in range(count):
            p = (logits[0, -1] / temperature).softmax(dim=-1).numpy().astype(np.float64)
            index = int(rng.choice(len(p), p=p / p.sum()))
            out.append(itos[index])
            logits, state = model(pydl.tensor(np.array([[index]])), state)
    model.train()
    return "".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=64, help="characters per window")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--val-chars", type=int, default=20000,
                        help="validation characters scored (of the last 10%%)")
    parser.add_argument("--sample-chars", type=int, default=300)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--full", action="store_true",
                        help="3000 steps, 2 layers of 256, the whole validation text")
    args = parser.parse_args(argv)
    if args.full:
        args.steps, args.layers, args.hidden, args.val_chars = 3000, 2, 256, None
    pydl.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    text, kept = load_corpus()
    itos = ["\N{REPLACEMENT CHARACTER}"] + kept
    stoi = {c: i for i, c in enumerate(itos)}
    ids = np.array([stoi.get(c, 0) for c in text], np.int64)
    cut = int(0.9 * len(ids))
    train_ids, val_ids = ids[:cut], ids[cut:][:args.val_chars]
    vocab = len(itos)
    frequencies = np.bincount(train_ids, minlength=vocab) / len(train_ids)
    entropy = float(-(frequencies[frequencies > 0] * np.log(frequencies[frequencies > 0])).sum())
    unigram_val = float(-np.log(np.maximum(frequencies[val_ids], 1e-12)).mean())
    print(f"data: pydoc_data.topics, {len(train_ids)} training / {len(val_ids)} validation "
          f"characters, {vocab} symbols; unigram entropy {entropy:.4f} nats/char "
          f"(unigram model on validation {unigram_val:.4f})")

    model = CharLSTM(vocab, hidden=args.hidden, layers=args.layers)
    optimizer = pydl.optim.Adam(model.parameters(), lr=args.lr)
    losses = []
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        x, y = batches(train_ids, args.batch_size, args.length, rng)
        logits, _ = model(x)
        loss = F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if step % max(1, args.steps // 6) == 0 or step == args.steps:
            print(f"step {step:5d}  training loss {np.mean(losses[-20:]):.4f}")
    seconds = time.perf_counter() - start
    val = validation_loss(model, val_ids, args.length, vocab)
    print(f"validation loss {val:.4f} nats/char vs unigram entropy {entropy:.4f} "
          f"({val / entropy:.2f} of it; {val / np.log(2):.3f} bits/char; {seconds:.1f} s)")
    text_out = sample(model, stoi, itos, "The ", args.sample_chars, args.temperature, rng)
    print("sample:\n" + text_out)
    return {"losses": losses, "val_loss": val, "unigram_entropy": entropy,
            "unigram_val_loss": unigram_val, "sample": text_out}


if __name__ == "__main__":
    main()
