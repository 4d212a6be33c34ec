"""Soak: many training steps of the MNIST CNN (the README's example model, small
batch, random data) watching for leaks. After warm-up, resident memory must stay
flat (growth under 1%), and no step's graph may outlive it: a weakref census checks
that each step's loss tensor, its output and every graph node are freed by the next
step, and counts the live Tensor and Function objects every `--every` steps.

    python bench/soak.py --steps 20000          # prints the RSS curve and a verdict
"""
import argparse
import gc
import os
import resource
import sys
import time
import weakref

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import pydl  # noqa: E402
import pydl.nn as nn  # noqa: E402
import pydl.nn.functional as F  # noqa: E402
from pydl.autograd import Function  # noqa: E402


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def graph_nodes(root):
    """Every Function reachable from root's grad_fn."""
    nodes, stack = [], [root.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in nodes:
            continue
        nodes.append(node)
        stack.extend(t.grad_fn for t in (node.inputs or ()))
    return nodes


def live(kind):
    return sum(isinstance(o, kind) for o in gc.get_objects())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--every", type=int, default=1000)
    args = parser.parse_args()
    pydl.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3),
                          nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.5),
                          nn.Linear(1600, 10))
    opt = pydl.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    data = rng.standard_normal((64, args.batch, 1, 28, 28)).astype(np.float32)
    labels = rng.integers(0, 10, (64, args.batch))
    previous = []  # weak references to the last step's loss, output and graph nodes
    curve, leaked_steps = [], 0
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        x = pydl.tensor(data[step % 64])
        out = model(x)
        loss = F.cross_entropy(out, labels[step % 64])
        opt.zero_grad()
        loss.backward()
        opt.step()
        leaked_steps += any(ref() is not None for ref in previous)
        previous = [weakref.ref(loss), weakref.ref(out)] + \
            [weakref.ref(n) for n in graph_nodes(loss)]
        del x, out, loss
        if step % args.every == 0 or step == args.warmup:
            curve.append((step, rss_bytes(), live(pydl.Tensor), live(Function)))
            s, r, t, f = curve[-1]
            print(f"step {s:6d}  rss {r / 2**20:8.2f} MiB  tensors {t:5d}  nodes {f:4d}  "
                  f"{time.perf_counter() - start:7.1f} s", flush=True)
    after = [c for c in curve if c[0] >= args.warmup]
    # Growth is judged by the peak: pages the system reclaims later hide no leak.
    peak = max(c[1] for c in after)
    growth = (peak - after[0][1]) / after[0][1]
    print(f"RSS after warm-up: {after[0][1] / 2**20:.2f} -> {after[-1][1] / 2**20:.2f} MiB, "
          f"peak {peak / 2**20:.2f} MiB ({growth * 100:+.2f}% over warm-up); live tensors "
          f"{after[0][2]} -> {after[-1][2]}, nodes {after[0][3]} -> {after[-1][3]}; steps whose "
          f"graph outlived them: {leaked_steps}")
    ok = growth < 0.01 and leaked_steps == 0 and after[-1][2] <= after[0][2] and \
        after[-1][3] <= after[0][3]
    print("soak:", "flat" if ok else "LEAK")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
