"""Image transforms, written with torch ops (torchvision is not needed).

Batched training transforms (one call per batch, on the batch's device, random numbers from one generator):

* :func:`random_shift` translates each image by a random whole number of pixels (zero fill).  Background pixels
  are 0, so with ``t = alpha * (1 - p)`` the uncovered border spikes last (or never), like the real background.
  A random crop of the image zero-padded by ``s`` pixels on each side is the same thing as a shift by up to
  ``s``: CIFAR-10's "4-pixel zero-padding random crop" is ``random_shift(x, 4)``.
* :func:`random_hflip` mirrors a random half of the images left-right.
* Each draws its random numbers first (:func:`draw_shift`, :func:`draw_flip`) and applies them second
  (:func:`apply_shift`, :func:`apply_flip`): a process of a data-parallel run draws for the whole global batch and
  applies its own slice, so several processes see exactly the random numbers one process would.

Per-image transforms for decoded images of any size (the class-folder data set, :mod:`tcsnn.data.folder`):
:func:`random_resized_crop`, :func:`resize_center_crop`, each ``(C, H, W) -> (C, S, S)`` with bilinear
interpolation (``torch.nn.functional.interpolate``, antialiased when shrinking).

Per-channel standardisation ("whitening", :class:`Whiten`): ``(p - mean_c) / std_c`` with the data set's channel
statistics (:data:`CHANNEL_STATS`).  The encoders need pixels in [0, 1] (``t = alpha * (1 - p)`` must stay in
``[0, alpha]``), so the standardised value is mapped back by the fixed affine map
``p' = clamp(0.5 + (p - mean_c) / (2 * WHITEN_SPAN * std_c), 0, 1)``: the channel mean lands on 0.5 and
``WHITEN_SPAN`` standard deviations either side land on 0 and 1 (beyond them: clamped).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

#: Standard deviations either side of the channel mean that :class:`Whiten` maps onto [0, 1].
WHITEN_SPAN: float = 3.0
#: Per-channel (mean, std) of the training split of each data set, pixels in [0, 1].
CHANNEL_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
#: Scale range (share of the image area) and aspect-ratio range of :func:`random_resized_crop` (as torchvision).
RRC_SCALE: tuple[float, float] = (0.08, 1.0)
RRC_RATIO: tuple[float, float] = (3 / 4, 4 / 3)
#: Tries of :func:`random_resized_crop` before it falls back to the central crop (as torchvision).
RRC_TRIES: int = 10
#: Evaluation resizes the shorter side to ``EVAL_RESIZE_RATIO * size`` before the centre crop (256 for 224).
EVAL_RESIZE_RATIO: float = 256 / 224


def _check_batch(x: Tensor, what: str) -> None:
    if x.dim() != 4:
        raise ValueError(f"{what} expects (B, C, H, W) images, got shape {tuple(x.shape)}")


def draw_shift(batch: int, max_shift: int, generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> Tensor:
    """Top-left corners (2, B) of each crop in the ``max_shift``-padded images, each uniform in [0, 2 s]."""
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    return torch.randint(0, 2 * max_shift + 1, (2, batch), generator=generator, device=device)


def apply_shift(x: Tensor, corners: Tensor, max_shift: int) -> Tensor:
    """Shift each image of ``x`` (B, C, H, W) by ``corners - max_shift`` pixels (zero fill); corners (2, B)."""
    _check_batch(x, "apply_shift")
    b, _, h, w = x.shape
    s = max_shift
    padded = nn.functional.pad(x, (s, s, s, s))  # (B, C, H + 2s, W + 2s)
    oy, ox = corners
    rows = oy[:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = ox[:, None] + torch.arange(w, device=x.device)  # (B, W)
    batch = torch.arange(b, device=x.device)[:, None, None]  # (B, 1, 1)
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def random_shift(x: Tensor, max_shift: int, generator: torch.Generator | None = None) -> Tensor:
    """Translate each image of ``x`` (B, C, H, W) by ``(dy, dx)``, each uniform in ``[-max_shift, max_shift]``.

    Pixels shifted in from outside are 0.  ``max_shift = 0`` returns ``x`` unchanged (and draws nothing).
    """
    _check_batch(x, "random_shift")
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    if max_shift == 0:
        return x
    return apply_shift(x, draw_shift(x.shape[0], max_shift, generator, x.device), max_shift)


def draw_flip(batch: int, generator: torch.Generator | None = None,
              device: torch.device | str | None = None) -> Tensor:
    """(B,) bool: which images to mirror, each with probability 1/2."""
    return torch.rand(batch, generator=generator, device=device) < 0.5


def apply_flip(x: Tensor, flip: Tensor) -> Tensor:
    """Mirror left-right the images of ``x`` (B, C, H, W) where ``flip`` (B,) is true."""
    _check_batch(x, "apply_flip")
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_hflip(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Mirror each image of ``x`` (B, C, H, W) left-right with probability 1/2."""
    _check_batch(x, "random_hflip")
    return apply_flip(x, draw_flip(x.shape[0], generator, x.device))


def _resize(img: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of one image (C, H, W) to ``size``, antialiased, values kept in [0, 1]."""
    out = nn.functional.interpolate(img[None], size=size, mode="bilinear", align_corners=False, antialias=True)
    return out[0].clamp_(0.0, 1.0)


def random_resized_crop(img: Tensor, size: int, generator: torch.Generator | None = None) -> Tensor:
    """A random crop of ``img`` (C, H, W) covering 8-100 % of its area with aspect ratio in [3/4, 4/3],
    resized to (C, size, size) (the ImageNet training crop; torchvision's ``RandomResizedCrop`` rule)."""
    _, h, w = img.shape
    area = h * w
    log_lo, log_hi = math.log(RRC_RATIO[0]), math.log(RRC_RATIO[1])
    for _ in range(RRC_TRIES):
        u = torch.rand(2, generator=generator, dtype=torch.float64)
        target = area * (RRC_SCALE[0] + (RRC_SCALE[1] - RRC_SCALE[0]) * float(u[0]))
        ratio = math.exp(log_lo + (log_hi - log_lo) * float(u[1]))
        cw, ch = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, (1,), generator=generator))
            left = int(torch.randint(0, w - cw + 1, (1,), generator=generator))
            return _resize(img[:, top : top + ch, left : left + cw], (size, size))
    side = min(h, w)  # fallback: the central square
    top, left = (h - side) // 2, (w - side) // 2
    return _resize(img[:, top : top + side, left : left + side], (size, size))


def resize_center_crop(img: Tensor, size: int) -> Tensor:
    """Resize ``img`` (C, H, W) so that its shorter side is ``EVAL_RESIZE_RATIO * size``, then take the central
    (C, size, size) square (the ImageNet evaluation crop: 256 then 224)."""
    _, h, w = img.shape
    short = round(EVAL_RESIZE_RATIO * size)
    nh, nw = (short, max(short, round(w * short / h))) if h <= w else (max(short, round(h * short / w)), short)
    img = _resize(img, (nh, nw))
    top, left = (nh - size) // 2, (nw - size) // 2
    return img[:, top : top + size, left : left + size]


class Whiten(nn.Module):
    """Per-channel standardisation mapped back to pixels in [0, 1] (module docstring):
    ``p' = clamp(0.5 + (p - mean_c) / (2 * WHITEN_SPAN * std_c), 0, 1)`` for p (B, C, H, W)."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError(f"Whiten needs one mean and one std > 0 per channel, got {mean}, {std}")
        self.mean, self.std = tuple(mean), tuple(std)

    @classmethod
    def for_dataset(cls, name: str) -> Whiten:
        """The standardisation with :data:`CHANNEL_STATS` ``[name]``; ValueError for a data set without them."""
        if name not in CHANNEL_STATS:
            raise ValueError(f"normalize: no channel statistics for data set {name!r}; "
                             f"known: {', '.join(CHANNEL_STATS)}")
        return cls(*CHANNEL_STATS[name])

    def forward(self, p: Tensor) -> Tensor:
        _check_batch(p, "Whiten")
        if p.shape[1] != len(self.mean):
            raise ValueError(f"Whiten has statistics for {len(self.mean)} channels, images have {p.shape[1]}")
        mean = torch.tensor(self.mean, dtype=p.dtype, device=p.device)[:, None, None]  # (C, 1, 1)
        std = torch.tensor(self.std, dtype=p.dtype, device=p.device)[:, None, None]
        return (0.5 + (p - mean) / (2 * WHITEN_SPAN * std)).clamp(0.0, 1.0)

    def extra_repr(self) -> str:
        return f"mean={self.mean}, std={self.std}, span={WHITEN_SPAN}"


def attach_whitening(model: nn.Module, dataset: str) -> nn.Module:
    """Make ``model``'s encoder (a :class:`tcsnn.nn.SpikingNetwork`'s ``encoder``) whiten its pixels first.

    Done with a forward pre-hook, so the model's structure and ``state_dict`` stay as they are: a checkpoint
    records ``normalize`` in its config and :func:`tcsnn.train.checkpoint.load_model` attaches it again.
    Returns ``model``.
    """
    whiten = Whiten.for_dataset(dataset)
    encoder = getattr(model, "encoder", None)
    if encoder is None:
        raise TypeError(f"attach_whitening needs a model with an encoder, got {type(model).__name__}")
    encoder.register_forward_pre_hook(lambda _m, args: (whiten(args[0]), *args[1:]))
    encoder.whiten = whiten  # visible in repr(model); not a parameter or buffer
    return model
