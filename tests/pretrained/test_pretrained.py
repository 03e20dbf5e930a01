"""Pretrained models: the shipped manifest, loading with checks, packing a run, ``tcsnn eval --pretrained``."""

import json
from pathlib import Path

import pytest
import torch

import tcsnn.pretrained as pretrained
from tcsnn.cli import main
from tcsnn.data import dataset_info
from tcsnn.nn import SpikingNetwork
from tcsnn.pretrained import (
    check_pretrained,
    list_pretrained,
    load_pretrained,
    pack_pretrained,
    pretrained_entry,
    read_manifest,
)

#: The most a shipped weight file may weigh (they travel inside the wheel).
MAX_SHIPPED_BYTES = 8 * 2**20
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def test_shipped_manifest_is_valid_and_its_files_are_small():
    for name, entry in read_manifest().items():
        path = pretrained.PACKAGE_DIR / entry.file
        assert path.is_file(), f"{name}: {entry.file} is not shipped"
        assert path.stat().st_size <= MAX_SHIPPED_BYTES
        assert entry.recipe == name  # models are named after their recipes


@pytest.mark.parametrize("name", list_pretrained())
def test_every_shipped_model_matches_its_recorded_accuracy(name):
    entry = pretrained_entry(name)
    root = SHARED_DATA / entry.dataset if dataset_info(entry.dataset).needs_root else None
    if root is not None and not root.is_dir():
        pytest.skip(f"data set {entry.dataset} not found in {root}")
    accuracy, entry = check_pretrained(name, data_root=root)
    assert accuracy == pytest.approx(entry.first_n_accuracy, abs=0.5 / entry.first_n)


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """A tiny model trained here on the 8x8 digits (no data folder needed), packed into a fixture manifest."""
    tmp = tmp_path_factory.mktemp("pretrained")
    assert main(["train", "--epochs", "2", "--out", str(tmp / "run"), "--no-progress"]) == 0
    root = tmp / "shipped"
    entry = pack_pretrained(tmp / "run" / "checkpoint.pt", "digits-tiny", root=root, recipe="digits",
                            command="tcsnn train --epochs 2", first_n=100)
    return root, entry


def test_pack_then_load_matches_the_recorded_accuracy(packed):
    root, entry = packed
    assert list_pretrained(root) == ["digits-tiny"] and entry.dataset == "digits" and entry.first_n == 100
    assert 0.5 < entry.test_accuracy <= 1.0  # trained: well above chance (0.1) after two epochs
    model = load_pretrained("digits-tiny", root=root)
    assert isinstance(model, SpikingNetwork) and not model.training
    accuracy, again = check_pretrained("digits-tiny", data_root=None, root=root)
    assert again == entry and accuracy == entry.first_n_accuracy
    shipped = torch.load(root / entry.file, weights_only=True)
    assert "optimizer" not in shipped and "data_root" not in shipped["config"]  # no training state, no paths


def test_eval_pretrained_command_writes_the_recorded_accuracy(packed, tmp_path, monkeypatch, capsys):
    root, entry = packed
    monkeypatch.setattr(pretrained, "PACKAGE_DIR", root)
    out = tmp_path / "m.json"
    assert main(["eval", "--pretrained", "digits-tiny", "--json", str(out), "--no-progress"]) == 0
    assert "accuracy" in capsys.readouterr().out
    m = json.loads(out.read_text())
    assert m["test_accuracy"] == entry.test_accuracy and m["n_test"] == entry.n_test
    assert main(["eval", "--pretrained", "nope", "--no-progress"]) == 2
    assert "no pretrained model 'nope'; available: digits-tiny" in capsys.readouterr().err


def test_damaged_or_missing_files_and_bad_manifests_are_refused(packed, tmp_path):
    root, entry = packed
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text((root / "manifest.json").read_text())
    with pytest.raises(FileNotFoundError, match="is missing"):
        load_pretrained("digits-tiny", root=bad)
    (bad / entry.file).write_bytes((root / entry.file).read_bytes()[:-10])
    with pytest.raises(ValueError, match="SHA-256"):
        load_pretrained("digits-tiny", root=bad)
    doc = json.loads((root / "manifest.json").read_text())
    doc["models"]["digits-tiny"]["test_accuracy"] = 1.5
    (bad / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="fraction"):
        read_manifest(bad)
    del doc["models"]["digits-tiny"]["command"]
    (bad / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="exactly the keys"):
        read_manifest(bad)
    (bad / "manifest.json").write_text("{}")
    with pytest.raises(ValueError, match="manifest"):
        read_manifest(bad)
