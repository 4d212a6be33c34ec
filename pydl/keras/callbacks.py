"""Keras callbacks: hooks fit() calls at the start and end of training, epochs and
batches. `logs` holds the current values ('loss', metric names, 'val_...')."""
import csv
import os

import numpy as np


class Callback:
    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_batch_begin(self, batch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        pass

    on_train_batch_begin = on_batch_begin
    on_train_batch_end = on_batch_end


class CallbackList:
    """Calls every callback's hook in order."""

    def __init__(self, callbacks, model, params):
        self.callbacks = list(callbacks)
        for callback in self.callbacks:
            callback.set_model(model)
            callback.set_params(params)

    def call(self, hook, *args):
        for callback in self.callbacks:
            getattr(callback, hook)(*args)


class History(Callback):
    """history[name] = the list of per-epoch values; epoch = the epoch numbers run.
    While fit() knows its steps per epoch it also keeps each batch's running values
    (batch_history, at fractional epochs) for plot()."""

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []
        self.batch_history = {}  # name -> [(epoch + fraction done, running value)]

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_batch_end(self, batch, logs=None):
        steps = self.params.get("steps")
        if steps:
            position = self._epoch + (batch + 1) / steps
            for name, value in (logs or {}).items():
                self.batch_history.setdefault(name, []).append((position, value))

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for name, value in (logs or {}).items():
            self.history.setdefault(name, []).append(value)

    def plot(self, path=None, names=None):
        """A matplotlib Figure of the curves, one panel per metric with its val_ twin:
        each epoch's value as a point at the epoch's end, the running value within the
        epochs as a line, whole-epoch ticks. Saved to the image file `path` when given;
        returned either way (a notebook shows it).

        >>> history = History()
        >>> history.history = {"loss": [0.9, 0.5, 0.4], "val_loss": [1.0, 0.7, 0.6]}
        >>> history.epoch = [0, 1, 2]
        >>> [axis.get_title() for axis in history.plot().axes]
        ['loss']
        """
        try:
            import matplotlib  # noqa: F401  (first: it names the missing package)
            from matplotlib.figure import Figure
            from matplotlib.ticker import MaxNLocator
        except ImportError as error:
            raise ImportError("History.plot needs matplotlib: pip install 'pydl[plot]' "
                              "(or matplotlib)") from error
        names = names or [n for n in self.history if not n.startswith("val_")]
        figure = Figure(figsize=(5 * len(names), 4))
        axes = figure.subplots(1, len(names), squeeze=False)[0]
        ends = np.asarray(self.epoch or range(len(next(iter(self.history.values()), []))))
        for axis, name in zip(axes, names):
            for key in (name, "val_" + name):
                if key not in self.history:
                    continue
                points = axis.plot(ends[:len(self.history[key])] + 1, self.history[key], "o",
                                   label=key)
                if self.batch_history.get(key):
                    position, value = zip(*self.batch_history[key])
                    axis.plot(position, value, "-", linewidth=1, alpha=0.6,
                              color=points[0].get_color())
            axis.set_xlabel("epoch")
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
            axis.set_xlim(left=min(ends, default=0))
            axis.set_title(name)
            axis.legend()
        figure.tight_layout()
        if path is not None:
            figure.savefig(path)
        return figure


class _Monitor(Callback):
    """Tracks the best value of `monitor`: mode 'min', 'max', or 'auto' (max for
    accuracy-like names, min otherwise)."""

    def __init__(self, monitor, mode, min_delta=0.0):
        super().__init__()
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        if mode == "auto":
            mode = "max" if ("acc" in monitor or monitor.startswith("fmeasure")) else "min"
        self.monitor, self.mode, self.min_delta = monitor, mode, abs(min_delta)
        self.best = None

    def _reset_best(self):
        self.best = np.inf if self.mode == "min" else -np.inf

    def _current(self, logs):
        value = (logs or {}).get(self.monitor)
        if value is None:
            available = ", ".join(sorted(logs or {}))
            print(f"{type(self).__name__}: monitor {self.monitor!r} is not available; "
                  f"available: {available}")
        return value

    def _improved(self, value):
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta


class EarlyStopping(_Monitor):
    """Stops training once `monitor` has not improved by min_delta for `patience`
    epochs; restore_best_weights puts back the weights of the best epoch."""

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__(monitor, mode, min_delta)
        self.patience, self.verbose, self.baseline = patience, verbose, baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.stopped_epoch = 0

    def on_train_begin(self, logs=None):
        self.wait, self.stopped_epoch, self.best_weights, self.best_epoch = 0, 0, None, 0
        self._reset_best()
        if self.baseline is not None:
            self.best = self.baseline

    def on_epoch_end(self, epoch, logs=None):
        value = self._current(logs)
        if value is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
        self.wait += 1
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True
            if self.restore_best_weights and self.best_weights is not None:
                self.model.set_weights(self.best_weights)

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")


class ModelCheckpoint(_Monitor):
    """Saves the model (or its weights) after each epoch to filepath, formatted with
    epoch (1-based) and the logs, e.g. 'ckpt-{epoch:02d}-{val_loss:.2f}.keras';
    save_best_only saves only when `monitor` improves."""

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto", save_freq="epoch"):
        super().__init__(monitor, mode)
        if save_freq != "epoch":
            raise ValueError("ModelCheckpoint: only save_freq='epoch' is supported")
        self.filepath, self.verbose = os.fspath(filepath), verbose
        self.save_best_only, self.save_weights_only = save_best_only, save_weights_only
        self._reset_best()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_best_only:
            value = self._current(logs)
            if value is None or not self._improved(value):
                return
            if self.verbose > 0:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to "
                      f"{value:.5f}, saving model to {path}")
            self.best = value
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)


class LearningRateScheduler(Callback):
    """Sets the learning rate to schedule(epoch, lr) (or schedule(epoch)) before each
    epoch."""

    def __init__(self, schedule, verbose=0):
        super().__init__()
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        try:
            lr = self.schedule(epoch, optimizer.learning_rate)
        except TypeError:
            lr = self.schedule(epoch)
        if not isinstance(lr, (float, int, np.floating, np.integer)):
            raise ValueError(f"LearningRateScheduler: the schedule must return a number, got "
                             f"{lr!r}")
        optimizer.learning_rate = float(lr)
        if self.verbose > 0:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = self.model.optimizer.learning_rate


class ReduceLROnPlateau(_Monitor):
    """Multiplies the learning rate by `factor` (not below min_lr) once `monitor` has
    not improved for `patience` epochs, then waits `cooldown` epochs."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0):
        super().__init__(monitor, mode, min_delta)
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor must be < 1, got {factor}")
        self.factor, self.patience, self.verbose = factor, patience, verbose
        self.cooldown, self.min_lr = cooldown, min_lr

    def on_train_begin(self, logs=None):
        self.wait, self.cooldown_counter = 0, 0
        self._reset_best()

    def on_epoch_end(self, epoch, logs=None):
        value = self._current(logs)
        if logs is not None:
            logs["learning_rate"] = self.model.optimizer.learning_rate
        if value is None:
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(value):
            self.best, self.wait = value, 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                optimizer = self.model.optimizer
                old = optimizer.learning_rate
                new = max(old * self.factor, self.min_lr)
                if old > new:
                    optimizer.learning_rate = new
                    if self.verbose > 0:
                        print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate "
                              f"to {new}.")
                self.cooldown_counter, self.wait = self.cooldown, 0


class CSVLogger(Callback):
    """Writes one row per epoch (epoch, then the logs in sorted order) to filename."""

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename, self.separator, self.append = os.fspath(filename), separator, append

    def on_train_begin(self, logs=None):
        exists = self.append and os.path.exists(self.filename) and os.path.getsize(self.filename)
        self._file = open(self.filename, "a" if self.append else "w", newline="")
        self._writer, self._keys, self._header_written = None, None, bool(exists)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self._keys is None:
            self._keys = sorted(logs)
            self._writer = csv.writer(self._file, delimiter=self.separator)
            if not self._header_written:
                self._writer.writerow(["epoch", *self._keys])
        self._writer.writerow([epoch, *[logs.get(k, "NA") for k in self._keys]])
        self._file.flush()

    def on_train_end(self, logs=None):
        self._file.close()


class TerminateOnNaN(Callback):
    """Stops training at the end of the first batch whose loss is NaN or infinite."""

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            print(f"Batch {batch}: invalid loss, terminating training")
            self.model.stop_training = True

    on_train_batch_end = on_batch_end


__all__ = ["Callback", "History", "EarlyStopping", "ModelCheckpoint", "LearningRateScheduler",
           "ReduceLROnPlateau", "CSVLogger", "TerminateOnNaN"]
