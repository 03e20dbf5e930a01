"""Devices and several processes (torchrun / DDP) for the training engine.

* :func:`resolve_device`: ``"auto" | "cpu" | "cuda" | "cuda:N"`` -> a :class:`torch.device`, with one clear
  error when CUDA is asked for and absent.
* :func:`init_distributed`: switched on by the environment that ``torchrun`` sets (``WORLD_SIZE > 1``):
  joins the process group (``gloo`` on CPU, ``nccl`` on CUDA, where process ``LOCAL_RANK`` takes GPU
  ``LOCAL_RANK``).  Without torchrun it returns a one-process :class:`Dist` and changes nothing.
* Only rank 0 touches the run folder; :meth:`Dist.agree` runs a check on rank 0 and raises its error on every
  process, so no process waits for a peer that gave up.
* :meth:`Dist.sum_` reduces metric sums over the processes (one call per epoch, not per step).
* :func:`strip_module_prefix`: state dicts saved from a ``DistributedDataParallel`` wrapper carry a
  ``module.`` prefix; the engine saves the unwrapped model, and this reads such files anyway.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import Tensor

__all__ = ["DEVICE_PATTERN", "Dist", "init_distributed", "resolve_device", "strip_module_prefix"]

#: Accepted spellings of ``--device``.
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")
_DDP_PREFIX = "module."

T = TypeVar("T")

#: The last barrier of each process group this process left, kept until the process exits (see
#: :meth:`Dist.close`).
_FINAL_BARRIERS: list[Any] = []


def check_device_name(name: str) -> None:
    """ValueError unless ``name`` is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    if not isinstance(name, str) or not DEVICE_PATTERN.fullmatch(name):
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")


def resolve_device(name: str = "auto") -> torch.device:
    """The device ``name`` stands for: ``auto`` is the first GPU when CUDA is available, else the CPU."""
    check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r}: CUDA is not available here (torch {torch.__version__}, "
                             "no GPU found); use --device cpu")
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) here")
        return dev
    return torch.device("cpu")


@dataclass
class Dist:
    """This process's place in the run: ``rank`` of ``world`` processes, on ``device``."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    initialised_here: bool = False

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run folder and prints (rank 0)."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def agree(self, check: Callable[[], T]) -> T | None:
        """Run ``check`` on rank 0; its exception (type and message) is raised on every process."""
        error: BaseException | None = None
        result: T | None = None
        if self.is_main:
            try:
                result = check()
            except Exception as exc:  # re-raised below, on every rank
                error = exc
        if self.enabled:
            import torch.distributed as dist

            box: list[Any] = [None if error is None else (type(error), str(error))]
            dist.broadcast_object_list(box, src=0)
            if box[0] is not None and error is None:
                kind, message = box[0]
                error = kind(message) if issubclass(kind, Exception) else RuntimeError(message)
        if error is not None:
            raise error
        return result

    def sum_(self, t: Tensor) -> Tensor:
        """Sum ``t`` over the processes in place (a no-op for one process); returns ``t``."""
        if self.enabled:
            import torch.distributed as dist

            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def close(self, *, wait: bool = True) -> None:
        """Leave the process group if :func:`init_distributed` joined it.

        ``wait``: first wait for every process (after a run that ended normally on all of them): tearing gloo down
        while a peer still works aborts the process ("terminate called without an active exception").  After an
        error a peer may never arrive, so the error path leaves without waiting.

        The barrier's work object is kept alive until the process exits.  gloo's worker thread otherwise drops the
        last reference to it (and, through it, to the earlier collectives it waited for) just after it wakes this
        thread up; when that happens after Python began shutting down, the destructor's release of a Python-made
        tensor needs the interpreter lock, the thread is killed inside a C++ destructor and the process aborts
        (a PyTorch race, about 1 run in 20 on 2 cores).  Kept here, the last reference is this process's own.
        """
        if self.initialised_here:
            import torch.distributed as dist

            if wait:
                work = dist.barrier(async_op=True)
                work.wait()
                _FINAL_BARRIERS.append(work)
            dist.destroy_process_group()
            self.initialised_here = False


def init_distributed(device: str = "auto") -> Dist:
    """One process, or (under torchrun: ``WORLD_SIZE`` > 1) join the process group (module docstring)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(device=resolve_device(device))
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank if dev.index is None else dev.index)
        torch.cuda.set_device(dev)
    here = not dist.is_initialized()
    if here:
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", device_id=dev if dev.type == "cuda" else None)
    return Dist(rank=dist.get_rank(), world=dist.get_world_size(), device=dev, initialised_here=here)


def strip_module_prefix(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with the ``module.`` prefix of a DDP-wrapped model removed (when every key has it)."""
    if state and all(k.startswith(_DDP_PREFIX) for k in state):
        return {k[len(_DDP_PREFIX):]: v for k, v in state.items()}
    return state
