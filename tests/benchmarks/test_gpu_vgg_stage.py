"""The SpikingVGG16 stage of the GPU check, in its CPU smoke mode (tiny model, generated images)."""

import json

import pytest
import torch

from helpers import load_benchmark
from tcsnn.models import create_model


@pytest.fixture(scope="module")
def stage():
    return load_benchmark("gpu_vgg_stage")


def test_dense_twin_has_the_spiking_shapes(stage):
    dense = stage.dense_vgg16(**stage.SMOKE_MODEL)
    snn = create_model("spiking_vgg16", **stage.SMOKE_MODEL)
    assert sum(p.numel() for p in dense.parameters()) == sum(p.numel() for p in snn.parameters())
    assert dense(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_augment_crops_and_flips_per_image(stage):
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    out = stage.augment(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    # every output pixel is an input pixel of the same image and channel, or padding (0)
    for b in range(2):
        for c in range(3):
            assert set(out[b, c].flatten().tolist()) <= set(x[b, c].flatten().tolist()) | {0.0}


def test_smoke_run_measures_both_models_and_trains_an_epoch(stage, tmp_path, capsys):
    assert stage.main(["--smoke", "--minutes", "0.05", "--out", str(tmp_path)]) == 0
    assert "dense/spiking" in capsys.readouterr().out
    r = json.loads((tmp_path / "vgg_stage.json").read_text())
    assert r["smoke"] and r["device"] == "cpu" and r["weights"] == 123_974
    for key in ("train_images_per_s", "eval_images_per_s"):
        assert r[key]["snn"] > 0 and r[key]["dense"] > 0
        assert r[key]["dense_over_snn"] == pytest.approx(r[key]["dense"] / r[key]["snn"])
    assert len(r["epochs"]) >= 1 and 0.0 <= r["test_accuracy"] <= 1.0
    with pytest.raises(ValueError, match="CIFAR-10"):
        stage.run_vgg_stage("cpu", 1.0, None, tmp_path)
