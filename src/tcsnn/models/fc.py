"""Fully-connected spiking networks."""

from __future__ import annotations

from torch import nn

from tcsnn.models._registry import register_model
from tcsnn.nn import SpikingLinear


@register_model
def sfc(
    *, in_features: int = 784, hidden: tuple[int, ...] | list[int] = (800,), num_classes: int = 10
) -> nn.Sequential:
    """Fully-connected spiking net, Flatten -> FC(hidden...) -> FC(num_classes) (784-800-10 by default).

    It has no max-pooling, so it exports to NIR exactly (``tcsnn export-nir``).
    """
    sizes = [in_features, *hidden, num_classes]
    layers: list[nn.Module] = [nn.Flatten()]
    layers += [SpikingLinear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    return nn.Sequential(*layers)
