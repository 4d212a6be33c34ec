"""Keras learning-rate schedules (keras.optimizers.schedules): a schedule passed as an
optimizer's learning_rate gives the rate of each update from the number of updates
made so far.

>>> from pydl import keras
>>> decay = keras.optimizers.schedules.CosineDecay(0.1, decay_steps=100)
>>> [round(decay(step), 4) for step in (0, 50, 100, 200)]
[0.1, 0.05, 0.0, 0.0]
"""
import math


class LearningRateSchedule:
    """Base class: __call__(step) -> the learning rate, get_config() -> its arguments."""

    def __call__(self, step):
        raise NotImplementedError

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class CosineDecay(LearningRateSchedule):
    """initial_learning_rate * ((1 - alpha) * (1 + cos(pi * t)) / 2 + alpha), with t =
    min(step, decay_steps) / decay_steps: from the initial rate down to alpha times it."""

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0):
        if not isinstance(decay_steps, int) or decay_steps <= 0:
            raise ValueError(f"CosineDecay: decay_steps must be a positive integer, got "
                             f"{decay_steps!r}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps, self.alpha = decay_steps, float(alpha)

    def __call__(self, step):
        done = min(step, self.decay_steps) / self.decay_steps
        cosine = 0.5 * (1 + math.cos(math.pi * done))
        return self.initial_learning_rate * ((1 - self.alpha) * cosine + self.alpha)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "alpha": self.alpha}


class ExponentialDecay(LearningRateSchedule):
    """initial_learning_rate * decay_rate ** (step / decay_steps), the exponent
    rounded down when staircase.

    >>> from pydl import keras
    >>> keras.optimizers.schedules.ExponentialDecay(1.0, 10, 0.5, staircase=True)(15)
    0.5
    """

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False):
        if not decay_steps > 0:
            raise ValueError(f"ExponentialDecay: decay_steps must be positive, got "
                             f"{decay_steps!r}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps, self.decay_rate = decay_steps, float(decay_rate)
        self.staircase = bool(staircase)

    def __call__(self, step):
        exponent = step / self.decay_steps
        return self.initial_learning_rate * self.decay_rate ** (
            math.floor(exponent) if self.staircase else exponent)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase}


_BY_NAME = {"CosineDecay": CosineDecay, "ExponentialDecay": ExponentialDecay}


def serialize(schedule):
    return {"class_name": type(schedule).__name__, "config": schedule.get_config()}


def deserialize(config):
    if config.get("class_name") not in _BY_NAME:
        raise ValueError(f"Unknown learning-rate schedule {config!r}")
    return _BY_NAME[config["class_name"]].from_config(config["config"])


__all__ = ["LearningRateSchedule", "CosineDecay", "ExponentialDecay", "serialize",
           "deserialize"]
