"""Every file tcsnn writes goes through :func:`atomic_write`: a reader sees the old file or the new one, never half.

The rules, and why:

* The data goes to a temp file beside the target, ``.<name>.<pid>.<random>.tmp``, created with
  ``O_CREAT | O_EXCL | O_NOFOLLOW``: a file or a symbolic link planted under that name is never opened, let alone
  written through.
* The temp file is flushed, ``fsync``-ed and renamed over the target with :func:`os.replace`.  A rename replaces a
  symbolic link at the target *itself*; the file it pointed to is left alone.
* New files get ``0o666`` minus the umask, like any file a program opens for writing.
* A save interrupted by an exception (Ctrl-C included) removes its temp file.  A save killed outright
  (SIGKILL, power loss) leaves one; :func:`clean_stale_temps` removes those whose writing process is gone, and
  every write calls it for its own target, so they do not pile up.
* Errors are one clear :class:`ValueError` line: the target is a folder, its parent is a file, ...

Appending (the per-epoch ``metrics.jsonl``) cannot be atomic; :func:`append_text` at least refuses to append
through a symbolic link.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, Any

__all__ = [
    "append_text",
    "atomic_write",
    "clean_stale_temps",
    "ensure_folder",
    "read_torch_file",
    "save_figure",
    "save_torch",
    "temp_name",
    "write_bytes",
    "write_csv",
    "write_json",
    "write_text",
]

#: Permission bits asked for new files; the process umask removes some, as for any ordinary output.
FILE_MODE = 0o666
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{16}\.tmp$")
# names an older tcsnn wrote: tempfile.mkstemp ``.<name>.<8 random chars>.tmp`` and ``<name>.tmp`` (no writer pid)
_LEGACY_RE = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.tmp$")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_BINARY = getattr(os, "O_BINARY", 0)


def temp_name(path: Path) -> Path:
    """A fresh temp-file name beside ``path`` that records the writing process: ``.<name>.<pid>.<hex>.tmp``."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}.tmp")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def clean_stale_temps(folder: str | Path, name: str | None = None, *, legacy: bool = False) -> list[Path]:
    """Remove temp files left in ``folder`` by saves that were killed; returns the removed paths.

    A temp file is stale when the process that wrote it (the pid in its name) is no longer running; with
    ``name`` only the temp files of that target are considered.  ``legacy=True`` also removes temp files of older
    tcsnn versions, whose names carry no pid: only safe where no other process writes (a locked run folder).
    Symbolic links named like temp files are removed too (a link is never a save in progress).
    """
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        m = _TEMP_RE.match(entry.name)
        stale = False
        if m is not None and (name is None or m["name"] == name):
            stale = entry.is_symlink() or not _pid_alive(int(m["pid"]))
        elif legacy and m is None:
            lm = _LEGACY_RE.match(entry.name)
            stale = (lm is not None and (name is None or lm["name"] == name)) or (
                entry.name.endswith(".tmp") and name is not None and entry.name == f"{name}.tmp")
        if stale:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def _check_target(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        raise ValueError(f"{path} is a folder; give a file name")
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise ValueError(f"cannot write {path}: {parent} is a file, not a folder")


def ensure_folder(path: str | Path, what: str = "--out") -> Path:
    """Create the output folder ``path`` (and its parents); ValueError, one line, when a file is in the way."""
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            if p == path:
                raise ValueError(f"{what} {path} is a file, not a folder; pick a folder name")
            raise ValueError(f"{what} {path}: {p} is a file, not a folder")
        if p.is_dir():
            break
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(f)`` on a fresh exclusive temp file beside ``path``, then rename it over ``path``.

    ``f`` is a binary file opened for reading and writing (HDF5 writers seek and read back).  ``path`` ends up a
    regular file even when it was a symbolic link; the link's target is not touched.  Creates the parent folder.
    Returns ``path``.
    """
    path = Path(path)
    _check_target(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ValueError(f"cannot write {path}: a file is in the way of its folder") from None
    clean_stale_temps(path.parent, path.name)
    tmp = temp_name(path)
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _BINARY, FILE_MODE)
    try:
        with os.fdopen(fd, "w+b") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.replace(tmp, path)
        except IsADirectoryError:
            raise ValueError(f"{path} is a folder; give a file name") from None
        except OSError as exc:
            if exc.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):
                raise ValueError(f"{path} is a folder; give a file name") from None
            raise
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Atomically write ``data`` to ``path``."""
    return atomic_write(path, lambda f: f.write(data))


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any, **dumps: Any) -> Path:
    """Atomically write ``obj`` as indented JSON plus a newline; ``dumps`` go to :func:`json.dumps`."""
    dumps.setdefault("indent", 2)
    return write_text(path, json.dumps(obj, **dumps) + "\n")


def write_csv(path: str | Path, header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> Path:
    """Atomically write a CSV file: one header row, then ``rows``."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return write_text(path, buf.getvalue())


def save_torch(obj: Any, path: str | Path) -> Path:
    """Atomically ``torch.save`` ``obj`` to ``path``."""
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f))


def save_figure(fig: Any, path: str | Path, **savefig: Any) -> Path:
    """Atomically save a matplotlib figure; the format comes from the suffix, ``.png`` is added when there is none.

    Returns the path written (with the added suffix), so that callers print the file that exists.
    """
    path = Path(path)
    _check_target(path)
    if not path.suffix:
        path = path.with_name(path.name + ".png")
    fmt = path.suffix.lstrip(".").lower()
    return atomic_write(path, lambda f: fig.savefig(f, format=fmt, **savefig))


def append_text(path: str | Path, text: str) -> None:
    """Append ``text`` to ``path`` (created if missing), refusing to append through a symbolic link."""
    path = Path(path)
    _check_target(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | _NOFOLLOW | _BINARY, FILE_MODE)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ValueError(f"{path} is a symbolic link; tcsnn does not write through links (remove it)") from None
        raise
    with os.fdopen(fd, "ab") as f:
        f.write(text.encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


def read_torch_file(path: str | Path, what: str = "checkpoint") -> Any:
    """``torch.load`` (CPU, weights only) with one-line errors that name the file.

    Raises FileNotFoundError (missing) and ValueError (a folder, empty, not a torch file, truncated, or holding
    objects beyond tensors and plain data, which a weights-only load refuses because unpickling them can run code).
    """
    import pickle
    import zipfile

    import torch

    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a {what} file")
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"{path} is empty (0 bytes), not a tcsnn {what}; was its save interrupted?")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(2)
        if head[:1] != b"\x80":  # neither torch's zip format nor a (legacy) pickle
            raise ValueError(f"{path} is not a readable tcsnn {what} (corrupt, or not a file written by torch.save)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights_only" in str(exc) or "Weights only load failed" in str(exc):
            raise ValueError(f"{path} is not a tcsnn {what}: it holds Python objects beyond tensors and plain data, "
                             "which tcsnn refuses to load (loading them could run code)") from exc
        raise ValueError(f"{path} is not a readable tcsnn {what} (corrupt or truncated?): "
                         f"{_first_line(exc)}") from exc
    except Exception as exc:  # torch raises many types for a damaged zip/pickle
        raise ValueError(f"{path} is not a readable tcsnn {what} (corrupt or truncated?): "
                         f"{_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def sha256_file(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks (hex digest)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def relative_path(path: str | Path, folder: str | Path) -> str:
    """``path`` relative to ``folder`` with POSIX separators (e.g. ``../run/checkpoint.pt``): what results files
    record, so that the record stays true when the folders move together."""
    return Path(os.path.relpath(Path(path).resolve(), Path(folder).resolve())).as_posix()
