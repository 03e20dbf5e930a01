"""The phase-domain neuron circuit (tcsnn.neuromorphic.circuit) against the closed form (eq. 4)."""

from __future__ import annotations

import argparse
import csv
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcsnn.commands.circuit import add_cli_arguments, run_cli
from tcsnn.neuromorphic.circuit import (
    CircuitParams,
    circuit_linear,
    closed_form_times,
    jitter_inputs,
    quantize_weights,
    sample_trials,
    simulate_neurons,
    synapse_response,
    table3,
)

PARAMS = CircuitParams()
# Error budget of one spike time (units of tau), derived in docs/circuit.md:
#  * the DFF fires on VCO4's next rising edge: a delay in [0, 1/f_4), f_4 >= f_L;
#  * the synaptic latency d = ln((w-1)/(w-2)) is subtracted, which is exact once the output comes > ~5/w_lf
#    after every causal input; an output right behind an input (or an inhibitory input) is off by at most d;
#  * discretisation at the default dt (5e-3): |t(dt) - t(dt/20)| was at most 3e-3 over 3000 random neurons,
#    mostly the DFF edge moving by one VCO4 period (1e-3).
HARD_BOUND = PARAMS.synaptic_latency + 1.0 / (PARAMS.f_l * PARAMS.tau) + 3e-3
TYPICAL_BOUND = 1e-3  # mean |error|: half a VCO4 period (5e-4) plus a little


def test_synapse_pll_gives_the_exponential_kernel():
    t, x = synapse_response(12.0, dt=1e-3)
    w = PARAMS.w_lf * PARAMS.tau
    ideal = PARAMS.k_pd * PARAMS.spike_phase_step * w / (w - 2) * (np.exp(-t) - np.exp(-(w - 1) * t))
    assert np.abs(x - ideal).max() < 1e-4 * ideal.max()
    # After the loop filter's fast pole has died out, x(t) e^t is constant: the first-order tau = 1 kernel.
    late = t > 10 / w
    shape = x[late] * np.exp(t[late])
    assert np.ptp(shape) < 1e-3 * shape.mean()
    # Its area (one unit of weight; the tail beyond 12 tau is 6e-6 of it) equals the calibrated kernel area.
    assert np.sum(x) * 1e-3 == pytest.approx(PARAMS.kernel_area, rel=1e-3)


@pytest.mark.parametrize("n_inputs", [2, 3, 4, 5])
def test_circuit_tracks_closed_form(n_inputs):
    rng = np.random.default_rng(100 + n_inputs)
    t_in, w, t_closed = sample_trials(rng, 40, n_inputs, signed=True)
    t_circ = simulate_neurons(t_in, w)
    assert np.isfinite(t_circ).all()
    err = np.abs(t_circ - t_closed)
    assert err.max() <= HARD_BOUND
    assert err.mean() <= TYPICAL_BOUND
    assert (err / t_closed).mean() < 1e-3


def test_circuit_linear_matches_closed_form_layer():
    t_in = np.array([[0.1, 0.5, 0.9], [0.3, 0.2, np.inf]])
    w = np.array([[1.0, 1.0, 0.2], [0.6, 0.7, 0.5], [0.3, 0.2, 0.1]])
    out = circuit_linear(t_in, w)  # (2, 3)
    ref = closed_form_times(np.repeat(t_in, 3, axis=0), np.tile(w, (2, 1))).reshape(2, 3)
    assert np.array_equal(np.isfinite(out), np.isfinite(ref))
    fin = np.isfinite(ref)
    assert np.abs(out[fin] - ref[fin]).max() <= HARD_BOUND


def test_silent_neurons_never_fire():
    t_in = np.array(
        [
            [0.2, 0.4, 0.6],  # total weight < 1: v approaches 0.9 but never 1
            [0.2, 0.3, np.inf],  # excitation then inhibition before the would-be spike
            [np.inf, np.inf, np.inf],  # no input
            [0.1, 0.2, 0.3],  # inhibitory only
            [0.0, 0.0, 0.0],  # total weight exactly 1: reaches 1 only as t -> inf
        ]
    )
    w = np.array([[0.3, 0.3, 0.3], [1.5, -1.0, 1.0], [2.0, 2.0, 2.0], [-0.5, -1.0, -0.2], [0.5, 0.25, 0.25]])
    assert np.isinf(closed_form_times(t_in, w)).all()
    assert np.isinf(simulate_neurons(t_in, w)).all()


def test_threshold_reference_and_dff_timing():
    # Only VCO3, VCO4 and the DFF matter: with i_th below the rest current, VCO4 gains (f_rest - f_th) cycles
    # per tau on VCO3 without any input; the lead reaches n_th cycles at t_c and the DFF fires on the next
    # rising edge of VCO4 (which runs at f_rest).
    params = CircuitParams(i_th=9.93e-6)
    f_rest = 0.5 * (params.f_l + params.f_h) * params.tau  # 1000 cycles per tau
    t_cross = params.n_th / (f_rest - params.f_th * params.tau)  # 32 / 7 tau
    expected = math.ceil(f_rest * t_cross) / f_rest  # 4.572 tau
    t_in = np.full((1, 2), np.inf)
    out = simulate_neurons(t_in, np.ones((1, 2)), params, subtract_latency=False)
    assert out[0] == pytest.approx(expected, abs=1e-9)
    assert out[0] - t_cross < 1 / f_rest


@pytest.mark.parametrize("bits", [2, 3, 4, 8, 16, 32])
def test_quantisation_lands_on_the_grid(bits):
    rng = np.random.default_rng(bits)
    w = rng.normal(size=(6, 5))
    wq = quantize_weights(w, bits)
    levels = 2 ** (bits - 1) - 1
    q = np.abs(w).max(axis=1, keepdims=True) / levels
    k = wq / q
    assert np.allclose(k, np.round(k), atol=1e-6)
    assert np.abs(np.round(k)).max() <= levels
    assert np.all(np.abs(wq - w) <= q / 2 * (1 + 1e-9))
    assert np.allclose(np.abs(wq).max(axis=1), np.abs(w).max(axis=1))  # full scale is a level
    assert np.array_equal(quantize_weights(wq, bits), wq)  # idempotent
    whole = quantize_weights(w, bits, axis=None)
    kk = whole / (np.abs(w).max() / levels)
    assert np.allclose(kk, np.round(kk), atol=1e-6)


def test_quantisation_edge_cases():
    assert np.array_equal(quantize_weights(np.zeros((2, 3)), 4), np.zeros((2, 3)))
    assert np.array_equal(quantize_weights(np.array([[0.3, -0.2, 1.0]]), 2), np.array([[0.0, 0.0, 1.0]]))


def test_circuit_quantises_its_resistor_bank():
    rng = np.random.default_rng(3)
    t_in, w, _ = sample_trials(rng, 10, 3)
    a = simulate_neurons(t_in, w, bits=6)
    b = simulate_neurons(t_in, quantize_weights(w, 6))
    assert np.array_equal(a, b)


def test_jitter_is_relative_and_seeded():
    t = np.array([[0.5, 1.0, np.inf]])
    out = jitter_inputs(t, 0.05, np.random.default_rng(0))
    assert np.allclose(np.abs(out[:, :2] - t[:, :2]) / t[:, :2], 0.05)
    assert np.isinf(out[0, 2])
    assert np.array_equal(out, jitter_inputs(t, 0.05, np.random.default_rng(0)))


def test_table3_trend_and_repeatability():
    rows = table3(trials=40, seed=1, jitters=(0.01, 0.05), bits=(4, 8, 16))
    by = {(r["sweep"], r["level"]): r for r in rows}
    for j in (0.01, 0.05):
        r = by[("input_jitter", j)]
        assert r["input_jitter_mean"] == pytest.approx(j)
        assert r["circuit_mean"] < 0.6 * j  # output jitter well below input jitter
    assert by[("input_jitter", 0.01)]["circuit_mean"] < by[("input_jitter", 0.05)]["circuit_mean"]
    bits = [by[("weight_bits", b)]["circuit_mean"] for b in (4, 8, 16)]
    assert bits[0] > bits[1] > bits[2]  # more bits, less jitter
    assert rows == table3(trials=40, seed=1, jitters=(0.01, 0.05), bits=(4, 8, 16))


def _parse(argv):
    parser = argparse.ArgumentParser()
    add_cli_arguments(parser)
    return parser.parse_args(argv)


def test_cli_writes_its_files(tmp_path, capsys):
    out = tmp_path / "circuit"
    args = _parse(["--out", str(out), "--trials", "6", "--tracking-dts", "0.01", "--jitters", "0.05", "--bits", "4,8"])
    assert run_cli(args) == 0
    for name in ("table3.csv", "table3.json", "table3.png", "tracking.csv", "tracking.json"):
        assert (out / name).stat().st_size > 0
    report = json.loads((out / "table3.json").read_text())
    assert report["config"]["trials"] == 6 and report["config"]["params"]["n_th"] == PARAMS.n_th
    assert [r["sweep"] for r in report["rows"]] == ["none", "input_jitter", "weight_bits", "weight_bits"]
    with open(out / "table3.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 4
    with open(out / "tracking.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 2  # 2- and 5-input neurons at one dt
    assert (out / "table3.png").read_bytes()[:4] == b"\x89PNG"
    assert "weight_bits" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--trials", "0"], "trials must be an integer >= 1"),
        (["--bits", "1,8"], "weight bits must be an integer >= 2"),
        (["--jitters", "-0.01"], "input jitter must be a fraction >= 0"),
        (["--dt", "0"], "time step dt must be"),
    ],
)
def test_cli_bad_arguments_fail_in_one_line(tmp_path, capsys, argv, message):
    from tcsnn.cli import main

    assert main(["circuit", "--out", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="bits"):
        quantize_weights(np.ones((1, 2)), 1)
    with pytest.raises(ValueError, match="bits"):
        quantize_weights(np.ones((1, 2)), 4.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="jitter"):
        jitter_inputs(np.ones((1, 2)), -0.01, np.random.default_rng(0))
    with pytest.raises(ValueError, match="trials"):
        table3(trials=0)
    with pytest.raises(ValueError, match="jitter"):
        table3(trials=2, jitters=(math.nan,))
    with pytest.raises(ValueError, match="jitter"):
        jitter_inputs(np.ones((1, 2)), 1.5, np.random.default_rng(0))
    with pytest.raises(ValueError, match=">= 0"):
        simulate_neurons(np.array([[-0.1, 0.2]]), np.ones((1, 2)))
    with pytest.raises(ValueError, match="same shape"):
        simulate_neurons(np.ones((2, 2)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="dt"):
        simulate_neurons(np.ones((1, 2)), np.ones((1, 2)), dt=-1e-3)
    with pytest.raises(ValueError, match="i_l < i_h"):
        CircuitParams(i_l=2e-5)
    with pytest.raises(ValueError, match="linear range"):
        CircuitParams(spike_phase_step=2.0)
    with pytest.raises(ValueError, match="loop filter"):
        CircuitParams(w_lf=2e6)


times = st.floats(0.0, 1.5)
weights = st.floats(-0.8, 1.8)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.tuples(times, weights), min_size=2, max_size=4), st.randoms(use_true_random=False))
def test_permuting_inputs_and_weights_changes_nothing(pairs, rnd):
    t_in = np.array([[p[0] for p in pairs]])
    w = np.array([[p[1] for p in pairs]])
    perm = list(range(len(pairs)))
    rnd.shuffle(perm)
    a = simulate_neurons(t_in, w, t_max=6.0)
    b = simulate_neurons(t_in[:, perm], w[:, perm], t_max=6.0)
    assert np.array_equal(np.isfinite(a), np.isfinite(b))
    assert np.allclose(a[np.isfinite(a)], b[np.isfinite(b)], rtol=0, atol=1e-9)


@settings(max_examples=15, deadline=None)
@given(st.lists(times, min_size=2, max_size=4), st.lists(st.floats(0.2, 1.5), min_size=4, max_size=4))
def test_raising_an_excitatory_weight_never_delays_the_spike(t_list, w_list):
    t_in = np.array([t_list])
    w = np.array([w_list[: len(t_list)]])
    w_up = w.copy()
    w_up[0, int(np.argmin(t_in))] += 0.3  # the earliest input
    before = simulate_neurons(t_in, w, t_max=6.0)
    after = simulate_neurons(t_in, w_up, t_max=6.0)
    assert after[0] <= before[0] + 1e-12
