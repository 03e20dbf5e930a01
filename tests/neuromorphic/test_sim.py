"""tcsnn.neuromorphic.sim: the time-domain ODE check and the event-driven engine against the closed form (float64)."""

from __future__ import annotations

import csv
import gzip
import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

from tcsnn import ENERGY_PER_SPIKE_J, NO_SPIKE
from tcsnn.functional import encode, spike_conv2d, spike_linear
from tcsnn.models import create_model
from tcsnn.neuromorphic.sim import (
    ImageRun,
    compile_network,
    simulate_conv2d_ode,
    simulate_events,
    simulate_images,
    simulate_layer_ode,
    simulate_neuron,
    summarize,
)
from tcsnn.nn import SpikingConv2d, SpikingLinear, SpikingMaxPool2d, flat_layers

#: Agreement required between independent computations of a spike time (float64).
T_TOL = 1e-9
MNIST = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"


def _assert_same_spikes(a: np.ndarray, b: np.ndarray, tol: float = T_TOL) -> None:
    """Spike values z: identical fire/no-fire pattern, and spike times t = ln z within ``tol``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape
    fa, fb = np.isfinite(a), np.isfinite(b)
    assert (fa == fb).all(), f"{int((fa != fb).sum())} spike/no-spike disagreements"
    if fa.any():
        err = np.abs(np.log(a[fa]) - np.log(b[fa])).max()
        assert err <= tol, f"max spike-time difference {err:.3g}"


def _degenerate(
    z: np.ndarray, w: np.ndarray, b: np.ndarray | None, z_out: np.ndarray, margin: float = 1e-8
) -> bool:
    """True if some output spike lies within ``margin`` (in t) of an input, or some causal prefix sums to ~1.

    There the answer depends on rounding (which interval the crossing falls in, or whether the
    asymptote exceeds the threshold), so two correct implementations may legitimately disagree.
    """
    t_in = np.log(z)  # (B, N)
    for r in range(z.shape[0]):
        tr, order = np.sort(t_in[r]), np.argsort(t_in[r], kind="stable")
        for m in range(w.shape[0]):
            ws = w[m, order][np.isfinite(tr)]
            prefix = np.cumsum(np.concatenate([[b[m]] if b is not None else [], ws]))
            if np.isclose(prefix, 1.0, rtol=0, atol=margin).any():
                return True
            if np.isfinite(z_out[r, m]) and (np.abs(tr - math.log(z_out[r, m])) < margin).any():
                return True
    return False


# ---------------------------------------------------------------------------------------------------------
# ODE check: one neuron
# ---------------------------------------------------------------------------------------------------------


def test_single_input_fires_at_ln2():
    # v = 2 (1 - e^-t) = 1 at t = ln 2
    assert simulate_neuron([0.0], [2.0]) == pytest.approx(math.log(2.0), abs=1e-12)
    assert simulate_neuron([1.5], [2.0]) == pytest.approx(1.5 + math.log(2.0), abs=1e-12)


def test_bias_is_an_input_at_time_zero():
    assert simulate_neuron([], [], bias=2.0) == pytest.approx(math.log(2.0), abs=1e-12)
    t_in, w = [0.3, 1.1], [0.4, 0.9]
    assert simulate_neuron(t_in, w, bias=0.5) == simulate_neuron([*t_in, 0.0], [*w, 0.5])


@pytest.mark.parametrize(
    ("t_in", "w"),
    [
        ([], []),  # no inputs
        ([0.0], [0.5]),  # total weight below threshold
        ([0.0], [1.0]),  # asymptote exactly at threshold: reached only at t = inf
        ([0.0, NO_SPIKE], [0.5, 10.0]),  # the strong input never arrives
        ([NO_SPIKE, NO_SPIKE], [3.0, 3.0]),
        ([0.0, 0.1], [3.0, -2.5]),  # rises, then the current turns negative before v reaches 1
    ],
)
def test_silent_neuron(t_in, w):
    assert simulate_neuron(t_in, w) == NO_SPIKE


def test_ties_arrive_together():
    # two inputs at t = 0 of 0.6 each act as one input of 1.2: v = 1.2 (1 - e^-t) = 1 at t = ln 6
    assert simulate_neuron([0.0, 0.0], [0.6, 0.6]) == pytest.approx(math.log(6.0), abs=1e-12)
    # a tie of +5 and -4.9 is a net +0.1: silent (summed first, never the +5 alone)
    assert simulate_neuron([0.0, 0.0], [5.0, -4.9]) == NO_SPIKE


def test_negative_weight_dip_then_recovery():
    # v rises, falls under an inhibitory input, and a late excitatory input makes it fire
    t_in, w = [0.0, 0.2, 2.0], [0.9, -0.5, 3.0]
    t_spike = simulate_neuron(t_in, w)
    assert 2.0 < t_spike < math.inf
    z = torch.tensor(np.exp([t_in]))
    z_ref = spike_linear(z, torch.tensor([w], dtype=torch.float64), backend="reference")
    assert t_spike == pytest.approx(math.log(z_ref.item()), abs=T_TOL)


def test_crossing_exactly_at_next_input_counts_before_it():
    # input 1 (w = 2 at t = 0) alone fires at t = ln 2, exactly when input 2 arrives; an input adds
    # nothing to v at its arrival, so the spike time is ln 2 whichever interval claims it
    t_spike = simulate_neuron([0.0, math.log(2.0)], [2.0, 0.5])
    assert t_spike == pytest.approx(math.log(2.0), abs=T_TOL)


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="entries"):
        simulate_neuron([0.0, 1.0], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        simulate_neuron([math.nan], [1.0])
    with pytest.raises(ValueError, match="-inf"):
        simulate_neuron([-math.inf], [1.0])
    with pytest.raises(ValueError, match="finite"):
        simulate_neuron([0.0], [math.inf])
    with pytest.raises(ValueError, match="<= 0"):
        simulate_layer_ode(np.zeros((1, 2)), np.ones((1, 2)))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 12))
def test_permuting_inputs_with_weights_changes_nothing(seed, n):
    rng = np.random.default_rng(seed)
    t_in = rng.uniform(0, 3, n)
    t_in[rng.random(n) < 0.2] = NO_SPIKE
    w = rng.normal(0.3, 0.6, n)
    perm = rng.permutation(n)
    a, b = simulate_neuron(t_in, w, 0.2), simulate_neuron(t_in[perm], w[perm], 0.2)
    assert (a == b == NO_SPIKE) or abs(a - b) <= 1e-12


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 12), extra=st.floats(0.01, 2.0))
def test_raising_an_early_weight_never_delays_the_spike(seed, n, extra):
    rng = np.random.default_rng(seed)
    t_in = rng.uniform(0, 3, n)
    w = rng.normal(0.3, 0.6, n)
    t0 = simulate_neuron(t_in, w)
    assume(math.isfinite(t0))
    i = int(rng.integers(n))
    assume(t_in[i] < t0)  # only inputs that arrived before the spike can matter
    w2 = w.copy()
    w2[i] += extra
    assert simulate_neuron(t_in, w2) <= t0 + 1e-12


# ---------------------------------------------------------------------------------------------------------
# ODE check: layers against the closed form
# ---------------------------------------------------------------------------------------------------------


def _random_linear(rng, batch, n_in, n_out, silent=0.2, quantize=None):
    t = rng.uniform(0, 3, (batch, n_in))
    if quantize:  # few distinct times: many exact ties, as with 8-bit pixels
        t = np.round(t * quantize) / quantize
    z = np.exp(t)
    z[rng.random(z.shape) < silent] = NO_SPIKE
    w = rng.normal(1.5 / n_in, 1.0 / math.sqrt(n_in), (n_out, n_in))  # mixed signs
    b = rng.normal(0.1, 0.3, n_out)
    return z, w, b


def _check_layer_ode(backend: str, seed: int, quantize: int | None, n_in: int) -> None:
    rng = np.random.default_rng(seed)
    z, w, b = _random_linear(rng, 3, n_in, 6, quantize=quantize)
    closed = spike_linear(torch.tensor(z), torch.tensor(w), torch.tensor(b), backend=backend).numpy()
    assume(not _degenerate(z, w, b, closed))
    _assert_same_spikes(simulate_layer_ode(z, w, b), closed)


@pytest.mark.parametrize("backend", ["reference", "numba"])
@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), quantize=st.sampled_from([None, 4]), n_in=st.integers(1, 16))
def test_layer_ode_matches_spike_linear(backend, seed, quantize, n_in):
    _check_layer_ode(backend, seed, quantize, n_in)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["reference", "numba"])
@settings(max_examples=1500, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), quantize=st.sampled_from([None, 2, 4, 16]), n_in=st.integers(1, 64))
def test_layer_ode_matches_spike_linear_many(backend, seed, quantize, n_in):
    _check_layer_ode(backend, seed, quantize, n_in)


def test_layer_ode_fires_often_enough_to_mean_something():
    rng = np.random.default_rng(0)
    z, w, b = _random_linear(rng, 8, 10, 6)
    share = np.isfinite(simulate_layer_ode(z, w, b)).mean()
    assert 0.3 < share < 1.0  # both firing and silent neurons are exercised


@pytest.mark.parametrize(("stride", "padding"), [(1, 0), (1, 1), (2, 1), (2, 2)])
@pytest.mark.parametrize("backend", ["reference", "numba"])
def test_conv_ode_matches_spike_conv2d(stride, padding, backend):
    rng = np.random.default_rng(stride * 10 + padding)
    z = np.exp(np.round(rng.uniform(0, 2, (2, 2, 6, 6)) * 8) / 8)  # exact ties included
    z[rng.random(z.shape) < 0.2] = NO_SPIKE
    w = rng.normal(0.15, 0.35, (3, 2, 3, 3))
    b = rng.normal(0.2, 0.3, 3)
    closed = spike_conv2d(torch.tensor(z), torch.tensor(w), torch.tensor(b), stride, padding, backend=backend)
    ode = simulate_conv2d_ode(z, w, b, stride, padding)
    assert 0.1 < np.isfinite(ode).mean() < 1.0
    _assert_same_spikes(ode, closed.numpy())


def test_conv_ode_without_bias_and_padded_corner():
    # a 1x1 input with padding 1: 8 of 9 taps are padding and never spike
    z = np.full((1, 1, 1, 1), 1.0)
    w = np.full((1, 1, 3, 3), 5.0)
    ode = simulate_conv2d_ode(z, w, None, 1, 1)
    _assert_same_spikes(ode, spike_conv2d(torch.tensor(z), torch.tensor(w), None, 1, 1).numpy())
    assert ode[0, 0, 0, 0] == pytest.approx(5.0 / 4.0)  # the centre tap only: z = 5 / (5 - 1)


# ---------------------------------------------------------------------------------------------------------
# Event engine
# ---------------------------------------------------------------------------------------------------------


def _closed_form_layers(model: nn.Module, z: torch.Tensor) -> list[np.ndarray]:
    """Outputs of every spiking layer (not Flatten), batch first."""
    outs, h = [], z
    with torch.no_grad():
        for _, m in flat_layers(model):  # the body of a SpikingNetwork: spike values in
            h = m(h)
            if not isinstance(m, nn.Flatten):
                outs.append(h.numpy())
    return outs


def _small_net(
    seed: int, pool: tuple[int, int] = (2, 2), stride: int = 1, padding: int | str = 1
) -> nn.Sequential:
    torch.manual_seed(seed)
    conv = SpikingConv2d(2, 4, 3, stride=stride, padding=padding, dtype=torch.float64)
    side = (9 + 2 * conv._pad - 3) // stride + 1
    side = (side - pool[0]) // pool[1] + 1
    return nn.Sequential(
        conv, SpikingMaxPool2d(*pool), nn.Flatten(), SpikingLinear(4 * side * side, 5, dtype=torch.float64),
    )


def _inputs(seed: int, batch: int, shape=(2, 9, 9)) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    z = np.exp(np.round(rng.uniform(0, 1.5, (batch, *shape)) * 10) / 10)  # exact ties included
    z[rng.random(z.shape) < 0.15] = NO_SPIKE
    return torch.tensor(z)


@pytest.mark.parametrize("backend", ["python", "numba"])
@pytest.mark.parametrize(
    ("pool", "stride", "padding"), [((2, 2), 1, 1), ((3, 2), 2, 1), ((2, 1), 1, "same"), ((2, 2), 1, 0)]
)
def test_engine_matches_closed_form_every_layer(backend, pool, stride, padding):
    model = _small_net(1, pool, stride, padding)
    z = _inputs(2, 3)
    closed = _closed_form_layers(model, z)
    net = compile_network(model, (2, 9, 9))
    for i in range(z.shape[0]):
        trace = simulate_events(net, z[i], stop="all", backend=backend)
        _assert_same_spikes(trace.population_z(net, 0), z[i].numpy(), 0.0)
        for k, ref in enumerate(closed, start=1):
            _assert_same_spikes(trace.population_z(net, k), ref[i].reshape(net.populations[k].shape))
    assert np.isfinite(closed[-1]).mean() > 0.3


def test_python_and_numba_backends_agree_exactly():
    model = _small_net(3)
    net = compile_network(model, (2, 9, 9))
    for zi in _inputs(4, 2):
        a = simulate_events(net, zi, stop="all", backend="python")
        b = simulate_events(net, zi, stop="all", backend="numba")
        np.testing.assert_array_equal(a.fire_z, b.fire_z)
        np.testing.assert_array_equal(a.fire_seq, b.fire_seq)


def test_connectivity_counts():
    model = _small_net(0, (2, 2), 1, 1)
    net = compile_network(model, (2, 9, 9))
    conv, lin = model[0], model[3]
    # every conv output has 2 x 3 x 3 taps minus those in the padding; every output has a bias
    taps_per_axis = np.array([2] + [3] * 7 + [2])  # 9 positions, padding 1
    conv_edges = 4 * 2 * int(taps_per_axis.sum()) ** 2
    pool_edges = 4 * 4 * 4 * 4  # 4 channels, 4x4 windows of 4
    assert net.n_edges == conv_edges + pool_edges + lin.weight.numel() + conv.bias.numel() * 81 + 5
    assert [p.shape for p in net.populations] == [(2, 9, 9), (4, 9, 9), (4, 4, 4), (5,)]
    assert net.synapses_out[net.bias_node] == 4 * 81 + 5


def test_without_bias_and_linear_only():
    torch.manual_seed(0)
    model = nn.Sequential(SpikingLinear(6, 4, bias=False, dtype=torch.float64),
                          SpikingLinear(4, 3, bias=False, dtype=torch.float64))
    with torch.no_grad():
        for m in model:
            m.weight.add_(0.4)  # make most neurons fire
    net = compile_network(model, (6,))
    assert net.bias_node == -1
    z = torch.exp(torch.rand(4, 6, dtype=torch.float64))
    closed = _closed_form_layers(model, z)
    for i in range(4):
        trace = simulate_events(net, z[i], stop="all")
        for k, ref in enumerate(closed, start=1):
            _assert_same_spikes(trace.population_z(net, k), ref[i])


def test_exact_tie_firing_at_an_input_arrival():
    # the output reaches threshold at z = 2 exactly when a strong inhibitory input arrives: the closed
    # form counts the spike (S / (W - 1) <= z_next) and so must the engine (deeper layer first on ties)
    model = nn.Sequential(SpikingLinear(2, 1, bias=False, dtype=torch.float64))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[2.0, -5.0]]))
    z = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    assert model(z).item() == 2.0
    net = compile_network(model, (2,))
    assert simulate_events(net, z[0]).population_z(net, -1)[0] == 2.0


def test_exact_tie_between_layers_deeper_first():
    # hidden 0 fires at z = 3/2, so the output reaches threshold at z = 2 * 1.5 / (2 - 1) = 3 exactly when
    # hidden 1 (z = 2 * 3 / (3 - 1) = 3) delivers a strong inhibition: the output must fire first
    model = nn.Sequential(SpikingLinear(2, 2, bias=False, dtype=torch.float64),
                          SpikingLinear(2, 1, bias=False, dtype=torch.float64))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 3.0]]))
        model[1].weight.copy_(torch.tensor([[2.0, -5.0]]))
    z = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    assert model[0](z).tolist() == [[1.5, 3.0]] and model(z).item() == 3.0
    net = compile_network(model, (2,))
    assert simulate_events(net, z[0]).population_z(net, -1)[0] == 3.0


def test_output_tie_is_no_decision():
    model = nn.Sequential(SpikingLinear(3, 2, dtype=torch.float64))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.8, 0.5, 0.1], [0.8, 0.5, 0.1]]))
        model[0].bias.zero_()
    net = compile_network(model, (3,))
    z = torch.tensor([[1.0, 1.5, 2.0]], dtype=torch.float64)
    for early in (True, False):
        run = simulate_images(net, z, early_stop=early)[0]
        assert run.prediction == -1
        assert run.output_times[0] == run.output_times[1] == run.decision_time
    assert summarize([run], [0])["no_decision"] == 1


def test_early_stop_counts_match_the_decision_of_a_full_run():
    model = _small_net(5)
    z = _inputs(6, 6)
    net = compile_network(model, (2, 9, 9))
    out = _closed_form_layers(model, z)[-1]
    full = simulate_images(net, z, early_stop=False, threads=2)
    early = simulate_images(net, z, early_stop=True, threads=1)
    assert np.isfinite(out).any(axis=1).all()
    for f, e, o in zip(full, early, out, strict=True):
        assert f.prediction == e.prediction == int(np.argmin(o))
        assert f.decision_time == e.decision_time == pytest.approx(math.log(o.min()), abs=T_TOL)
        assert f.decision_spikes == e.decision_spikes
        assert f.decision_synaptic_events == e.decision_synaptic_events
        assert e.full_spikes is None and e.full_synaptic_events is None
        assert f.decision_spikes <= f.full_spikes and f.decision_synaptic_events <= f.full_synaptic_events
        assert f.input_spikes == e.input_spikes
        _assert_same_spikes(np.exp(f.output_times), o)


def test_silent_network_has_no_decision():
    model = nn.Sequential(SpikingLinear(3, 2, dtype=torch.float64))
    with torch.no_grad():
        model[0].weight.fill_(0.1)
        model[0].bias.fill_(0.1)
    net = compile_network(model, (3,))
    run = simulate_images(net, torch.ones(1, 3, dtype=torch.float64))[0]
    assert run.prediction == -1 and run.decision_time == math.inf
    assert run.decision_spikes == 0 and run.full_spikes == 0
    assert run.decision_synaptic_events == 3 * 2 + 2  # inputs and bias delivered, nothing fired
    s = summarize([run], [1])
    assert s["accuracy"] == 0.0 and s["no_decision"] == 1 and s["decision_time_mean"] == math.inf


def test_summarize():
    def run(pred, t, spikes, full):
        full_syn = None if full is None else 10 * full
        return ImageRun(pred, t, spikes, 10 * spikes, 4, np.zeros(2), full, full_syn, (spikes,), 0)

    runs = [run(0, 1.0, 10, 20), run(1, 3.0, 30, 40), run(-1, math.inf, 50, 50), run(1, 2.0, 20, 30)]
    s = summarize(runs, [0, 0, 1, 1])
    assert s["accuracy"] == 0.5 and s["no_decision"] == 1
    assert s["decision_time_mean"] == pytest.approx(2.0)
    assert s["decision_time_p95"] == pytest.approx(np.percentile([1.0, 3.0, 2.0], 95))
    assert s["decision_spikes_mean"] == 27.5 and s["full_spikes_mean"] == 35.0
    assert s["decision_energy_J_mean"] == pytest.approx(27.5 * ENERGY_PER_SPIKE_J)
    early = summarize([run(0, 1.0, 10, None)], [0])
    assert early["full_spikes_mean"] is None and early["full_energy_J_mean"] is None
    with pytest.raises(ValueError, match="labels"):
        summarize(runs, [0])


def test_engine_rejects_bad_networks_and_inputs():
    with pytest.raises(ValueError, match="not supported"):
        compile_network(nn.Sequential(SpikingLinear(3, 2), nn.ReLU()), (3,))
    with pytest.raises(ValueError, match="expects"):
        compile_network(nn.Sequential(SpikingLinear(3, 2)), (4,))
    with pytest.raises(ValueError, match="Flatten"):
        compile_network(nn.Sequential(nn.Flatten(0), SpikingLinear(3, 2)), (3,))
    with pytest.raises(ValueError, match="no spiking layer"):
        compile_network(nn.Sequential(nn.Flatten()), (3,))
    bad = SpikingLinear(3, 2)
    with torch.no_grad():
        bad.weight[0, 0] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        compile_network(nn.Sequential(bad), (3,))
    net = compile_network(nn.Sequential(SpikingLinear(3, 2)), (3,))
    with pytest.raises(ValueError, match="threads"):
        simulate_images(net, torch.ones(2, 3), threads=0)
    with pytest.raises(ValueError, match="shape"):
        simulate_events(net, torch.ones(4))
    with pytest.raises(ValueError, match="<= 0"):
        simulate_events(net, torch.tensor([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="NaN"):
        simulate_images(net, torch.tensor([[1.0, math.nan, 1.0]]))
    with pytest.raises(ValueError, match="stop"):
        simulate_events(net, torch.ones(3), stop="never")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backend"):
        simulate_events(net, torch.ones(3), backend="cuda")


# ---------------------------------------------------------------------------------------------------------
# Real MNIST through the paper's network
# ---------------------------------------------------------------------------------------------------------


def _mnist_test(n: int) -> tuple[torch.Tensor, np.ndarray]:
    if not MNIST.is_dir():
        pytest.skip(f"MNIST not found at {MNIST}")
    with gzip.open(MNIST / "t10k-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)[:n]
    with gzip.open(MNIST / "t10k-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)[:n].astype(np.int64)
    return torch.from_numpy(x.astype(np.float32) / 255.0), y


def _check_mnist(n: int, seed: int) -> None:
    x, y = _mnist_test(n)
    torch.manual_seed(seed)
    model = create_model("scnn_mnist").double().eval()
    z = encode(x, "inverted", 1.0, dtype=torch.float64)  # the mnist recipe's encoding
    closed = _closed_form_layers(model, z)
    for k in (0, 2, 4):  # spiking layers: most neurons fire, some stay silent
        share = np.isfinite(closed[k]).mean()
        assert 0.2 < share < 1.0, f"layer {k}: {share:.0%} of neurons fire"
    net = compile_network(model, (1, 28, 28))
    for i in range(n):
        trace = simulate_events(net, z[i], stop="all")
        for k, ref in enumerate(closed, start=1):
            _assert_same_spikes(trace.population_z(net, k), ref[i].reshape(net.populations[k].shape))
    runs = simulate_images(net, z, early_stop=True, threads=2)
    out = closed[-1]
    for r, o in zip(runs, out, strict=True):
        assert r.prediction == (int(np.argmin(o)) if np.isfinite(o).any() else -1)


def test_mnist_scnn_matches_closed_form():
    _check_mnist(6, seed=0)


@pytest.mark.slow
def test_mnist_scnn_matches_closed_form_many():
    _check_mnist(200, seed=1)


# ---------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(params=["flat", "nested"])
def tiny_checkpoint(request, tmp_path, monkeypatch):
    """A scnn_tiny checkpoint on random 8x8 'images' served by a stand-in tcsnn.data."""
    from tcsnn.train.checkpoint import FORMAT, VERSION, save_atomic

    torch.manual_seed(0)
    model = create_model("scnn_tiny", image_size=8, channels=4, alpha=1.5)
    path = tmp_path / "tiny.pt"
    if request.param == "flat":  # as tcsnn train writes it
        config = {"dataset": "fake", "encoding": "inverted", "alpha": 1.5}
        save_atomic({"format": FORMAT, "version": VERSION, "model": "scnn_tiny",
                     "model_kwargs": {"image_size": 8, "channels": 4, "encoding": "inverted", "alpha": 1.5},
                     "state_dict": model.state_dict(), "config": config, "epoch": 0}, path)
    else:  # version 1: flat-Sequential keys, the encoding only in the config (here in its nested form)
        config = {"dataset": "fake", "encoding": {"kind": "inverted", "alpha": 1.5}}
        old = {k.replace("features.0.", "0.").replace("classifier.0.", "3."): v for k, v in model.state_dict().items()}
        save_atomic({"format": FORMAT, "version": 1, "model": "scnn_tiny",
                     "model_kwargs": {"image_size": 8, "channels": 4}, "state_dict": old,
                     "config": config, "epoch": 0}, path)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.rand(12, 1, 8, 8, generator=gen), torch.randint(0, 10, (12,), generator=gen)
    fake = types.ModuleType("tcsnn.data")
    fake.load_arrays = lambda name, root, train: (x, y)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tcsnn.data", fake)
    return path, model, x, y


@pytest.mark.parametrize("early", [False, True])
def test_cli_simulate(tiny_checkpoint, tmp_path, capsys, early):
    from tcsnn.cli import main

    path, model, x, y = tiny_checkpoint
    out = tmp_path / "sim"
    flag = "--early-stop" if early else "--no-early-stop"
    rc = main(["simulate", "--checkpoint", str(path), "--data-root", str(tmp_path), "--limit", "7",
               "--out", str(out), flag, "--threads", "2"])
    assert rc == 0
    assert "accuracy" in capsys.readouterr().out
    with open(out / "sim_images.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 7
    z_out = model.double()(x[:7]).detach().numpy()  # the model's own encoder (inverted, alpha 1.5)
    for row, o in zip(rows, z_out, strict=True):
        expected = int(np.argmin(o)) if np.isfinite(o).any() else -1
        assert int(row["prediction"]) == expected
        assert (row["full_spikes"] == "") == early
    record = json.loads((out / "sim_summary.json").read_text())
    assert record["metrics"]["images"] == 7 and record["settings"]["early_stop"] == early


def test_cli_errors(tiny_checkpoint, tmp_path, capsys):
    from tcsnn.cli import main

    path, *_ = tiny_checkpoint
    assert main(["simulate", "--checkpoint", str(tmp_path / "missing.pt"), "--data-root", "."]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["simulate", "--checkpoint", str(path), "--data-root", ".", "--limit", "0"]) == 2
    assert "--limit" in capsys.readouterr().err
    # no data_root in the config: the data loader decides (as in eval), e.g. digits needs none
    assert main(["simulate", "--checkpoint", str(path), "--limit", "3"]) == 0
