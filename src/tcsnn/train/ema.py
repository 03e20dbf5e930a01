"""A moving average of the trained weights, evaluated and shipped instead of the raw weights.

:class:`WeightAverage` keeps an exponential moving average (EMA) of the trained parameters,
``avg <- d * avg + (1 - d) * w`` after every optimiser step, with the usual warm-up
``d = min(decay, (1 + n) / (10 + n))`` (n = updates so far) so the first epoch is not anchored to the
initialisation.  The averaged weights are the ones evaluated and shipped in the checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn


def _parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The stored parameters under their ``state_dict`` names: plain ``weight`` / ``bias`` also while a
    parametrization (the quantiser of :mod:`tcsnn.quant`) is attached."""
    return [(k, v) for k, v in model.state_dict(keep_vars=True).items() if isinstance(v, nn.Parameter)]


class WeightAverage:
    """Exponential moving average of a model's parameters (see the module docstring for the update)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"weight-average decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.params = {k: p.detach().clone() for k, p in _parameters(model)}

    def _pairs(self, model: nn.Module) -> Iterator[tuple[Tensor, Tensor]]:
        for k, p in _parameters(model):
            yield self.params[k], p.detach()

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for avg, p in self._pairs(model):
            avg.lerp_(p, 1.0 - d)
        self.updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the averaged values into ``model``'s parameters (same architecture)."""
        for avg, p in self._pairs(model):
            p.copy_(avg)

    def state_dict(self) -> dict[str, object]:
        """The counters only: the averaged values are the model a checkpoint ships (its ``state_dict``)."""
        return {"decay": self.decay, "updates": self.updates}

    def load_state_dict(self, state: dict[str, object], params: dict[str, Tensor] | None = None) -> None:
        """Restore the counters of :meth:`state_dict` and the averaged values from ``params``.

        ``params`` maps parameter names to averaged values (extra keys, e.g. buffers, are ignored); a ``state``
        that carries its own ``"params"`` (the layout of older checkpoints) takes precedence.
        """
        source = state.get("params", params)
        if not isinstance(source, dict):
            raise ValueError("weight-average state has no averaged values: pass params= (the shipped state_dict)")
        missing = sorted(set(self.params) - set(source))
        if missing:
            raise ValueError(f"weight-average state lacks the model's parameters {', '.join(missing)}")
        try:
            decay, updates = float(state["decay"]), int(state["updates"])  # type: ignore[arg-type, call-overload]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed weight-average state: {exc}") from exc
        if not 0.0 < decay < 1.0 or updates < 0:
            raise ValueError(f"malformed weight-average state: decay {decay}, updates {updates}")
        bad = [k for k, v in self.params.items() if source[k].shape != v.shape]
        if bad:
            raise ValueError(f"weight-average values have the wrong shape for {', '.join(bad)}")
        self.decay, self.updates = decay, updates
        self.params = {k: source[k].detach().clone().to(v.dtype) for k, v in self.params.items()}
