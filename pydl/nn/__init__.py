"""pydl.nn: neural-network building blocks (the stateless forms in pydl.nn.functional)."""
from pydl.nn import functional, init, utils
from pydl.nn.activation import (ELU, GELU, Hardtanh, LeakyReLU, LogSoftmax, ReLU, ReLU6, Sigmoid,
                                SiLU, Softmax, Softplus, Tanh)
from pydl.nn.attention import MultiheadAttention
from pydl.nn.conv import Conv1d, Conv2d, ConvTranspose2d
from pydl.nn.dropout import Dropout, Dropout2d
from pydl.nn.embedding import Embedding
from pydl.nn.flatten import Flatten, Unflatten
from pydl.nn.linear import Identity, Linear
from pydl.nn.loss import (BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, L1Loss,
                          MSELoss, NLLLoss, SmoothL1Loss)
from pydl.nn.module import Module, ModuleDict, ModuleList, Parameter, Sequential
from pydl.nn.normalization import BatchNorm1d, BatchNorm2d, LayerNorm
from pydl.nn.pooling import AdaptiveAvgPool2d, AvgPool1d, AvgPool2d, MaxPool1d, MaxPool2d
from pydl.nn.rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from pydl.nn.upsampling import Upsample
from pydl.nn.sync_batchnorm import SyncBatchNorm
from pydl.nn import parallel

__all__ = ["functional", "init", "utils", "Module", "ModuleList", "Parameter", "Sequential",
           "Identity", "Linear", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "Softmax",
           "LogSoftmax", "Dropout", "Embedding", "BatchNorm1d", "BatchNorm2d", "LayerNorm",
           "MultiheadAttention", "CrossEntropyLoss", "NLLLoss", "MSELoss", "L1Loss", "BCELoss",
           "BCEWithLogitsLoss", "RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell",
           "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Flatten"]
__all__ += ["SiLU", "ELU", "Dropout2d", "Conv1d", "ConvTranspose2d", "MaxPool1d", "AvgPool1d",
            "Upsample", "Softplus", "Hardtanh", "ReLU6", "HuberLoss", "SmoothL1Loss", "Unflatten",
            "ModuleDict"]
__all__ += ["SyncBatchNorm", "parallel"]
