"""``tcsnn robustness``: sweep weight bits, weight-noise SNR and input jitter for a checkpoint.

The library part is :mod:`tcsnn.robustness`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tcsnn.commands._options import add_device_argument, add_threads_argument, apply_threads, device_from_args

# The defaults of :func:`tcsnn.robustness.run_sweep` and the rules of :mod:`tcsnn.quant`, spelled out here so that
# building the parser does not import torch (tests/test_cli.py checks they agree).
DEFAULT_BITS = "32,16,8,4,2"
DEFAULT_SNR_DB = "10,15,20,25,30,35,40"
DEFAULT_JITTER = "0.01,0.02,0.05,0.1,0.2"
SCALES = ("max", "mse")
GRIDS = ("symmetric", "full")


def parse_list(text: str, name: str, convert: Callable[[str], Any]) -> list[Any]:
    """Comma-separated values; an empty string is an empty list (that sweep is skipped)."""
    items = [s.strip() for s in text.split(",") if s.strip()]
    try:
        return [convert(s) for s in items]
    except ValueError as exc:
        raise ValueError(f"{name} expects comma-separated numbers (or '' to skip), got {text!r}") from exc


def add_cli_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True,
                   help="checkpoint of `tcsnn train`, or a quantised model written with --save-quantized")
    p.add_argument("--out", required=True, help="folder for robustness.json/.csv and the plots (resumable)")
    p.add_argument("--data-root", default=None, help="data folder (default: the one recorded in the checkpoint)")
    p.add_argument("--bits", default=DEFAULT_BITS,
                   help="post-training weight bit widths, >= 2 ('' skips; default %(default)s)")
    p.add_argument("--snr", default=DEFAULT_SNR_DB,
                   help="weight-noise SNRs in dB ('' skips; default %(default)s)")
    p.add_argument("--jitter", default=DEFAULT_JITTER,
                   help="relative input spike-time jitter levels, >= 0 ('' skips; default %(default)s)")
    p.add_argument("--scale", default="max", choices=SCALES,
                   help="clipping rule of the --bits quantiser: max (default) or mse (see tcsnn.quant)")
    p.add_argument("--grid", default="symmetric", choices=GRIDS,
                   help="code range of the --bits quantiser: symmetric [-L, L] (default) or full [-L, L+1]")
    p.add_argument("--bias-bits", type=int, default=None,
                   help="width of the bias codes on each neuron's step, e.g. 16; must hold bias/step "
                        "(default: the bias is one more weight of its row)")
    p.add_argument("--draws", type=int, default=5, help="seeded noise / jitter draws per level (default 5)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the weight-noise and jitter draws, >= 0 (default 0)")
    p.add_argument("--layers", default=None,
                   help="comma-separated spiking layers to quantise / perturb, by printed name (e.g. conv1,out) "
                        "or module name (e.g. features.0,classifier.0) (default: all)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N test images")
    p.add_argument("--batch-size", type=int, default=500, help="test images per forward pass (default 500)")
    p.add_argument("--save-quantized", action="store_true",
                   help="also write OUT/quantized-<b>bit.pt (integer codes + scales) for every --bits width")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_device_argument(p)
    add_threads_argument(p)



def run_cli(args: argparse.Namespace) -> int:

    from tcsnn.io import relative_path, sha256_file
    from tcsnn.loading import load_test_split, resolve_checkpoint
    from tcsnn.nn.introspect import layer_labels
    from tcsnn.quant import (
        check_bias_bits,
        check_bits,
        export_quantized,
        get_weight_bits,
        save_quantized,
        select_layers,
    )
    from tcsnn.resources import check_inference_memory
    from tcsnn.robustness import (
        EvalSpec,
        check_draws,
        check_jitter,
        check_snr_db,
        format_table,
        load_any,
        plot_sweeps,
        run_sweep,
        sweep_title,
        write_csv,
    )

    apply_threads(args.threads)
    bits = parse_list(args.bits, "--bits", int)
    snr_db = parse_list(args.snr, "--snr", float)
    jitter = parse_list(args.jitter, "--jitter", float)
    for b in bits:
        check_bits(b)
    for s in snr_db:
        check_snr_db(s)
    for j in jitter:
        check_jitter(j)
    check_draws(args.draws)
    check_bias_bits(args.bias_bits)
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    layers = None if args.layers is None else [s.strip() for s in args.layers.split(",") if s.strip()]
    if layers is not None and not layers:
        raise ValueError("--layers needs at least one layer name")
    if args.save_quantized and layers is not None:
        raise ValueError("--save-quantized exports every layer; it cannot be combined with --layers")

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    ckpt_path = resolve_checkpoint(args.checkpoint)  # a run folder -> its checkpoint.pt
    model, cfg, source = load_any(ckpt_path)
    if layers is not None:
        by_label = {label: name for name, label in layer_labels(model).items()}
        layers = [by_label.get(n, n) for n in layers]  # printed names -> module names
        select_layers(model, layers)
    x, y = load_test_split(cfg, args.data_root, args.limit, where=ckpt_path)
    device = device_from_args(args.device)
    model, x, y = model.to(device), x.to(device), y.to(device)
    spec = EvalSpec(batch_size=args.batch_size)
    encoder = model.encoder  # the checkpoint's own input encoding
    settings = {"checkpoint_sha256": sha256_file(ckpt_path), "dataset": cfg["dataset"], "n_test": int(x.shape[0]),
                "encoding": encoder.kind, "alpha": encoder.alpha,
                "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
                "draws": args.draws, "seed": args.seed, "scale": args.scale, "grid": args.grid,
                "bias_bits": args.bias_bits, "layers": layers,
                "weight_bits_as_loaded": {n: list(v) for n, v in get_weight_bits(model).items()}}
    check_inference_memory(model, tuple(x.shape[1:]), min(args.batch_size, x.shape[0]), next(model.parameters()).dtype)
    doc = run_sweep(model, x, y, spec, out, settings=settings, bits=bits, snr_db=snr_db, jitter=jitter,
                    draws=args.draws, seed=args.seed, scale=args.scale, grid=args.grid,
                    bias_bits=args.bias_bits, layers=layers,
                    # relative to the output folder: no machine-specific absolute path in the results
                    source=relative_path(ckpt_path, out),
                    progress=not args.no_progress)
    if args.save_quantized:
        for b in bits:
            save_quantized(export_quantized(model, b, scale=args.scale, grid=args.grid, bias_bits=args.bias_bits,
                                            model_name=source["model"],
                                            model_kwargs=source["model_kwargs"], config=cfg),
                           out / f"quantized-{b}bit.pt")
    write_csv(doc, out / "robustness.csv")
    run_name = ckpt_path.resolve().parent.name if ckpt_path.name == "checkpoint.pt" else ckpt_path.stem
    plots = plot_sweeps(doc, out, title=sweep_title(doc, model=f"{source['model']} ({run_name})"))
    print(format_table(doc))
    print(f"wrote {out / 'robustness.json'}, {out / 'robustness.csv'}"
          + "".join(f", {p.name}" for p in plots), file=sys.stderr)
    return 0
