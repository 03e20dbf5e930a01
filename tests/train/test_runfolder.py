"""Run-folder integrity: one writer, metrics that match the checkpoint after a kill, torn lines, --resume rules."""

import json

import pytest
import torch

import tcsnn.train.engine as engine
from tcsnn.cli import main
from tcsnn.train.checkpoint import load_checkpoint
from tcsnn.train.engine import train
from tcsnn.train.recipes import get_recipe
from tcsnn.train.runfolder import LOCK_NAME, RunFolderBusy, RunLock, recover_metrics

FAST = dict(epochs=2, train_limit=96, test_limit=40, batch_size=32)


def cfg(**kw):
    return get_recipe("digits", **{**FAST, **kw})


def epochs_logged(folder):
    return [json.loads(line)["epoch"] for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_second_writer_is_refused_while_the_first_holds_the_folder(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    with RunLock(folder):
        with pytest.raises(RunFolderBusy, match="in use by another tcsnn train"):
            train(cfg(), folder, progress=False)
        with pytest.raises(RunFolderBusy, match="in use"):
            train(cfg(), folder, resume=True, progress=False)
        assert sorted(p.name for p in folder.iterdir()) == [LOCK_NAME]  # the refused runs wrote nothing
    train(cfg(epochs=1), folder, progress=False)  # the lock is gone with its holder (a kill drops it too)
    assert epochs_logged(folder) == [1]


def test_kill_between_metrics_line_and_checkpoint_does_not_log_an_epoch_twice(tmp_path, monkeypatch, capsys):
    """The kill lands after epoch 1's metrics line and before its checkpoint (injected in-process)."""
    folder = tmp_path / "run"

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "save_atomic", killed)
    with pytest.raises(KeyboardInterrupt):
        train(cfg(), folder, progress=False)
    assert epochs_logged(folder) == [1] and not (folder / "checkpoint.pt").exists()
    monkeypatch.undo()
    train(cfg(), folder, resume=True, progress=False)
    assert epochs_logged(folder) == [1, 2]
    assert "dropped 1 line(s)" in capsys.readouterr().err
    # and in a later epoch: epoch 2's line landed, its checkpoint did not
    later = tmp_path / "later"
    train(cfg(epochs=1), later, progress=False)
    calls = []
    monkeypatch.setattr(engine, "save_atomic", lambda *a, **k: calls.append(1) or (_ for _ in ()).throw(OSError))
    with pytest.raises(OSError):
        train(cfg(), later, resume=True, progress=False)
    monkeypatch.undo()
    assert epochs_logged(later) == [1, 2] and load_checkpoint(later / "checkpoint.pt")["metrics_lines"] == 1
    train(cfg(), later, resume=True, progress=False)
    assert epochs_logged(later) == [1, 2]
    uninterrupted = tmp_path / "whole"
    train(cfg(), uninterrupted, progress=False)
    a, b = load_checkpoint(later / "checkpoint.pt"), load_checkpoint(uninterrupted / "checkpoint.pt")
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], rtol=0, atol=0)


def test_torn_last_line_is_dropped_with_a_notice(tmp_path, capsys):
    folder = tmp_path / "run"
    train(cfg(epochs=1), folder, progress=False)
    with open(folder / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "train_loss": 0.')  # killed while appending
    train(cfg(), folder, resume=True, progress=False)
    assert "torn last line" in capsys.readouterr().err
    assert epochs_logged(folder) == [1, 2]
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []


def test_damaged_middle_line_names_file_and_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 1}\nnot json\n{"epoch": 3}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 2"):
        recover_metrics(path, 3, start_epoch=3)


def test_zero_based_files_are_renumbered_on_resume(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"epoch": e, "x": e}) + "\n" for e in (0, 1, 2)))
    kept = recover_metrics(path, None, start_epoch=2)  # an older checkpoint (no metrics_lines) after 2 epochs
    assert [r["epoch"] for r in kept] == [1, 2]
    assert [json.loads(line)["epoch"] for line in path.read_text().splitlines()] == [1, 2]


def test_resume_of_a_complete_run_trains_nothing(tmp_path, capsys):
    folder = tmp_path / "run"
    last = train(cfg(epochs=1), folder, progress=False)
    before = (folder / "checkpoint.pt").read_bytes()
    again = train(cfg(epochs=1), folder, resume=True, progress=False)
    assert "is complete (1 of 1 epochs)" in capsys.readouterr().err
    assert again["test_accuracy"] == last["test_accuracy"] and epochs_logged(folder) == [1]
    assert (folder / "checkpoint.pt").read_bytes() == before
    assert main(["train", "--out", str(folder), "--resume", "--no-progress"]) == 0


def test_failed_start_leaves_no_folder_behind(tmp_path, monkeypatch):
    folder = tmp_path / "run"

    def broken(*a, **k):
        raise ValueError("bad teacher")

    monkeypatch.setattr(engine, "recover_metrics", broken, raising=False)
    import tcsnn.train.runfolder as runfolder

    monkeypatch.setattr(runfolder, "recover_metrics", broken)
    with pytest.raises(ValueError, match="bad teacher"):
        train(cfg(), folder, progress=False)
    assert not folder.exists()
    monkeypatch.undo()
    with pytest.raises(FileNotFoundError):  # bad data: fails before the folder is made
        train(get_recipe("mnist", data_root=str(tmp_path / "nowhere"), epochs=1), folder, progress=False)
    assert not folder.exists()
    train(cfg(epochs=1), folder, progress=False)  # the next attempt is not refused


CHANGES = [
    (["--set", "lr=0.5"], "lr is 0.003"),
    (["--quant-scale", "mse"], "quant_scale is 'max'"),
    (["--quant-grid", "full"], "quant_grid"),
    (["--quant-bias-bits", "16"], "quant_bias_bits"),
    (["--quant-epochs-per-step", "3"], "quant_epochs_per_step"),
    (["--batch-size", "8"], "batch_size is 32"),
]


def test_resume_refuses_any_changed_value_but_epochs(tmp_path, capsys):
    folder = tmp_path / "run"
    train(cfg(epochs=1), folder, progress=False)
    capsys.readouterr()
    base = ["train", "--out", str(folder), "--resume", "--no-progress"]
    for flags, named in CHANGES:
        assert main([*base, *flags]) == 2
        err = capsys.readouterr().err
        assert named in err and "only --epochs may change" in err and len(err.strip().splitlines()) == 1, flags
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"l2": 0.5}))
    assert main([*base, "--config", str(config)]) == 2
    assert "l2 is 0.001" in capsys.readouterr().err
    # the same values, --epochs and where it runs may be given
    assert main([*base, "--batch-size", "32", "--epochs", "2", "--device", "cpu", "--num-workers", "0"]) == 0
    assert epochs_logged(folder) == [1, 2]


@pytest.mark.parametrize("flag,value", [("--train-limit", "0"), ("--test-limit", "-5")])
def test_zero_or_negative_limits_are_one_clear_line(tmp_path, capsys, flag, value):
    assert main(["train", "--out", str(tmp_path / "r"), flag, value, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "must be >= 1" in err and not (tmp_path / "r").exists()
