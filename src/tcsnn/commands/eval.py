"""``tcsnn eval``: accuracy, sparsity, energy and decision time of a checkpoint or a pretrained model
(:mod:`tcsnn.metrics`, :mod:`tcsnn.pretrained`)."""

from __future__ import annotations

import argparse

from tcsnn.commands._options import add_threads_argument, apply_threads


def add_cli_arguments(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", help="checkpoint file written by `tcsnn train`")
    which.add_argument("--pretrained", metavar="NAME",
                       help="a model shipped with tcsnn, named after its recipe (e.g. mnist); see tcsnn.pretrained")
    p.add_argument("--data-root", default=None,
                   help="data folder (default: the one recorded in the checkpoint; needed with --pretrained)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N test images")
    p.add_argument("--batch-size", type=int, default=500, help="test images per forward pass (default 500)")
    p.add_argument("--json", default=None, help="also write the metrics to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (as in train and robustness)")
    add_threads_argument(p)


def run_cli(args: argparse.Namespace) -> int:
    import json

    from tcsnn.data import load_arrays
    from tcsnn.metrics import evaluate, format_metrics
    from tcsnn.train.checkpoint import load_model

    apply_threads(args.threads)
    if args.pretrained is not None:
        from tcsnn.pretrained import load_pretrained, pretrained_entry

        model, root = load_pretrained(args.pretrained), args.data_root
        dataset = pretrained_entry(args.pretrained).dataset
    else:
        model, cfg = load_model(args.checkpoint)
        dataset, root = cfg["dataset"], args.data_root if args.data_root is not None else cfg.get("data_root")
    x, y = load_arrays(dataset, root, train=False)
    if args.limit is not None:
        if args.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {args.limit}")
        x, y = x[: args.limit], y[: args.limit]
    m = evaluate(model, x, y, batch_size=args.batch_size, progress=not args.no_progress)
    print(format_metrics(m))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(m, f, indent=2)
    return 0
