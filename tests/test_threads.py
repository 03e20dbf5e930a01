"""``tcsnn.set_num_threads`` and ``--threads``: the thread count changes the speed, never the result."""

import json

import pytest
import torch

from tcsnn import set_num_threads
from tcsnn._numba_setup import import_numba
from tcsnn.cli import main

numba = import_numba()

#: Keys of a metrics.jsonl line that are wall-clock times (the only ones allowed to differ between runs).
TIME_KEYS = {"train_time_s", "epoch_time_s"}


@pytest.fixture
def restore_threads():
    """Put numba's and torch's thread counts back after a test that changes them."""
    before = numba.get_num_threads(), torch.get_num_threads()
    yield
    numba.set_num_threads(before[0])
    torch.set_num_threads(before[1])


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True, None])
def test_set_num_threads_refuses_anything_but_a_positive_int(bad):
    with pytest.raises(ValueError, match="threads"):
        set_num_threads(bad)


def test_set_num_threads_sets_numba_and_torch(restore_threads):
    set_num_threads(1)
    assert numba.get_num_threads() == 1 and torch.get_num_threads() == 1
    # more than numba was launched with is capped there (torch takes the number as given)
    set_num_threads(numba.config.NUMBA_NUM_THREADS + 1)
    assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS


@pytest.mark.parametrize("command", ["train", "eval", "robustness", "simulate"])
def test_threads_flag_refuses_zero(command, capsys):
    base = {"train": [], "eval": ["--checkpoint", "x.pt"], "robustness": ["--checkpoint", "x.pt", "--out", "o"],
            "simulate": ["--checkpoint", "x.pt"]}[command]
    with pytest.raises(SystemExit) as info:  # argparse: usage and one error line, exit status 2
        main([command, *base, "--threads", "0"])
    assert info.value.code == 2
    assert "argument --threads: expected an integer >= 1, got 0" in capsys.readouterr().err


def test_threads_flag_reaches_the_kernels(tmp_path, restore_threads):
    assert main(["train", "--epochs", "1", "--train-limit", "32", "--test-limit", "32", "--threads", "1",
                 "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    assert numba.get_num_threads() == 1 and torch.get_num_threads() == 1


def _metrics(run) -> list[dict]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in m.items() if k not in TIME_KEYS} for m in lines]


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="numba runs one thread on this machine")
def test_the_same_run_at_1_and_2_threads_gives_identical_metrics(tmp_path, restore_threads):
    runs = {}
    for threads in (1, 2):
        runs[threads] = tmp_path / f"t{threads}"
        assert main(["train", "--epochs", "2", "--train-limit", "300", "--test-limit", "120", "--seed", "3",
                     "--threads", str(threads), "--out", str(runs[threads]), "--no-progress"]) == 0
    assert _metrics(runs[1]) == _metrics(runs[2])  # every loss, accuracy and spike share, to the last bit
