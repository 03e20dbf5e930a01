"""Thin ``torch.nn`` wrappers over :mod:`tcsnn.functional`: they own parameters and call the core."""

from tcsnn.nn.encoders import DirectEncoder, InvertedEncoder, SpikeEncoder
from tcsnn.nn.introspect import spiking_layers
from tcsnn.nn.layers import SpikingConv2d, SpikingLinear, SpikingMaxPool2d

__all__ = [
    "DirectEncoder",
    "InvertedEncoder",
    "SpikeEncoder",
    "SpikingConv2d",
    "SpikingLinear",
    "SpikingMaxPool2d",
    "spiking_layers",
]
