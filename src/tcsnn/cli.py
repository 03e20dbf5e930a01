"""The ``tcsnn`` command line: a dispatcher over :mod:`tcsnn.commands`, one module per sub-command.

Every module listed in ``COMMANDS`` exposes ``add_cli_arguments(parser)`` and ``run_cli(args) -> int`` and
keeps heavy imports inside functions so that ``tcsnn --help`` starts fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("tcsnn.commands.train", "train a registered recipe (default: the offline 8x8-digits demo)"),
    "eval": ("tcsnn.commands.eval", "evaluate a checkpoint: accuracy, sparsity, energy, decision time"),
    "report": ("tcsnn.commands.report", "per-epoch table and training curves (PNG) of a run folder"),
    "robustness": ("tcsnn.commands.robustness",
                   "sweep weight bits, weight-noise SNR and input jitter for a checkpoint"),
    "simulate": ("tcsnn.commands.simulate", "run a checkpoint as an exact event-driven simulation"),
    "circuit": ("tcsnn.commands.circuit", "phase-domain (VCO/PLL) neuron circuit: tracking and Table 3 jitter study"),
    "export-nir": ("tcsnn.commands.export_nir", "export a checkpoint to the Neuromorphic Intermediate Representation"),
}


class CLIError(Exception):
    """A user error: printed as one line, exit status 2, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    from tcsnn import __version__

    parser = argparse.ArgumentParser(prog="tcsnn", description="Temporal-coded deep spiking neural networks.")
    parser.add_argument("--version", action="version", version=f"tcsnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # a command whose module is not part of this build
        p = sub.add_parser(name, help=help_, description=help_)
        module.add_cli_arguments(p)
        p.set_defaults(_run=module.run_cli)
    return parser


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if not args_list:
        args_list = ["train"]  # the main job: the offline default recipe
    args = parser.parse_args(args_list)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except CLIError as exc:
        print(f"tcsnn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, TypeError) as exc:
        # Library errors are written for users; show the message, not a traceback.
        print(f"tcsnn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
