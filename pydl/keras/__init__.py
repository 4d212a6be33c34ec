"""pydl.keras: a Keras-style API (Sequential/Model, compile/fit/evaluate/predict,
callbacks) on pydl's own layers and kernels. A Keras script runs after changing its
imports to `from pydl import keras` / `from pydl.keras import layers`."""
from pydl.keras import (activations, callbacks, datasets, initializers, layers, losses,
                        metrics, models, optimizers, utils)
from pydl.keras.layers import Input, Layer
from pydl.keras.models import Model, Sequential, load_model

__all__ = ["activations", "callbacks", "datasets", "initializers", "layers", "losses",
           "metrics", "models", "optimizers", "utils", "Input", "Layer", "Model", "Sequential",
           "load_model"]
