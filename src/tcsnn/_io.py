"""File helpers shared by checkpoints and quantised exports: atomic writes and checked ``torch.load``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def save_atomic(obj: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` to a temp file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; a checkpoint is an ordinary readable file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_torch_file(path: str | Path, what: str = "checkpoint") -> Any:
    """``torch.load`` (CPU, weights only) with errors that name the file: FileNotFoundError, ValueError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged zip/pickle
        raise ValueError(f"{path} is not a readable tcsnn {what} (corrupt or truncated?): {exc}") from exc
