"""The run folder's integrity: one writer at a time, and metrics that match the checkpoint after any kill.

* :class:`RunLock`: an exclusive OS file lock (``fcntl.flock``) on ``run_dir/.lock``, held for the life of the
  run.  The OS drops it when the process ends, however it ends, so a killed run never leaves a stale lock; a
  second ``tcsnn train`` (or ``--resume``) on the same folder is refused with one line while the first runs.
* ``metrics.jsonl`` gets its epoch's line *before* the checkpoint is written, and the checkpoint records how many
  lines belong to it (``"metrics_lines"``).  :func:`recover_metrics` cuts the file back to that count on
  ``--resume`` (or to nothing when no checkpoint landed), so a kill between the two writes never logs an epoch
  twice.  A torn last line (a kill during the append) is dropped with a notice; the rewrite is atomic.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from tcsnn.io import write_text

__all__ = ["LOCK_NAME", "RunFolderBusy", "RunLock", "read_metrics_lines", "recover_metrics"]

LOCK_NAME = ".lock"


class RunFolderBusy(ValueError):
    """Another process holds the run folder's lock."""


class RunLock:
    """Exclusive lock on a run folder (module docstring); use as a context manager or call :meth:`release`."""

    def __init__(self, run_dir: str | Path) -> None:
        import fcntl

        self.path = Path(run_dir) / LOCK_NAME
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunFolderBusy(f"run folder {Path(run_dir)} is in use by another tcsnn train (it holds "
                                f"{self.path}); wait for it to end or pick another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_metrics_lines(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """The epochs of ``metrics.jsonl`` and whether a torn (unparseable) last line was dropped.

    ValueError naming the file and line for a bad line that is not the last one.
    """
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    rows: list[dict[str, Any]] = []
    for i, line in enumerate(lines):
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or "epoch" not in row:
                raise ValueError("not an epoch record")
        except ValueError as exc:
            if i == len(lines) - 1:
                return rows, True
            raise ValueError(f"{path}, line {i + 1}: not a metrics record ({exc}); the file is damaged") from None
        rows.append(row)
    return rows, False


def recover_metrics(path: Path, keep: int | None, *, start_epoch: int) -> list[dict[str, Any]]:
    """Cut ``metrics.jsonl`` back to the epochs the checkpoint holds; returns the kept rows.

    ``keep`` is the checkpoint's ``"metrics_lines"`` (None for checkpoints written before it existed: keep the
    lines of epochs before ``start_epoch``, 0-based).  Lines that count epochs from 0 (older files) are
    renumbered from 1.  The file is rewritten atomically, and only when something changes.
    """
    if not path.exists():
        return []
    rows, torn = read_metrics_lines(path)
    if torn:
        print(f"{path}: dropped a torn last line (the run was killed while writing it)", file=sys.stderr)
    if rows and min(int(r["epoch"]) for r in rows) == 0:  # an older file, epochs from 0
        rows = [{**r, "epoch": int(r["epoch"]) + 1} for r in rows]
        renumbered = True
    else:
        renumbered = False
    kept = rows[:keep] if keep is not None else [r for r in rows if int(r["epoch"]) <= start_epoch]
    if len(kept) < len(rows):
        print(f"{path}: dropped {len(rows) - len(kept)} line(s) of epochs whose checkpoint never landed",
              file=sys.stderr)
    if torn or renumbered or len(kept) < len(rows):
        write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
    return kept
