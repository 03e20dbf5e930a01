"""Finding the spiking layers of a model: one function every tool uses."""

from __future__ import annotations

from torch import nn

from tcsnn.nn.layers import SpikingConv2d, SpikingLinear


def spiking_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers whose outputs are neurons (spiking conv / linear), in forward order, with dotted names.

    The names are those of ``model.named_modules()`` (e.g. ``"features.0"``, ``"classifier.1"``): stable across
    runs and the keys of every per-layer result (spike counts, quantisation, export).
    """
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (SpikingConv2d, SpikingLinear))]
