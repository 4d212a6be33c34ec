"""Sparsity against accuracy: the Fashion-MNIST CNN (examples/mnist_cnn.py's network, as
pydl.nn layers) trained, then pruned with pydl.nn.utils.prune, before and after
fine-tuning.

    python bench/pruning.py [--out bench/results/pruning.md]

Training: Adam (lr 1e-3), batch 64, --epochs over the first --train-limit training images
of the real Fashion-MNIST (Debian's dataset-fashion-mnist, or pydl's cache). Each pruning
starts from the trained weights:
  global:  global_unstructured over every conv and linear weight, L1 (the given fraction
           of all those weights, wherever they are);
  channel: ln_structured (L2, dim=0) on each conv and hidden linear layer: that fraction
           of each layer's output channels/units (the 10-class output layer is kept).
Fine-tuning: --finetune-epochs over --finetune-limit images, the masks held by the
pruning hooks. Accuracy over the whole 10000-image test set; sparsity is the zero
fraction over all conv and linear weights.
"""
import argparse
import datetime
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

import pydl  # noqa: E402
import pydl.nn.functional as F  # noqa: E402
from pydl.nn.utils import prune  # noqa: E402
from mnist_cnn import load_images, nn_network  # noqa: E402

AMOUNTS = (0.0, 0.5, 0.7, 0.9)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def as_inputs(images):
    return (images.astype(np.float32) / 255)[:, None]


def train(model, x, y, epochs, seed):
    opt = pydl.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(seed)
    model.train()
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), 64):
            batch = order[start:start + 64]
            loss = F.cross_entropy(model(pydl.tensor(x[batch])), pydl.tensor(y[batch]))
            opt.zero_grad()
            loss.backward()
            opt.step()


def accuracy(model, x, y):
    model.eval()
    correct = 0
    with pydl.no_grad():
        for start in range(0, len(x), 500):
            logits = model(pydl.tensor(x[start:start + 500])).numpy()
            correct += int((logits.argmax(1) == y[start:start + 500]).sum())
    return correct / len(x)


def weighted_layers(model):
    return [m for m in model.modules() if isinstance(m, (pydl.nn.Conv2d, pydl.nn.Linear))]


def sparsity(model):
    weights = [m.weight.detach().numpy() for m in weighted_layers(model)]
    return sum(int((w == 0).sum()) for w in weights) / sum(w.size for w in weights)


def pruned(base_state, method, amount):
    model = nn_network()
    model.load_state_dict(base_state)
    layers = weighted_layers(model)
    if method == "global":
        prune.global_unstructured([(m, "weight") for m in layers],
                                  pruning_method=prune.L1Unstructured, amount=amount)
    else:
        for m in layers[:-1]:
            prune.ln_structured(m, "weight", amount, n=2, dim=0)
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-limit", type=int, default=30000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--finetune-limit", type=int, default=10000)
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the markdown table to this file")
    args = parser.parse_args(argv)
    ((x_train, y_train), (x_test, y_test)), source = load_images("fashion_mnist")
    x_train, y_train = as_inputs(x_train[:args.train_limit]), y_train[:args.train_limit]
    x_test, y_test = as_inputs(x_test), y_test
    start = time.perf_counter()
    pydl.manual_seed(args.seed)
    model = nn_network()
    train(model, x_train, y_train, args.epochs, args.seed)
    base_state = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    rows = []
    for method in ("global", "channel"):
        for amount in AMOUNTS:
            model = pruned(base_state, method, amount)
            before = accuracy(model, x_test, y_test)
            zeros = sparsity(model)
            train(model, x_train[:args.finetune_limit], y_train[:args.finetune_limit],
                  args.finetune_epochs, args.seed + 1)
            after = accuracy(model, x_test, y_test)
            assert abs(sparsity(model) - zeros) < 1e-12, "fine-tuning changed the sparsity"
            rows.append((method, amount, zeros, before, after))
            print(f"{method:8s} {amount:.0%}: sparsity {zeros:.3f}  accuracy {before:.4f} -> "
                  f"{after:.4f} fine-tuned", flush=True)
    minutes = (time.perf_counter() - start) / 60
    lines = [
        "# Pruning: sparsity against accuracy",
        "",
        f"`python bench/pruning.py` on {datetime.date.today()}, {cpu_name()} "
        f"({pydl.get_num_threads()} threads, a shared machine), {minutes:.1f} minutes. "
        f"Data: {source}.",
        f"The Fashion-MNIST CNN (examples/mnist_cnn.py's network) trained {args.epochs} epochs on "
        f"{args.train_limit} images (Adam, lr 1e-3, batch 64), pruned, then fine-tuned "
        f"{args.finetune_epochs} epoch on {args.finetune_limit} images with the masks held. "
        "Test accuracy on all 10000 test images. *global*: global_unstructured L1 over all "
        "conv and linear weights; *channel*: ln_structured (L2, dim=0) of that fraction of "
        "each conv/hidden linear layer's output channels. Sparsity: zero fraction of all "
        "conv and linear weights.",
        "",
        "| pruning | amount | sparsity | accuracy, pruned | accuracy, fine-tuned |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {m} | {a:.0%} | {z:.3f} | {b:.4f} | {f:.4f} |" for m, a, z, b, f in rows]
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        Path(args.out).write_text(table)
    return rows


if __name__ == "__main__":
    main()
