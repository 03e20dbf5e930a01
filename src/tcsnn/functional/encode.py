r"""Input encodings: pixel intensities ``p`` in [0, 1] to input spike values ``z = e^t``.

``encode_inverted``: :math:`t = \alpha (1 - p)` (MNIST in the paper: bright pixels spike first).
``encode_direct``:   :math:`t = \alpha p` (CIFAR in the paper).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _check(p: Tensor, alpha: float, dtype: torch.dtype | None) -> torch.dtype:
    if not isinstance(p, Tensor):
        raise TypeError(f"pixels must be a torch.Tensor, got {type(p).__name__}")
    if not math.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha}")
    out_dtype = dtype or (p.dtype if p.dtype.is_floating_point else torch.get_default_dtype())
    if not out_dtype.is_floating_point:
        raise TypeError(f"output dtype must be floating point, got {out_dtype}")
    if not torch.isfinite(p).all():
        raise ValueError("pixels contain NaN or inf; expected intensities in [0, 1]")
    if p.numel() and (p.min() < 0 or p.max() > 1):
        raise ValueError(
            f"pixels must lie in [0, 1], got range [{p.min().item():.4g}, {p.max().item():.4g}]; "
            "divide uint8 images by 255"
        )
    if alpha > math.log(torch.finfo(out_dtype).max):
        raise ValueError(
            f"alpha={alpha} overflows {out_dtype}: z = e^alpha must be finite "
            f"(alpha <= {math.log(torch.finfo(out_dtype).max):.1f}); use float64 or a smaller alpha"
        )
    return out_dtype


def encode_inverted(p: Tensor, alpha: float, *, dtype: torch.dtype | None = None) -> Tensor:
    """``z = exp(alpha * (1 - p))``: intensity 1 spikes at t = 0, intensity 0 at t = alpha.  Any shape."""
    out_dtype = _check(p, alpha, dtype)
    return torch.exp(alpha * (1.0 - p.to(torch.float64))).to(out_dtype)


def encode_direct(p: Tensor, alpha: float, *, dtype: torch.dtype | None = None) -> Tensor:
    """``z = exp(alpha * p)``: intensity 0 spikes at t = 0, intensity 1 at t = alpha.  Any shape."""
    out_dtype = _check(p, alpha, dtype)
    return torch.exp(alpha * p.to(torch.float64)).to(out_dtype)


ENCODINGS = ("inverted", "direct")


def encode(p: Tensor, kind: str, alpha: float, *, dtype: torch.dtype | None = None) -> Tensor:
    """Dispatch by name: ``"inverted"`` (t = alpha (1 - p)) or ``"direct"`` (t = alpha p)."""
    if kind == "inverted":
        return encode_inverted(p, alpha, dtype=dtype)
    if kind == "direct":
        return encode_direct(p, alpha, dtype=dtype)
    raise ValueError(f"unknown encoding {kind!r}; choose one of {', '.join(ENCODINGS)}")
