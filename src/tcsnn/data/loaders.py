"""Batches for training and evaluation through ``torch.utils.data.DataLoader``.

One rule decides every batch: in epoch ``e`` the images are visited in the order ``torch.randperm(n)`` drawn
from a generator seeded with ``(seed, e)``, cut into *global* batches of ``batch_size``.  With ``world``
processes (torchrun), process ``rank`` takes the contiguous slice :func:`shard` of each global batch, so the
union over processes is exactly the batch one process would see (and the weights after each step agree to
float rounding).  The order depends only on ``(seed, e)``: the same batches come back after a kill and
``--resume``, with any number of DataLoader workers.

* :class:`TensorSplit`: a whole split held in memory (MNIST, CIFAR-10, digits), fetched a batch at a time
  (``__getitems__``: one gather, no per-image Python).
* :class:`EpochBatchSampler`: the batch sampler above (also a distributed sampler: it yields only this
  process's slice).  For data sets with per-image random transforms (:class:`tcsnn.data.folder.ImageFolder`)
  it hands out ``(index, seed)`` items, the seed a function of ``(seed, e, position in the epoch)``.
* :func:`make_loader`: the DataLoader (workers, seeded generator, pinned memory for CUDA).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

__all__ = ["EpochBatchSampler", "TensorSplit", "epoch_order", "make_loader", "sample_seed", "shard"]

#: Multipliers that mix (seed, epoch, position) into one 63-bit seed.
_SEED_MIX = (1_000_003, 10_000_019)
_SEED_MOD = 2**63 - 1


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The CPU generator of epoch ``epoch`` (0-based) of a run seeded with ``seed``."""
    return torch.Generator().manual_seed(seed * _SEED_MIX[0] + epoch)


def epoch_order(n: int, seed: int, epoch: int) -> tuple[torch.Tensor, torch.Generator]:
    """The visiting order (n,) of epoch ``epoch`` and the epoch's generator after drawing it (the engine keeps
    drawing its shifts and input noise from it on CPU)."""
    gen = epoch_generator(seed, epoch)
    return torch.randperm(n, generator=gen), gen


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """The seed of the random transform of the image at ``position`` in epoch ``epoch``'s order."""
    return ((seed * _SEED_MIX[0] + epoch) * _SEED_MIX[1] + position) % _SEED_MOD


def shard(size: int, rank: int, world: int) -> tuple[int, int]:
    """``(lo, hi)``: the slice of a global batch of ``size`` that process ``rank`` of ``world`` takes."""
    return size * rank // world, size * (rank + 1) // world


class TensorSplit(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """A split held as tensors ``x`` (N, C, H, W) and ``y`` (N,); a batch is fetched with one gather."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"TensorSplit: {x.shape[0]} images but {y.shape[0]} labels")
        self.x, self.y = x, y

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index], self.y[index]

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.int64)
        return self.x[idx], self.y[idx]


def _keep_batch(batch: Any) -> Any:
    """collate_fn of :class:`TensorSplit` batches: already stacked by ``__getitems__``."""
    return batch


class EpochBatchSampler(Sampler[list[Any]]):
    """This process's part of each global batch of an epoch (module docstring).

    Call :meth:`set_epoch` before iterating.  A process whose slice of the last (short) global batch is empty
    gets that batch's first image instead (the engine gives it weight 0), so that every process takes the same
    number of steps.  ``order=None`` (evaluation) visits the images in order.
    """

    def __init__(self, n: int, batch_size: int, *, seed: int = 0, rank: int = 0, world: int = 1,
                 per_sample_seeds: bool = False) -> None:
        if n < 1:
            raise ValueError(f"no images to sample from (n = {n})")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not in [0, {world})")
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.per_sample_seeds = per_sample_seeds
        self.epoch = 0
        self.order: torch.Tensor | None = None

    def set_epoch(self, epoch: int, order: torch.Tensor | None) -> None:
        """Visit ``order`` (n,) in epoch ``epoch`` (None: 0, 1, ..., n - 1)."""
        if order is not None and order.shape != (self.n,):
            raise ValueError(f"order has shape {tuple(order.shape)}, expected ({self.n},)")
        self.epoch, self.order = epoch, order

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def global_batches(self) -> Iterator[tuple[int, int]]:
        """``(start, size)`` of each global batch in the epoch's order."""
        for start in range(0, self.n, self.batch_size):
            yield start, min(self.batch_size, self.n - start)

    def __iter__(self) -> Iterator[list[Any]]:
        order = self.order.tolist() if self.order is not None else range(self.n)
        for start, size in self.global_batches():
            lo, hi = shard(size, self.rank, self.world)
            positions = list(range(start + lo, start + hi)) or [start]
            if self.per_sample_seeds:
                yield [(order[p], sample_seed(self.seed, self.epoch, p)) for p in positions]
            else:
                yield [order[p] for p in positions]


def make_loader(dataset: Dataset[Any], sampler: EpochBatchSampler, *, num_workers: int = 0, seed: int = 0,
                pin_memory: bool = False, collate_fn: Any = None) -> DataLoader[Any]:
    """A DataLoader over ``dataset`` with ``sampler``'s batches, ``num_workers`` worker processes and a seeded
    generator (worker seeds; the images' own random numbers come from the sampler's seeds)."""
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    if collate_fn is None:
        collate_fn = _keep_batch if isinstance(dataset, TensorSplit) else None
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate_fn,
                      generator=torch.Generator().manual_seed(seed), pin_memory=pin_memory,
                      persistent_workers=num_workers > 0)
