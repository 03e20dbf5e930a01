"""Spiking CNNs: the paper's MNIST network (Table 1) and a tiny one for the 8x8 digits demo.

Each is built from a layer list (like torchvision's VGG ``cfgs``): ``(channels, kernel)`` is a spiking
convolution with "same" padding, ``"M"`` a 2 x 2 spiking max-pool (earliest spike).  The model is
``encoder -> features -> flatten -> classifier`` (:class:`tcsnn.nn.SpikingNetwork`), so the neurons are named
``features.0``, ``features.2``, ..., ``classifier.0``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from tcsnn.models._registry import register_model
from tcsnn.nn import SpikingConv2d, SpikingLinear, SpikingMaxPool2d, SpikingNetwork, make_encoder

#: One entry per layer: (out_channels, kernel_size) for a spiking convolution, "M" for 2 x 2 max-pooling.
LayerSpec = tuple[int, int] | str

#: Paper Table 1: SCNN(5,32,2) -> SCNN(5,16,2) -> FC.
SCNN_MNIST: tuple[LayerSpec, ...] = ((32, 5), "M", (16, 5), "M")
POOL = 2


def make_features(cfg: Sequence[LayerSpec], in_channels: int) -> tuple[nn.Sequential, int, int]:
    """``(features, out_channels, downsampling)`` of a layer list: convolutions keep the size, pools halve it."""
    layers: list[nn.Module] = []
    channels, down = in_channels, 1
    for spec in cfg:
        if spec == "M":
            layers.append(SpikingMaxPool2d(POOL))
            down *= POOL
        elif isinstance(spec, tuple) and len(spec) == 2:
            out, kernel = spec
            layers.append(SpikingConv2d(channels, out, kernel, padding=kernel // 2))
            channels = out
        else:
            raise ValueError(f"bad layer spec {spec!r}: expected (channels, kernel) or 'M'")
    return nn.Sequential(*layers), channels, down


def spiking_cnn(
    cfg: Sequence[LayerSpec], *, in_channels: int, image_size: int, num_classes: int, encoding: str, alpha: float
) -> SpikingNetwork:
    """``encoder -> features (cfg) -> flatten -> classifier (one spiking FC layer)``."""
    features, channels, down = make_features(cfg, in_channels)
    if image_size % down:
        raise ValueError(f"image_size {image_size} is not divisible by the features' downsampling {down}")
    side = image_size // down
    return SpikingNetwork(make_encoder(encoding, alpha), {
        "features": features,
        "flatten": nn.Flatten(),
        "classifier": nn.Sequential(SpikingLinear(channels * side * side, num_classes)),
    })


@register_model
def scnn_mnist(
    *, in_channels: int = 1, num_classes: int = 10, image_size: int = 28, encoding: str = "inverted",
    alpha: float = 3.0,
) -> SpikingNetwork:
    """Paper Table 1: SCNN(5,32,2) -> SCNN(5,16,2) -> FC(num_classes); padding 2, 28 -> 14 -> 7.

    SCNN(k, c, p) is a k x k spiking convolution with c channels followed by p x p max-pooling (earliest
    spike).  About 21.5K weights for MNIST.  Input: t = alpha (1 - p), alpha = 3 (section 4.1).
    """
    return spiking_cnn(SCNN_MNIST, in_channels=in_channels, image_size=image_size, num_classes=num_classes,
                       encoding=encoding, alpha=alpha)


@register_model
def scnn_tiny(
    *, in_channels: int = 1, num_classes: int = 10, image_size: int = 8, channels: int = 16,
    encoding: str = "inverted", alpha: float = 1.0,
) -> SpikingNetwork:
    """A small spiking CNN for the 8x8 digits demo: SCNN(3, c, 2) -> FC(num_classes)."""
    return spiking_cnn(((channels, 3), "M"), in_channels=in_channels, image_size=image_size,
                       num_classes=num_classes, encoding=encoding, alpha=alpha)
