"""The command line: the main job, one-line errors with exit status 2, eval of a checkpoint."""

import subprocess
import sys

import pytest
import torch

from tcsnn.cli import build_parser, main


def test_every_command_is_registered():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == {"train", "eval", "report", "robustness", "simulate", "circuit", "export-nir"}


def test_python_dash_m_works():
    out = subprocess.run([sys.executable, "-m", "tcsnn", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("tcsnn ")


@pytest.mark.parametrize(
    "argv,match",
    [
        (["train", "--recipe", "no-such-recipe"], "unknown recipe 'no-such-recipe'"),
        (["train", "--recipe", "mnist"], "--data-root"),
        (["train", "--recipe", "mnist", "--data-root", "/nonexistent/dir"], "/nonexistent/dir"),
        (["train", "--set", "alpha"], "KEY=VALUE"),
        (["train", "--set", "colour=1"], "unknown keys"),
        (["train", "--epochs", "0"], "epochs must be >= 1"),
        (["train", "--resume"], "--resume needs --out"),
        (["eval", "--checkpoint", "/nonexistent.pt"], "checkpoint not found"),
    ],
)
def test_user_errors_are_one_line(argv, match, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path / "run")] if argv[0] == "train" and "--resume" not in argv else argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and match in errors[0] and "Traceback" not in err


def test_truncated_data_file_is_named(tmp_path, capsys):
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 20)
    for name in ("t10k-labels-idx1-ubyte", "train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (tmp_path / name).write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x00")
    assert main(["train", "--recipe", "mnist", "--data-root", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "idx" in capsys.readouterr().err


def test_corrupt_checkpoint_is_refused(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["eval", "--checkpoint", str(bad)]) == 2
    assert "corrupt" in capsys.readouterr().err


def test_train_then_eval_digits(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--train-limit", "200", "--out", str(run), "--no-progress"]) == 0
    assert "final: test accuracy" in capsys.readouterr().out
    assert main(["eval", "--checkpoint", str(run / "checkpoint.pt"), "--json", str(tmp_path / "m.json"),
                 "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "accuracy" in captured.out and "nJ/image" in captured.out
    assert "eval:" not in captured.err  # --no-progress: no bar
    # resuming a finished run with more epochs continues it
    assert main(["train", "--epochs", "2", "--out", str(run), "--resume", "--no-progress"]) == 0
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert main(["report", str(run)]) == 0
    epochs = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and " fp |" in line]
    assert len(epochs) == 2 and (run / "curves.png").stat().st_size > 1000


def test_report_of_a_folder_without_metrics(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err


def test_cli_defaults_spelled_out_for_a_torch_free_parser_match_the_library():
    """tcsnn.commands.robustness repeats a few library constants so that `--help` needs no torch."""
    from tcsnn import robustness
    from tcsnn.commands import robustness as cli
    from tcsnn.quant import GRIDS, SCALES

    assert cli.DEFAULT_BITS == ",".join(map(str, robustness.DEFAULT_BITS))
    assert cli.DEFAULT_SNR_DB == ",".join(f"{s:g}" for s in robustness.DEFAULT_SNR_DB)
    assert cli.DEFAULT_JITTER == ",".join(f"{j:g}" for j in robustness.DEFAULT_JITTER)
    assert (cli.SCALES, cli.GRIDS) == (SCALES, GRIDS)
