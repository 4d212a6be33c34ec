"""pydl.optim: optimizers whose updates run as fused kernels, and lr schedulers."""
from pydl.optim import lr_scheduler
from pydl.optim.adagrad import Adagrad
from pydl.optim.adam import Adam, AdamW
from pydl.optim.optimizer import Optimizer
from pydl.optim.rmsprop import RMSprop
from pydl.optim.sgd import SGD

__all__ = ["Optimizer", "SGD", "RMSprop", "Adagrad", "Adam", "AdamW", "lr_scheduler"]
