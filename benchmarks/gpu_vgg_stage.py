"""The SpikingVGG16 CIFAR-10 stage of the GPU check: throughput against a dense VGG16, then training for a budget.

:func:`run_vgg_stage` (called by ``benchmarks/gpu_check.py``, or run alone):

1. **Throughput.**  Images per second of one training step (forward + backward + optimiser step) and of one
   evaluation forward, for SpikingVGG16 (paper Table 1) and for the same-shape dense VGG16 (``nn.Conv2d`` +
   ReLU, ``nn.MaxPool2d``, ``nn.Linear`` + ReLU), measured in the same run, interleaved (spiking, dense,
   spiking, ...), the minimum time of ``repeats`` steps each; the ratio is dense / spiking images per second.
2. **Training.**  SpikingVGG16 trains on CIFAR-10 (random crop with 4-pixel padding and horizontal flip,
   Adam, cross-entropy on -z plus the paper's weight-sum penalty) for the whole epochs that fit the remaining
   time budget; the test accuracy (a silent or tied output counts as wrong) is measured after each epoch.
   This is a fixed short-budget setting for a first number, not the paper's 320-epoch recipe.

The result is a dict (also written to ``OUT/vgg_stage.json``).  ``--smoke`` runs everything on the CPU with a
4-channel-wide SpikingVGG16 and generated images, in seconds; the default test suite runs it.

    python benchmarks/gpu_vgg_stage.py --data-root DATA/cifar10 --minutes 10 --out runs/gpu_vgg
    python benchmarks/gpu_vgg_stage.py --smoke --out /tmp/vgg_smoke
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: SpikingVGG16 arguments of the smoke mode: every layer of Table 1, 1/16 of the width.
SMOKE_MODEL = {"width": 4, "fc_widths": (16, 16, 8)}
#: Generated images in the smoke mode (train, test).
SMOKE_IMAGES = (64, 32)
#: Random-crop padding of the augmentation (pixels).
CROP_PAD = 4
#: Optimiser of the training part (a short-budget setting, see the module docstring).
LEARNING_RATE = 1e-3
PENALTY_BETA = 1.0


def dense_vgg16(*, width: int = 64, fc_widths: Sequence[int] = (4096, 4096, 512), num_classes: int = 10,
                in_channels: int = 3, image_size: int = 32) -> nn.Sequential:
    """The dense twin of :func:`tcsnn.models.vgg.spiking_vgg16`: the same layer shapes, ReLU activations."""
    from tcsnn.models.vgg import VGG16_CFG, _scaled

    layers: list[nn.Module] = []
    c, side = in_channels, image_size
    for spec in _scaled(VGG16_CFG, width):
        if spec == "M":
            layers.append(nn.MaxPool2d(2))
            side //= 2
        else:
            out, k = spec  # type: ignore[misc]
            layers += [nn.Conv2d(c, out, k, padding=k // 2), nn.ReLU()]
            c = out
    layers.append(nn.Flatten())
    sizes = [c * side * side, *fc_widths, num_classes]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def augment(x: Tensor, generator: torch.Generator) -> Tensor:
    """Random crop (``CROP_PAD`` padding, per image) and horizontal flip: (B, C, H, W) -> (B, C, H, W)."""
    b, _, h, w = x.shape
    xp = F.pad(x, (CROP_PAD,) * 4)
    dy = torch.randint(0, 2 * CROP_PAD + 1, (b,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * CROP_PAD + 1, (b,), generator=generator).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (B, 1, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (B, 1, 1, W)
    idx = torch.arange(b, device=x.device)[:, None, None, None]
    chan = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    out = xp[idx, chan, rows, cols]  # (B, C, H, W)
    flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def _min_time(fns: dict[str, Callable[[], None]], repeats: int, device: torch.device) -> dict[str, float]:
    """Seconds per call of each function: interleaved runs, minimum over ``repeats`` (after one warm-up each)."""
    for f in fns.values():
        f()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, f in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            f()
            _sync(device)
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def _load_data(data_root: str | Path | None, smoke: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    if smoke:
        g = torch.Generator().manual_seed(0)
        n_tr, n_te = SMOKE_IMAGES
        return (torch.rand(n_tr, 3, 32, 32, generator=g), torch.randint(0, 10, (n_tr,), generator=g),
                torch.rand(n_te, 3, 32, 32, generator=g), torch.randint(0, 10, (n_te,), generator=g))
    if data_root is None:
        raise ValueError("the VGG stage needs CIFAR-10: pass data_root (the folder with cifar-10-batches-bin)")
    from tcsnn.data import load_arrays

    x_tr, y_tr = load_arrays("cifar10", data_root, train=True)
    x_te, y_te = load_arrays("cifar10", data_root, train=False)
    return x_tr, y_tr, x_te, y_te


def run_vgg_stage(
    device: str | torch.device, minutes: float, data_root: str | Path | None, out: str | Path, *,
    smoke: bool = False, batch_size: int = 128, repeats: int = 5, backend: str = "auto", seed: int = 0,
    min_epochs: int = 0,
) -> dict[str, Any]:
    """Throughput of SpikingVGG16 vs dense VGG16, then training for the epochs that fit ``minutes`` in total.

    Args:
        device: where to run (``"cuda"``, ``"cpu"``, ...).
        minutes: the whole stage's time budget, throughput measurement included.
        data_root: CIFAR-10 folder (ignored with ``smoke``).
        out: folder for ``vgg_stage.json``.
        smoke: tiny model and generated images (CPU seconds), for the test suite.
        backend: the spike-time backend of every spiking layer (``tcsnn.nn.set_backend``).
        min_epochs: epochs to train even past the budget (the smoke mode uses 1, so that every part runs).
    """
    from tcsnn.functional.loss import classification_loss, weight_sum_penalty
    from tcsnn.metrics import evaluate
    from tcsnn.models import create_model
    from tcsnn.nn import set_backend, spiking_layers

    if minutes <= 0 or batch_size < 1 or repeats < 1:
        raise ValueError(f"need minutes > 0, batch_size >= 1, repeats >= 1; got {minutes}, {batch_size}, {repeats}")
    device = torch.device(device)
    start = time.perf_counter()
    deadline = start + 60.0 * minutes
    torch.manual_seed(seed)
    kwargs: dict[str, Any] = dict(SMOKE_MODEL) if smoke else {}
    snn = set_backend(create_model("spiking_vgg16", **kwargs), backend).to(device)
    dense = dense_vgg16(**kwargs).to(device)
    x_tr, y_tr, x_te, y_te = _load_data(data_root, smoke)
    bench_batch = min(batch_size, x_tr.shape[0])
    xb, yb = x_tr[:bench_batch].to(device), y_tr[:bench_batch].to(device)
    opt_s = torch.optim.Adam(snn.parameters(), lr=LEARNING_RATE)
    opt_d = torch.optim.Adam(dense.parameters(), lr=LEARNING_RATE)

    def penalty() -> Tensor:
        return weight_sum_penalty(((m.weight, m.bias) for _, m in spiking_layers(snn)), PENALTY_BETA)

    def snn_train() -> None:
        opt_s.zero_grad(set_to_none=True)
        (classification_loss(snn(xb), yb) + penalty()).backward()
        opt_s.step()

    def dense_train() -> None:
        opt_d.zero_grad(set_to_none=True)
        F.cross_entropy(dense(xb), yb).backward()
        opt_d.step()

    def forward_only(model: nn.Module) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():
                model(xb)
        return run

    snn_state = {k: v.clone() for k, v in snn.state_dict().items()}  # the measurement steps are not training
    snn.train(), dense.train()
    train_t = _min_time({"snn": snn_train, "dense": dense_train}, repeats, device)
    snn.eval(), dense.eval()
    eval_t = _min_time({"snn": forward_only(snn), "dense": forward_only(dense)}, repeats, device)
    snn.load_state_dict(snn_state)
    opt_s = torch.optim.Adam(snn.parameters(), lr=LEARNING_RATE)

    def rate(t: dict[str, float]) -> dict[str, float]:
        s, d = bench_batch / t["snn"], bench_batch / t["dense"]
        return {"snn": s, "dense": d, "dense_over_snn": d / s}

    result: dict[str, Any] = {
        "stage": "spiking_vgg16_cifar10", "device": str(device), "smoke": smoke, "backend": backend,
        "model_kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()},
        "weights": sum(p.numel() for p in snn.parameters()), "batch_size": bench_batch, "repeats": repeats,
        "train_images_per_s": rate(train_t), "eval_images_per_s": rate(eval_t),
        "minutes_budget": minutes, "epochs": [], "test_accuracy": None,
        "torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
    }
    gen = torch.Generator().manual_seed(seed)
    n = x_tr.shape[0]
    last_epoch_s = 0.0
    while len(result["epochs"]) < min_epochs or time.perf_counter() + last_epoch_s < deadline:
        t0 = time.perf_counter()
        snn.train()
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            xb_e = augment(x_tr[idx], gen).to(device)
            opt_s.zero_grad(set_to_none=True)
            (classification_loss(snn(xb_e), y_tr[idx].to(device)) + penalty()).backward()
            opt_s.step()
        train_s = time.perf_counter() - t0
        m = evaluate(snn, x_te.to(device), y_te.to(device), batch_size=max(batch_size, 500))
        last_epoch_s = time.perf_counter() - t0
        result["epochs"].append({"epoch": len(result["epochs"]) + 1, "train_s": train_s, "epoch_s": last_epoch_s,
                                 "test_accuracy": m["test_accuracy"], "no_decision_rate": m["no_decision_rate"],
                                 "spike_share": m["spike_share"]})
        result["test_accuracy"] = m["test_accuracy"]
    result["wall_s"] = time.perf_counter() - start
    from tcsnn.io import write_json

    write_json(Path(out) / "vgg_stage.json", result)
    return result


def format_result(r: dict[str, Any]) -> str:
    tr, ev = r["train_images_per_s"], r["eval_images_per_s"]
    acc = "no epoch fitted" if r["test_accuracy"] is None else (
        f"test accuracy {r['test_accuracy']:.2%} after {len(r['epochs'])} epoch(s)")
    return (f"SpikingVGG16 ({r['weights']:,} weights, {r['device']}, batch {r['batch_size']}): "
            f"train {tr['snn']:.1f} img/s vs dense {tr['dense']:.1f} (dense/spiking {tr['dense_over_snn']:.1f}x), "
            f"eval {ev['snn']:.1f} img/s vs dense {ev['dense']:.1f} ({ev['dense_over_snn']:.1f}x); {acc}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--minutes", type=float, default=10.0, help="time budget of the whole stage (default 10)")
    p.add_argument("--data-root", default=None, help="CIFAR-10 folder (not needed with --smoke)")
    p.add_argument("--out", required=True, help="folder for vgg_stage.json")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--backend", default="auto", help="spike-time backend of the spiking layers (default auto)")
    p.add_argument("--smoke", action="store_true", help="CPU, tiny SpikingVGG16, generated images: seconds")
    args = p.parse_args(argv)
    if args.smoke:
        args.device, args.minutes = "cpu", min(args.minutes, 0.5)
    r = run_vgg_stage(args.device, args.minutes, args.data_root, args.out, smoke=args.smoke,
                      batch_size=args.batch_size, backend=args.backend, repeats=2 if args.smoke else 5,
                      min_epochs=1 if args.smoke else 0)
    print(format_result(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
