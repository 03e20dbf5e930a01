"""``tcsnn export-nir``: export a checkpoint to the Neuromorphic Intermediate Representation.

The library part is :mod:`tcsnn.neuromorphic.nir`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tcsnn.neuromorphic.nir import BIAS_MAPPINGS  # numpy only: no torch at parser time


def add_cli_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True,
                   help="checkpoint file or run folder of `tcsnn train`, or a quantised export")
    p.add_argument("--out", required=True, help="NIR file to write (HDF5, e.g. model.nir)")
    p.add_argument("--input-shape", type=int, nargs="+", default=None, metavar="N",
                   help="one sample's shape without the batch axis, e.g. 1 28 28 "
                        "(default: from the checkpoint)")
    p.add_argument("--bias", choices=BIAS_MAPPINGS, default="spike",
                   help="'current': NIR Affine bias, a constant current (approximate); 'spike': exact, extra "
                        "'<layer>.t0' inputs that spike once at t = 0 (default: spike)")


def run_cli(args: argparse.Namespace) -> int:
    from tcsnn.cli import CLIError
    from tcsnn.loading import load_trained
    from tcsnn.neuromorphic.nir import _import_nir, infer_input_shape, write_nir
    from tcsnn.nn import spiking_layers

    try:
        _import_nir()
    except ModuleNotFoundError as exc:
        raise CLIError(str(exc)) from exc
    if Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a folder; give a file name, e.g. {Path(args.out) / 'model.nir'}")
    trained = load_trained(args.checkpoint)
    model = trained.model
    if args.input_shape is not None:
        shape = tuple(args.input_shape)
    else:
        shape = infer_input_shape(model, trained.model_name, trained.model_kwargs)
    graph = write_nir(model, args.out, input_shape=shape, bias=args.bias)  # the encoding: the model's encoder
    print(f"wrote {args.out}: {len(graph.nodes)} NIR nodes, {len(graph.edges)} edges, input shape {shape}, "
          f"bias mapping {args.bias!r}")
    if args.bias == "current" and any(m.bias is not None for _, m in spiking_layers(model)):
        print("note: biases are exported as constant NIR currents, which only approximates tcsnn's t = 0 "
              "bias spike; --bias spike is exact (see the graph metadata)")
    return 0
