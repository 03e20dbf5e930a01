"""Thin ``torch.nn`` wrappers over :mod:`tcsnn.functional`: they own parameters and call the core."""

from tcsnn.nn.branch import InceptionBlock, SpikingBranches, set_backend, spike_concat
from tcsnn.nn.encoders import DirectEncoder, InvertedEncoder, SpikeEncoder, make_encoder
from tcsnn.nn.introspect import raw_parameter, spiking_layers
from tcsnn.nn.layers import SpikingConv2d, SpikingLinear, SpikingMaxPool2d
from tcsnn.nn.network import SpikingNetwork, body_of, flat_layers

__all__ = [
    "DirectEncoder",
    "InceptionBlock",
    "InvertedEncoder",
    "SpikeEncoder",
    "SpikingBranches",
    "SpikingConv2d",
    "SpikingLinear",
    "SpikingMaxPool2d",
    "SpikingNetwork",
    "body_of",
    "flat_layers",
    "make_encoder",
    "raw_parameter",
    "set_backend",
    "spike_concat",
    "spiking_layers",
]
