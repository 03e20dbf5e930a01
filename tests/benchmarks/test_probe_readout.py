"""The pieces of benchmarks/probe_readout.py: block taps, spike-time standardisation, the two readouts."""

import math

import pytest
import torch

from helpers import load_benchmark
from tcsnn.models import create_model
from tcsnn.train.recipes import get_recipe


@pytest.fixture(scope="module")
def probe():
    return load_benchmark("probe_readout")


def test_block_outputs_tap_the_encoder_and_every_pool(probe):
    model = create_model("spiking_vgg_small", width=4).eval()
    x = torch.rand(5, 3, 32, 32)
    blocks, out = probe.block_outputs(model, x, batch=2)
    assert list(blocks) == ["input", "features.2", "features.5", "features.8"]
    assert [b.shape for b in blocks.values()] == [(5, 3072), (5, 4 * 16 * 16), (5, 8 * 8 * 8), (5, 16 * 4 * 4)]
    with torch.no_grad():
        torch.testing.assert_close(out, model(x))


def test_silent_neurons_become_the_latest_time_plus_one(probe):
    z = torch.tensor([[1.0, math.e, math.inf], [math.e ** 2, 1.0, math.e]])
    a, b = probe.standardised_times(z, torch.full((1, 3), math.inf))
    assert torch.isfinite(a).all() and torch.isfinite(b).all()
    torch.testing.assert_close(a.mean(0), torch.zeros(3, dtype=torch.float64))
    # column 2: times (3, 1) -> standardised (+, -); a silent test neuron sits at the training set's latest + 1
    assert a[0, 2] > a[1, 2] and b[0, 2] == a[0, 2]


def test_readouts_fit_separable_spike_times(probe):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(60) % 3
    t = torch.rand(60, 6, generator=g) * 0.2 + 1.0
    t[torch.arange(60), y] -= 0.8  # the class's own feature spikes first
    tr, te = probe.linear_probe(t.double(), y, t.double(), y, l2=1e-3)
    assert tr == te == 1.0
    cfg = get_recipe("cifar10-small", batch_size=10, lr=1e-2)
    history = probe.spiking_readout(torch.exp(t), y, torch.exp(t), y, cfg, epochs=12, seed=0)
    assert len(history) == 12 and history[0][0] < 0.9 and history[-1] == (1.0, 1.0)
