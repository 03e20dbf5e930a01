"""tcsnn.robustness: weight-noise power, seeded draws, restored weights, input jitter, the CLI sweep."""

import argparse
import csv
import json
import math

import pytest
import torch

from helpers import tiny_model
from tcsnn import robustness
from tcsnn.cli import main
from tcsnn.commands import robustness as robustness_cli
from tcsnn.commands.robustness import parse_list
from tcsnn.data import load_arrays
from tcsnn.metrics import evaluate
from tcsnn.nn.introspect import raw_parameter
from tcsnn.quant import fake_quantize, get_weight_bits, select_layers, set_weight_bits
from tcsnn.robustness import (
    EvalSpec,
    add_weight_noise,
    check_draws,
    check_jitter,
    check_snr_db,
    draw_generator,
    evaluate_bits,
    evaluate_jitter,
    evaluate_weight_noise,
    jitter_spike_times,
    noisy_weights,
    weight_power,
)
from tcsnn.train.checkpoint import load_model
from tcsnn.train.recipes import get_recipe


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A 2-epoch digits checkpoint (a few seconds) shared by the CLI tests."""
    folder = tmp_path_factory.mktemp("digits") / "run"
    torch.manual_seed(0)
    from tcsnn.train.engine import train

    train(get_recipe("digits", epochs=2), folder, progress=False)
    return folder / "checkpoint.pt"


@pytest.fixture(scope="module")
def digits_test():
    x, y = load_arrays("digits", None, train=False)
    return x[:120], y[:120]


# ---------------------------------------------------------------------------------------------- noise


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 25.0, -3.0])
def test_noise_has_the_power_the_snr_asks_for(snr_db):
    w, b = 0.3 * torch.randn(200, 150, dtype=torch.float64) + 0.05, torch.randn(200, dtype=torch.float64)
    w2, b2 = add_weight_noise(w, b, snr_db, torch.Generator().manual_seed(1))
    noise = torch.cat([(w2 - w).flatten(), b2 - b])
    p_signal = float(torch.cat([w.flatten(), b]).square().mean())
    assert weight_power(w, b) == pytest.approx(p_signal)
    measured_snr = 10 * math.log10(p_signal / float(noise.square().mean()))
    assert measured_snr == pytest.approx(snr_db, abs=0.05)  # 30k samples: power within ~1 %
    assert abs(float(noise.mean())) < 4 * math.sqrt(p_signal / 10 ** (snr_db / 10) / noise.numel())


def test_each_layer_gets_noise_for_its_own_power():
    model = tiny_model()
    with torch.no_grad():
        model.classifier[0].weight.mul_(100.0)
        model.classifier[0].bias.mul_(100.0)
    before = snapshot(model)
    with noisy_weights(model, 20.0, generator=torch.Generator().manual_seed(0)):
        for name, m in select_layers(model, None):
            n_w = m.weight.detach() - before[f"{name}.weight"]
            n_b = m.bias.detach() - before[f"{name}.bias"]
            p_noise = float(torch.cat([n_w.flatten(), n_b]).square().mean())
            p_w = weight_power(before[f"{name}.weight"], before[f"{name}.bias"])
            assert 10 * math.log10(p_w / p_noise) == pytest.approx(20.0, abs=1.5)  # few hundred weights


def test_noise_touches_only_the_named_layers_and_is_undone_even_after_an_error():
    model = tiny_model()
    set_weight_bits(model, 4, layers=["classifier.0"])
    before, bits = snapshot(model), get_weight_bits(model)
    with noisy_weights(model, 10.0, generator=torch.Generator().manual_seed(0), layers=["features.0"]):
        assert not torch.equal(model.features[0].weight, before["features.0.weight"])
        assert torch.equal(raw_parameter(model.classifier[0], "weight"), before["classifier.0.weight"])
        assert get_weight_bits(model)["classifier.0"][0] == 4
    with pytest.raises(RuntimeError, match="boom"):
        with noisy_weights(model, 10.0, generator=torch.Generator().manual_seed(0)):
            raise RuntimeError("boom")
    after = snapshot(model)
    assert all(torch.equal(before[k], after[k]) for k in before) and get_weight_bits(model) == bits
    with pytest.raises(ValueError, match="unknown layer name"):
        with noisy_weights(model, 10.0, generator=torch.Generator(), layers=["1"]):
            pass


def test_noise_is_added_to_the_quantised_weights_of_a_quantised_layer():
    model = tiny_model()
    set_weight_bits(model, 2)
    fc = model.classifier[0]
    w_hat, _ = fake_quantize(raw_parameter(fc, "weight").detach(), raw_parameter(fc, "bias").detach(), 2)
    with noisy_weights(model, 200.0, generator=torch.Generator().manual_seed(0)):  # noise ~1e-10 of the weights
        assert get_weight_bits(model)["classifier.0"][0] is None
        assert torch.allclose(model.classifier[0].weight, w_hat, atol=1e-6)
    assert get_weight_bits(model)["classifier.0"][0] == 2


def test_noise_runs_are_seeded_and_repeatable(digits_test):
    x, y = digits_test
    model = tiny_model()
    spec = EvalSpec()
    before = snapshot(model)
    a = evaluate_weight_noise(model, x, y, 5.0, spec, draws=3, seed=4)
    b = evaluate_weight_noise(model, x, y, 5.0, spec, draws=3, seed=4)
    assert a == b and a["draws"] == 3 and len(a["accuracies"]) == 3
    assert a["mean_accuracy"] == pytest.approx(sum(a["accuracies"]) / 3)
    assert a["std_accuracy"] == pytest.approx(torch.tensor(a["accuracies"]).std().item())  # ddof = 1
    after = snapshot(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    g1, g2 = draw_generator(4, 1), draw_generator(4, 1)
    assert torch.equal(torch.randn(5, generator=g1), torch.randn(5, generator=g2))
    other = torch.randn(5, generator=draw_generator(5, 0))
    assert not torch.equal(torch.randn(5, generator=draw_generator(4, 0)), other)


def test_bits_row_quantises_the_named_layers_and_restores_the_widths(digits_test):
    x, y = digits_test
    model, spec = tiny_model(), EvalSpec()
    set_weight_bits(model, 8, scale="mse", layers=["features.0"])
    seen = []
    handle = model.classifier[0].register_forward_pre_hook(
        lambda m, _: seen.append(get_weight_bits(model)["classifier.0"][:2]))
    row = evaluate_bits(model, x, y, 3, spec, layers=["classifier.0"])
    handle.remove()
    assert set(seen) == {(3, "max")} and row["kind"] == "bits" and row["value"] == 3
    assert get_weight_bits(model) == {"features.0": (8, "mse", "symmetric", None),
                                      "classifier.0": (None, "max", "symmetric", None)}


# --------------------------------------------------------------------------------------------- jitter


def test_jitter_level_zero_changes_nothing(digits_test):
    z = torch.exp(torch.rand(4, 1, 8, 8))
    z[0, 0, 0, 0] = float("inf")
    assert jitter_spike_times(z, 0.0, torch.Generator()) is z
    x, y = digits_test
    model, spec = tiny_model(), EvalSpec()
    base = evaluate(model, x, y)["test_accuracy"]
    row = evaluate_jitter(model, x, y, 0.0, spec, draws=2)
    assert row["accuracies"] == [base, base] and row["std_accuracy"] == 0.0


def test_jitter_is_relative_keeps_silent_inputs_and_never_precedes_zero():
    t = torch.rand(200_000, dtype=torch.float64) * 3 + 0.5
    z = torch.exp(t).float()
    z[:10] = float("inf")
    z2 = jitter_spike_times(z, 0.05, torch.Generator().manual_seed(0))
    assert z2.dtype == z.dtype and torch.isinf(z2[:10]).all() and torch.isfinite(z2[10:]).all()
    rel = (torch.log(z2[10:].double()) - torch.log(z[10:].double())) / torch.log(z[10:].double())
    assert rel.square().mean().sqrt().item() == pytest.approx(0.05, rel=0.02)  # rms |dt|/t = level
    big = jitter_spike_times(z[10:], 2.0, torch.Generator().manual_seed(0))
    assert (big >= 1.0).all()  # clamped at t = 0
    again = jitter_spike_times(z, 0.05, torch.Generator().manual_seed(0))
    assert torch.equal(z2, again)


# ------------------------------------------------------------------------------------------------ args


@pytest.mark.parametrize(
    "call, match",
    [(lambda: check_snr_db(float("nan")), "SNR"), (lambda: check_snr_db("20"), "SNR"),
     (lambda: check_jitter(-0.1), "jitter"), (lambda: check_jitter(float("inf")), "jitter"),
     (lambda: check_draws(0), "draws"), (lambda: parse_list("10,abc", "--snr", float), "--snr"),
     (lambda: draw_generator(-1, 0), "seed")],
)
def test_bad_values(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_parse_list():
    assert parse_list("32, 8,4", "--bits", int) == [32, 8, 4] and parse_list("", "--snr", float) == []


def cli_args(checkpoint, out, **kw) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    robustness_cli.add_cli_arguments(parser)
    argv = ["--checkpoint", str(checkpoint), "--out", str(out), "--no-progress"]
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(v)])
    return parser.parse_args(argv)


@pytest.mark.parametrize(
    "kw, match",
    [({"bits": "8,1"}, "weight bits"), ({"bits": "8,x"}, "--bits"), ({"snr": "abc"}, "--snr"),
     ({"jitter": "-0.01"}, "jitter"), ({"draws": 0}, "draws"), ({"layers": "0,9"}, "unknown layer"),
     ({"limit": 0}, "--limit"), ({"layers": "features.0", "save_quantized": True}, "--save-quantized"),
     ({"bias_bits": 1}, "weight bits")],
)
def test_bad_cli_arguments(digits_run, tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        robustness_cli.run_cli(cli_args(digits_run, tmp_path / "out", **kw))
    assert not (tmp_path / "out" / "robustness.json").exists()


def test_bad_checkpoint_file(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable"):
        robustness_cli.run_cli(cli_args(tmp_path / "junk.pt", tmp_path / "out"))
    with pytest.raises(FileNotFoundError):
        robustness_cli.run_cli(cli_args(tmp_path / "nope.pt", tmp_path / "out"))


# --------------------------------------------------------------------------------------------- the CLI


def test_cli_sweep_end_to_end_with_resume(digits_run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "sweep"
    argv = ["robustness", "--checkpoint", str(digits_run), "--out", str(out), "--bits", "8,2", "--snr", "10,30",
            "--jitter", "0,0.1", "--draws", "2", "--limit", "150", "--save-quantized", "--no-progress"]
    assert main(argv) == 0
    assert "baseline" in capsys.readouterr().out
    doc = json.loads((out / "robustness.json").read_text())
    rows = {(r["kind"], r["value"]): r for r in doc["rows"]}
    assert list(rows) == [("baseline", None), ("bits", 8), ("bits", 2), ("snr", 10.0), ("snr", 30.0),
                          ("jitter", 0.0), ("jitter", 0.1)]
    assert rows[("snr", 10.0)]["draws"] == 2 and rows[("bits", 8)]["draws"] == 1
    assert doc["settings"]["n_test"] == 150 and doc["settings"]["draws"] == 2

    model, cfg = load_model(digits_run)
    x, y = load_arrays("digits", None, train=False)
    base = evaluate(model, x[:150], y[:150])["test_accuracy"]
    assert rows[("baseline", None)]["mean_accuracy"] == base == rows[("jitter", 0.0)]["mean_accuracy"]
    with open(out / "robustness.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 7 and float(table[0]["mean_accuracy"]) == pytest.approx(base)
    for kind in ("bits", "snr", "jitter"):
        assert (out / f"accuracy_vs_{kind}.png").read_bytes()[:4] == b"\x89PNG"

    # the exported 8-bit model, evaluated on its own, is the bits = 8 row
    q_out = tmp_path / "q8"
    assert main(["robustness", "--checkpoint", str(out / "quantized-8bit.pt"), "--out", str(q_out), "--bits", "",
                 "--snr", "", "--jitter", "", "--limit", "150", "--no-progress"]) == 0
    q_doc = json.loads((q_out / "robustness.json").read_text())
    assert [r["kind"] for r in q_doc["rows"]] == ["baseline"]
    assert q_doc["rows"][0]["mean_accuracy"] == rows[("bits", 8)]["mean_accuracy"]

    # resume: finished rows are kept and not recomputed, only the new level runs (2 draws)
    calls = []
    real = robustness._evaluate
    monkeypatch.setattr(robustness, "_evaluate", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert main(argv[:8] + ["10,20,30"] + argv[9:]) == 0
    doc2 = json.loads((out / "robustness.json").read_text())
    assert len(calls) == 2 and len(doc2["rows"]) == 8
    assert [r for r in doc2["rows"] if r["value"] != 20.0] == doc["rows"]
    # other settings in the same folder are refused
    with pytest.raises(ValueError, match="draws differ"):
        robustness_cli.run_cli(cli_args(digits_run, out, draws=3, limit=150))


@pytest.mark.parametrize("flag, value, kwargs", [("--grid", "full", {"grid": "full"}),
                                                  ("--bias-bits", "8", {"bias_bits": 8})])
def test_cli_quantiser_options_reach_the_quantiser_and_the_export(digits_run, tmp_path, flag, value, kwargs):
    """--grid / --bias-bits: the 2-bit row equals evaluate_bits(**kwargs); the setting and the export record it."""
    out = tmp_path / "q"
    argv = ["robustness", "--checkpoint", str(digits_run), "--out", str(out), "--bits", "2", "--scale", "mse",
            flag, value, "--snr", "", "--jitter", "", "--limit", "100", "--save-quantized", "--no-progress"]
    assert main(argv) == 0
    doc = json.loads((out / "robustness.json").read_text())
    (key, setting), = kwargs.items()
    assert doc["settings"][key] == setting
    model, cfg = load_model(digits_run)
    x, y = load_arrays("digits", None, train=False)
    spec = robustness.EvalSpec()
    expected = evaluate_bits(model, x[:100], y[:100], 2, spec, scale="mse", **kwargs)["mean_accuracy"]
    assert next(r for r in doc["rows"] if r["kind"] == "bits")["mean_accuracy"] == expected
    export = torch.load(out / "quantized-2bit.pt", weights_only=True)
    assert export[key] == setting
    codes = torch.cat([layer["codes"].flatten() for layer in export["layers"].values()])
    assert int(codes.min()) >= -1 and int(codes.max()) == (2 if key == "grid" else 1)  # 2 bits: ternary or full
