"""``tcsnn eval``: accuracy, sparsity, energy and decision time of a checkpoint (:mod:`tcsnn.metrics`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_cli_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True,
                   help="checkpoint file or run folder of `tcsnn train`, or a quantised export of `tcsnn robustness`")
    p.add_argument("--data-root", default=None, help="data folder (default: the one recorded in the checkpoint)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N test images")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--json", default=None, help="also write the metrics to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (as in train and robustness)")


def run_cli(args: argparse.Namespace) -> int:
    import torch

    from tcsnn.io import write_json
    from tcsnn.loading import load_test_split, load_trained
    from tcsnn.metrics import evaluate, format_metrics
    from tcsnn.resources import check_inference_memory

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.json is not None and Path(args.json).is_dir():
        raise ValueError(f"--json {args.json} is a folder; give a file name, e.g. {Path(args.json) / 'metrics.json'}")
    trained = load_trained(args.checkpoint)
    model, cfg = trained.model, trained.config
    x, y = load_test_split(cfg, args.data_root, args.limit, where=trained.path)
    dtype = getattr(torch, cfg.get("dtype", "float32"))
    check_inference_memory(model, tuple(x.shape[1:]), min(args.batch_size, x.shape[0]), dtype, flag="--batch-size")
    m = evaluate(model, x, y, encoding=cfg["encoding"], alpha=cfg["alpha"],
                 batch_size=args.batch_size, dtype=dtype,
                 progress=not args.no_progress)
    print(format_metrics(m))
    if args.json:
        write_json(args.json, m)
    return 0
