"""pydl.nn: neural-network building blocks (the stateless forms in pydl.nn.functional)."""
from pydl.nn import functional, utils
from pydl.nn.module import Module, ModuleList, Parameter, Sequential
from pydl.nn.rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell

__all__ = ["functional", "utils", "Module", "ModuleList", "Parameter", "Sequential",
           "RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"]
