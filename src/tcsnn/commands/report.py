"""``tcsnn report``: per-epoch table and training curves (PNG) of a run folder (:mod:`tcsnn.train.report`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_cli_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run folder written by `tcsnn train`")
    p.add_argument("--png", default=None, help="where to write the plot (default: RUN_DIR/curves.png)")


def run_cli(args: argparse.Namespace) -> int:
    from tcsnn.train.report import layer_names, markdown_table, plot_curves, read_metrics

    rows = read_metrics(args.run_dir)
    names = layer_names(rows, args.run_dir)
    png = Path(args.png) if args.png else Path(args.run_dir) / "curves.png"
    png = plot_curves(rows, png, names)  # the file written: .png is added to a name without a suffix
    print(markdown_table(rows, names))
    print(f"\nwrote {png}")
    return 0
