"""``tcsnn simulate``: run a checkpoint as an exact event-driven simulation (:mod:`tcsnn.neuromorphic.sim`)."""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from tcsnn.commands._options import positive_int

_CSV_FIELDS = (
    "index", "label", "prediction", "correct", "decision_time", "decision_spikes", "decision_synaptic_events",
    "input_spikes", "full_spikes", "full_synaptic_events",
)


def _json_ready(obj: Any) -> Any:
    """Non-finite floats (no decision: inf) become null, so that the file is strict JSON."""
    if isinstance(obj, dict):
        return {k: _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path,
                        help="checkpoint file or run folder of `tcsnn train`, or a quantised export")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="data folder (default: the checkpoint config's data_root)")
    parser.add_argument("--limit", type=int, default=1000, help="first N test images (default: 1000)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for sim_images.csv and sim_summary.json (default: print only)")
    parser.add_argument("--early-stop", action=argparse.BooleanOptionalAction, default=False,
                        help="stop each image at its first output spike "
                             "(default: run until all outputs fired)")
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N",
                        help="images simulated in parallel, and the threads of torch and the kernels "
                             "(default: all CPU cores)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_cli(args: argparse.Namespace) -> int:
    import json
    import sys

    import torch

    from tcsnn import __version__, set_num_threads
    from tcsnn.io import ensure_folder, relative_path, write_csv, write_text
    from tcsnn.loading import load_test_split, load_trained
    from tcsnn.neuromorphic.sim import compile_network, format_summary, simulate_images, summarize

    if args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    if args.threads is not None:  # argparse checked it is >= 1
        set_num_threads(args.threads)
    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a file, not a folder")
    trained = load_trained(args.checkpoint)
    model, config = trained.model, trained.config
    encoder = model.encoder.double()  # the checkpoint's own encoding; the simulation runs in float64
    kind, alpha = encoder.kind, encoder.alpha
    root = args.data_root if args.data_root is not None else config.get("data_root")
    x, y = load_test_split(config, args.data_root, args.limit, where=trained.path)
    x, y = torch.as_tensor(x), np.asarray(y)
    with torch.no_grad():
        z = encoder(x)  # (N, C, H, W) float64 spike values
    net = compile_network(model, tuple(x.shape[1:]))
    threads = args.threads if args.threads is not None else (os.cpu_count() or 1)
    print(f"simulating {len(x)} {config['dataset']} test images: {net.n_nodes} nodes, {net.n_edges} edges, "
          f"{threads} threads", file=sys.stderr)
    t0 = time.perf_counter()
    runs = simulate_images(net, z.numpy(), early_stop=args.early_stop, threads=threads,
                           progress=not args.no_progress)
    wall = time.perf_counter() - t0
    summary = summarize(runs, y)
    summary.update(wall_s=wall, images_per_s=len(x) / wall, threads=threads)
    print(format_summary(summary))
    if args.out is not None:
        out = ensure_folder(args.out)
        write_csv(out / "sim_images.csv", _CSV_FIELDS, (
            [i, label, r.prediction, int(r.prediction == label), repr(r.decision_time),
             r.decision_spikes, r.decision_synaptic_events, r.input_spikes,
             "" if r.full_spikes is None else r.full_spikes,
             "" if r.full_synaptic_events is None else r.full_synaptic_events]
            for i, (r, label) in enumerate(zip(runs, y.tolist(), strict=True))))
        record = {
            # paths relative to the output folder: the record stays true when the folders move together
            "settings": {"checkpoint": relative_path(trained.path, out),
                         "data_root": None if root is None else relative_path(Path(root), out),
                         "dataset": config["dataset"], "encoding": {"kind": kind, "alpha": alpha},
                         "limit": args.limit,
                         "early_stop": args.early_stop, "threads": threads},
            "versions": {"tcsnn": __version__, "numpy": np.__version__, "torch": torch.__version__},
            "network": {"nodes": net.n_nodes, "edges": net.n_edges,
                        "populations": [[p.name, list(p.shape)] for p in net.populations]},
            "metrics": summary,
        }
        text = json.dumps(_json_ready(record), indent=2, allow_nan=False)
        write_text(out / "sim_summary.json", text + "\n")
        print(f"wrote {out / 'sim_images.csv'} and {out / 'sim_summary.json'}", file=sys.stderr)
    return 0
