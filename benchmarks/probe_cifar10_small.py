"""Short CIFAR-10 training probes of the ``cifar10-small`` design, for choosing its training settings.

Each variant trains a narrow instance (``--width``, default 16: about 20 s per epoch on one core) on the first
``--train`` CIFAR-10 training images for ``--epochs`` epochs with a constant learning rate, no augmentation and
no weight average (so the test accuracy measures the trained weights, not an average still close to the
initial ones), and prints train / test accuracy per epoch.  ``dense`` is the same-shape ReLU CNN (ordinary
max-pools, softmax on the logits) with the same data, optimiser and seed: the yardstick for "learns slowly".
``--diagnose`` adds, per spiking layer of the trained model, the mean input weight sum, the median spike time
and the share of a neuron's receptive-field inputs that are causal (spike no later than the neuron).

    python benchmarks/probe_cifar10_small.py --data-root ../shared/data/cifar10 [--variants base dense ...]

Variants are recipe overrides (:data:`VARIANTS`); results go to ``--out`` (default ``runs/probe-cifar10-small``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: The probes' common settings on top of recipe cifar10-small (at the probe's width and data limits): the design's
#: first settings, loss ``ce`` and free weight sums, so that each variant's table row stays what it measured.
BASE: dict[str, Any] = {"loss": "ce", "weight_sum": None}

#: name -> overrides of :data:`BASE` (``weight-sum-3`` is the recipe's current setting).
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},
    "init-sum-2": {"model_kwargs": {"init_sum": 2.0}},
    "init-sum-1.5": {"model_kwargs": {"init_sum": 1.5}},
    "lr-3e-3": {"lr": 3e-3},
    "lr-3e-4": {"lr": 3e-4},
    "K-1": {"K": 1.0},
    "clip-1": {"grad_clip": 1.0},
    "l2-0": {"l2": 0.0},
    "alpha-2": {"alpha": 2.0, "model_kwargs": {"init_sum": 2.0}},
    "loss-paper-all": {"loss": "paper_all"},
    "loss-time": {"loss": "time"},
    "loss-time-0.1": {"loss": "time", "loss_temperature": 0.1},
    "weight-sum-1.5": {"loss": "time", "weight_sum": 1.5},
    "weight-sum-3": {"loss": "time", "weight_sum": 3.0},
}


def _config(name: str, args: argparse.Namespace) -> Any:
    from tcsnn.train.recipes import get_recipe

    over = {**BASE, **VARIANTS[name]}
    kwargs = {"width": args.width, **over.pop("model_kwargs", {})}
    lr = over.pop("lr", 1e-3)
    return get_recipe("cifar10-small", data_root=args.data_root, train_limit=args.train, test_limit=args.test,
                      epochs=args.epochs, model_kwargs=kwargs, ema_decay=None, augment=None, lr=lr, lr_final=lr,
                      seed=args.seed, **over)


def _spiking(name: str, args: argparse.Namespace) -> dict[str, Any]:
    from tcsnn.train import engine
    from tcsnn.train.checkpoint import load_model

    cfg = _config(name, args)
    out = Path(args.out) / name
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        engine.train(cfg, out, progress=False)  # the per-epoch lines are in metrics.jsonl
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    result: dict[str, Any] = {"train": [r["train_accuracy"] for r in rows], "test": [r["test_accuracy"] for r in rows]}
    if args.diagnose:
        model, _ = load_model(out / "checkpoint.pt")
        result["layers"] = diagnose(model, engine.make_datasets(cfg).test, n=64)
    return result


def diagnose(model: nn.Module, test: Any, n: int) -> list[dict[str, float]]:
    """Per spiking layer on n test images: mean row weight sum, median spike time, causal share of inputs."""
    from tcsnn.nn.introspect import spiking_layers

    x = torch.stack([torch.as_tensor(test[i][0]) for i in range(n)])
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = [m.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, (i[0], o)))
             for name, m in spiking_layers(model)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    rows = []
    for name, m in spiking_layers(model):
        z_in, z_out = seen[name]
        if z_in.dim() == 4:  # (B, C, H, W): each output's receptive field, padded taps never causal
            k, pad = m.weight.shape[-1], m.padding
            t_in = torch.where(torch.isfinite(z_in), z_in.log(), torch.full_like(z_in, 1e9))
            cols = F.unfold(t_in, k, padding=pad)  # (B, C k k, L)
            real = F.unfold(torch.ones_like(t_in[:, :1]), k, padding=pad) > 0  # (B, k k, L)
            cols = torch.where(real.repeat(1, t_in.shape[1], 1), cols, torch.full_like(cols, 1e9))
            t_out = z_out.log().flatten(2)  # (B, O, L)
            causal = (cols[:, None] <= t_out[:, :, None]).float().mean(2)  # (B, O, L)
        else:  # (B, N) -> (B, O)
            t_in, t_out = z_in.log(), z_out.log()
            causal = (t_in[:, None, :] <= t_out[:, :, None]).float().mean(2)
        fired = torch.isfinite(t_out)
        rows.append({"layer": name, "weight_sum": float(m.weight.detach().flatten(1).sum(1).mean()),
                     "median_t": float(t_out[fired].median()) if fired.any() else float("nan"),
                     "causal_share": float(causal[fired].mean()) if fired.any() else float("nan"),
                     "fired": float(fired.float().mean())})
    return rows


def _dense(args: argparse.Namespace) -> dict[str, Any]:
    """The same-shape ReLU CNN (:func:`bench_vgg_small.dense_twin`), softmax cross-entropy, Adam."""
    from bench_vgg_small import dense_twin  # this folder: the scripts run with it first on sys.path

    from tcsnn.data.transforms import Whiten
    from tcsnn.train import engine

    cfg = _config("base", args)
    splits = engine.make_datasets(cfg)
    torch.manual_seed(args.seed)
    net = dense_twin(args.width)
    whiten = Whiten.for_dataset("cifar10")

    def stack(ds: Any) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = zip(*[ds[i] for i in range(len(ds))], strict=True)
        return whiten(torch.stack([torch.as_tensor(a) for a in xs])), torch.as_tensor(ys)

    (x, y), (xt, yt) = stack(splits.train), stack(splits.test)
    opt = torch.optim.Adam(net.parameters(), cfg.lr)
    gen = torch.Generator().manual_seed(args.seed)
    result: dict[str, Any] = {"train": [], "test": []}
    for _ in range(args.epochs):
        correct = 0
        for idx in torch.randperm(len(y), generator=gen).split(cfg.batch_size):
            logits = net(x[idx])
            loss = F.cross_entropy(logits, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            correct += int((logits.argmax(1) == y[idx]).sum())
        with torch.no_grad():
            result["train"].append(correct / len(y))
            result["test"].append(float((net(xt).argmax(1) == yt).float().mean()))
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", required=True, help="folder with the CIFAR-10 files")
    p.add_argument("--variants", nargs="+", default=["dense", "base"], choices=["dense", *VARIANTS])
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--train", type=int, default=4096, help="first N training images")
    p.add_argument("--test", type=int, default=1000, help="first N test images")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--diagnose", action="store_true", help="per-layer weight sums, spike times, causal shares")
    p.add_argument("--out", default="runs/probe-cifar10-small")
    args = p.parse_args()
    from tcsnn import set_num_threads

    set_num_threads(args.threads)
    print(f"width {args.width}, first {args.train} / {args.test} images, {args.epochs} epochs, constant lr, no "
          "augmentation or weight average; accuracy train / test per epoch")
    for name in args.variants:
        start = time.perf_counter()
        r = _dense(args) if name == "dense" else _spiking(name, args)
        accs = " | ".join(f"{a * 100:.1f} / {b * 100:.1f}" for a, b in zip(r["train"], r["test"], strict=True))
        print(f"{name:15s} {accs}   ({time.perf_counter() - start:.0f} s)", flush=True)
        for row in r.get("layers", []):
            print(f"    {row['layer']:14s} weight sum {row['weight_sum']:6.2f}  median t {row['median_t']:.2f}  "
                  f"causal share {row['causal_share']:.2f}  fired {row['fired']:.2f}")


if __name__ == "__main__":
    main()
