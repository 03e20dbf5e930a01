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
        self.alpha = alpha
        if kind is not None:
            self.kind = kind
        encode(torch.zeros(1), self.kind, alpha)  # validates kind and alpha now, not at the first batch

    def forward(self, p: Tensor) -> Tensor:
        return encode(p, self.kind, self.alpha)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, alpha={self.alpha}"


class InvertedEncoder(SpikeEncoder):
    """z = exp(alpha (1 - p)): bright pixels spike first (the paper's MNIST encoding)."""

    kind = "inverted"


class DirectEncoder(SpikeEncoder):
    """z = exp(alpha p): dark pixels spike first (the paper's CIFAR encoding)."""

    kind = "direct"
