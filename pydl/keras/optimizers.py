"""Keras optimizers: Keras's names and defaults over pydl.optim's fused updates.

A Keras optimizer is created before the model has weights, so each object holds its
configuration and makes the pydl.optim optimizer on the first training step. The
updates are PyTorch's formulas (eps added to the root of the second moment), which
differ from Keras's only at the scale of epsilon (1e-7). learning_rate may be a
schedule (keras.optimizers.schedules), which sets the rate before each update.
"""
from pydl import optim
from pydl.keras import schedules


class Optimizer:
    def __init__(self, learning_rate, **options):
        if isinstance(learning_rate, dict):  # a saved schedule
            learning_rate = schedules.deserialize(learning_rate)
        self.schedule = learning_rate if isinstance(
            learning_rate, schedules.LearningRateSchedule) else None
        self._learning_rate = float(self.schedule(0) if self.schedule else learning_rate)
        self._options = options
        self._optimizer = None  # the pydl.optim optimizer, once the weights exist
        self.iterations = 0

    @property
    def learning_rate(self):
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        self._learning_rate = float(value)
        if self._optimizer is not None:
            for group in self._optimizer.param_groups:
                group["lr"] = self._learning_rate

    lr = learning_rate

    def build(self, weights):
        """Makes the update rule over `weights` (the model's trainable parameters)."""
        self._optimizer = self._make(list(weights))

    @property
    def built(self):
        return self._optimizer is not None

    def step(self):
        if self.schedule is not None:
            self.learning_rate = self.schedule(self.iterations)
        self._optimizer.step()
        self.iterations += 1

    def zero_grad(self):
        self._optimizer.zero_grad()

    def state_dict(self):
        return self._optimizer.state_dict()

    def load_state_dict(self, state):
        self._optimizer.load_state_dict(state)
        self.learning_rate = self._learning_rate

    def get_config(self):
        rate = schedules.serialize(self.schedule) if self.schedule else self._learning_rate
        return {"learning_rate": rate, **self._options}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class SGD(Optimizer):
    """v = momentum v - lr g; p += v (or p += momentum v - lr g with nesterov)."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False):
        super().__init__(learning_rate, momentum=momentum, nesterov=nesterov)

    def _make(self, weights):
        return optim.SGD(weights, lr=self._learning_rate, momentum=self._options["momentum"],
                         nesterov=self._options["nesterov"])


class RMSprop(Optimizer):
    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7,
                 centered=False):
        super().__init__(learning_rate, rho=rho, momentum=momentum, epsilon=epsilon,
                         centered=centered)

    def _make(self, weights):
        o = self._options
        return optim.RMSprop(weights, lr=self._learning_rate, alpha=o["rho"], eps=o["epsilon"],
                             momentum=o["momentum"], centered=o["centered"])


class Adam(Optimizer):
    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False):
        super().__init__(learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                         amsgrad=amsgrad)

    def _make(self, weights):
        o = self._options
        return optim.Adam(weights, lr=self._learning_rate, betas=(o["beta_1"], o["beta_2"]),
                          eps=o["epsilon"], amsgrad=o["amsgrad"])


class AdamW(Optimizer):
    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7, amsgrad=False):
        super().__init__(learning_rate, weight_decay=weight_decay, beta_1=beta_1,
                         beta_2=beta_2, epsilon=epsilon, amsgrad=amsgrad)

    def _make(self, weights):
        o = self._options
        return optim.AdamW(weights, lr=self._learning_rate, betas=(o["beta_1"], o["beta_2"]),
                           eps=o["epsilon"], weight_decay=o["weight_decay"],
                           amsgrad=o["amsgrad"])


class Adagrad(Optimizer):
    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7):
        super().__init__(learning_rate, initial_accumulator_value=initial_accumulator_value,
                         epsilon=epsilon)

    def _make(self, weights):
        o = self._options
        return optim.Adagrad(weights, lr=self._learning_rate, eps=o["epsilon"],
                             initial_accumulator_value=o["initial_accumulator_value"])


_BY_NAME = {"sgd": SGD, "rmsprop": RMSprop, "adam": Adam, "adamw": AdamW, "adagrad": Adagrad}


def get(identifier):
    """An optimizer from a name ('adam', 'rmsprop', ...) with Keras's defaults, or the
    optimizer object itself."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    raise ValueError(f"Unknown optimizer {identifier!r}; expected one of {sorted(_BY_NAME)} or "
                     "a pydl.keras.optimizers object")


__all__ = ["Optimizer", "SGD", "RMSprop", "Adam", "AdamW", "Adagrad", "get", "schedules"]
