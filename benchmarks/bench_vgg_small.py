"""Forward + backward time per batch of ``spiking_vgg_small`` (the cifar10-small design) on this machine.

Times one training step (forward, loss, backward; no optimiser step) of the spiking model with the default
backend and of its dense twin (``nn.Conv2d`` + ReLU, ``nn.MaxPool2d``, ``nn.Linear``), interleaved, minimum of
``--repeats``, on random CIFAR-sized images, and prints the machine load next to the numbers.

    python benchmarks/bench_vgg_small.py [--batch 128] [--repeats 3] [--threads 2] [--width 64]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch import nn


def dense_twin(width: int = 64) -> nn.Sequential:
    from tcsnn.models.vgg import VGG_SMALL_CFG, _scaled

    layers: list[nn.Module] = []
    c, side = 3, 32
    for spec in _scaled(VGG_SMALL_CFG, width):
        if spec == "M":
            layers.append(nn.MaxPool2d(2))
            side //= 2
        else:
            layers += [nn.Conv2d(c, spec[0], 3, padding=1), nn.ReLU()]  # type: ignore[index]
            c = spec[0]  # type: ignore[index]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * side * side, 10))


def main() -> None:
    from tcsnn.functional.loss import classification_loss
    from tcsnn.models import create_model

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--width", type=int, default=64, help="channels of the first block (default 64, the design)")
    args = p.parse_args()
    from tcsnn._threads import set_num_threads

    set_num_threads(args.threads)
    torch.manual_seed(0)
    snn, dense = create_model("spiking_vgg_small", width=args.width), dense_twin(args.width)
    x, y = torch.rand(args.batch, 3, 32, 32), torch.randint(0, 10, (args.batch,))

    def step_snn() -> None:
        snn.zero_grad(set_to_none=True)
        classification_loss(snn(x), y).backward()

    def step_dense() -> None:
        dense.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(dense(x), y).backward()

    step_snn(), step_dense()  # warm-up: compiles the numba kernels
    best = {"snn": float("inf"), "dense": float("inf")}
    for _ in range(args.repeats):
        for name, f in (("snn", step_snn), ("dense", step_dense)):
            t0 = time.perf_counter()
            f()
            best[name] = min(best[name], time.perf_counter() - t0)
    n = sum(q.numel() for q in snn.parameters())
    print(f"spiking_vgg_small(width={args.width}): {n:,} weights; forward+backward per batch of {args.batch}: "
          f"{best['snn']:.2f} s spiking vs {best['dense']:.3f} s dense ({best['snn'] / best['dense']:.0f}x); "
          f"{args.threads} threads, min of {args.repeats}; load average {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
