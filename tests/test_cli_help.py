"""What ``--help`` shows: a text for every flag, the defaults of ``circuit``, and a fast start without torch."""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tcsnn
from tcsnn.cli import COMMANDS, build_parser

#: The commands that compute on the CPU kernels (``circuit`` is numpy only and single-threaded).
COMPUTING = ("train", "eval", "robustness", "simulate")


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_flag_has_a_help_text(command):
    missing = [a.option_strings[0] if a.option_strings else a.dest
               for a in _options(_subparsers()[command]) if not (a.help or "").strip()]
    assert missing == [], f"tcsnn {command}: no help text for {missing}"


def test_the_flags_a_new_user_asked_about_have_help():
    subs = _subparsers()
    for command, flags in {"train": ["--epochs", "--batch-size", "--seed", "--quant-epochs-per-step",
                                     "--no-progress", "--threads"],
                           "robustness": ["--seed", "--batch-size", "--threads"]}.items():
        text = " ".join(subs[command].format_help().split())
        for flag in flags:
            action = next(a for a in _options(subs[command]) if flag in a.option_strings)
            assert action.help and " ".join(action.help.split()) in text


def test_circuit_shows_every_default():
    parser = _subparsers()["circuit"]
    for action in _options(parser):
        if action.required or action.default in (None, False):
            continue
        assert "%(default)s" in action.help, f"circuit {action.option_strings[0]}: default not shown"
    text = parser.format_help()
    assert "(default: 500)" in text and "(default: 0.005)" in text
    assert "0.01,0.03,0.05,0.07,0.09" in text and "4,6,8,12,16,24,32" in text  # lists as the user types them


def test_circuit_list_defaults_parse_to_the_library_defaults():
    from tcsnn.neuromorphic.circuit import DEFAULT_BITS, DEFAULT_JITTERS, DEFAULT_TRACKING_DTS

    args = build_parser().parse_args(["circuit", "--out", "x"])
    assert args.jitters == list(DEFAULT_JITTERS) and args.bits == list(DEFAULT_BITS)
    assert args.tracking_dts == list(DEFAULT_TRACKING_DTS)


@pytest.mark.parametrize("command", COMPUTING)
def test_computing_commands_take_threads_and_no_progress(command):
    flags = {s for a in _options(_subparsers()[command]) for s in a.option_strings}
    assert {"--threads", "--no-progress"} <= flags


def _imported_modules(*argv: str) -> set[str]:
    """Top-level names of every module ``python -X importtime -m tcsnn ARGV`` imports."""
    env = dict(os.environ, PYTHONPATH=str(Path(tcsnn.__file__).parents[1]))
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "tcsnn", *argv], capture_output=True,
                         text=True, env=env, check=True)
    lines = [ln.split("|")[-1].strip() for ln in out.stderr.splitlines() if ln.startswith("import time:")]
    return {name.split(".")[0] for name in lines[1:]}  # the first line is the header


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["circuit", "--help"], ["export-nir", "--help"]])
def test_help_imports_neither_torch_nor_numba(argv):
    modules = _imported_modules(*argv)
    assert "tcsnn" in modules  # the measurement sees the package
    assert not {"torch", "numba", "matplotlib", "sklearn"} & modules
