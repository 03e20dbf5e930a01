"""Memory check before a run starts: estimate one step's memory and refuse, with what to lower, if it cannot fit.

Without it a batch of 60,000 MNIST images grows to 15 GiB before the kernel's out-of-memory killer ends the
process without a word.  The estimate is

.. math::  \\text{bytes} \\approx B \\cdot (n_\\text{in} + \\textstyle\\sum_\\text{layers} n_\\text{out})
           \\cdot \\text{itemsize} \\cdot f + \\text{params} \\cdot \\text{itemsize} \\cdot p

with ``n_in`` / ``n_out`` the per-image input and layer-output sizes (measured by one forward pass of a single
image), ``f`` = :data:`TRAIN_FACTOR` for a training step (autograd keeps inputs, outputs and the kernels'
causal-set buffers) or :data:`EVAL_FACTOR` for inference, and ``p`` = 4 copies of the parameters in training
(weights, gradients, two Adam moments), 1 otherwise.  The factors are the largest ratios of measured peak memory
to that size on the registered models (scnn_tiny with 2000 channels, scnn_mnist, sfc 784-4000-10; batch 256-4096;
measured 2.6-3.1 for training, 1.4-1.6 for inference), with a margin.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from torch import nn

__all__ = ["EVAL_FACTOR", "TRAIN_FACTOR", "available_memory", "check_inference_memory", "check_train_memory",
           "step_memory"]

#: peak bytes of a training step per (input + layer-output) element and byte of itemsize (measured <= 3.1)
TRAIN_FACTOR = 3.5
#: the same for an inference batch (measured <= 1.6)
EVAL_FACTOR = 2.0
_GIB = 1 << 30


def available_memory() -> int | None:
    """Bytes a new allocation can get: MemAvailable, capped by a cgroup v2 limit; None where unknown."""
    avail: int | None = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
                break
    except OSError:
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
            left = max(0, int(limit) - used)
            avail = left if avail is None else min(avail, left)
    except (OSError, ValueError):
        pass
    if avail is None and hasattr(os, "sysconf"):
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            avail = None
    return avail


def _elements_per_image(model: nn.Module, input_shape: tuple[int, ...], dtype: torch.dtype) -> int:
    """Input plus every leaf module's output elements for one image (one forward pass, no gradients)."""
    total = [math.prod(input_shape)]

    def hook(_m: nn.Module, _inp: object, out: object) -> None:
        if isinstance(out, torch.Tensor):
            total[0] += out.numel()

    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            probe_dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), dtype)
            model(torch.full((1, *input_shape), 0.5, dtype=probe_dtype))  # any valid pixels: shapes count
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total[0]


def step_memory(model: nn.Module, input_shape: tuple[int, ...], batch_size: int, dtype: torch.dtype, *,
                train: bool) -> int:
    """Estimated peak bytes of one training step (``train=True``) or one inference batch (see the module doc)."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    per_image = _elements_per_image(model, input_shape, dtype)
    params = sum(p.numel() for p in model.parameters())
    factor, copies = (TRAIN_FACTOR, 4) if train else (EVAL_FACTOR, 1)
    return int(batch_size * per_image * itemsize * factor + params * itemsize * copies)


def _size(n: int) -> str:
    return f"{n / _GIB:.1f} GiB" if n >= _GIB / 10 else f"{n / (1 << 20):.1f} MiB"


def _refuse(what: str, need: int, avail: int, lower: str) -> None:
    raise MemoryError(f"{what} needs about {_size(need)} (estimated), more than the {_size(avail)} of memory "
                      f"available; lower {lower}")


def check_inference_memory(model: nn.Module, input_shape: tuple[int, ...], batch_size: int, dtype: torch.dtype, *,
                           flag: str = "--batch-size", available: int | None = None) -> int:
    """MemoryError (one line) when an inference batch cannot fit; returns the estimate in bytes."""
    need = step_memory(model, input_shape, batch_size, dtype, train=False)
    avail = available_memory() if available is None else available
    if avail is not None and need > avail:
        _refuse(f"a batch of {batch_size} images", need, avail, f"{flag} (or the model size)")
    return need


def check_train_memory(model: nn.Module, input_shape: tuple[int, ...], batch_size: int, eval_batch_size: int,
                       dtype: torch.dtype, *, available: int | None = None) -> int:
    """MemoryError (one line) when a training step or the per-epoch evaluation cannot fit; returns the larger."""
    avail = available_memory() if available is None else available
    need = step_memory(model, input_shape, batch_size, dtype, train=True)
    if avail is not None and need > avail:
        _refuse(f"a training step of {batch_size} images", need, avail, "--batch-size (or the model size)")
    need_eval = step_memory(model, input_shape, eval_batch_size, dtype, train=False)
    if avail is not None and need_eval > avail:
        _refuse(f"evaluating {eval_batch_size} images at once", need_eval, avail,
                "eval_batch_size (--set eval_batch_size=N) or the model size")
    return max(need, need_eval)
