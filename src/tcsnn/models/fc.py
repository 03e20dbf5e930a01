"""Fully-connected spiking networks: ``encoder -> flatten -> classifier`` with neurons ``classifier.0``, ..."""

from __future__ import annotations

from torch import nn

from tcsnn.models._registry import register_model
from tcsnn.nn import SpikingLinear, SpikingNetwork, make_encoder


@register_model
def sfc(
    *, in_features: int = 784, hidden: tuple[int, ...] | list[int] = (800,), num_classes: int = 10,
    encoding: str = "inverted", alpha: float = 3.0,
) -> SpikingNetwork:
    """Fully-connected spiking net, Flatten -> FC(hidden...) -> FC(num_classes) (784-800-10 by default).

    It has no max-pooling, so it exports to NIR exactly (``tcsnn export-nir``).
    """
    sizes = [in_features, *hidden, num_classes]
    layers = [SpikingLinear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    return SpikingNetwork(make_encoder(encoding, alpha),
                          {"flatten": nn.Flatten(), "classifier": nn.Sequential(*layers)})
