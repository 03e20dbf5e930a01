"""Kept for imports of older code: the file helpers live in :mod:`tcsnn.io`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tcsnn.io import read_torch_file, save_torch

__all__ = ["read_torch_file", "save_atomic"]


def save_atomic(obj: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` through :func:`tcsnn.io.atomic_write` (exclusive temp file, fsync, rename)."""
    save_torch(obj, path)
