"""Devices and torchrun: 2 CPU processes on gloo train the weights of one process with the same global batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tcsnn
from tcsnn.cli import main
from tcsnn.train.checkpoint import load_checkpoint
from tcsnn.train.distributed import Dist, resolve_device, strip_module_prefix
from tcsnn.train.engine import train
from tcsnn.train.recipes import get_recipe

ARGS = ["--train-limit", "96", "--test-limit", "40", "--batch-size", "32", "--no-progress", "--device", "cpu"]
SRC = str(Path(tcsnn.__file__).resolve().parents[1])


def torchrun(out, *extra, nproc=2):
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
           "-m", "tcsnn", "train", "--out", str(out), *ARGS, *extra]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def lines(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def assert_same_run(multi, single):
    a, b = load_checkpoint(multi / "checkpoint.pt"), load_checkpoint(single / "checkpoint.pt")
    assert sorted(a["state_dict"]) == sorted(b["state_dict"])  # no "module." prefix
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], rtol=1e-5, atol=1e-6)
    la, lb = lines(multi), lines(single)
    assert [m["epoch"] for m in la] == [m["epoch"] for m in lb]
    for ma, mb in zip(la, lb, strict=True):
        assert ma["test_accuracy"] == mb["test_accuracy"] and ma["n_test"] == mb["n_test"]
        assert ma["spike_share_per_layer"] == pytest.approx(mb["spike_share_per_layer"], abs=1e-3)
        assert ma["train_loss"] == pytest.approx(mb["train_loss"], rel=1e-5)
    assert sorted(p.name for p in multi.iterdir()) == sorted(p.name for p in single.iterdir())
    assert json.loads((multi / "config.json").read_text())["config"] == \
        json.loads((single / "config.json").read_text())["config"]


def test_two_processes_equal_one_and_evaluate_to_the_logged_accuracy(tmp_path, capsys):
    done = torchrun(tmp_path / "ddp", "--epochs", "2")
    assert done.stderr.count("epoch 2/2") == 1  # only rank 0 prints
    train(get_recipe("digits", epochs=2, train_limit=96, test_limit=40, batch_size=32, device="cpu"),
          tmp_path / "one", progress=False)
    assert_same_run(tmp_path / "ddp", tmp_path / "one")
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(tmp_path / "ddp" / "checkpoint.pt"), "--limit", "40",
                 "--no-progress", "--device", "cpu"]) == 0
    assert f"accuracy {lines(tmp_path / 'ddp')[-1]['test_accuracy']:.2%}" in capsys.readouterr().out
    # a single process continues the torchrun folder
    assert main(["train", "--out", str(tmp_path / "ddp"), "--resume", "--epochs", "3", "--no-progress"]) == 0
    assert [m["epoch"] for m in lines(tmp_path / "ddp")] == [1, 2, 3]


@pytest.mark.distributed
def test_resume_under_torchrun_and_uneven_last_batch(tmp_path):
    """Cut after 1 epoch, resumed under torchrun with 3 processes (batches of 32 over 90 images: the last global
    batch has 26, shares 8/9/9) = one uninterrupted process."""
    global ARGS
    old, ARGS = ARGS, [a if a != "96" else "90" for a in ARGS]
    try:
        torchrun(tmp_path / "ddp", "--epochs", "1", nproc=3)
        torchrun(tmp_path / "ddp", "--epochs", "2", "--resume", nproc=3)
    finally:
        ARGS = old
    train(get_recipe("digits", epochs=2, train_limit=90, test_limit=40, batch_size=32, device="cpu"),
          tmp_path / "one", progress=False)
    assert_same_run(tmp_path / "ddp", tmp_path / "one")


def test_devices_resolve_or_are_refused_clearly(tmp_path, capsys):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("gpu", "cuda:x", "tpu"):
        with pytest.raises(ValueError, match="unknown device"):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:0")
        assert main(["train", "--out", str(tmp_path / "r"), "--device", "cuda", "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert "CUDA is not available" in err and len(err.splitlines()) == 1 and not (tmp_path / "r").exists()
    with pytest.raises(ValueError, match="bad config: unknown device"):
        get_recipe("digits", device="gpu")


def test_one_process_dist_is_a_no_op():
    d = Dist()
    t = torch.tensor([1.0, 2.0])
    assert d.is_main and not d.enabled and d.sum_(t) is t and d.agree(lambda: 5) == 5
    with pytest.raises(KeyError, match="boom"):
        d.agree(lambda: (_ for _ in ()).throw(KeyError("boom")))
    assert strip_module_prefix({"module.a": 1, "module.b": 2}) == {"a": 1, "b": 2}
    assert strip_module_prefix({"module.a": 1, "b": 2}) == {"module.a": 1, "b": 2}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_step_runs_on_the_device(tmp_path):
    cfg = get_recipe("digits", epochs=1, train_limit=64, test_limit=40, device="cuda", augment="cifar")
    last = train(cfg, tmp_path / "gpu", progress=False)
    assert 0 <= last["test_accuracy"] <= 1 and last["n_test"] == 40
