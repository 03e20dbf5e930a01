"""An ImageNet-style class-folder data set: ``root/<class>/*.jpg``, decoded with Pillow.

``ImageFolder(root / "train", train=True, image_size=224)`` yields ``(image, label)`` with ``image`` a float32
``(3, S, S)`` tensor in [0, 1]: a random-resized crop plus a random horizontal flip for training, resize
(shorter side ``256 / 224 * S``) plus centre crop for evaluation (:mod:`tcsnn.data.transforms`).  Classes are
the sub-folder names in sorted order (label = position).

The random numbers of one image come from a generator seeded by the caller: an item is either an index (drawn
from torch's global generator, as torchvision does) or ``(index, seed)``, which is what the training engine's
sampler (:class:`tcsnn.data.loaders.EpochBatchSampler`) hands out.  The crop of image ``i`` in epoch ``e`` is
then the same whatever the number of DataLoader workers or processes, and after a resume.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from tcsnn.data.transforms import apply_flip, draw_flip, random_resized_crop, resize_center_crop

#: File name endings read as images (case-insensitive).
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png")


class ImageFolder(Dataset[tuple[torch.Tensor, int]]):
    """Images in ``root/<class>/<file>`` (see the module docstring).

    Attributes:
        classes: sorted class-folder names; ``class_to_idx`` maps them to labels.
        samples: ``(path, label)`` per image, sorted by class then file name.
    """

    def __init__(self, root: str | Path, *, train: bool, image_size: int) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {self.root} does not exist (expected {self.root}/<class>/*.jpg)")
        if image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {image_size}")
        self.train, self.image_size = train, image_size
        self.classes = sorted(d.name for d in self.root.iterdir() if d.is_dir())
        if not self.classes:
            raise FileNotFoundError(f"image folder {self.root} has no class sub-folders ({self.root}/<class>/*.jpg)")
        self.samples = [(p, label) for label, c in enumerate(self.classes)
                        for p in sorted((self.root / c).iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
        if not self.samples:
            raise FileNotFoundError(f"image folder {self.root}: no {'/'.join(IMAGE_SUFFIXES)} files in its "
                                    f"{len(self.classes)} class folders")

    @property
    def class_to_idx(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.classes)}

    @property
    def targets(self) -> torch.Tensor:
        return torch.tensor([label for _, label in self.samples], dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> torch.Tensor:
        """Image ``index`` decoded as float32 (3, H, W) in [0, 1] (RGB; grey and palette images converted)."""
        try:
            from PIL import Image
        except ImportError as exc:  # pragma: no cover - Pillow is a dependency
            raise ImportError("the class-folder data set needs Pillow: pip install pillow") from exc
        path = self.samples[index][0]
        try:
            with Image.open(path) as im:
                rgb = im.convert("RGB")
                data = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8)
                h, w = rgb.height, rgb.width
        except OSError as exc:
            raise ValueError(f"{path}: not a readable image: {exc}") from exc
        return data.view(h, w, 3).permute(2, 0, 1).to(torch.float32).div_(255)  # (3, H, W)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, seed = item if isinstance(item, tuple) else (item, None)
        img = self.load(index)
        if self.train:
            gen = torch.Generator()
            if seed is None:
                gen.manual_seed(int(torch.randint(0, 2**62, (1,))))
            else:
                gen.manual_seed(seed)
            img = random_resized_crop(img, self.image_size, gen)
            img = apply_flip(img[None], draw_flip(1, gen))[0]
        else:
            img = resize_center_crop(img, self.image_size)
        return img, self.samples[index][1]

    def __repr__(self) -> str:
        split = "train" if self.train else "eval"
        return f"ImageFolder({self.root}, {split}, {len(self.classes)} classes, n={len(self)}, size={self.image_size})"


def collate(items: list[Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``(image, label)`` items into ``(x (B, 3, S, S), y (B,))``."""
    return torch.stack([img for img, _ in items]), torch.tensor([label for _, label in items], dtype=torch.int64)
