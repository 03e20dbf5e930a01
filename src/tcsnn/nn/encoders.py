"""Input encoders: pixels p in [0, 1] -> input spike values ``z = e^t`` (:mod:`tcsnn.functional.encode`)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tcsnn.functional.encode import encode


class SpikeEncoder(nn.Module):
    """Pixels p in [0, 1] -> input spike values z by a named encoding (see :mod:`tcsnn.functional.encode`)."""

    kind: str = "inverted"

    def __init__(self, alpha: float, kind: str | None = None) -> None:
        super().__init__()
        self.alpha = float(alpha)
        if kind is not None:
            self.kind = kind
        encode(torch.zeros(1), self.kind, self.alpha)  # validates kind and alpha now, not at the first batch
        # An empty tensor that follows ``.to(dtype / device)`` of the model: the encoder has no parameters, yet
        # ``model.double()`` must make it emit float64 spike values.  Not persistent: no state_dict entry.
        self.register_buffer("_like", torch.empty(0), persistent=False)

    def forward(self, p: Tensor) -> Tensor:
        """``p`` (any shape) pixels in [0, 1] -> ``z`` of the same shape, in the model's dtype."""
        return encode(p, self.kind, self.alpha, dtype=self._like.dtype)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, alpha={self.alpha}"


def make_encoder(kind: str, alpha: float) -> SpikeEncoder:
    """The encoder module of a named encoding (:data:`tcsnn.functional.encode.ENCODINGS`)."""
    return SpikeEncoder(alpha, kind)


class InvertedEncoder(SpikeEncoder):
    """z = exp(alpha (1 - p)): bright pixels spike first (the paper's MNIST encoding)."""

    kind = "inverted"


class DirectEncoder(SpikeEncoder):
    """z = exp(alpha p): dark pixels spike first (the paper's CIFAR encoding)."""

    kind = "direct"
