"""Thin ``torch.nn`` wrappers over :mod:`tcsnn.functional`: they own parameters and call the core."""

from tcsnn.nn.encoders import DirectEncoder, InvertedEncoder, SpikeEncoder, make_encoder
from tcsnn.nn.introspect import raw_parameter, spiking_layers
from tcsnn.nn.layers import SpikingConv2d, SpikingLinear, SpikingMaxPool2d
from tcsnn.nn.network import SpikingNetwork, body_of, flat_layers

__all__ = [
    "DirectEncoder",
    "InvertedEncoder",
    "SpikeEncoder",
    "SpikingConv2d",
    "SpikingLinear",
    "SpikingMaxPool2d",
    "SpikingNetwork",
    "body_of",
    "flat_layers",
    "make_encoder",
    "raw_parameter",
    "spiking_layers",
]
