"""One tiny parser per file format: IDX (MNIST, Fashion-MNIST) and the CIFAR-10 binary and python versions.

Malformed files raise a :class:`ValueError` that names the file (truncated payload, bad magic number,
image/label count mismatch, labels out of range); a missing file a :class:`FileNotFoundError`.
"""

from __future__ import annotations

import codecs
import gzip
import math
import pickle
import zlib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

__all__ = ["read_cifar_bin", "read_cifar_pickle", "read_idx"]

#: IDX magic number of a label file: unsigned bytes, one dimension.
IDX_LABELS_MAGIC: int = 0x00000801  # 2049
#: IDX magic number of an image file: unsigned bytes, three dimensions.
IDX_IMAGES_MAGIC: int = 0x00000803  # 2051
#: IDX type code (third magic byte) -> big-endian NumPy dtype.
IDX_DTYPES: Mapping[int, np.dtype[Any]] = MappingProxyType(
    {
        0x08: np.dtype(np.uint8),
        0x09: np.dtype(np.int8),
        0x0B: np.dtype(">i2"),
        0x0C: np.dtype(">i4"),
        0x0D: np.dtype(">f4"),
        0x0E: np.dtype(">f8"),
    }
)
_IDX_MAGIC_BYTES = 4
_IDX_DIM_BYTES = 4
_GZIP_MAGIC = b"\x1f\x8b"

#: CIFAR-10 image side and channels; a binary record is one label byte then R, G and B planes.
CIFAR_SIDE: int = 32
CIFAR_CHANNELS: int = 3
CIFAR_PIXELS: int = CIFAR_CHANNELS * CIFAR_SIDE * CIFAR_SIDE  # 3072
CIFAR_RECORD_BYTES: int = 1 + CIFAR_PIXELS  # 3073
#: CIFAR-10 labels run over 0..9.
CIFAR_NUM_CLASSES: int = 10



def _read_maybe_gzip(path: Path) -> tuple[bytes, bool]:
    """Bytes of ``path``, gunzipped when the file starts with the gzip magic (whatever its name)."""
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    raw = path.read_bytes()
    if not raw.startswith(_GZIP_MAGIC):
        return raw, False
    try:
        return gzip.decompress(raw), True
    except EOFError:
        raise ValueError(
            f"{path} is truncated: its gzip stream ends early ({len(raw)} compressed bytes on disk)"
        ) from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise ValueError(f"{path} is a corrupt gzip file: {exc}") from None


def _describe_magic(magic: int) -> str:
    code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
    dtype = IDX_DTYPES.get(code)
    kind = dtype.name if dtype is not None else f"unknown type code 0x{code:02x}"
    return f"{magic} (0x{magic:08x}: {kind}, {ndim} dims)"


def read_idx(path: str | Path, *, magic: int | None = None) -> np.ndarray:
    """Read one IDX file (the MNIST format), raw or gzip-compressed, into a NumPy array.

    The header is a 4-byte big-endian magic number ``0x0000TTDD`` (``TT`` the type code, see
    :data:`IDX_DTYPES`; ``DD`` the number of dimensions), then ``DD`` big-endian 4-byte sizes, then the
    values in C order.  Compression is recognised by the gzip magic bytes, not by the file name.

    Args:
        path: the file.
        magic: if given, the magic number the file must carry, e.g. :data:`IDX_LABELS_MAGIC` (2049) or
            :data:`IDX_IMAGES_MAGIC` (2051).

    Returns:
        A writable array in native byte order with the header's shape and dtype.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: corrupt gzip, bad or unexpected magic number, or a payload whose length differs from
            what the header promises (the message gives expected and actual byte counts).
    """
    path = Path(path)
    buf, gzipped = _read_maybe_gzip(path)
    where = f"{path} (after gunzip)" if gzipped else str(path)
    if len(buf) < _IDX_MAGIC_BYTES:
        raise ValueError(
            f"{where} is truncated: an IDX header needs at least {_IDX_MAGIC_BYTES} bytes, "
            f"file has {len(buf)}"
        )
    found = int.from_bytes(buf[:_IDX_MAGIC_BYTES], "big")
    code, ndim = (found >> 8) & 0xFF, found & 0xFF
    if found >> 16 != 0 or code not in IDX_DTYPES or ndim == 0:
        raise ValueError(
            f"{where} has a bad IDX magic number {_describe_magic(found)}; expected 0x0000TTDD with a known "
            f"type code TT in {{{', '.join(f'0x{c:02x}' for c in IDX_DTYPES)}}} and DD >= 1 dims"
        )
    if magic is not None and found != magic:
        raise ValueError(
            f"{where} has IDX magic number {_describe_magic(found)}, expected {_describe_magic(magic)}"
        )
    header_bytes = _IDX_MAGIC_BYTES + _IDX_DIM_BYTES * ndim
    if len(buf) < header_bytes:
        raise ValueError(
            f"{where} is truncated: its {ndim}-dim IDX header needs {header_bytes} bytes, file has {len(buf)}"
        )
    dims = tuple(
        int.from_bytes(buf[i : i + _IDX_DIM_BYTES], "big") for i in range(_IDX_MAGIC_BYTES, header_bytes, 4)
    )
    dtype = IDX_DTYPES[code]
    count = math.prod(dims)
    expected = header_bytes + count * dtype.itemsize
    if len(buf) != expected:
        problem = "is truncated" if len(buf) < expected else "has trailing bytes"
        raise ValueError(
            f"{where} {problem}: header says {dtype.name} array of shape {dims}, i.e. {expected} bytes, "
            f"but the file has {len(buf)} bytes"
        )
    values = np.frombuffer(buf, dtype=dtype, count=count, offset=header_bytes).reshape(dims)
    # astype copies: the result is writable (torch.from_numpy needs that) and in native byte order.
    return values.astype(dtype.newbyteorder("="))


def _check_labels(labels: np.ndarray, num_classes: int, where: str) -> None:
    if labels.size == 0:
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        bad = int(np.flatnonzero((labels < 0) | (labels >= num_classes))[0])
        raise ValueError(
            f"labels out of range in {where}: label {int(labels[bad])} at index {bad}; "
            f"expected 0..{num_classes - 1}"
        )


def read_cifar_bin(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one file of the CIFAR-10 binary version (``data_batch_1.bin`` ...).

    Each record is 3,073 bytes: the label, then 1,024 red, 1,024 green and 1,024 blue values, each plane
    32x32 in row-major order.  An official file has 10,000 records; any whole number of records is read.

    Returns:
        ``(images, labels)``: uint8 ``(N, 32, 32, 3)`` (HWC, like torchvision's ``.data``) and int64 ``(N,)``.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: the size is not a positive whole number of records, or a label is not in 0..9.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    size = path.stat().st_size
    if size == 0 or size % CIFAR_RECORD_BYTES:
        whole = max(1, math.ceil(size / CIFAR_RECORD_BYTES))
        raise ValueError(
            f"{path} is truncated or corrupt: {size} bytes is not a whole number of "
            f"{CIFAR_RECORD_BYTES}-byte records (expected {whole * CIFAR_RECORD_BYTES} bytes "
            f"for {whole} records)"
        )
    records = np.fromfile(path, dtype=np.uint8).reshape(-1, CIFAR_RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    _check_labels(labels, CIFAR_NUM_CLASSES, str(path))
    planes = records[:, 1:].reshape(-1, CIFAR_CHANNELS, CIFAR_SIDE, CIFAR_SIDE)  # (N, C, H, W)
    return np.ascontiguousarray(planes.transpose(0, 2, 3, 1)), labels  # (N, H, W, C)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and NumPy arrays only, so a CIFAR batch file cannot run code."""

    _ALLOWED: Mapping[tuple[str, str], Any] = MappingProxyType(
        {
            (module, name): obj
            for module in ("numpy.core.multiarray", "numpy._core.multiarray")
            for name, obj in (
                ("_reconstruct", np.zeros(0).__reduce__()[0]),
                ("scalar", np.uint8(0).__reduce__()[0]),
            )
        }
        | {
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
            ("_codecs", "encode"): codecs.encode,
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}") from None


def _pickle_field(batch: Mapping[Any, Any], key: str) -> Any:
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise KeyError(key)


def read_cifar_pickle(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one file of the CIFAR-10 python version (``cifar-10-batches-py/data_batch_1`` ...).

    The file is a pickled dict with ``b"data"``, a uint8 array ``(N, 3072)`` of R, G, B planes, and
    ``b"labels"``, N ints.  Only containers and NumPy arrays are unpickled; any other object is refused.

    Returns:
        ``(images, labels)``: uint8 ``(N, 32, 32, 3)`` (HWC) and int64 ``(N,)``.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: not a readable pickle, refused content, missing keys, wrong shape or dtype,
            image/label count mismatch, or a label not in 0..9.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        with path.open("rb") as f:
            batch = _NumpyOnlyUnpickler(f, encoding="bytes").load()
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        IndexError,
        KeyError,
        AttributeError,
    ) as exc:
        raise ValueError(f"{path} is not a readable CIFAR-10 python batch: {exc}") from None
    if not isinstance(batch, Mapping):
        raise ValueError(f"{path} holds a {type(batch).__name__}, expected a dict with data and labels")
    try:
        data, labels_raw = _pickle_field(batch, "data"), _pickle_field(batch, "labels")
    except KeyError as exc:
        raise ValueError(f"{path} has no {exc.args[0]!r} entry; keys are {sorted(map(str, batch))}") from None
    is_pixels = isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
    if not is_pixels or data.shape[1] != CIFAR_PIXELS:
        shape, dtype = getattr(data, "shape", None), getattr(data, "dtype", type(data).__name__)
        raise ValueError(f"{path}: data must be a uint8 array (N, {CIFAR_PIXELS}), got {dtype} {shape}")
    labels = np.asarray(labels_raw)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}: labels must be a flat list of ints, got {labels.dtype} {labels.shape}")
    if len(labels) != len(data):
        raise ValueError(f"{path}: {len(data)} images but {len(labels)} labels")
    labels = labels.astype(np.int64)
    _check_labels(labels, CIFAR_NUM_CLASSES, str(path))
    planes = data.reshape(-1, CIFAR_CHANNELS, CIFAR_SIDE, CIFAR_SIDE)  # (N, C, H, W)
    return np.ascontiguousarray(planes.transpose(0, 2, 3, 1)), labels  # (N, H, W, C)
