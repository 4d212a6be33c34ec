"""Whole training steps, pydl beside PyTorch CPU, in one run.

    python bench/train.py                      # every model, 2 threads
    python bench/train.py --models mnist_cnn mlp --threads 1 2 --quick
    python bench/train.py --json out.json --compare bench/results/train-old.json

Each model is written once against the PyTorch API and built twice, with `nn` being
torch.nn or pydl.nn (pydl keeps PyTorch's names, layouts and state_dict keys), so the
two sides run the same layers; PyTorch's initial weights are copied into pydl. Both
train on the same synthetic batch of the real shapes with the same optimizer, batch
and thread count, timed in alternating blocks after a warm-up; the best block of
each side counts. For each model the script prints images (or sequences) per
second, the ratio, each side's peak resident memory (each side alone in a fresh
subprocess), and where pydl's step goes: milliseconds per kernel family, the time
outside kernels (Python, autograd, NumPy glue) and the caching allocator's misses
per step (each one a fresh allocation, whose pages are touched anew).

The Keras MNIST CNN also runs through `pydl.keras` `fit` on channels-last input
(mnist_fit), beside the same PyTorch loop.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


# ---- the models, each written once against the PyTorch API -----------------------------
def _tutorial_cnn(fw, channels, side):
    """The Keras tutorials' CNN (three 3x3 convolutions, two 2x2 max pools, Dense 64,
    Dense 10) in PyTorch's layout, on channels x side x side images."""
    nn = fw.nn
    flat = ((side - 2) // 2 - 2) // 2 - 2
    return nn.Sequential(
        nn.Conv2d(channels, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3), nn.ReLU(), nn.Flatten(),
        nn.Linear(64 * flat * flat, 64), nn.ReLU(), nn.Linear(64, 10))


def mnist_cnn(fw):
    """examples/mnist_cnn.py's network."""
    return _tutorial_cnn(fw, 1, 28)


def cifar_cnn(fw):
    """examples/cifar10_cnn.py's network."""
    return _tutorial_cnn(fw, 3, 32)


def mlp(fw):
    nn = fw.nn
    return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                         nn.Linear(512, 10))


VOCAB, TEXT_LENGTH, TEXT_CLASSES = 20000, 100, 4


def text_classifier(cell):
    """Embedding 20000x128, a 2-layer recurrent network of 128, the top layer's last
    output into a linear classifier."""
    def build(fw):
        nn = fw.nn

        class TextClassifier(nn.Module):
            def __init__(self):
                super().__init__()
                self.embedding = nn.Embedding(VOCAB, 128)
                self.rnn = getattr(nn, cell)(128, 128, num_layers=2, batch_first=True)
                self.fc = nn.Linear(128, TEXT_CLASSES)

            def forward(self, tokens):
                output, _ = self.rnn(self.embedding(tokens))
                return self.fc(output[:, -1])
        return TextClassifier()
    return build


ATTENTION_VOCAB, ATTENTION_LENGTH = 32, 16


def attention_classifier(fw):
    """examples/attention_classifier.py's model at its --full length."""
    nn = fw.nn

    class AttentionClassifier(nn.Module):
        def __init__(self, dim=64, heads=4):
            super().__init__()
            self.tokens = nn.Embedding(ATTENTION_VOCAB, dim)
            self.positions = nn.Embedding(ATTENTION_LENGTH, dim)
            self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
            self.norm = nn.LayerNorm(dim)
            self.head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 2))

        def forward(self, x):
            h = self.tokens(x) + self.positions(fw.arange(x.shape[1]))
            attended, _ = self.attention(h, h, h, need_weights=False)
            return self.head(self.norm(h + attended).mean(dim=1))
    return AttentionClassifier()


def _images(shape, classes):
    def make(batch, rng):
        return (rng.standard_normal((batch, *shape)).astype(np.float32),
                rng.integers(0, classes, batch))
    return make


def _tokens(vocab, length, classes):
    def make(batch, rng):
        return rng.integers(0, vocab, (batch, length)), rng.integers(0, classes, batch)
    return make


def _rmsprop(fw, params):  # Keras' RMSprop defaults, in PyTorch's names
    return fw.optim.RMSprop(params, lr=1e-3, alpha=0.9, eps=1e-7)


def _adam(fw, params):
    return fw.optim.Adam(params, lr=1e-3)


# name: (builder, data, batch, optimizer, unit)
MODELS = {
    "mnist_cnn": (mnist_cnn, _images((1, 28, 28), 10), 64, _rmsprop, "img"),
    "mnist_fit": (mnist_cnn, _images((1, 28, 28), 10), 64, _rmsprop, "img"),
    "cifar_cnn": (cifar_cnn, _images((3, 32, 32), 10), 128, _adam, "img"),
    "mlp": (mlp, _images((784,), 10), 64, _adam, "img"),
    "text_lstm": (text_classifier("LSTM"), _tokens(VOCAB, TEXT_LENGTH, TEXT_CLASSES), 64, _adam,
                  "seq"),
    "text_gru": (text_classifier("GRU"), _tokens(VOCAB, TEXT_LENGTH, TEXT_CLASSES), 64, _adam,
                 "seq"),
    "attention": (attention_classifier, _tokens(ATTENTION_VOCAB, ATTENTION_LENGTH, 2), 128, _adam,
                  "seq"),
}


# ---- one side's training step ---------------------------------------------------------
def make_step(fw, name, batch_data, torch_model=None):
    """A zero-argument training step of model `name` in framework `fw` (torch or pydl)
    on one fixed batch; with torch_model, pydl starts from its weights."""
    build, _, _, optimizer, _ = MODELS[name]
    model = build(fw)
    if torch_model is not None:
        model.load_state_dict({k: v.detach().numpy() for k, v in torch_model.state_dict().items()})
    x, y = (fw.tensor(a) for a in batch_data)
    opt = optimizer(fw, model.parameters())
    cross_entropy = fw.nn.functional.cross_entropy

    def step():
        loss = cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, step


def keras_fit_step(batch_data, torch_model, batches):
    """`fit` over `batches` copies of the batch through pydl.keras: the tutorial's
    Sequential model on channels-last images, with the torch model's weights."""
    from pydl import keras
    from pydl.keras import layers
    model = keras.models.Sequential([
        layers.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"), layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"), layers.Flatten(),
        layers.Dense(64, activation="relu"), layers.Dense(10)])
    if torch_model is not None:
        model.set_weights(_keras_weights(torch_model))
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = batch_data
    x = np.ascontiguousarray(np.repeat(x.transpose(0, 2, 3, 1), batches, axis=0))
    y = np.repeat(y, batches)

    def steps():
        model.fit(x, y, batch_size=len(batch_data[1]), epochs=1, shuffle=False, verbose=0)
    return model, steps


def _keras_weights(torch_model):
    """The torch CNN's weights in Keras' layouts: conv OIHW -> HWIO, and the first
    Dense's rows reordered from the channels-first flatten to the channels-last one."""
    weights = []
    for module in torch_model:
        if not hasattr(module, "weight"):
            continue
        w, b = module.weight.detach().numpy(), module.bias.detach().numpy()
        if w.ndim == 4:
            weights += [w.transpose(2, 3, 1, 0), b]
        elif w.shape[1] == 64 * 3 * 3:  # (out, C*H*W) -> ((H*W*C), out)
            weights += [w.reshape(-1, 64, 3, 3).transpose(2, 3, 1, 0).reshape(-1, w.shape[0]), b]
        else:
            weights += [w.T, b]
    return [np.ascontiguousarray(a) for a in weights]


# ---- timing ----------------------------------------------------------------------------
def _time_block(fn, seconds):
    """Calls fn until `seconds` have passed; returns (calls, elapsed)."""
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls, elapsed


def measure(name, threads, blocks, seconds, rng):
    import torch
    import pydl
    from pydl import profiler
    torch.set_num_threads(threads)
    pydl.set_num_threads(threads)
    _, make_data, batch, _, unit = MODELS[name]
    data = make_data(batch, rng)
    torch.manual_seed(0)
    torch_model, torch_step = make_step(torch, name, data)
    per_call = batch
    if name == "mnist_fit":
        fit_batches = 16
        pydl_model, pydl_step = keras_fit_step(data, torch_model, fit_batches)
        per_call = batch * fit_batches
    else:
        pydl_model, pydl_step = make_step(pydl, name, data, torch_model)
    for _ in range(3):  # warm-up: caches, thread pools, the allocator's free lists
        torch_step()
        pydl_step()
    best = {"pydl": 0.0, "torch": 0.0}
    torch_per_call = batch if name == "mnist_fit" else per_call
    for _ in range(blocks):
        for side, fn, items in (("pydl", pydl_step, per_call), ("torch", torch_step,
                                                                 torch_per_call)):
            calls, elapsed = _time_block(fn, seconds)
            best[side] = max(best[side], calls * items / elapsed)
    with profiler.profile() as prof:
        calls, _ = _time_block(pydl_step, seconds)
    steps = calls * (per_call // batch)
    families = {row["name"]: row["total"] * 1e3 / steps
                for row in prof.key_averages(group_by="family")}
    return {"model": name, "unit": unit, "batch": batch, "threads": threads,
            "pydl": best["pydl"], "torch": best["torch"], "ratio": best["pydl"] / best["torch"],
            "step_ms": prof.wall_seconds * 1e3 / steps, "families_ms": families,
            "outside_ms": prof.outside_seconds * 1e3 / steps,
            "alloc_misses_per_step": prof.allocator["misses"] / steps}


def peak_rss_mib(name, side, threads, seconds):
    """Peak resident memory of `side` training `name` alone in a fresh process."""
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'bench')!r}); import train; "
            f"train._rss_child({name!r}, {side!r}, {threads}, {seconds})")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT, timeout=600).stdout
    return float(out.strip().splitlines()[-1])


def _rss_child(name, side, threads, seconds):
    if side == "torch":
        import torch as fw
    else:
        import pydl as fw
    fw.set_num_threads(threads)
    _, make_data, batch, _, _ = MODELS[name]
    data = make_data(batch, np.random.default_rng(0))
    if name == "mnist_fit" and side == "pydl":
        _, step = keras_fit_step(data, None, 16)
    else:
        _, step = make_step(fw, name, data)
    _time_block(step, seconds)
    print(_peak_rss_kib() / 1024)


def _peak_rss_kib():
    """This process's peak resident set. VmHWM, not ru_maxrss: a child's ru_maxrss
    starts at its parent's size (the fork before exec counts), VmHWM only at exec."""
    if os.path.exists("/proc/self/status"):
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return float(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB elsewhere on Unix


# ---- report ----------------------------------------------------------------------------
def machine():
    import pydl
    import torch
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                  if line.startswith("model name")), platform.processor()) \
        if os.path.exists("/proc/cpuinfo") else platform.processor()
    return {"date": time.strftime("%Y-%m-%d"), "cpu": model, "cores": os.cpu_count(),
            "isa": pydl._C.isa(), "torch": torch.__version__, "numpy": np.__version__}


def table(rows):
    families = sorted({f for r in rows for f in r["families_ms"]})
    head = ["model", "threads", "pydl", "PyTorch", "ratio", "peak RSS pydl / torch",
            "pydl step ms", *[f"{f} ms" for f in families], "outside kernels ms",
            "alloc misses/step"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        rss = (f"{r['rss_pydl']:.0f} / {r['rss_torch']:.0f} MiB" if "rss_pydl" in r else "")
        cells = [r["model"], str(r["threads"]), f"{r['pydl']:,.0f} {r['unit']}/s",
                 f"{r['torch']:,.0f} {r['unit']}/s", f"{r['ratio']:.2f}x", rss,
                 f"{r['step_ms']:.2f}",
                 *[f"{r['families_ms'][f]:.2f}" if f in r["families_ms"] else "" for f in families],
                 f"{r['outside_ms']:.2f}", f"{r['alloc_misses_per_step']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compare(rows, old_path):
    old = {(r["model"], r["threads"]): r for r in json.loads(Path(old_path).read_text())["rows"]}
    lines = ["| model | threads | pydl before | pydl now | now/before | ratio before | ratio now |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        before = old.get((r["model"], r["threads"]))
        if before:
            lines.append(f"| {r['model']} | {r['threads']} | {before['pydl']:,.0f} | "
                         f"{r['pydl']:,.0f} | {r['pydl'] / before['pydl']:.2f}x | "
                         f"{before['ratio']:.2f}x | {r['ratio']:.2f}x |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--threads", nargs="+", type=int, default=[2])
    parser.add_argument("--blocks", type=int, default=5, help="alternating blocks per side")
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one block")
    parser.add_argument("--quick", action="store_true", help="3 blocks of 0.3 s, no RSS")
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-memory runs")
    parser.add_argument("--json", help="write the rows and the machine to this file")
    parser.add_argument("--compare", help="a --json file of an earlier run")
    args = parser.parse_args(argv)
    if args.quick:
        args.blocks, args.seconds, args.no_rss = 3, 0.3, True
    info = machine()
    print(f"{info['date']}, {info['cpu']}, {info['cores']} CPUs, pydl ISA {info['isa']}, "
          f"torch {info['torch']}, numpy {info['numpy']}")
    rng = np.random.default_rng(0)
    rows = []
    for threads in args.threads:
        for name in args.models:
            row = measure(name, threads, args.blocks, args.seconds, rng)
            if not args.no_rss:
                for side in ("pydl", "torch"):
                    row[f"rss_{side}"] = peak_rss_mib(name, side, threads, args.seconds)
            rows.append(row)
            print(f"{name} on {threads} threads: pydl {row['pydl']:,.0f} {row['unit']}/s, "
                  f"torch {row['torch']:,.0f}, {row['ratio']:.2f}x", flush=True)
    print()
    print(table(rows))
    if args.compare:
        print()
        print(compare(rows, args.compare))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
