"""Every user error of the command line is one clear line and a non-zero exit; Ctrl-C and SIGTERM end cleanly.

One parametrised test runs each case in-process against a small finished run folder (the ``tiny_run`` fixture)
and a few crafted files; each case names what the message must say.
"""

import dataclasses
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tcsnn.cli import EXIT_INTERRUPTED, EXIT_TERMINATED, main

SFC_DIGITS = ["--set", "model=sfc", "--set", 'model_kwargs={"in_features": 64, "hidden": [8]}']


def _write_idx(folder: Path, n: int) -> None:
    """MNIST IDX files holding ``n`` images (all zero)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("t10k", "train"):
        (folder / f"{split}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, n, 28, 28) + bytes(n * 784))
        (folder / f"{split}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, n) + bytes(n))


@pytest.fixture(scope="module")
def files(tiny_run, tmp_path_factory):
    """Named paths for the cases: a file, an empty folder, damaged / foreign checkpoints, an empty data set."""
    root = tmp_path_factory.mktemp("cli-errors")
    f = {"run": tiny_run, "ckpt": tiny_run / "checkpoint.pt", "file": root / "a-file", "dir": root / "a-folder",
         "empty": root / "empty.pt", "text": root / "README.md", "nan": root / "nan.pt", "mnist0": root / "mnist0",
         "mnist_ckpt": root / "mnist.pt", "root": root}
    f["file"].write_text("not a folder\n")
    f["dir"].mkdir()
    f["empty"].write_bytes(b"")
    f["text"].write_text("# tcsnn\n\nTemporal-coded spiking networks.\n")
    ckpt = torch.load(f["ckpt"], weights_only=True)
    bad = {**ckpt, "state_dict": dict(ckpt["state_dict"])}
    name = next(iter(bad["state_dict"]))
    bad["state_dict"][name] = torch.full_like(bad["state_dict"][name], float("nan"))
    torch.save(bad, f["nan"])
    _write_idx(f["mnist0"], 0)
    torch.save({**ckpt, "config": {**ckpt["config"], "dataset": "mnist", "data_root": str(f["mnist0"])}},
               f["mnist_ckpt"])
    return f


# (argv with {placeholders} from `files`, text the one error line must contain)
CASES = [
    # issue: silent wrong numbers
    (["train", "--train-limit", "-1400", "--out", "{out}"], "train_limit must be >= 1"),
    (["train", "--test-limit", "-355", "--out", "{out}"], "test_limit must be >= 1"),
    (["train", "--test-limit", "0", "--out", "{out}"], "test_limit must be >= 1"),
    (["train", "--set", "eval_batch_size=0", "--out", "{out}"], "eval_batch_size must be >= 1"),
    (["train", "--batch-size", "-4", "--out", "{out}"], "batch_size must be >= 1"),
    (["eval", "--checkpoint", "{ckpt}", "--batch-size", "-1"], "--batch-size must be >= 1"),
    (["eval", "--checkpoint", "{ckpt}", "--batch-size", "0"], "--batch-size must be >= 1"),
    (["eval", "--checkpoint", "{ckpt}", "--limit", "-5"], "--limit must be"),
    (["eval", "--checkpoint", "{ckpt}", "--limit", "0"], "--limit must be"),
    (["eval", "--checkpoint", "{mnist_ckpt}"], "holds no images"),
    (["eval", "--checkpoint", "{nan}"], "NaN or infinite"),
    (["simulate", "--checkpoint", "{nan}"], "NaN or infinite"),
    # tracebacks before
    (["train", "--out", "{file}"], "is a file, not a folder"),
    (["robustness", "--checkpoint", "{ckpt}", "--out", "{file}"], "is a file, not a folder"),
    (["simulate", "--checkpoint", "{ckpt}", "--out", "{file}"], "is a file, not a folder"),
    (["circuit", "--out", "{file}", "--trials", "5"], "is a file, not a folder"),
    (["eval", "--checkpoint", "{ckpt}", "--json", "{dir}"], "is a folder"),
    (["export-nir", "--checkpoint", "{ckpt}", "--out", "{dir}"], "is a folder"),
    (["train", "--set", "model=sfc", "--set", 'model_kwargs={{"in_features": 64, "hidden": [100000000000]}}',
      "--out", "{out}"], "out of memory"),
    (["train", "--set", "model=sfc", "--set", 'model_kwargs={{"in_features": 64, "hidden": [1e9]}}',
      "--out", "{out}"], "model_kwargs {{'in_features': 64, 'hidden': [1000000000.0]}} do not fit model 'sfc'"),
    # noisy, empty or misleading before
    (["eval", "--checkpoint", "{text}"], "not a readable tcsnn checkpoint"),
    (["eval", "--checkpoint", "{empty}"], "is empty (0 bytes)"),
    (["eval", "--checkpoint", "{dir}"], "is a folder without a checkpoint.pt"),
    (["train", "--config", "{dir}", "--out", "{out}"], "--config {dir} is a folder"),
    (["train", "--set", "lr=abc", "--out", "{out}"], "lr must be a number, got 'abc'"),
    (["train", "--set", "epochs=2.5", "--out", "{out}"], "epochs must be an integer"),
    (["report", "{run}", "--png", "{dir}"], "is a folder"),
]


@pytest.mark.parametrize("argv,match", CASES, ids=[" ".join(a[:3]) + f" [{i}]" for i, (a, _) in enumerate(CASES)])
def test_user_errors_are_one_line(files, argv, match, capsys, tmp_path):
    if argv[0] == "export-nir":
        pytest.importorskip("nir")
    names = {**files, "out": tmp_path / "r"}
    args = [a.format(**names) for a in argv]
    if args[0] in ("eval", "robustness", "train"):
        args.append("--no-progress")
    assert main(args) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err and "weights_only" not in err
    errors = [ln for ln in lines if "error:" in ln]
    assert len(errors) == 1 and errors[0].startswith(f"tcsnn {args[0]}: error: "), err
    assert match.format(**names) in errors[0], errors[0]
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())  # nothing half-written


def test_a_step_that_cannot_fit_is_refused_with_what_to_lower(files, monkeypatch, capsys):
    import tcsnn.resources

    monkeypatch.setattr(tcsnn.resources, "available_memory", lambda: 1 << 10)  # 1 KiB left
    assert main(["train", "--out", str(files["root"] / "mem"), "--no-progress", *SFC_DIGITS]) == 2
    err = capsys.readouterr().err
    assert "needs about" in err and "lower --batch-size" in err and len(err.strip().splitlines()) == 1
    assert main(["eval", "--checkpoint", str(files["run"]), "--no-progress"]) == 2
    assert "lower --batch-size" in capsys.readouterr().err


def test_quantised_exports_work_wherever_a_checkpoint_does(files, tmp_path, capsys):
    out = tmp_path / "rob"
    assert main(["robustness", "--checkpoint", str(files["run"]), "--out", str(out), "--bits", "4", "--snr", "",
                 "--jitter", "", "--save-quantized", "--no-progress"]) == 0
    q = out / "quantized-4bit.pt"
    assert main(["eval", "--checkpoint", str(q), "--no-progress", "--limit", "50"]) == 0
    assert main(["simulate", "--checkpoint", str(q), "--limit", "5"]) == 0
    if pytest.importorskip("nir"):
        assert main(["export-nir", "--checkpoint", str(q), "--out", str(tmp_path / "q.nir")]) == 0
    assert "error" not in capsys.readouterr().err


def test_paths_are_stored_resolved_and_results_relative(files, tmp_path, monkeypatch):
    """The run records its data folder absolute; robustness and simulate record paths relative to their output."""
    import json

    monkeypatch.chdir(tmp_path)
    assert main(["train", "--epochs", "1", "--train-limit", "32", "--data-root", "data", "--out", "run",
                 "--no-progress", *SFC_DIGITS]) == 0
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ckpt["config"]["data_root"] == str(tmp_path / "data")
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["data_root"] == str(tmp_path / "data")
    assert main(["robustness", "--checkpoint", "run", "--out", "rob", "--bits", "", "--snr", "", "--jitter", "",
                 "--limit", "10", "--no-progress"]) == 0
    assert json.loads((tmp_path / "rob" / "robustness.json").read_text())["source"] == "../run/checkpoint.pt"
    assert main(["simulate", "--checkpoint", "run", "--limit", "3", "--out", "sim"]) == 0
    settings = json.loads((tmp_path / "sim" / "sim_summary.json").read_text())["settings"]
    assert settings["checkpoint"] == "../run/checkpoint.pt" and settings["data_root"] == "../data"


def test_ctrl_c_inside_a_compiled_kernel_is_interrupted_not_a_traceback(monkeypatch, capsys):
    """numba reports a Ctrl-C that lands in a kernel as SystemError(... returned a result with an exception set)."""
    import tcsnn.commands.eval as ev

    def kernel(_args):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise SystemError("CPUDispatcher(<function conv_forward>) returned a result with an exception set") \
                from exc

    monkeypatch.setattr(ev, "run_cli", kernel)
    assert main(["eval", "--checkpoint", "x.pt"]) == EXIT_INTERRUPTED
    assert capsys.readouterr().err.strip() == "interrupted"


def test_a_real_bug_keeps_its_traceback(monkeypatch):
    import tcsnn.commands.eval as ev

    def bug(_args):
        raise SystemError("a genuine interpreter problem")

    monkeypatch.setattr(ev, "run_cli", bug)
    with pytest.raises(SystemError):
        main(["eval", "--checkpoint", "x.pt"])


@pytest.mark.parametrize("sig,code,text", [(signal.SIGTERM, EXIT_TERMINATED, "terminated (SIGTERM)"),
                                           (signal.SIGINT, EXIT_INTERRUPTED, "interrupted")])
def test_signals_end_a_run_with_one_line(tmp_path, sig, code, text):
    """A real signal during training: one line, the documented exit status, no temp files left behind."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "tcsnn", "train", "--epochs", "50", "--out", str(tmp_path / "r"),
                             "--no-progress", *SFC_DIGITS], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not (tmp_path / "r" / "checkpoint.pt").exists():  # mid-run: at least one epoch saved
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert err.strip().splitlines()[-1] == text and "Traceback" not in err
    assert not [p for p in (tmp_path / "r").iterdir() if p.name.endswith(".tmp")]
    assert torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)["epoch"] >= 0


def test_train_config_field_types_are_named():
    from tcsnn.train.config import TrainConfig

    for kw, match in [({"lr": "abc"}, "lr must be a number"), ({"seed": 1.5}, "seed must be an integer"),
                      ({"quant_bits": [8, "4"]}, "quant_bits must be a list of integers or null"),
                      ({"model_kwargs": [1]}, "model_kwargs must be a JSON object"),
                      ({"train_limit": 0}, "train_limit must be >= 1"), ({"eval_batch_size": -1}, "eval_batch_size")]:
        with pytest.raises(ValueError, match=match):
            TrainConfig(**kw)
    ok = TrainConfig(lr=1, train_limit=5, test_limit=None)  # an int where a float is expected is fine
    assert dataclasses.asdict(ok)["lr"] == 1


def test_resume_accepts_the_same_data_folder_spelled_relative(files, tmp_path, monkeypatch):
    """Runs of older versions stored data_root as typed; --resume with the same folder is not a change."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(files["run"], run)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    ckpt["config"]["data_root"] = "data"  # as an older tcsnn stored it
    torch.save(ckpt, run / "checkpoint.pt")
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--resume", "--out", "run", "--epochs", "2", "--data-root", str(tmp_path / "data"),
                 "--no-progress"]) == 0
    assert main(["train", "--resume", "--out", "run", "--epochs", "3", "--data-root", "elsewhere",
                 "--no-progress"]) == 2


def test_report_prints_the_file_it_wrote(files, tmp_path, capsys):
    assert main(["report", str(files["run"]), "--png", str(tmp_path / "curves")]) == 0
    assert capsys.readouterr().out.rstrip().endswith(f"wrote {tmp_path / 'curves.png'}")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_a_signal_inside_numba_code_is_delivered_again_once_numba_is_done(monkeypatch):
    """An exception raised inside numba's own Python code (kernel loading, constants unpickled on a kernel's first
    call) can crash the process; there the handler re-sends the signal instead of raising."""
    import types

    import tcsnn.cli as cli

    sent = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append((pid, sig)))
    ours = types.SimpleNamespace(f_globals={"__name__": "tcsnn.functional.spike"}, f_back=None)
    numba_code = types.SimpleNamespace(f_globals={"__name__": "numba.core.serialize"}, f_back=ours)
    cli._on_signal(signal.SIGINT, numba_code)  # no exception now ...
    deadline = time.monotonic() + 5
    while not sent and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sent == [(os.getpid(), signal.SIGINT)]  # ... the signal comes again
    with pytest.raises(KeyboardInterrupt):
        cli._on_signal(signal.SIGINT, ours)
    with pytest.raises(cli.Terminated):
        cli._on_signal(signal.SIGTERM, ours)


def test_a_relative_data_folder_of_an_older_run_is_found_from_the_run(files, tmp_path, monkeypatch, capsys):
    """<project>/runs/r/checkpoint.pt recorded "data/mnist" (relative to <project>); eval runs from elsewhere."""
    import shutil

    project = tmp_path / "project"
    _write_idx(project / "data" / "mnist", 3)
    run = project / "runs" / "r"
    shutil.copytree(files["run"], run)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    ckpt["config"].update(dataset="mnist", data_root="data/mnist")
    ckpt["model_kwargs"] = {"in_features": 784, "hidden": [8]}
    ckpt["state_dict"] = create_sfc_784().state_dict()
    torch.save(ckpt, run / "checkpoint.pt")
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "--checkpoint", str(run), "--no-progress"]) == 0
    assert "accuracy" in capsys.readouterr().out


def create_sfc_784():
    from tcsnn.models import create_model

    return create_model("sfc", in_features=784, hidden=[8])
