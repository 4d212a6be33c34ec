"""to_categorical and the progress bar fit/evaluate/predict print."""
import sys
import time

import numpy as np


def to_categorical(y, num_classes=None, dtype="float32"):
    """One-hot rows for integer class labels y (any shape; a trailing axis of 1 is
    dropped, as Keras does)."""
    y = np.asarray(y)
    if y.dtype.kind not in "iub" and not (y.dtype.kind == "f" and np.all(y == np.round(y))):
        raise ValueError(f"to_categorical: y must hold integer class labels, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.ndim > 1 and y.shape[-1] == 1:
        y = y[..., 0]
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 0
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"to_categorical: labels must lie in [0, num_classes={num_classes}), "
                         f"got values from {y.min()} to {y.max()}")
    out = np.zeros(y.shape + (num_classes,), dtype=dtype)
    np.put_along_axis(out, y[..., None], 1, axis=-1)
    return out


def _format_value(value):
    return f"{value:.4e}" if value != 0 and abs(value) < 1e-3 else f"{value:.4f}"


def _format_duration(seconds):
    if seconds >= 3600:
        return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
    if seconds >= 60:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
    return f"{int(round(seconds))}s"


def _format_step_time(per_step):
    if per_step >= 1:
        return f"{per_step:.0f}s/step"
    if per_step >= 1e-3:
        return f"{per_step * 1e3:.0f}ms/step"
    return f"{per_step * 1e6:.0f}us/step"


class Progbar:
    """Keras's progress bar: on a terminal one line per epoch redrawn in place
    ("12/469 [>....] - ETA: 3s - loss: 0.2000"), ending with the time per step;
    otherwise (verbose=2, or output that is not a terminal) only the final line.

    target is the number of steps (None when unknown); `update(current, values)` takes
    the step count reached and a list of (name, value) pairs already averaged."""

    def __init__(self, target, width=30, verbose=1, stream=None):
        self.target, self.width, self.verbose = target, width, verbose
        self.stream = sys.stdout if stream is None else stream
        isatty = getattr(self.stream, "isatty", None)
        self.dynamic = verbose == 1 and bool(isatty and isatty())
        self.start = time.time()
        self._last_draw = 0.0
        self._last_length = 0

    def _bar(self, current):
        if self.target is None:
            return f"{current}/Unknown"
        digits = len(str(self.target))
        done = int(self.width * current / self.target) if self.target else self.width
        bar = "=" * done
        if current < self.target:
            bar = bar[:-1] + ">" if done else ">"
        return f"{current:>{digits}}/{self.target} [{bar:.<{self.width}}]"

    def update(self, current, values=(), finalize=None):
        if self.verbose == 0:
            return
        finalize = (self.target is not None and current >= self.target) if finalize is None \
            else finalize
        now = time.time()
        elapsed = now - self.start
        metrics = "".join(f" - {name}: {_format_value(value)}" for name, value in values)
        if finalize:
            per_step = elapsed / max(current, 1)
            line = (f"{self._bar(current)} - {_format_duration(elapsed)} "
                    f"{_format_step_time(per_step)}{metrics}")
            if self.dynamic:
                line = "\r" + line.ljust(self._last_length)
            self.stream.write(line + "\n")
            self.stream.flush()
            return
        if not self.dynamic or now - self._last_draw < 0.05:
            return
        self._last_draw = now
        eta = ""
        if self.target is not None and current:
            eta = f" - ETA: {_format_duration(elapsed / current * (self.target - current))}"
        line = f"{self._bar(current)}{eta}{metrics}"
        self.stream.write("\r" + line.ljust(self._last_length))
        self._last_length = len(line)
        self.stream.flush()


__all__ = ["to_categorical", "Progbar"]
