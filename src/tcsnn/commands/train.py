"""``tcsnn train``: train a registered recipe into a run folder (:func:`tcsnn.train.engine.train`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from tcsnn.commands._options import add_device_argument, add_threads_argument, apply_threads
from tcsnn.train.config import TrainConfig  # light: dataclasses only, no torch


def add_cli_arguments(p: argparse.ArgumentParser) -> None:
    from tcsnn.train.recipes import list_recipes

    p.add_argument("--recipe", default=None, help=f"one of: {', '.join(list_recipes())} (default: digits)")
    p.add_argument("--data-root", default=None, help="folder with the data set files (not needed for digits)")
    p.add_argument("--out", default=None, help="run folder (default: runs/<recipe>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--epochs", type=int, default=None,
                   help="number of training epochs (default: the recipe's; with --resume: a new total length)")
    p.add_argument("--batch-size", type=int, default=None, help="training images per step (default: the recipe's)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the initial weights, image order, input noise and shifts (default: 0)")
    p.add_argument("--loss", default=None,
                   help="ce, time (softmax on -t / T; T: --set loss_temperature=..., default 0.03), paper or "
                   "paper_all (default: the recipe's; time for cifar10-small, ce for the others)")
    p.add_argument("--quant-bits", default=None, help="quantisation-aware training schedule, e.g. 16,8,4")
    p.add_argument("--quant-epochs-per-step", type=int, default=None,
                   help="epochs at each width of --quant-bits (default 1); the last width runs to the end")
    p.add_argument("--quant-scale", default=None, help="quantisation grid scale rule: max (default) or mse")
    p.add_argument("--quant-grid", default=None,
                   help="quantisation code range: symmetric [-L, L] (default) or full [-L, L+1] (all 2^b codes)")
    p.add_argument("--quant-bias-bits", type=int, default=None,
                   help="width of the bias codes on each neuron's step, e.g. 16; must hold bias/step "
                        "(default: the bias is one more weight of its row)")
    p.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    p.add_argument("--test-limit", type=int, default=None, help="use only the first N test images")
    p.add_argument("--config", default=None, help="JSON file of config overrides (flags win over it)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, VALUE parsed as JSON (e.g. --set alpha=2.0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (the per-epoch lines stay)")
    add_device_argument(p)
    p.add_argument("--num-workers", type=int, default=None, metavar="N",
                   help="DataLoader worker processes (default 0: batches are fetched by the training process)")
    add_threads_argument(p)


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The config values the user gave: ``--config`` file, then ``--set``, then the flags (later ones win)."""
    overrides: dict[str, Any] = {}
    if args.config:
        path = Path(args.config)
        if path.is_dir():
            raise ValueError(f"--config {path} is a folder; give a JSON file")
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        try:
            overrides.update(json.loads(path.read_text()))
        except json.JSONDecodeError as exc:
            raise ValueError(f"config file {path} is not valid JSON: {exc}") from exc
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    flags = {"data_root": args.data_root, "epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed,
             "loss": args.loss, "quant_epochs_per_step": args.quant_epochs_per_step, "quant_scale": args.quant_scale,
             "quant_grid": args.quant_grid, "quant_bias_bits": args.quant_bias_bits,
             "train_limit": args.train_limit, "test_limit": args.test_limit,
             "device": getattr(args, "device", None), "num_workers": getattr(args, "num_workers", None)}
    if args.quant_bits:
        try:
            flags["quant_bits"] = [int(b) for b in args.quant_bits.split(",")]
        except ValueError as exc:
            raise ValueError(f"--quant-bits expects comma-separated integers, got {args.quant_bits!r}") from exc
    overrides.update({k: v for k, v in flags.items() if v is not None})
    if isinstance(overrides.get("data_root"), str):
        # stored resolved, so that eval / simulate / robustness find the data from any working directory
        overrides["data_root"] = str(Path(overrides["data_root"]).expanduser().resolve())
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"bad config: unknown keys {unknown}")
    return overrides


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    from tcsnn.train.recipes import get_recipe

    return get_recipe(args.recipe or "digits", **overrides_from_args(args))


def _same_value(field: str, a: Any, b: Any) -> bool:
    """Equal config values; data folders compare resolved (older runs stored them relative to the shell)."""
    if field == "data_root" and isinstance(a, str) and isinstance(b, str):
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    return bool(a == b)


def _check_out_and_memory(cfg: TrainConfig, out: Path) -> None:
    """Refuse an --out that is a file and a step that cannot fit in memory; drop temp files of killed saves."""
    import torch

    from tcsnn.data.datasets import dataset_info
    from tcsnn.io import clean_stale_temps
    from tcsnn.resources import check_train_memory
    from tcsnn.train.engine import build_model

    for p in (out, *out.parents):
        if p.exists() and not p.is_dir():
            raise ValueError(f"--out {out} is a file, not a folder" if p == out
                             else f"--out {out}: {p} is a file, not a folder")
    # a run folder is written by one run at a time: temp files in it are left by killed saves (any version)
    for stale in clean_stale_temps(out, legacy=True):
        print(f"removed {stale.name}, left by an interrupted save", file=sys.stderr)
    if cfg.dataset == "imagenet":  # class folders: RGB crops of image_size; their counts are read later
        shape: tuple[int, ...] = (3, cfg.image_size or 224, cfg.image_size or 224)
        n_train = cfg.train_limit or cfg.batch_size
        n_test = cfg.test_limit or cfg.eval_batch_size
    else:
        info = dataset_info(cfg.dataset)
        shape = info.shape
        n_train = min(info.num_train, cfg.train_limit or info.num_train)
        n_test = min(info.num_test, cfg.test_limit or info.num_test)
    try:
        model = build_model(cfg)
    except TypeError as exc:  # e.g. hidden=[1e9]: a float where the builder needs an integer
        raise ValueError(f"bad config: model_kwargs {cfg.model_kwargs} do not fit model {cfg.model!r}: {exc}") from exc
    check_train_memory(model, shape, min(cfg.batch_size, n_train),
                       min(cfg.eval_batch_size, n_test), getattr(torch, cfg.dtype))


def run_cli(args: argparse.Namespace) -> int:
    from tcsnn.train.checkpoint import load_checkpoint
    from tcsnn.train.engine import train

    apply_threads(args.threads)
    if args.resume and args.out is None:
        raise ValueError("--resume needs --out RUN_DIR (the run folder to continue)")
    saved = Path(args.out or "") / "checkpoint.pt"
    if args.resume and saved.exists():
        # The run's own config is authoritative (recipe defaults may have changed since); only --epochs (and
        # where it runs: --device, --num-workers) may change, and any other value given must equal the saved one.
        from tcsnn.train.config import RUNTIME_FIELDS

        base = TrainConfig.from_dict(load_checkpoint(saved)["config"])
        if args.recipe is not None and args.recipe != base.recipe:
            raise ValueError(f"--resume: {saved} is a {base.recipe!r} run, not {args.recipe!r}")
        asked = overrides_from_args(args)
        changed = [f"{key} is {getattr(base, key)!r} in this run, not {value!r}" for key, value in asked.items()
                   if key not in ("epochs", *RUNTIME_FIELDS) and not _same_value(key, value, getattr(base, key))]
        if changed:
            raise ValueError("--resume cannot change the run's config: " + "; ".join(changed)
                             + " (only --epochs may change)")
        runtime = {k: asked[k] for k in RUNTIME_FIELDS if k in asked}
        cfg = dataclasses.replace(base, epochs=args.epochs or base.epochs, **runtime)
    else:
        cfg = config_from_args(args)
    from tcsnn.train.distributed import resolve_device

    resolve_device(cfg.device)  # a missing GPU is one line before anything is printed or made
    out = Path(args.out) if args.out else Path("runs") / f"{cfg.recipe}-{time.strftime('%Y%m%d-%H%M%S')}"
    main = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 speaks and checks the folder
    if main:
        _check_out_and_memory(cfg, out)
        print(f"run folder: {out}", file=sys.stderr)
    last = train(cfg, out, resume=args.resume, progress=not args.no_progress)
    if main:
        print(f"final: test accuracy {last.get('test_accuracy', float('nan')):.2%}, "
              f"neurons spiking {last.get('spike_share', float('nan')):.1%}, "
              f"energy {last.get('energy_per_image_J', float('nan')) * 1e9:.2f} nJ/image  ({out})")
    return 0
