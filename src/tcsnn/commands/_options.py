"""Flags shared by several commands (kept free of torch so that ``--help`` stays fast)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

THREADS_HELP = ("CPU threads of the spike-time kernels and of torch, >= 1 (default: chosen by tcsnn; on a busy "
                "machine fewer threads are often faster)")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def add_threads_argument(p: argparse.ArgumentParser, help: str = THREADS_HELP) -> None:
    """``--threads N`` (default None: leave the choice to the library)."""
    p.add_argument("--threads", type=positive_int, default=None, metavar="N", help=help)


def apply_threads(threads: int | None) -> None:
    """Set the thread count of the kernels and of torch when the user gave ``--threads``."""
    if threads is not None:
        from tcsnn import set_num_threads

        set_num_threads(threads)


DEVICE_HELP = ("where to compute: auto (default: the first GPU if CUDA is available, else the CPU), cpu, cuda or "
               "cuda:N")


def add_device_argument(p: argparse.ArgumentParser, default: str | None = None) -> None:
    """``--device auto|cpu|cuda|cuda:N`` (checked when used: :func:`tcsnn.train.distributed.resolve_device`)."""
    p.add_argument("--device", default=default, metavar="DEVICE", help=DEVICE_HELP)


def device_from_args(name: str | None) -> torch.device:
    """The torch device of ``--device`` (None: auto)."""
    from tcsnn.train.distributed import resolve_device

    return resolve_device(name or "auto")
