"""``tcsnn eval``: accuracy, sparsity, energy and decision time of a checkpoint (:mod:`tcsnn.metrics`)."""

from __future__ import annotations

import argparse

from tcsnn.commands._options import add_device_argument, add_threads_argument, apply_threads, device_from_args


def add_cli_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="checkpoint file written by `tcsnn train`")
    p.add_argument("--data-root", default=None, help="data folder (default: the one recorded in the checkpoint)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N test images")
    p.add_argument("--batch-size", type=int, default=500, help="test images per forward pass (default 500)")
    p.add_argument("--json", default=None, help="also write the metrics to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (as in train and robustness)")
    add_device_argument(p)
    add_threads_argument(p)


def run_cli(args: argparse.Namespace) -> int:
    import json

    from tcsnn.data import load_arrays
    from tcsnn.metrics import evaluate, format_metrics
    from tcsnn.train.checkpoint import load_model

    apply_threads(args.threads)
    model, cfg = load_model(args.checkpoint)
    root = args.data_root if args.data_root is not None else cfg.get("data_root")
    x, y = load_arrays(cfg["dataset"], root, train=False)
    if args.limit is not None:
        if args.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {args.limit}")
        x, y = x[: args.limit], y[: args.limit]
    device = device_from_args(args.device)
    model, x, y = model.to(device), x.to(device), y.to(device)
    m = evaluate(model, x, y, batch_size=args.batch_size, progress=not args.no_progress)
    print(format_metrics(m))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(m, f, indent=2)
    return 0
