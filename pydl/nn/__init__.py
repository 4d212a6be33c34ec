"""pydl.nn: neural-network building blocks (the stateless forms in pydl.nn.functional)."""
from pydl.nn import functional
from pydl.nn.conv import Conv2d
from pydl.nn.flatten import Flatten
from pydl.nn.module import Module, ModuleList, Parameter, Sequential
from pydl.nn.pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d

__all__ = ["functional", "Module", "ModuleList", "Parameter", "Sequential",
           "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Flatten"]
