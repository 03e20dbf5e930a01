"""Spiking CNNs: the paper's MNIST network (Table 1) and a tiny one for the 8x8 digits demo."""

from __future__ import annotations

from torch import nn

from tcsnn.models._registry import register_model
from tcsnn.nn import SpikingConv2d, SpikingLinear, SpikingMaxPool2d


@register_model
def scnn_mnist(*, in_channels: int = 1, num_classes: int = 10, image_size: int = 28) -> nn.Sequential:
    """Paper Table 1: SCNN(5,32,2) -> SCNN(5,16,2) -> FC(num_classes); padding 2, 28 -> 14 -> 7.

    SCNN(k, c, p) is a k x k spiking convolution with c channels followed by p x p max-pooling (earliest
    spike).  About 21.5K weights for MNIST.
    """
    side = image_size // 4
    return nn.Sequential(
        SpikingConv2d(in_channels, 32, 5, padding=2),
        SpikingMaxPool2d(2),
        SpikingConv2d(32, 16, 5, padding=2),
        SpikingMaxPool2d(2),
        nn.Flatten(),
        SpikingLinear(16 * side * side, num_classes),
    )


@register_model
def scnn_tiny(*, in_channels: int = 1, num_classes: int = 10, image_size: int = 8, channels: int = 16) -> nn.Sequential:
    """A small spiking CNN for the 8x8 digits demo: SCNN(3, c, 2) -> FC(num_classes)."""
    side = image_size // 2
    return nn.Sequential(
        SpikingConv2d(in_channels, channels, 3, padding=1),
        SpikingMaxPool2d(2),
        nn.Flatten(),
        SpikingLinear(channels * side * side, num_classes),
    )
