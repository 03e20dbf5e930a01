"""A whole spiking classifier: the input encoder at the front, then the spiking layers.

:class:`SpikingNetwork` is an ``nn.Sequential`` whose first module, named ``encoder``, maps pixels p in [0, 1]
to input spike values ``z = e^t``; the other modules (the *body*) map spike values to spike values.  So
``model(p)`` classifies images, and a checkpoint that rebuilds the model also knows how its input is fed.
Tools that need the spike values themselves (input noise, jitter, event simulation) call
``model.encoder(p)`` and ``model.body(z)``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

from torch import nn

from tcsnn.nn.encoders import SpikeEncoder

#: The name of the encoder inside a :class:`SpikingNetwork`.
ENCODER = "encoder"


class SpikingNetwork(nn.Sequential):
    """``encoder`` then the named ``layers``: pixels (B, C, H, W) in [0, 1] -> output spike values (B, K).

    The class of a sample is its earliest output spike (argmin z).  Layer names are the keys of ``layers``
    (e.g. ``features``, ``classifier``), so the neurons get readable dotted names such as ``features.0``.
    """

    encoder: SpikeEncoder  # the submodule named ENCODER (nn.Module attribute lookup)

    def __init__(self, encoder: SpikeEncoder, layers: Mapping[str, nn.Module]) -> None:
        if not isinstance(encoder, SpikeEncoder):
            raise TypeError(f"encoder must be a SpikeEncoder, got {type(encoder).__name__}")
        if ENCODER in layers:
            raise ValueError(f"the name {ENCODER!r} is reserved for the encoder")
        if not layers:
            raise ValueError("a SpikingNetwork needs at least one layer after the encoder")
        super().__init__(OrderedDict([(ENCODER, encoder), *layers.items()]))

    @property
    def body(self) -> nn.Sequential:
        """The layers after the encoder (the same module objects, the same names): spike values -> spike values."""
        return nn.Sequential(OrderedDict((k, m) for k, m in self._modules.items() if k != ENCODER))

    def __getitem__(self, idx: int | slice) -> nn.Module:  # type: ignore[override]
        if isinstance(idx, slice):  # nn.Sequential would call our constructor with a dict
            return nn.Sequential(OrderedDict(list(self._modules.items())[idx]))
        return super().__getitem__(idx)


def body_of(model: nn.Module) -> nn.Module:
    """The spike-values-in part of ``model``: ``model.body`` of a :class:`SpikingNetwork`, else ``model`` itself."""
    return model.body if isinstance(model, SpikingNetwork) else model


def flat_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The leaf layers of ``body_of(model)`` in forward order, nested ``nn.Sequential``s unrolled, with the
    dotted names of ``named_modules()`` (``features.0``, ``flatten``, ``classifier.0``, ...).

    Tools that walk a chain of layers (event simulation, NIR export) use it; a module that is not an
    ``nn.Sequential`` counts as one layer.
    """
    def walk(module: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
        if not isinstance(module, nn.Sequential):
            return [(prefix or "0", module)]
        out: list[tuple[str, nn.Module]] = []
        for name, child in module.named_children():
            out += walk(child, f"{prefix}.{name}" if prefix else name)
        return out

    return walk(body_of(model), "")
