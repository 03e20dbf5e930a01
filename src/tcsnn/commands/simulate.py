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
    parser.add_argument("--checkpoint", required=True, type=Path, help="a tcsnn checkpoint file")
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
    import csv
    import json
    import sys

    import torch

    from tcsnn import __version__, set_num_threads
    from tcsnn.neuromorphic.sim import compile_network, format_summary, simulate_images, summarize
    from tcsnn.train.checkpoint import load_model

    if args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    if args.threads is not None:  # argparse checked it is >= 1
        set_num_threads(args.threads)
    model, config = load_model(args.checkpoint)
    root = args.data_root if args.data_root is not None else config.get("data_root")
    if root is None:
        raise ValueError("no data folder: pass --data-root (the checkpoint config has no data_root)")
    encoder = model.encoder.double()  # the checkpoint's own encoding; the simulation runs in float64
    kind, alpha = encoder.kind, encoder.alpha
    from tcsnn.data import load_arrays

    x, y = load_arrays(config["dataset"], root, train=False)
    x, y = torch.as_tensor(x[:args.limit]), np.asarray(y[:args.limit])
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
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "sim_images.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(_CSV_FIELDS)
            for i, (r, label) in enumerate(zip(runs, y.tolist(), strict=True)):
                writer.writerow([i, label, r.prediction, int(r.prediction == label), repr(r.decision_time),
                                 r.decision_spikes, r.decision_synaptic_events, r.input_spikes,
                                 "" if r.full_spikes is None else r.full_spikes,
                                 "" if r.full_synaptic_events is None else r.full_synaptic_events])
        record = {
            "settings": {"checkpoint": str(Path(args.checkpoint).resolve()), "data_root": str(root),
                         "dataset": config["dataset"], "encoding": {"kind": kind, "alpha": alpha},
                         "limit": args.limit,
                         "early_stop": args.early_stop, "threads": threads},
            "versions": {"tcsnn": __version__, "numpy": np.__version__, "torch": torch.__version__},
            "network": {"nodes": net.n_nodes, "edges": net.n_edges,
                        "populations": [[p.name, list(p.shape)] for p in net.populations]},
            "metrics": summary,
        }
        text = json.dumps(_json_ready(record), indent=2, allow_nan=False)
        (out / "sim_summary.json").write_text(text + "\n")
        print(f"wrote {out / 'sim_images.csv'} and {out / 'sim_summary.json'}", file=sys.stderr)
    return 0
