"""The training engine: run folder contents, repeatability, resume, atomic checkpoints, config errors."""

import json

import pytest
import torch

from tcsnn.train.checkpoint import load_checkpoint, load_model, save_atomic
from tcsnn.train.config import TrainConfig
from tcsnn.train.engine import train
from tcsnn.train.recipes import get_recipe, list_recipes

FAST = dict(epochs=2, train_limit=320, test_limit=100, batch_size=32)


def run(tmp_path, name, **kw):
    cfg = get_recipe("digits", **{**FAST, **kw})
    last = train(cfg, tmp_path / name, progress=False)
    return cfg, last


def without_times(metrics):
    """An epoch's metrics minus the wall-clock fields, which differ between identical runs."""
    return {k: v for k, v in metrics.items() if k not in ("train_time_s", "epoch_time_s")}


def read_metrics(path):
    return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]


def test_run_folder_holds_config_metrics_checkpoint(tmp_path):
    cfg, last = run(tmp_path, "a")
    folder = tmp_path / "a"
    saved = json.loads((folder / "config.json").read_text())
    assert saved["config"]["recipe"] == "digits" and "torch" in saved["versions"]
    lines = read_metrics(folder)
    assert [m["epoch"] for m in lines] == [1, 2]  # counted from 1, as printed
    for key in ("test_accuracy", "spike_share", "spike_share_per_layer", "energy_per_image_J",
                "mean_decision_time", "no_decision_rate", "train_spike_share_per_layer"):
        assert key in lines[-1]
    model, config = load_model(folder / "checkpoint.pt")
    assert config["dataset"] == "digits" and not model.training


def test_same_seed_same_run(tmp_path):
    _, a = run(tmp_path, "a")
    _, b = run(tmp_path, "b")
    _, c = run(tmp_path, "c", seed=1)
    assert without_times(a) == without_times(b)
    assert a["train_loss"] != c["train_loss"]


EMA = {"augment_shift": 1, "ema_decay": 0.9}
#: scnn_tiny's layers in the flat nn.Sequential of tcsnn <= 0.1: conv 0, pool 1, flatten 2, linear 3
V1_INDEX = {"features.0.": "0.", "classifier.0.": "3."}


def to_version_1(ckpt: dict) -> dict:
    """A checkpoint as the code before the package layout wrote it (checkpoint version 1)."""
    def old_keys(state: dict) -> dict:
        out = {}
        for k, v in state.items():
            for new, old in V1_INDEX.items():
                k = k.replace(new, old) if k.startswith(new) else k
            out[k] = v
        return out

    kwargs = {k: v for k, v in ckpt["model_kwargs"].items() if k not in ("encoding", "alpha")}
    old = {**ckpt, "version": 1, "model_kwargs": kwargs, "state_dict": old_keys(ckpt["state_dict"])}
    if "train_state_dict" in ckpt:
        old["train_state_dict"] = old_keys(ckpt["train_state_dict"])
    assert sorted(old["state_dict"]) == ["0.bias", "0.weight", "3.bias", "3.weight"]
    return old


def test_version_1_checkpoint_loads_and_evaluates_the_same(tmp_path, capsys):
    """A checkpoint of the pre-layout code (flat keys "0.weight", "3.weight"; encoding and alpha only in the
    config) rebuilds the same model, encoder included, and `tcsnn eval` reports the run's accuracy."""
    from tcsnn.cli import main
    from tcsnn.data import load_arrays
    from tcsnn.metrics import evaluate

    _, last = run(tmp_path, "new", ema_decay=0.9, alpha=1.5)
    new_path, old_path = tmp_path / "new" / "checkpoint.pt", tmp_path / "old.pt"
    torch.save(to_version_1(load_checkpoint(new_path)), old_path)
    upgraded = load_checkpoint(old_path)
    assert upgraded["version"] == 2 and upgraded["model_kwargs"]["alpha"] == 1.5
    assert sorted(upgraded["state_dict"]) == sorted(load_checkpoint(new_path)["state_dict"])
    model, _ = load_model(old_path)
    assert (model.encoder.kind, model.encoder.alpha) == ("inverted", 1.5)
    x, y = load_arrays("digits", None, train=False)
    assert evaluate(model, x[:100], y[:100]) == evaluate(load_model(new_path)[0], x[:100], y[:100])
    assert evaluate(model, x[:100], y[:100])["test_accuracy"] == last["test_accuracy"]
    assert main(["eval", "--checkpoint", str(old_path), "--limit", "100", "--no-progress"]) == 0
    assert f"accuracy {last['test_accuracy']:.2%}" in capsys.readouterr().out


@pytest.mark.parametrize("extra,old_layout", [({}, False), (EMA, False), (EMA, True)],
                         ids=["plain", "shift+ema", "shift+ema, older checkpoint layout"])
def test_resume_equals_uninterrupted_run(tmp_path, capsys, extra, old_layout):
    """A cut run resumed with a larger --epochs equals the uninterrupted one (and says the lr decay moved).

    Older checkpoints (version 1: flat-Sequential keys, no encoding in model_kwargs, the averaged values inside
    "weight_average" too) resume the same way.
    """
    run(tmp_path, "full", **extra)
    cfg = get_recipe("digits", **{**FAST, **extra, "epochs": 1})
    train(cfg, tmp_path / "cut", progress=False)
    if old_layout:
        path = tmp_path / "cut" / "checkpoint.pt"
        ckpt = to_version_1(load_checkpoint(path))
        ckpt["weight_average"]["params"] = {k: v.clone() for k, v in ckpt["state_dict"].items()}
        torch.save(ckpt, path)
    capsys.readouterr()
    train(get_recipe("digits", **{**FAST, **extra}), tmp_path / "cut", resume=True, progress=False)
    assert "re-spreads the lr decay" in capsys.readouterr().err
    full = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    cut = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    for key in ("state_dict", "train_state_dict") if extra else ("state_dict",):
        for k in full[key]:
            torch.testing.assert_close(full[key][k], cut[key][k], rtol=0, atol=0)
    assert [m["epoch"] for m in read_metrics(tmp_path / "cut")] == [1, 2]


def test_weight_average_is_what_is_shipped_and_evaluated(tmp_path):
    """With ema_decay the checkpoint's model (and the reported accuracy) is the average, not the raw weights."""
    _, last = run(tmp_path, "ema", ema_decay=0.9)
    ckpt = load_checkpoint(tmp_path / "ema" / "checkpoint.pt")
    avg, raw = ckpt["state_dict"], ckpt["train_state_dict"]
    assert any(not torch.equal(avg[k], raw[k]) for k in avg)
    assert set(ckpt["weight_average"]) == {"decay", "updates"}  # the averaged values are stored once, as state_dict
    from tcsnn.data import load_arrays
    from tcsnn.metrics import evaluate

    model, config = load_model(tmp_path / "ema" / "checkpoint.pt")
    x, y = load_arrays("digits", None, train=False)
    again = evaluate(model, x[:100], y[:100])
    assert again["test_accuracy"] == last["test_accuracy"]


def test_existing_run_needs_resume(tmp_path):
    run(tmp_path, "a", epochs=1)
    with pytest.raises(ValueError, match="--resume"):
        train(get_recipe("digits", **FAST), tmp_path / "a", progress=False)
    with pytest.raises(ValueError, match="config differs"):
        train(get_recipe("digits", **{**FAST, "lr": 0.5}), tmp_path / "a", resume=True, progress=False)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    save_atomic({"x": torch.ones(3)}, path)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_atomic({"x": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path)["x"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temp file left behind


def test_corrupt_and_foreign_checkpoints_are_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="corrupt"):
        load_checkpoint(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ValueError, match="not a tcsnn checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


@pytest.mark.parametrize(
    "kw,match",
    [({"epochs": 0}, "epochs"), ({"loss": "mse"}, "unknown loss"), ({"encoding": "rate"}, "encoding"),
     ({"dtype": "float16"}, "dtype"), ({"quant_bits": [8, 1]}, "quant_bits"), ({"alpha": float("nan")}, "alpha"),
     ({"augment_shift": -1}, "augment_shift"), ({"ema_decay": 1.0}, "ema_decay"),
     ({"distill_weight": 1.5}, "distill_weight"), ({"distill_temperature": 0}, "distill_temperature"),
     ({"weight_sum": 0.0}, "weight_sum"), ({"weight_sum": float("inf")}, "weight_sum")],
)
def test_bad_config_is_named(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)
    with pytest.raises(ValueError, match="unknown recipe"):
        get_recipe("no-such-recipe")
    assert {"digits", "mnist", "fashion-mnist"} <= set(list_recipes())


def test_hold_weight_sums_fixes_each_neurons_total_and_keeps_its_pattern():
    from tcsnn.nn import SpikingConv2d, SpikingLinear
    from tcsnn.train.engine import center_weight_gradients_, hold_weight_sums_

    net = torch.nn.Sequential(SpikingConv2d(3, 5, 3, padding=1), SpikingLinear(7, 4)).double()
    before = [m.weight.detach().clone() for m in net]
    biases = [m.bias.detach().clone() for m in net]
    hold_weight_sums_(net, 1.5)
    for m, w0, b0 in zip(net, before, biases, strict=True):
        rows = m.weight.flatten(1)
        torch.testing.assert_close(rows.sum(1), torch.full((rows.shape[0],), 1.5, dtype=torch.float64))
        diff = rows - w0.flatten(1)  # one shift per neuron
        torch.testing.assert_close(diff, diff[:, :1].expand_as(diff))
        assert torch.equal(m.bias, b0)  # the bias is not part of the sum
    for m in net:
        m.weight.grad = torch.randn_like(m.weight)
    center_weight_gradients_(net)
    for m in net:
        means = m.weight.grad.flatten(1).mean(1)
        torch.testing.assert_close(means, torch.zeros_like(means))


def test_training_with_weight_sum_holds_it(tmp_path):
    """Every trained (and weight-averaged, shipped) neuron of a weight_sum run sums to weight_sum."""
    run(tmp_path, "ws", weight_sum=1.5, ema_decay=0.9, epochs=1)
    ckpt = load_checkpoint(tmp_path / "ws" / "checkpoint.pt")
    for state in (ckpt["state_dict"], ckpt["train_state_dict"]):
        weights = [v for k, v in state.items() if k.endswith("weight")]
        assert weights
        for w in weights:
            torch.testing.assert_close(w.flatten(1).sum(1), torch.full((w.shape[0],), 1.5), rtol=0, atol=1e-4)


def test_distillation_from_a_teacher_checkpoint(tmp_path):
    """Weight 0 is exactly the plain fine-tune (the teacher draws no random numbers); weight 1 changes it."""
    run(tmp_path, "teacher", epochs=1)
    teacher = str(tmp_path / "teacher" / "checkpoint.pt")
    _, plain = run(tmp_path, "plain", epochs=1, init_checkpoint=teacher)
    _, zero = run(tmp_path, "zero", epochs=1, init_checkpoint=teacher, distill_checkpoint=teacher, distill_weight=0.0)
    _, full = run(tmp_path, "full", epochs=1, init_checkpoint=teacher, distill_checkpoint=teacher, distill_weight=1.0)
    assert without_times(zero) == without_times(plain)
    assert full["train_loss"] != plain["train_loss"]
    with pytest.raises(ValueError, match="alpha"):
        run(tmp_path, "other-input", epochs=1, alpha=2.0, distill_checkpoint=teacher)
    assert not (tmp_path / "other-input").exists()


def test_lr_decays_from_lr_to_lr_final():
    cfg = TrainConfig(epochs=50, lr=1e-3, lr_final=1e-4)
    assert cfg.lr_at(0) == pytest.approx(1e-3) and cfg.lr_at(49) == pytest.approx(1e-4)
    assert TrainConfig(quant_bits=[16, 8, 4], quant_epochs_per_step=2).bits_at(5) == 4


def test_mnist_end_to_end_short(tmp_path, mnist_root):
    """A short real-MNIST training: 1 epoch on 2,000 images must already beat chance by far."""
    cfg = get_recipe("mnist", data_root=str(mnist_root), epochs=1, train_limit=2000, test_limit=500)
    last = train(cfg, tmp_path / "mnist", progress=False)
    assert last["test_accuracy"] > 0.4  # chance is 0.1; shifts and the weight average slow the first steps
    assert last["no_decision_rate"] < 0.05
    assert 0 < last["spike_share"] < 1
