"""Train-step time and peak memory of the MNIST network, layer by layer, against dense PyTorch twins.

For each layer of the paper's MNIST network (and the whole network) this measures one training step
(forward + backward) of the spiking layer and of ``nn.Conv2d`` / ``nn.Linear`` of the same shape (with ReLU
and max-pool where the spiking net pools), in the same run, and prints the ratios.  Every case runs in its own
subprocess so that peak memory (growth of the resident set during the step) is measured cleanly.
``benchmarks/bench_layers.py`` compares single layers with interleaved runs.

    python benchmarks/bench_mnist.py [--batch 32] [--repeats 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from tcsnn.io import write_json

CASE = r"""
import json, resource, sys, time, torch
from torch import nn
import tcsnn
tcsnn.set_num_threads({threads})
from tcsnn.nn import SpikingConv2d, SpikingLinear, SpikingMaxPool2d
from tcsnn.models import create_model
torch.manual_seed(0)
B, kind, which = {batch}, "{kind}", "{which}"
shapes = {{"conv1": (1, 28), "conv2": (32, 14), "fc": (784, None), "net": (1, 28), "net-reference": (1, 28)}}
cin, side = shapes[which]
if which.startswith("net"):
    if kind == "snn":
        f = create_model("scnn_mnist").body  # spike values in, as the other cases
        if which == "net-reference":  # the plain sort + gather + cumsum backend
            for m in f.modules():
                if hasattr(m, "backend"):
                    m.backend = "reference"
    else:
        f = nn.Sequential(nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 16, 5, padding=2),
                          nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(784, 10))
    shape = (B, 1, 28, 28)
elif which == "fc":
    f = SpikingLinear(784, 10) if kind == "snn" else nn.Linear(784, 10)
    shape = (B, 784)
else:
    cout = 32 if which == "conv1" else 16
    f = (nn.Sequential(SpikingConv2d(cin, cout, 5, padding=2), SpikingMaxPool2d(2)) if kind == "snn"
         else nn.Sequential(nn.Conv2d(cin, cout, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2)))
    shape = (B, cin, side, side)
x = (torch.exp(3 * torch.rand(shape)) if kind == "snn" else torch.rand(shape)).requires_grad_()
def step():
    out = f(x)
    out = torch.where(torch.isfinite(out), out, torch.zeros_like(out))
    out.sum().backward()
step()  # warm-up (compiles the numba kernels)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
for _ in range({repeats}):
    step()
dt = (time.perf_counter() - t0) / {repeats}
peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024
print(json.dumps({{"time_s": dt, "peak_bytes": peak}}))
"""


def measure(kind: str, which: str, batch: int, repeats: int, threads: int) -> dict[str, float]:
    code = CASE.format(kind=kind, which=which, batch=batch, repeats=repeats, threads=threads)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None, help="also write the table to this JSON file")
    args = p.parse_args()
    rows = []
    print(f"train step (forward + backward), batch {args.batch}, {args.threads} threads, mean of {args.repeats}")
    print(f"{'layer':<14}{'SNN ms':>10}{'dense ms':>10}{'time x':>9}{'SNN MB':>10}{'dense MB':>10}{'epoch s':>10}")
    for which in ("conv1", "conv2", "fc", "net", "net-reference"):
        repeats = args.repeats if which != "net-reference" else max(1, args.repeats // 10)
        snn = measure("snn", which, args.batch, repeats, args.threads)
        dense = measure("dense", which, args.batch, args.repeats, args.threads)
        epoch = snn["time_s"] * 60000 / args.batch
        rows.append({"layer": which, "snn": snn, "dense": dense, "time_ratio": snn["time_s"] / dense["time_s"],
                     "snn_epoch_s": epoch})
        print(f"{which:<14}{snn['time_s'] * 1e3:>10.2f}{dense['time_s'] * 1e3:>10.2f}"
              f"{snn['time_s'] / dense['time_s']:>9.1f}{snn['peak_bytes'] / 2**20:>10.1f}"
              f"{dense['peak_bytes'] / 2**20:>10.1f}{epoch:>10.1f}")
    print("epoch s = the step time x 60,000 / batch (train steps only, no evaluation)")
    if args.json:
        write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
