"""Finding the spiking layers of a model: one function every tool uses."""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils import parametrize

from tcsnn.nn.layers import SpikingConv2d, SpikingLinear


def spiking_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers whose outputs are neurons (spiking conv / linear), in forward order, with dotted names.

    The names are those of ``model.named_modules()`` (e.g. ``"features.0"``, ``"classifier.1"``): stable across
    runs and the keys of every per-layer result (spike counts, quantisation, export).
    """
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (SpikingConv2d, SpikingLinear))]


def raw_parameter(module: nn.Module, name: str) -> Tensor | None:
    """The stored parameter ``name`` of ``module``: under a ``torch.nn.utils.parametrize`` parametrization (such as
    the quantiser of :mod:`tcsnn.quant`) its ``original``, else the attribute itself (None for a missing bias).

    Optimisers, gradient clipping and penalties on the stored values use this; the forward pass reads
    ``getattr(module, name)``, the parametrized value.
    """
    if parametrize.is_parametrized(module, name):
        return module.parametrizations[name].original
    return getattr(module, name)


def layer_labels(model: nn.Module) -> dict[str, str]:
    """Readable names of the spiking layers, keyed by their :func:`spiking_layers` names, in forward order.

    Convolutions are ``conv1, conv2, ...``, linear layers ``fc1, fc2, ...``, and the last spiking layer (the
    output neurons) is ``out``: ``scnn_mnist`` gives
    ``{"features.0": "conv1", "features.2": "conv2", "classifier.0": "out"}``.  Printed tables and plots use
    them; results stay keyed by the module names.
    """
    layers = spiking_layers(model)
    labels: dict[str, str] = {}
    counts = {"conv": 0, "fc": 0}
    for i, (name, module) in enumerate(layers):
        if i == len(layers) - 1:
            labels[name] = "out"
            continue
        kind = "conv" if isinstance(module, SpikingConv2d) else "fc"
        counts[kind] += 1
        labels[name] = f"{kind}{counts[kind]}"
    return labels
