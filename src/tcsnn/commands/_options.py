"""Flags shared by several commands (kept free of torch so that ``--help`` stays fast)."""

from __future__ import annotations

import argparse

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
