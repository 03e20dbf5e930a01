"""Train-step time (forward + backward) of spiking layers against dense ``Conv2d + ReLU`` of the same shape.

For each shape (3x3 convolutions with padding 1 at the VGG16 CIFAR-10 sizes, and the MNIST network of the
paper) and each backend available here, one process times the spiking step and the dense step alternately,
``--repeats`` times, and keeps the minima (a loaded machine slows both sides at random; minima of interleaved
runs are the fairest comparison).  Peak memory is the growth of the resident set during one step, measured in
a fresh process after one warm-up step on a batch of 1 (Linux: ``/proc/self/clear_refs`` resets the peak).
Inputs: ``z = exp(3 U(0, 1))`` for the spiking layers, ``U(0, 1)`` for the dense ones, float32, default
initialisation.

    python benchmarks/bench_layers.py [--batch 32 128] [--threads 2] [--repeats 7] [--backends numba]

On a busy machine wall-clock times of both sides swing by several times; ``--cpu-time --threads 1`` measures
the process CPU time of single-threaded steps instead, which other processes barely disturb.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch
from torch import nn

from tcsnn.io import write_json

#: (name, in channels, out channels, side) of the 3x3, padding-1 rows; "mnist" is the paper's MNIST network.
SHAPES: tuple[tuple[str, int, int, int], ...] = (
    ("3 -> 64 @ 32x32", 3, 64, 32),
    ("64 -> 64 @ 32x32", 64, 64, 32),
    ("128 -> 128 @ 16x16", 128, 128, 16),
    ("256 -> 256 @ 8x8", 256, 256, 8),
    ("512 -> 512 @ 4x4", 512, 512, 4),
    ("MNIST network", 1, 0, 28),
)


def _peak_rss_reset() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def peak_bytes(step: Callable[[], None]) -> float:
    """Growth of the resident set during one call of ``step`` (NaN where the peak cannot be reset)."""
    if not _peak_rss_reset():
        return float("nan")
    base = _rss_kb("VmRSS:")
    step()
    return (_rss_kb("VmHWM:") - base) * 1024.0


def memory_case(name: str, batch: int, backend: str | None, threads: int) -> float:
    """Peak resident-set growth (bytes) of one step in a fresh process (NaN when it cannot be measured)."""
    import subprocess
    import sys

    cmd = [sys.executable, __file__, "--memory-case", name, str(batch), backend or "dense", "--threads", str(threads)]
    try:
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    except subprocess.CalledProcessError:
        return float("nan")
    return float(out.strip().splitlines()[-1])


def build(name: str, cin: int, cout: int, side: int, batch: int, backend: str | None) -> Callable[[], None]:
    """One train step of the spiking (``backend`` given) or dense (``backend=None``) model."""
    from tcsnn.models import create_model
    from tcsnn.nn import SpikingConv2d

    if name == "MNIST network":
        if backend is None:
            model = nn.Sequential(nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(32, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                  nn.Linear(784, 10))
        else:
            model = create_model("scnn_mnist").body  # spike values in, as the layer rows
            for m in model.modules():
                if hasattr(m, "backend"):
                    m.backend = backend
    else:
        model = (nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()) if backend is None
                 else SpikingConv2d(cin, cout, 3, padding=1, backend=backend))  # type: ignore[arg-type]
    shape = (batch, cin, side, side)
    x = (torch.rand(shape) if backend is None else torch.exp(3 * torch.rand(shape))).requires_grad_()

    def step() -> None:
        out = model(x)
        torch.where(torch.isfinite(out), out, torch.zeros_like(out)).sum().backward()

    return step


def timed(step: Callable[[], None], clock: Callable[[], float] = time.perf_counter) -> float:
    t0 = clock()
    step()
    return clock() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, nargs="+", default=[32, 128])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--backends", nargs="+", default=None,
                   help="default: every fast backend available for CPU tensors here (numba)")
    p.add_argument("--rows", nargs="+", default=None, help="row names to run (default: all), e.g. 'MNIST network'")
    p.add_argument("--cpu-time", action="store_true",
                   help="time with the process CPU clock (use with --threads 1 on a loaded machine)")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    p.add_argument("--memory-case", nargs=3, default=None, help=argparse.SUPPRESS)  # internal: one fresh process
    args = p.parse_args()

    import tcsnn
    from tcsnn.functional import backends

    tcsnn.set_num_threads(args.threads)
    if args.memory_case:
        name, batch, kind = args.memory_case
        cin, cout, side = next((c, o, sd) for n, c, o, sd in SHAPES if n == name)
        build(name, cin, cout, side, 1, None if kind == "dense" else kind)()  # load kernels and libraries
        print(peak_bytes(build(name, cin, cout, side, int(batch), None if kind == "dense" else kind)))
        return 0
    names = args.backends or [n for n in ("numba",) if backends.is_available(n)]
    torch.manual_seed(0)
    load = os.getloadavg()
    clock = time.process_time if args.cpu_time else time.perf_counter
    print(f"forward + backward, float32, {args.threads} threads, minima of {args.repeats} interleaved runs "
          f"({'process CPU time' if args.cpu_time else 'wall clock'}); "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs; torch {torch.__version__}")
    print("| layer | batch | backend | spiking ms | dense ms | ratio | spiking MB | dense MB |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for name, cin, cout, side in SHAPES:
        if args.rows and name not in args.rows:
            continue
        for batch in args.batch:
            for backend in names:
                snn, dense = build(name, cin, cout, side, batch, backend), build(name, cin, cout, side, batch, None)
                snn()  # warm-up: compiles / loads the kernels
                dense()
                ts, td = [], []
                for _ in range(args.repeats):
                    ts.append(timed(snn, clock))
                    td.append(timed(dense, clock))
                ms = memory_case(name, batch, backend, args.threads)
                md = memory_case(name, batch, None, args.threads)
                row = {"layer": name, "batch": batch, "backend": backend, "spiking_ms": min(ts) * 1e3,
                       "dense_ms": min(td) * 1e3, "ratio": min(ts) / min(td), "spiking_mb": ms / 2**20,
                       "dense_mb": md / 2**20}
                rows.append(row)
                print(f"| {name} | {batch} | {backend} | {row['spiking_ms']:.1f} | {row['dense_ms']:.1f} | "
                      f"{row['ratio']:.1f}x | {row['spiking_mb']:.0f} | {row['dense_mb']:.0f} |", flush=True)
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.json:
        write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
