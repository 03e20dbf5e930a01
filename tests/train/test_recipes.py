"""The deep-network recipes end to end on tiny data: cifar10 / cifar10-small on the first CIFAR-10 images,
imagenet (SpikingGoogLeNet under SGD) on a class folder of JPEGs the test writes itself."""

import json
import math

import pytest

from conftest import SHARED_DATA
from helpers import write_jpegs
from tcsnn.cli import main
from tcsnn.models import smoke_config
from tcsnn.train.recipes import get_recipe

CIFAR = SHARED_DATA / "cifar10"


def test_the_recipes_hold_the_papers_settings():
    vgg = get_recipe("cifar10")
    assert (vgg.model, vgg.encoding, vgg.batch_size, vgg.epochs, vgg.lr, vgg.lr_final) == (
        "spiking_vgg16", "direct", 128, 320, 1e-2, 1e-4)
    assert (vgg.augment, vgg.normalize, vgg.K, vgg.beta, vgg.l2, vgg.input_noise) == ("cifar", True, 100.0, 1.0,
                                                                                       1e-3, 0.02)
    net = get_recipe("imagenet", data_root="x")
    assert (net.model, net.optimizer, net.momentum, net.batch_size, net.lr, net.weight_decay, net.image_size) == (
        "spiking_googlenet", "sgd", 0.9, 256, 0.1, 1e-4, 224)
    assert get_recipe("cifar10-small").model == "spiking_vgg_small"
    assert get_recipe("cifar10-small").model_kwargs == {"width": 32}


def test_imagenet_recipe_trains_googlenet_on_a_class_folder(tmp_path, capsys):
    root = write_jpegs(tmp_path / "imgs", per_class=4, size=(40, 48))
    kwargs = {**smoke_config("spiking_googlenet"), "num_classes": 2}
    assert main(["train", "--recipe", "imagenet", "--data-root", str(root), "--epochs", "1", "--batch-size", "4",
                 "--out", str(tmp_path / "run"), "--no-progress", "--set", f"image_size={kwargs['image_size']}",
                 "--set", f"model_kwargs={json.dumps(kwargs)}", "--set", "eval_batch_size=4",
                 "--set", "num_workers=0"]) == 0
    capsys.readouterr()
    (last,) = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert last["epoch"] == 1 and last["n_test"] == 8
    assert math.isfinite(last["train_loss"]) and 0.0 <= last["test_accuracy"] <= 1.0
    assert any(k.startswith("inception_") for k in last["spike_share_per_layer"])  # branch layers by name


@pytest.mark.parametrize("recipe", ["cifar10", "cifar10-small"])
def test_cifar_recipes_train_and_evaluate_on_the_first_images(tmp_path, recipe, capsys):
    if not (CIFAR / "cifar-10-batches-bin" / "test_batch.bin").exists():
        pytest.skip(f"CIFAR-10 not found in {CIFAR}")
    model = get_recipe(recipe).model
    run = tmp_path / "run"
    args = ["train", "--recipe", recipe, "--data-root", str(CIFAR), "--epochs", "1", "--train-limit", "64",
            "--test-limit", "32", "--batch-size", "16", "--out", str(run), "--no-progress",
            "--set", f"model_kwargs={json.dumps(smoke_config(model))}"]
    assert main(args) == 0
    logged = capsys.readouterr().err
    assert "epoch 1/1" in logged
    assert main(["eval", "--checkpoint", str(run), "--limit", "32", "--no-progress"]) == 0  # whitening re-attached
    out = capsys.readouterr().out
    line = [ln for ln in logged.splitlines() if ln.startswith("epoch 1/1")][0]
    assert line.split("| accuracy ")[1].split(" |")[0] in out  # the accuracy the run logged
