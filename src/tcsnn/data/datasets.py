"""Offline readers for the image data sets tcsnn trains on: MNIST, Fashion-MNIST, CIFAR-10, 8x8 digits.

Nothing here ever downloads.  Every reader looks for the standard files in a local folder and, when they
are missing, raises a :class:`FileNotFoundError` that names each expected file and each folder searched.
Malformed files raise a :class:`ValueError` that names the file (truncated payload, bad magic number,
image/label count mismatch, labels out of range).  Both kinds are meant to be printed as one line.

Three layers, from low to high:

* one tiny parser per file format in :mod:`tcsnn.data.formats` (re-exported here): :func:`read_idx`,
  :func:`read_cifar_bin`, :func:`read_cifar_pickle`;
* torchvision-style datasets :class:`MNIST`, :class:`FashionMNIST`, :class:`CIFAR10` with the contract
  ``(root, train, transform, target_transform, download)``, and :class:`Digits8x8`;
* :func:`load_arrays`, the one function the training engine calls, and :data:`DATASETS`, which answers
  shape and class questions without loading anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from tcsnn.data.formats import (
    CIFAR_CHANNELS,
    CIFAR_SIDE,
    IDX_IMAGES_MAGIC,
    IDX_LABELS_MAGIC,
    _check_labels,
    read_cifar_bin,
    read_cifar_pickle,
    read_idx,
)

__all__ = [
    "DATASETS",
    "CIFAR10",
    "DatasetInfo",
    "Digits8x8",
    "FashionMNIST",
    "MNIST",
    "dataset_info",
    "load_arrays",
    "read_cifar_bin",
    "read_cifar_pickle",
    "read_idx",
]

# ---------------------------------------------------------------------------------------------------------
# Named constants
# ---------------------------------------------------------------------------------------------------------

#: Largest value of an 8-bit pixel; images are divided by it to land in [0, 1].
UINT8_PIXEL_MAX: int = 255
#: Largest value of a scikit-learn 8x8 digits pixel (each is a count of 4x4 blocks of a 32x32 bitmap).
DIGITS_PIXEL_MAX: int = 16
#: Fraction of the 1,797 digits that goes to the training split.
DIGITS_TRAIN_FRACTION: float = 0.8
#: Seed of the digits split permutation (``numpy.random.RandomState``, whose stream NumPy keeps frozen).
DIGITS_SPLIT_SEED: int = 0

CIFAR_TRAIN_BATCHES: tuple[str, ...] = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_BATCHES: tuple[str, ...] = ("test_batch",)

#: Where Debian's ``dataset-fashion-mnist`` package installs Fashion-MNIST.
FASHION_MNIST_DEBIAN_ROOT: Path = Path("/usr/share/datasets/fashion-mnist")

MNIST_SIDE: int = 28

_NO_DOWNLOAD_HINT = "tcsnn never downloads data"

# ---------------------------------------------------------------------------------------------------------
# Data set table
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetInfo:
    """What is known about a data set without loading it.

    Attributes:
        name: the key in :data:`DATASETS` and the name :func:`load_arrays` takes.
        shape: one image as ``(C, H, W)``, the layout of :func:`load_arrays`'s ``x``.
        classes: class names, index = label.
        num_train: images in the training split.
        num_test: images in the test split.
        default_root: folder used when :func:`load_arrays` gets ``root=None``; ``None`` when the data
            set needs an explicit folder (or, for ``"digits"``, no folder at all).
        needs_root: whether the data set is read from files at all.
    """

    name: str
    shape: tuple[int, int, int]
    classes: tuple[str, ...]
    num_train: int
    num_test: int
    default_root: Path | None
    needs_root: bool

    @property
    def num_classes(self) -> int:
        """Number of classes (labels run from 0 to ``num_classes - 1``)."""
        return len(self.classes)

    @property
    def num_inputs(self) -> int:
        """Number of input values per image, ``C * H * W``."""
        return math.prod(self.shape)


_DIGIT_CLASSES = tuple(str(i) for i in range(10))
_FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
_DIGITS_TOTAL = 1797
_DIGITS_NUM_TRAIN = int(_DIGITS_TOTAL * DIGITS_TRAIN_FRACTION)  # 1437

#: name -> :class:`DatasetInfo` for every name :func:`load_arrays` accepts (read-only).
DATASETS: Mapping[str, DatasetInfo] = MappingProxyType(
    {
        "mnist": DatasetInfo("mnist", (1, MNIST_SIDE, MNIST_SIDE), _DIGIT_CLASSES, 60000, 10000, None, True),
        "fashion-mnist": DatasetInfo(
            "fashion-mnist",
            (1, MNIST_SIDE, MNIST_SIDE),
            _FASHION_CLASSES,
            60000,
            10000,
            FASHION_MNIST_DEBIAN_ROOT,
            True,
        ),
        "cifar10": DatasetInfo(
            "cifar10", (CIFAR_CHANNELS, CIFAR_SIDE, CIFAR_SIDE), _CIFAR10_CLASSES, 50000, 10000, None, True
        ),
        "digits": DatasetInfo(
            "digits",
            (1, 8, 8),
            _DIGIT_CLASSES,
            _DIGITS_NUM_TRAIN,
            _DIGITS_TOTAL - _DIGITS_NUM_TRAIN,
            None,
            False,
        ),
    }
)


def dataset_info(name: str) -> DatasetInfo:
    """Return :data:`DATASETS` ``[name]``; an unknown name raises a ValueError listing the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown data set {name!r}; known names: {', '.join(DATASETS)}") from None


# ---------------------------------------------------------------------------------------------------------
# Finding files
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """A set of files that together make one split; each file has alternative names, tried in order."""

    name: str
    files: Mapping[str, tuple[str, ...]]  # role -> accepted names
    reader: Callable[[Path], tuple[np.ndarray, np.ndarray]] | None = None


def _search_dirs(root: Path, subdirs: Sequence[str]) -> list[Path]:
    seen: list[Path] = []
    for sub in ("", *subdirs):
        d = root / sub if sub else root
        if d not in seen:
            seen.append(d)
    return seen


def _locate(
    what: str, root: str | Path, subdirs: Sequence[str], layouts: Sequence[_Layout]
) -> tuple[_Layout, dict[str, Path]]:
    """Find the first folder (``root``, then ``root/<subdir>`` in order) holding a complete layout.

    Folders are tried in order and, within a folder, layouts in order; the first complete match wins,
    so the choice is deterministic.  Nothing found raises a FileNotFoundError naming every expected file
    and every folder searched.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"{what}: data folder {root} does not exist. {_NO_DOWNLOAD_HINT}")
    if not root.is_dir():
        raise FileNotFoundError(f"{what}: data folder {root} is not a directory")
    dirs = _search_dirs(root, subdirs)
    for d in dirs:
        if not d.is_dir():
            continue
        for layout in layouts:
            found: dict[str, Path] = {}
            for role, names in layout.files.items():
                hit = next((d / n for n in names if (d / n).is_file()), None)
                if hit is None:
                    break
                found[role] = hit
            else:
                return layout, found
    expected = "; or ".join(
        f"{lay.name}: " + ", ".join(" or ".join(names) for names in lay.files.values()) for lay in layouts
    )
    searched = ", ".join(f"{d}" if d.is_dir() else f"{d} (absent)" for d in dirs)
    raise FileNotFoundError(
        f"{what} files not found. Expected {expected}. Searched, in order: {searched}. "
        f"{_NO_DOWNLOAD_HINT}: put the files in {root} or one of those sub-folders"
    )


def _idx_names(stem: str, idx_kind: str) -> tuple[str, ...]:
    # "train-images" + "idx3-ubyte" -> the standard name, its gunzipped form, and the dotted variants.
    dashed, dotted = f"{stem}-{idx_kind}", f"{stem}.{idx_kind}"
    return (f"{dashed}.gz", dashed, f"{dotted}.gz", dotted)


def _idx_layout(train: bool) -> _Layout:
    prefix = "train" if train else "t10k"
    return _Layout(
        "IDX",
        {
            "images": _idx_names(f"{prefix}-images", "idx3-ubyte"),
            "labels": _idx_names(f"{prefix}-labels", "idx1-ubyte"),
        },
    )


def _cifar_layouts(train: bool) -> tuple[_Layout, _Layout]:
    batches = CIFAR_TRAIN_BATCHES if train else CIFAR_TEST_BATCHES
    return (
        _Layout("binary version", {b: (f"{b}.bin",) for b in batches}, read_cifar_bin),
        _Layout("python version", {b: (b,) for b in batches}, read_cifar_pickle),
    )


_MNIST_SUBDIRS = ("mnist", "MNIST/raw", "MNIST")
_FASHION_SUBDIRS = ("fashion-mnist", "FashionMNIST/raw", "FashionMNIST", "fashion_mnist")
_CIFAR_SUBDIRS = (
    "cifar-10-batches-bin",
    "cifar-10-batches-py",
    "cifar10/cifar-10-batches-bin",
    "cifar10/cifar-10-batches-py",
    "cifar10",
    "CIFAR10",
)

# ---------------------------------------------------------------------------------------------------------
# Loading a split as uint8 arrays
# ---------------------------------------------------------------------------------------------------------


def _load_idx_split(
    what: str, root: str | Path, subdirs: Sequence[str], train: bool
) -> tuple[Path, np.ndarray, np.ndarray]:
    """(folder, images uint8 (N, 28, 28), labels int64 (N,)) of an MNIST-format split."""
    _, files = _locate(f"{what} {'train' if train else 'test'}", root, subdirs, [_idx_layout(train)])
    images = read_idx(files["images"], magic=IDX_IMAGES_MAGIC)
    labels = read_idx(files["labels"], magic=IDX_LABELS_MAGIC).astype(np.int64)
    if images.shape[1:] != (MNIST_SIDE, MNIST_SIDE):
        raise ValueError(
            f"{files['images']}: images are {images.shape[1:]}, expected ({MNIST_SIDE}, {MNIST_SIDE})"
        )
    if len(images) != len(labels):
        raise ValueError(
            f"image/label count mismatch: {files['images']} has {len(images)} images "
            f"but {files['labels']} has {len(labels)} labels"
        )
    _check_labels(labels, 10, str(files["labels"]))
    return files["images"].parent, images, labels


def _load_cifar_split(root: str | Path, train: bool) -> tuple[Path, np.ndarray, np.ndarray]:
    """(folder, images uint8 (N, 32, 32, 3), labels int64 (N,)) of a CIFAR-10 split, either version."""
    split = "train" if train else "test"
    layout, files = _locate(f"CIFAR-10 {split}", root, _CIFAR_SUBDIRS, _cifar_layouts(train))
    assert layout.reader is not None  # both CIFAR layouts carry their parser
    parts = [layout.reader(files[b]) for b in layout.files]
    images = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    labels = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
    return next(iter(files.values())).parent, images, labels


def _load_digits_split(train: bool) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 8, 8) in 0..16, labels int64 (N,)) of the deterministic digits split."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - scikit-learn is a dependency
        raise ImportError("the 8x8 digits need scikit-learn: pip install scikit-learn") from exc
    bunch = load_digits()
    images = np.asarray(bunch.images)
    if images.min() < 0 or images.max() > DIGITS_PIXEL_MAX:
        raise ValueError(
            f"scikit-learn digits outside 0..{DIGITS_PIXEL_MAX}: found {images.min()}..{images.max()}"
        )
    order = np.random.RandomState(DIGITS_SPLIT_SEED).permutation(len(images))
    n_train = int(len(images) * DIGITS_TRAIN_FRACTION)
    pick = np.sort(order[:n_train] if train else order[n_train:])
    return images[pick].astype(np.uint8), np.asarray(bunch.target)[pick].astype(np.int64)


# ---------------------------------------------------------------------------------------------------------
# torchvision-style datasets
# ---------------------------------------------------------------------------------------------------------


class _ImageDataset(Dataset[tuple[Any, Any]]):
    """Shared behaviour: ``.data`` uint8, ``.targets`` int64, ``.classes``, float CHW images in [0, 1].

    Items are ``(image, target)``.  Without a transform the image is a float32 tensor ``(C, H, W)`` in
    [0, 1] and the target a Python int; ``transform`` receives that tensor (not a PIL image) and
    ``target_transform`` that int.
    """

    classes: list[str]
    _pixel_max: int = UINT8_PIXEL_MAX

    def __init__(
        self,
        data: torch.Tensor,
        targets: torch.Tensor,
        train: bool,
        transform: Callable[[torch.Tensor], Any] | None,
        target_transform: Callable[[int], Any] | None,
    ) -> None:
        for name, fn in (("transform", transform), ("target_transform", target_transform)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable or None, got {type(fn).__name__}")
        self.data = data
        self.targets = targets
        self.train = train
        self.transform = transform
        self.target_transform = target_transform

    def _image(self, index: int) -> torch.Tensor:
        return self.data[index].unsqueeze(0).to(torch.float32).div(self._pixel_max)  # (1, H, W)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        image: Any = self._image(index)
        target: Any = int(self.targets[index])
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target

    @property
    def class_to_idx(self) -> dict[str, int]:
        """Class name -> label."""
        return {name: i for i, name in enumerate(self.classes)}

    def __repr__(self) -> str:
        split = "train" if self.train else "test"
        return f"{type(self).__name__}(split={split}, n={len(self)}, folder={getattr(self, 'folder', None)})"


def _refuse_download(cls_name: str, download: bool, expected: str) -> None:
    if download:
        raise ValueError(
            f"{cls_name}(download=True): {_NO_DOWNLOAD_HINT}. Copy the files yourself ({expected}) into root "
            f"or a sub-folder of it, and pass download=False"
        )


class MNIST(_ImageDataset):
    """MNIST from the four standard IDX files, torchvision-style.

    ``root`` is the folder holding ``train-images-idx3-ubyte.gz`` and friends (also un-gzipped, or with
    the dotted names ``train-images.idx3-ubyte``), or a parent holding them in ``mnist/``, ``MNIST/raw/``
    or ``MNIST/`` (searched in that order, ``root`` itself first).

    Attributes:
        data: uint8 ``(N, 28, 28)``.
        targets: int64 ``(N,)``.
        classes: ``["0", ..., "9"]``.
        folder: the folder the files were read from.
    """

    _info_name = "mnist"
    _subdirs: tuple[str, ...] = _MNIST_SUBDIRS
    _what = "MNIST"

    def __init__(
        self,
        root: str | Path,
        train: bool = True,
        transform: Callable[[torch.Tensor], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
        download: bool = False,
    ) -> None:
        _refuse_download(
            type(self).__name__, download, "the four IDX files {train,t10k}-{images,labels}-idx*-ubyte.gz"
        )
        self.root = Path(root)
        self.folder, images, labels = _load_idx_split(self._what, root, self._subdirs, train)
        self.classes = list(DATASETS[self._info_name].classes)
        data, targets = torch.from_numpy(images), torch.from_numpy(labels)
        super().__init__(data, targets, train, transform, target_transform)


class FashionMNIST(MNIST):
    """Fashion-MNIST: MNIST's file names and format, clothing classes.

    ``root`` is the folder holding the IDX files (Debian's ``dataset-fashion-mnist`` package installs
    them in ``/usr/share/datasets/fashion-mnist``), or a parent holding them in ``fashion-mnist/``,
    ``FashionMNIST/raw/``, ``FashionMNIST/`` or ``fashion_mnist/``.  Attributes as :class:`MNIST`.
    """

    _info_name = "fashion-mnist"
    _subdirs = _FASHION_SUBDIRS
    _what = "Fashion-MNIST"


class CIFAR10(_ImageDataset):
    """CIFAR-10 from the binary version (``*.bin``) or the python version (pickles), torchvision-style.

    ``root`` is the folder holding ``data_batch_1.bin`` ... ``test_batch.bin`` (or the pickles
    ``data_batch_1`` ... ``test_batch``), or a parent holding them in ``cifar-10-batches-bin/``,
    ``cifar-10-batches-py/``, ``cifar10/cifar-10-batches-bin/``, ``cifar10/cifar-10-batches-py/``,
    ``cifar10/`` or ``CIFAR10/``.  Folders are tried in that order (``root`` first) and, within one,
    the binary version before the python version.

    Attributes:
        data: uint8 ``(N, 32, 32, 3)``, height-width-channel like torchvision.
        targets: int64 ``(N,)``.
        classes: ``["airplane", ..., "truck"]``.
        folder: the folder the files were read from.
    """

    def __init__(
        self,
        root: str | Path,
        train: bool = True,
        transform: Callable[[torch.Tensor], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
        download: bool = False,
    ) -> None:
        _refuse_download(type(self).__name__, download, "cifar-10-batches-bin/*.bin or cifar-10-batches-py/*")
        self.root = Path(root)
        self.folder, images, labels = _load_cifar_split(root, train)
        self.classes = list(_CIFAR10_CLASSES)
        data, targets = torch.from_numpy(images), torch.from_numpy(labels)
        super().__init__(data, targets, train, transform, target_transform)

    def _image(self, index: int) -> torch.Tensor:
        return self.data[index].permute(2, 0, 1).to(torch.float32).div(self._pixel_max)  # (3, H, W)


class Digits8x8(_ImageDataset):
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, offline), as a dataset.

    The split is deterministic: ``numpy.random.RandomState(DIGITS_SPLIT_SEED).permutation(1797)``; its first
    80 % (1,437 images) are the training split, the rest (360) the test split, each kept in the original
    order.  ``RandomState``'s stream is frozen by NumPy, so the split is the same on every version.

    Attributes:
        data: uint8 ``(N, 8, 8)`` with values 0..16 (images are divided by 16, not 255).
        targets: int64 ``(N,)``.
        classes: ``["0", ..., "9"]``.
    """

    _pixel_max = DIGITS_PIXEL_MAX

    def __init__(
        self,
        train: bool = True,
        transform: Callable[[torch.Tensor], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
    ) -> None:
        images, labels = _load_digits_split(train)
        self.classes = list(_DIGIT_CLASSES)
        data, targets = torch.from_numpy(images), torch.from_numpy(labels)
        super().__init__(data, targets, train, transform, target_transform)


# ---------------------------------------------------------------------------------------------------------
# The engine's entry point
# ---------------------------------------------------------------------------------------------------------


def _to_unit_float(images: np.ndarray, pixel_max: int) -> torch.Tensor:
    return torch.from_numpy(images).to(torch.float32).div_(pixel_max)


def load_arrays(name: str, root: str | Path | None, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a whole split as tensors: ``x`` float32 ``(N, C, H, W)`` in [0, 1] and ``y`` int64 ``(N,)``.

    Args:
        name: ``"mnist"``, ``"fashion-mnist"``, ``"cifar10"`` or ``"digits"`` (see :data:`DATASETS`).
        root: the data folder, resolved as the dataset classes do.  ``None`` means Debian's folder for
            ``"fashion-mnist"`` and is an error for ``"mnist"`` and ``"cifar10"``; ``"digits"`` ignores it.
        train: the training split if true, else the test split.

    Raises:
        ValueError: unknown name, ``root=None`` where a folder is needed, or malformed files.
        FileNotFoundError: the files are not where they were looked for.
    """
    info = dataset_info(name)
    if not info.needs_root:
        images, labels = _load_digits_split(train)
        return _to_unit_float(images, DIGITS_PIXEL_MAX).unsqueeze(1), torch.from_numpy(labels)  # (N, 1, 8, 8)
    if root is None and info.default_root is not None:
        if not info.default_root.is_dir():
            raise FileNotFoundError(
                f"data set {name!r}: default folder {info.default_root} does not exist; install it "
                f"(apt-get install dataset-fashion-mnist) or pass --data-root. {_NO_DOWNLOAD_HINT}"
            )
        root = info.default_root
    if root is None:
        raise ValueError(
            f"data set {name!r} needs its data folder: pass --data-root (root=...) pointing to the folder "
            f"with its files or a parent of it. {_NO_DOWNLOAD_HINT}"
        )
    if name == "cifar10":
        _, images, labels = _load_cifar_split(root, train)
        chw = np.ascontiguousarray(images.transpose(0, 3, 1, 2))  # permute the uint8s, not the floats
        x = _to_unit_float(chw, UINT8_PIXEL_MAX)  # (N, 3, 32, 32)
    else:
        what, subdirs = ("MNIST", _MNIST_SUBDIRS) if name == "mnist" else ("Fashion-MNIST", _FASHION_SUBDIRS)
        _, images, labels = _load_idx_split(what, root, subdirs, train)
        x = _to_unit_float(images, UINT8_PIXEL_MAX).unsqueeze(1)  # (N, 1, 28, 28)
    return x, torch.from_numpy(labels)
