"""``tcsnn circuit``: the phase-domain (VCO/PLL) neuron circuit, tracking and Table 3.

The library part is :mod:`tcsnn.neuromorphic.circuit`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tcsnn.neuromorphic.circuit import (  # numpy only: no torch at parser time
    DEFAULT_BITS,
    DEFAULT_DT,
    DEFAULT_JITTERS,
    DEFAULT_T_MAX,
    DEFAULT_TRACKING_DTS,
    _check_dt,
    _check_sweeps,
    _check_trials,
    _format_table,
    _format_tracking,
    write_report,
)


def _float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _joined(values: tuple[float, ...] | tuple[int, ...]) -> str:
    """A default as the user would type it (argparse converts string defaults with the flag's type)."""
    return ",".join(str(v) for v in values)


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``tcsnn circuit`` (numpy only, one thread: it has no ``--threads``)."""
    parser.add_argument("--out", type=Path, required=True, help="output folder (created)")
    parser.add_argument("--trials", type=int, default=500,
                        help="random 2-input neurons per Table 3 row (default: %(default)s)")
    parser.add_argument("--tracking-trials", type=int, default=None,
                        help="neurons per tracking row (default: --trials)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the random neurons and jitter (default: %(default)s)")
    parser.add_argument("--dt", type=float, default=DEFAULT_DT,
                        help="time step of the Table 3 runs, in units of tau (default: %(default)s)")
    parser.add_argument(
        "--tracking-dts",
        type=_float_list,
        default=_joined(DEFAULT_TRACKING_DTS),
        help="comma-separated time steps of the tracking study (default: %(default)s)",
    )
    parser.add_argument(
        "--jitters",
        type=_float_list,
        default=_joined(DEFAULT_JITTERS),
        help="relative input jitters of Table 3 (default: %(default)s)",
    )
    parser.add_argument("--bits", type=_int_list, default=_joined(DEFAULT_BITS),
                        help="weight bits of Table 3 (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run_cli(args: argparse.Namespace) -> int:
    """Run ``tcsnn circuit``: print and write the Table 3 and tracking reports."""
    _check_trials(args.trials)
    if args.tracking_trials is not None:
        _check_trials(args.tracking_trials)
    _check_sweeps(args.jitters, args.bits)
    if not args.tracking_dts:
        raise ValueError("--tracking-dts needs at least one time step")
    for dt in [args.dt, *args.tracking_dts]:
        _check_dt(dt, DEFAULT_T_MAX)
    out = Path(args.out).expanduser().resolve()
    start = time.perf_counter()
    rows, track = write_report(
        out,
        trials=args.trials,
        seed=args.seed,
        dt=args.dt,
        jitters=args.jitters,
        bits=args.bits,
        tracking_dts=args.tracking_dts,
        tracking_trials=args.tracking_trials,
        progress=not args.no_progress,
    )
    print("Circuit vs closed form (eq. 4), random neurons with signed weights, relative error |dt|/t:")
    print(_format_tracking(track))
    print()
    print(f"Table 3 (2-input neurons, {args.trials} trials, seed {args.seed}, dt {args.dt} tau): output jitter")
    print(_format_table(rows))
    print(
        f"\nwrote {out}/table3.csv, table3.json, table3.png, tracking.csv, tracking.json "
        f"in {time.perf_counter() - start:.1f} s"
    )
    return 0
