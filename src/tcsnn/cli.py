"""The ``tcsnn`` command line: a dispatcher over :mod:`tcsnn.commands`, one module per sub-command.

Every module listed in ``COMMANDS`` exposes ``add_cli_arguments(parser)`` and ``run_cli(args) -> int`` and
keeps heavy imports inside functions so that ``tcsnn --help`` starts fast.

Exit status: 0 on success; 2 for a user error, printed as one line ``tcsnn COMMAND: error: ...`` (bad flags,
unreadable or foreign files, a step that does not fit in memory, ...); 130 after Ctrl-C ("interrupted") and 143
after SIGTERM ("terminated (SIGTERM)"), which is handled like Ctrl-C: interrupted saves remove their temp files and
the files already written stay whole.  A signal that lands in numba's own Python code (loading a kernel, its first
call) is delivered again a moment later: an exception raised there can crash the process.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import signal
import sys
from typing import Any

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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be: every ``finally`` and temp-file cleanup runs the same way."""


#: exit status after Ctrl-C (128 + SIGINT) and after SIGTERM (128 + SIGTERM), as a shell reports a killed command
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
#: delay before a signal that arrived inside numba's compiler is delivered again (seconds)
_RESEND_S = 0.05
#: texts of torch / numpy allocation failures (CPU and CUDA)
_ALLOC_FAILURES = ("DefaultCPUAllocator", "can't allocate memory", "not enough memory", "out of memory",
                   "Unable to allocate")


def _inside_numba(frame: Any) -> bool:
    """Whether the interrupted Python code is numba's own: compiling, loading a cached kernel, unpickling a
    kernel's constants on its first call, starting its thread pool."""
    while frame is not None:
        if str(frame.f_globals.get("__name__", "")).startswith("numba"):
            return True
        frame = frame.f_back
    return False


def _on_signal(signum: int, frame: Any) -> None:
    """Ctrl-C / SIGTERM as an exception, except inside numba's own Python code: an exception raised there can
    crash the process (SIGSEGV), so the signal is sent again a moment later, until numba is done."""
    if _inside_numba(frame):
        import threading

        threading.Timer(_RESEND_S, os.kill, (os.getpid(), signum)).start()
        return
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _interrupt_of(exc: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C / SIGTERM behind ``exc``, if any.

    A signal handled while a compiled (numba) function returns surfaces as ``SystemError: ... returned a result
    with an exception set`` whose cause is the KeyboardInterrupt.
    """
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def _one_line(exc: BaseException) -> str:
    text = " ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
    return text or type(exc).__name__


def _describe(exc: BaseException) -> str | None:
    """The one-line message for a user-facing error, or None for a bug (which keeps its traceback)."""
    if isinstance(exc, (CLIError, ValueError, TypeError, FileNotFoundError, FloatingPointError)):
        return _one_line(exc)
    if isinstance(exc, MemoryError):
        msg = _one_line(exc) if str(exc) else "out of memory"
        return msg if "lower" in msg else f"{msg}; lower --batch-size or the model size"
    if isinstance(exc, RuntimeError) and any(s in str(exc) for s in _ALLOC_FAILURES):
        asked = re.search(r"allocate (\d+) bytes", str(exc))
        what = f"an allocation of {int(asked[1]) / 2**30:.1f} GiB failed" if asked else _one_line(exc)
        return f"out of memory: {what}; lower --batch-size, eval_batch_size or the model size"
    if isinstance(exc, OSError):
        what = exc.strerror or _one_line(exc)
        names = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
        return f"{what}: {names}" if names else what
    return None


def _run_command(args: argparse.Namespace) -> int:
    """Run the chosen command with SIGTERM treated like Ctrl-C; errors become one line on stderr."""
    import threading

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(sig) is not signal.SIG_IGN:  # e.g. SIGINT in a background job stays ignored
                previous[sig] = signal.signal(sig, _on_signal)
    try:
        return int(args._run(args) or 0)
    except BaseException as exc:  # KeyboardInterrupt and SystemError are mapped too, see _interrupt_of
        interrupt = _interrupt_of(exc)
        if interrupt is not None:
            if isinstance(interrupt, Terminated):
                print("terminated (SIGTERM)", file=sys.stderr)
                return EXIT_TERMINATED
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        msg = _describe(exc) if isinstance(exc, Exception) else None
        if msg is None:
            raise
        print(f"tcsnn {args.command}: error: {msg}", file=sys.stderr)
        return 2
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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
    code = _run_command(args)
    if argv is None and code in (EXIT_INTERRUPTED, EXIT_TERMINATED):
        # The command has unwound (temp files removed, files closed).  Leave without the interpreter's shutdown:
        # after an interrupt inside a half-done import or a numba kernel it can raise again or crash.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
