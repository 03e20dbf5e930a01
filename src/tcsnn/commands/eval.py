"""``tcsnn eval``: accuracy, sparsity, energy and decision time of a checkpoint or a pretrained model
(:mod:`tcsnn.metrics`, :mod:`tcsnn.pretrained`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tcsnn.commands._options import add_device_argument, add_threads_argument, apply_threads, device_from_args


def add_cli_arguments(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint",
                       help="checkpoint file or run folder of `tcsnn train`, or a quantised export of "
                            "`tcsnn robustness`")
    which.add_argument("--pretrained", metavar="NAME",
                       help="a model shipped with tcsnn, named after its recipe (e.g. mnist); see tcsnn.pretrained")
    p.add_argument("--data-root", default=None,
                   help="data folder (default: the one recorded in the checkpoint; needed with --pretrained)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N test images")
    p.add_argument("--batch-size", type=int, default=500, help="test images per forward pass (default 500)")
    p.add_argument("--json", default=None, help="also write the metrics to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (as in train and robustness)")
    add_device_argument(p)
    add_threads_argument(p)


def run_cli(args: argparse.Namespace) -> int:
    from tcsnn.io import write_json
    from tcsnn.loading import load_test_split, load_trained
    from tcsnn.metrics import evaluate, format_metrics
    from tcsnn.resources import check_inference_memory

    apply_threads(args.threads)
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.json is not None and Path(args.json).is_dir():
        raise ValueError(f"--json {args.json} is a folder; give a file name, e.g. {Path(args.json) / 'metrics.json'}")
    if args.pretrained is not None:
        from tcsnn.pretrained import load_pretrained, pretrained_entry

        model, where = load_pretrained(args.pretrained), f"pretrained model {args.pretrained!r}"
        cfg = {"dataset": pretrained_entry(args.pretrained).dataset}
    else:
        trained = load_trained(args.checkpoint)
        model, cfg, where = trained.model, trained.config, trained.path
    x, y = load_test_split(cfg, args.data_root, args.limit, where=where)
    dtype = next(model.parameters()).dtype
    check_inference_memory(model, tuple(x.shape[1:]), min(args.batch_size, x.shape[0]), dtype, flag="--batch-size")
    device = device_from_args(args.device)
    model, x, y = model.to(device), x.to(device), y.to(device)
    m = evaluate(model, x, y, batch_size=args.batch_size, progress=not args.no_progress)
    print(format_metrics(m))
    if args.json:
        write_json(args.json, m)
    return 0
