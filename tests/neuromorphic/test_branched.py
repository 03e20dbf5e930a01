"""A branched model (an inception block) end to end: event simulation, per-layer statistics, quantisation,
weight noise and NIR export, each checked against the closed-form forward (float64)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from tcsnn.metrics import evaluate
from tcsnn.neuromorphic.sim import compile_network, simulate_events
from tcsnn.nn import (
    InceptionBlock,
    SpikingBranches,
    SpikingConv2d,
    SpikingLinear,
    SpikingMaxPool2d,
    SpikingNetwork,
    make_encoder,
    set_backend,
    spiking_layers,
)
from tcsnn.quant import apply_quantized, export_quantized, get_weight_bits, set_weight_bits
from tcsnn.robustness import draw_generator, noisy_weights

T_TOL = 1e-9


def branched_net(*, pool_branch: bool = True) -> SpikingNetwork:
    """8x8 pixels -> 3x3 conv (4) -> inception block (9 channels) -> 2x2 pool -> FC(5); float64, reference."""
    torch.manual_seed(3)
    block = InceptionBlock(4, 2, 2, 3, 1, 2, 2) if pool_branch else SpikingBranches(
        nn.Sequential(SpikingConv2d(4, 3, 1)), nn.Sequential(SpikingConv2d(4, 2, 1), SpikingConv2d(2, 4, 3, padding=1)))
    layers: OrderedDict[str, nn.Module] = OrderedDict(stem=nn.Sequential(SpikingConv2d(1, 4, 3, padding=1)))
    layers["inception"] = block
    channels = 9 if pool_branch else 7
    if pool_branch:
        layers["pool"] = SpikingMaxPool2d(2)
    side = 4 if pool_branch else 8
    layers["flatten"] = nn.Flatten()
    layers["classifier"] = nn.Sequential(SpikingLinear(channels * side * side, 5))
    return set_backend(SpikingNetwork(make_encoder("inverted", 1.5), layers).double().eval(), "reference")


def _pixels(n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    return (torch.rand(n, 1, 8, 8, generator=g, dtype=torch.float64) * 10).round() / 10  # ties included


def _closed_form(model: SpikingNetwork, p: torch.Tensor) -> dict[str, torch.Tensor]:
    """Output of every spiking layer and pool, by module name, from the closed-form forward."""
    seen: dict[str, torch.Tensor] = {}
    kinds = (SpikingConv2d, SpikingLinear, SpikingMaxPool2d)
    handles = [m.register_forward_hook(lambda _m, _i, o, n=n: seen.__setitem__(n, o.detach()))
               for n, m in model.body.named_modules() if isinstance(m, kinds)]
    with torch.no_grad():
        seen["output"] = model(p)
    for h in handles:
        h.remove()
    return seen


def _assert_same(a: np.ndarray, b: np.ndarray) -> None:
    fa, fb = np.isfinite(a), np.isfinite(b)
    np.testing.assert_array_equal(fa, fb)
    np.testing.assert_allclose(np.log(a[fa]), np.log(b[fb]), rtol=0, atol=T_TOL)


@pytest.mark.parametrize("backend", ["python", "numba"])
def test_event_engine_matches_the_closed_form_in_every_branch(backend):
    model = branched_net()
    p = _pixels(3)
    closed = _closed_form(model, p)
    net = compile_network(model, (1, 8, 8))
    names = [pop.name for pop in net.populations]
    assert names == ["input", "stem.0", "inception.branch1.0", "inception.branch2.0", "inception.branch2.1",
                     "inception.branch3.0", "inception.branch3.1", "inception.branch4.0", "inception.branch4.1",
                     "pool", "classifier.0"]
    z = model.encoder(p)
    for i in range(p.shape[0]):
        trace = simulate_events(net, z[i], stop="all", backend=backend)
        for k, name in enumerate(names[1:], start=1):
            _assert_same(trace.population_z(net, k), closed[name][i].numpy())
    assert np.isfinite(closed["output"].numpy()).mean() > 0.3


def test_event_engine_refuses_a_model_that_ends_in_a_concatenation():
    body = nn.Sequential(SpikingBranches(nn.Sequential(SpikingConv2d(1, 2, 1)), nn.Sequential(SpikingConv2d(1, 2, 1))))
    with pytest.raises(ValueError, match="must end with a spiking conv or linear"):
        compile_network(body, (1, 4, 4))


def test_per_layer_statistics_use_the_readable_branch_names():
    model = branched_net()
    m = evaluate(model, _pixels(6), torch.arange(6) % 5, batch_size=4)
    names = [n for n, _ in spiking_layers(model)]
    assert list(m["spike_share_per_layer"]) == names and "inception.branch2.1" in names
    closed = _closed_form(model, _pixels(6))
    for name in names:
        assert m["spike_share_per_layer"][name] == pytest.approx(float(torch.isfinite(closed[name]).double().mean()))
    assert m["layer_names"]["classifier.0"] == "out"


def test_quantised_branched_model_simulates_exactly_and_exports_round_trip():
    model = branched_net()
    set_weight_bits(model, 4)
    assert set(get_weight_bits(model)) == {n for n, _ in spiking_layers(model)}
    p = _pixels(2)
    closed = _closed_form(model, p)
    net = compile_network(model, (1, 8, 8))
    z = model.encoder(p)
    for i in range(2):
        _assert_same(simulate_events(net, z[i], stop="all").population_z(net, -1), closed["output"][i].numpy())
    export = export_quantized(model, 4)
    fresh = branched_net()
    for _, layer in spiking_layers(fresh):
        torch.nn.init.zeros_(layer.weight)
    apply_quantized(fresh, export)
    set_weight_bits(fresh, 4)
    with torch.no_grad():
        assert torch.equal(fresh(p), model(p))


def test_weight_noise_on_branches_is_restored():
    model = branched_net()
    p = _pixels(4)
    with torch.no_grad():
        before = model(p)
        with noisy_weights(model, 10.0, generator=draw_generator(0, 0), layers=["inception.branch2.1"]):
            during = model(p)
        after = model(p)
    assert torch.equal(before, after) and not torch.equal(before, during)


def _digits_inception(*, num_classes: int = 10, encoding: str = "inverted", alpha: float = 1.5) -> SpikingNetwork:
    """A registered-style builder of a branched model for the 8x8 digits (no data folder needed)."""
    layers: OrderedDict[str, nn.Module] = OrderedDict(stem=nn.Sequential(SpikingConv2d(1, 4, 3, padding=1)))
    layers["inception"] = InceptionBlock(4, 2, 2, 3, 1, 2, 2)
    layers["pool"] = SpikingMaxPool2d(2)
    layers["flatten"] = nn.Flatten()
    layers["classifier"] = nn.Sequential(SpikingLinear(9 * 4 * 4, num_classes))
    return SpikingNetwork(make_encoder(encoding, alpha), layers)


def test_eval_and_simulate_commands_on_a_branched_checkpoint(tmp_path, monkeypatch, capsys):
    import csv
    import dataclasses
    import json

    from tcsnn.cli import main
    from tcsnn.data import load_arrays
    from tcsnn.metrics import decide
    from tcsnn.models import _MODELS
    from tcsnn.train.checkpoint import save_atomic
    from tcsnn.train.config import TrainConfig

    monkeypatch.setitem(_MODELS, "inception_digits", _digits_inception)
    torch.manual_seed(4)
    model = _digits_inception()
    config = dataclasses.asdict(TrainConfig(model="inception_digits", dataset="digits"))
    ckpt = tmp_path / "ckpt.pt"
    save_atomic({"format": "tcsnn-checkpoint", "version": 2, "model": "inception_digits", "model_kwargs": {},
                 "state_dict": model.state_dict(), "config": config, "epoch": 0}, ckpt)
    assert main(["eval", "--checkpoint", str(ckpt), "--limit", "12", "--json", str(tmp_path / "m.json"),
                 "--no-progress"]) == 0
    m = json.loads((tmp_path / "m.json").read_text())
    assert list(m["spike_share_per_layer"]) == [n for n, _ in spiking_layers(model)]
    assert m["layer_names"]["inception.branch4.1"] == "conv7"  # branch4.0 is the pool
    out = tmp_path / "sim"
    assert main(["simulate", "--checkpoint", str(ckpt), "--data-root", str(tmp_path), "--limit", "12",
                 "--out", str(out), "--no-progress", "--threads", "1"]) == 0
    capsys.readouterr()
    with open(out / "sim_images.csv") as f:
        predicted = [int(row["prediction"]) for row in csv.DictReader(f)]
    x, _ = load_arrays("digits", None, train=False)
    closed = set_backend(model.double().eval(), "reference")
    with torch.no_grad():
        expected, _ = decide(closed(x[:12].double()))
    assert predicted == expected.tolist()
    summary = json.loads((out / "sim_summary.json").read_text())
    assert ["inception.branch2.1", [3, 8, 8]] in summary["network"]["populations"]
