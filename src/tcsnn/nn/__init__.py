"""Thin ``torch.nn`` wrappers over :mod:`tcsnn.functional`: they own parameters and call the core."""

from tcsnn.nn.layers import (
    DirectEncoder,
    InvertedEncoder,
    SpikeEncoder,
    SpikingConv2d,
    SpikingLinear,
    SpikingMaxPool2d,
)

__all__ = ["DirectEncoder", "InvertedEncoder", "SpikingConv2d", "SpikingLinear", "SpikingMaxPool2d", "SpikeEncoder"]
