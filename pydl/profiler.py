"""Where the time goes: a profiler of pydl's kernel calls.

    with pydl.profiler.profile() as prof:
        loss = F.cross_entropy(model(x), y)
        loss.backward()
    print(prof.table())                      # per kernel and shape, slowest first
    print(prof.table(group_by="family"))     # per kernel family (gemm, conv, ...)
    prof.export_chrome_trace("step.json")    # open in https://ui.perfetto.dev

While a profile is active every compiled kernel call is timed (GPU kernels to
their end: the stream is synchronized after each call, so a profiled GPU run is
slower than an unprofiled one). Time not spent in kernels is Python, autograd,
NumPy/CuPy glue and allocation; the table reports it as "outside kernels".
`record_function(name)` marks a range of your own, shown in the Chrome trace and
summed in `prof.ranges()`. Outside a profile the kernels are called directly, at
no cost. `PYDL_DEBUG=1` prints each call instead (pydl._kernels).
"""
import json
import time
from collections import defaultdict

from pydl import _C, _kernels

__all__ = ["profile", "record_function", "kernel_family"]

# The kernel families: the csrc/ and cuda/ file that implements each kernel.
_FAMILY_PREFIXES = (
    ("gemm_bf16", "bf16"), ("int8", "quant"), ("gemm", "gemm"), ("conv2d", "conv"), ("max_pool2d", "pool"), ("avg_pool2d", "pool"),
    ("softmax_cross_entropy", "loss"), ("dropout", "dropout"), ("embedding", "embedding"),
    ("batch_norm", "norm"), ("layer_norm", "norm"), ("rnn", "rnn"))

_SORT_KEYS = {
    "total": lambda row: -row["total"],
    "mean": lambda row: -row["mean"],
    "calls": lambda row: -row["calls"],
    "name": lambda row: (row["name"], row["shapes"]),
}


def kernel_family(name):
    """The family (csrc/<family>.cpp) of a kernel name: 'conv2d_backward' -> 'conv'.

    >>> kernel_family("conv2d_backward"), kernel_family("adam_step"), kernel_family("relu_forward")
    ('conv', 'optim', 'elementwise')
    """
    for prefix, family in _FAMILY_PREFIXES:
        if name.startswith(prefix):
            return family
    return "optim" if name.endswith("_step") else "elementwise"


def _clip(text, width):
    return text if len(text) <= width else text[:width - 3] + "..."


class record_function:
    """Marks a named range (a model part, a training phase) inside a profile.

    >>> import pydl
    >>> with profile() as prof:
    ...     with record_function("forward"):
    ...         _ = pydl.randn(4, 4) @ pydl.randn(4, 4)
    >>> list(prof.ranges())
    ['forward']
    """

    _active = []  # the profiles now recording, innermost last

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        end = time.perf_counter()
        for prof in record_function._active:
            prof._ranges.append((self.name, self._start, end - self._start))
        return False


class profile:
    """Records every kernel call made inside the `with` block.

    >>> import pydl
    >>> with profile() as prof:
    ...     y = (pydl.randn(64, 32) @ pydl.randn(32, 16)).relu()
    >>> [row["name"] for row in prof.key_averages(sort_by="name")]
    ['gemm', 'relu_forward']
    >>> 0 < prof.kernel_seconds <= prof.wall_seconds
    True
    """

    def __init__(self):
        self.calls = []           # pydl._kernels.KernelCall, in call order
        self._ranges = []         # (name, start, seconds) of record_function ranges
        self.wall_seconds = 0.0
        self._start = None
        self.allocator = {}       # caching-allocator hits/misses during the block

    def __enter__(self):
        self._alloc_before = _C.allocator_stats()
        self._start = time.perf_counter()
        _kernels.add_recorder(self.calls.append)
        record_function._active.append(self)
        return self

    def __exit__(self, *exc):
        record_function._active.remove(self)
        _kernels.remove_recorder(self.calls.append)
        self.wall_seconds = time.perf_counter() - self._start
        after = _C.allocator_stats()
        self.allocator = {key: after[key] - self._alloc_before[key] for key in ("hits", "misses")}
        return False

    @property
    def kernel_seconds(self):
        """Seconds spent inside kernel calls."""
        return sum(call.seconds for call in self.calls)

    @property
    def outside_seconds(self):
        """Seconds of the block spent outside kernels (Python, autograd, allocation)."""
        return max(self.wall_seconds - self.kernel_seconds, 0.0)

    def ranges(self):
        """{name: total seconds} of the record_function ranges, in first-seen order."""
        totals = {}
        for name, _, seconds in self._ranges:
            totals[name] = totals.get(name, 0.0) + seconds
        return totals

    def key_averages(self, group_by="shape", sort_by="total"):
        """One dict per kernel name and input shapes (group_by="shape"), per kernel name
        ("name") or per kernel family ("family"): name, shapes, calls, total, mean
        (seconds), rate (GFLOP/s or GB/s over the group's time), share (of the wall
        time). sort_by: "total", "mean", "calls" or "name"."""
        keys = {"shape": lambda c: (c.name, c.shapes),
                "name": lambda c: (c.name, ""),
                "family": lambda c: (kernel_family(c.name), "")}
        if group_by not in keys:
            raise ValueError(f"group_by must be one of {sorted(keys)}, got {group_by!r}")
        if sort_by not in _SORT_KEYS:
            raise ValueError(f"sort_by must be one of {sorted(_SORT_KEYS)}, got {sort_by!r}")
        groups = defaultdict(list)
        for call in self.calls:
            groups[keys[group_by](call)].append(call)
        rows = []
        for (name, shapes), calls in groups.items():
            total = sum(c.seconds for c in calls)
            flops = [c.flops for c in calls if c.flops is not None]
            moved = [c.bytes for c in calls if c.bytes is not None]
            if flops and len(flops) == len(calls):
                rate = f"{sum(flops) / total / 1e9:.3g} GFLOP/s"
            elif moved and len(moved) == len(calls):
                rate = f"{sum(moved) / total / 1e9:.3g} GB/s"
            else:  # a family mixing gemm with byte-bound kernels has no single rate
                rate = ""
            rows.append({"name": name, "shapes": shapes, "calls": len(calls), "total": total,
                         "mean": total / len(calls), "rate": rate,
                         "share": total / self.wall_seconds if self.wall_seconds else 0.0})
        rows.sort(key=_SORT_KEYS[sort_by])
        return rows

    def table(self, group_by="shape", sort_by="total", row_limit=None):
        """The key averages as an aligned text table, then the kernel total, the time
        outside kernels and the wall time of the block."""
        rows = self.key_averages(group_by, sort_by)[:row_limit]
        header = ("kernel", "shapes", "calls", "total ms", "mean ms", "rate", "% wall")
        lines = [(r["name"], _clip(r["shapes"], 56), str(r["calls"]), f"{r['total'] * 1e3:.3f}",
                  f"{r['mean'] * 1e3:.3f}", r["rate"], f"{100 * r['share']:.1f}") for r in rows]
        wall = self.wall_seconds or 1e-12
        footer = [("kernels", "", str(len(self.calls)), f"{self.kernel_seconds * 1e3:.3f}", "", "",
                   f"{100 * self.kernel_seconds / wall:.1f}"),
                  ("outside kernels", "Python, autograd, allocation", "",
                   f"{self.outside_seconds * 1e3:.3f}", "", "",
                   f"{100 * self.outside_seconds / wall:.1f}"),
                  ("wall", "", "", f"{self.wall_seconds * 1e3:.3f}", "", "", "100.0")]
        widths = [max(len(row[i]) for row in [header, *lines, *footer]) for i in range(7)]

        def fmt(row):
            cells = [row[i].ljust(widths[i]) if i < 2 else row[i].rjust(widths[i]) for i in range(7)]
            return "  ".join(cells).rstrip()
        rule = "  ".join("-" * w for w in widths)
        return "\n".join([fmt(header), rule, *map(fmt, lines), rule, *map(fmt, footer)])

    def export_chrome_trace(self, path):
        """Writes the calls and ranges in the Chrome trace event format (complete
        events, microseconds), which Perfetto and chrome://tracing open."""
        origin = self._start or 0.0
        events = [{"name": name, "cat": "range", "ph": "X", "pid": 0, "tid": 0,
                   "ts": (start - origin) * 1e6, "dur": seconds * 1e6}
                  for name, start, seconds in self._ranges]
        for call in self.calls:
            args = {"shapes": call.shapes, "rate": call.rate}
            if call.flags:
                args["flags"] = call.flags.strip()
            events.append({"name": call.name, "cat": kernel_family(call.name), "ph": "X",
                           "pid": 0, "tid": 1, "ts": (call.start - origin) * 1e6,
                           "dur": call.seconds * 1e6, "args": args})
        trace = {"traceEvents": events, "displayTimeUnit": "ms",
                 "otherData": {"wall_ms": self.wall_seconds * 1e3}}
        with open(path, "w") as f:
            json.dump(trace, f)
