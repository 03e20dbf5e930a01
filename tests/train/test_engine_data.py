"""Engine data options: CIFAR-style augmentation, whitening, SGD, the class-folder data set, loader workers."""

import pytest
import torch

from helpers import write_jpegs
from tcsnn.cli import main
from tcsnn.train.checkpoint import load_checkpoint, load_model
from tcsnn.train.engine import make_datasets, train
from tcsnn.train.recipes import get_recipe

FAST = dict(epochs=1, train_limit=96, test_limit=40, batch_size=32)


def without_times(m):
    return {k: v for k, v in m.items() if not k.endswith("time_s")}


def test_cifar_augmentation_and_sgd_change_the_run_and_repeat(tmp_path):
    plain = train(get_recipe("digits", **FAST), tmp_path / "plain", progress=False)
    aug = train(get_recipe("digits", **FAST, augment="cifar"), tmp_path / "aug", progress=False)
    again = train(get_recipe("digits", **FAST, augment="cifar", num_workers=2), tmp_path / "again", progress=False)
    assert aug["train_loss"] != plain["train_loss"]
    assert without_times(aug) == without_times(again)  # workers do not change the batches
    sgd = train(get_recipe("digits", **FAST, optimizer="sgd", momentum=0.5, weight_decay=1e-4), tmp_path / "sgd",
                progress=False)
    assert sgd["train_loss"] != plain["train_loss"]
    assert load_checkpoint(tmp_path / "sgd" / "checkpoint.pt")["optimizer"]["param_groups"][0]["momentum"] == 0.5


@pytest.mark.parametrize("kw,match", [({"augment": "mixup"}, "unknown augment"), ({"optimizer": "lamb"}, "optimizer"),
                                      ({"num_workers": -1}, "num_workers"), ({"momentum": 1.0}, "momentum"),
                                      ({"augment": "imagenet"}, "needs dataset='imagenet'"),
                                      ({"dataset": "imagenet"}, "image_size"), ({"train_limit": 0}, "train_limit")])
def test_bad_data_options_are_named(kw, match):
    with pytest.raises(ValueError, match=match):
        get_recipe("digits", **kw)


def test_normalize_is_applied_in_training_and_by_load_model(tmp_path, mnist_root, capsys):
    cfg = get_recipe("mnist", data_root=str(mnist_root), epochs=1, train_limit=64, test_limit=60, normalize=True,
                     ema_decay=None, augment_shift=0)
    last = train(cfg, tmp_path / "w", progress=False)
    model, _ = load_model(tmp_path / "w" / "checkpoint.pt")
    p = torch.full((1, 1, 28, 28), 0.1307)  # the channel mean -> 0.5 after whitening
    assert hasattr(model.encoder, "whiten")
    raw = type(model.encoder).forward(model.encoder, torch.full_like(p, 0.5))  # forward() skips the hook
    torch.testing.assert_close(model.encoder(p), raw)
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(tmp_path / "w" / "checkpoint.pt"), "--limit", "60",
                 "--no-progress"]) == 0
    assert f"accuracy {last['test_accuracy']:.2%}" in capsys.readouterr().out


def test_class_folder_run_end_to_end(tmp_path):
    root = write_jpegs(tmp_path / "imgs", per_class=4)
    kw = dict(dataset="imagenet", data_root=str(root), image_size=8, augment="imagenet", model="sfc",
              model_kwargs={"in_features": 3 * 8 * 8, "hidden": [16], "num_classes": 2}, alpha=3.0, epochs=2,
              batch_size=4, eval_batch_size=3, augment_shift=0, ema_decay=None)
    splits = make_datasets(get_recipe("mnist", **kw))
    assert (splits.n_train, splits.n_test, splits.per_sample_seeds) == (8, 8, True)
    a = train(get_recipe("mnist", **kw), tmp_path / "a", progress=False)
    b = train(get_recipe("mnist", **kw, num_workers=2), tmp_path / "b", progress=False)
    assert without_times(a) == without_times(b) and a["n_test"] == 8 and a["epoch"] == 2
    assert a["test_accuracy"] >= 0.5  # two plain colours: separable
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train(get_recipe("mnist", **{**kw, "data_root": str(tmp_path / "nowhere")}), tmp_path / "c", progress=False)
    assert not (tmp_path / "c").exists()
