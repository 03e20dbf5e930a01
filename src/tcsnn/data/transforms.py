"""Training-time image transforms, written with torch ops.

* :func:`random_shift` translates each image by a random whole number of pixels (zero fill).  Background pixels
  are 0, so with ``t = alpha * (1 - p)`` the uncovered border spikes last (or never), like the real background.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def random_shift(x: Tensor, max_shift: int, generator: torch.Generator | None = None) -> Tensor:
    """Translate each image of ``x`` (B, C, H, W) by ``(dy, dx)``, each uniform in ``[-max_shift, max_shift]``.

    Pixels shifted in from outside are 0.  ``max_shift = 0`` returns ``x`` unchanged.
    """
    if x.dim() != 4:
        raise ValueError(f"random_shift expects (B, C, H, W) images, got shape {tuple(x.shape)}")
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    if max_shift == 0:
        return x
    b, _, h, w = x.shape
    s = max_shift
    padded = nn.functional.pad(x, (s, s, s, s))  # (B, C, H + 2s, W + 2s)
    # top-left corner of each crop in the padded image: s + d with d in [-s, s]
    oy, ox = torch.randint(0, 2 * s + 1, (2, b), generator=generator)
    rows = oy[:, None] + torch.arange(h)  # (B, H)
    cols = ox[:, None] + torch.arange(w)  # (B, W)
    batch = torch.arange(b)[:, None, None]  # (B, 1, 1)
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()
