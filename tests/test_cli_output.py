"""What the commands print: progress bars while ``simulate`` and ``circuit`` work (``--no-progress``: none), and
layers by readable name."""

import json

import pytest

from tcsnn.cli import main


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory):
    run = tmp_path_factory.mktemp("progress") / "run"
    assert main(["train", "--epochs", "1", "--train-limit", "64", "--test-limit", "16", "--out", str(run),
                 "--no-progress"]) == 0
    return run / "checkpoint.pt"


def test_train_and_eval_print_readable_layer_names(tmp_path, capsys):
    assert main(["train", "--epochs", "1", "--train-limit", "32", "--test-limit", "16", "--out", str(tmp_path / "r"),
                 "--no-progress"]) == 0
    epoch_line = next(ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("epoch 1/1"))
    assert "(conv1: " in epoch_line and ", out: " in epoch_line
    assert main(["eval", "--checkpoint", str(tmp_path / "r" / "checkpoint.pt"), "--limit", "16",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "(conv1: " in out and ", out: " in out and "(0: " not in out


@pytest.mark.parametrize("progress", [True, False])
def test_simulate_shows_progress(digits_checkpoint, tmp_path, capsys, progress):
    capsys.readouterr()
    argv = ["simulate", "--checkpoint", str(digits_checkpoint), "--data-root", str(tmp_path), "--limit", "6",
            "--threads", "1"]
    assert main(argv + ([] if progress else ["--no-progress"])) == 0
    captured = capsys.readouterr()
    assert "accuracy" in captured.out
    assert ("simulate:" in captured.err and "image" in captured.err) == progress


@pytest.mark.parametrize("progress", [True, False])
def test_circuit_shows_progress(tmp_path, capsys, progress):
    argv = ["circuit", "--out", str(tmp_path / "c"), "--trials", "4", "--tracking-dts", "0.01", "--jitters", "0.05",
            "--bits", "8"]
    assert main(argv + ([] if progress else ["--no-progress"])) == 0
    err = capsys.readouterr().err
    assert ("table 3:" in err and "tracking, 2 inputs, dt 0.01:" in err and "step" in err) == progress


def test_robustness_layers_take_the_printed_names(digits_checkpoint, tmp_path):
    out = tmp_path / "rob"
    assert main(["robustness", "--checkpoint", str(digits_checkpoint), "--out", str(out), "--layers", "out",
                 "--bits", "", "--snr", "30", "--jitter", "", "--draws", "1", "--limit", "16", "--no-progress"]) == 0
    doc = json.loads((out / "robustness.json").read_text())
    assert doc["settings"]["layers"] == ["classifier.0"]  # scnn_tiny: conv1 = features.0, out = classifier.0
