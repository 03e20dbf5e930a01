r"""Phase-domain (VCO/PLL) neuron circuit: a behavioural, time-stepped simulation (paper section 3.1, Fig. 1).

The circuit computes the non-leaky integrate-and-fire neuron of eq. (1) (tau = 1, threshold 1),

.. math::  \frac{dv}{dt} = \sum_i w_i\, u(t - t_i)\, e^{-(t - t_i)},

with every state variable carried by an oscillator phase.  Blocks (``CircuitParams`` holds their values):

Synapse = type-I PLL (reference oscillator, XOR phase detector, RC loop filter, VCO).
    Locked, the XOR detector sits at the centre of its linear range (phase error ``pi/2``).  An input spike
    at ``t_i`` steps the reference phase by ``spike_phase_step``; the loop pulls the VCO back, and the
    control-voltage deviation ``x_i = V_c - V_dd/2`` is the synaptic signal.  Cycle-averaged, the XOR
    output is ``V_dd |wrap(phi_e)| / pi`` (gain ``k_pd = V_dd / pi``), the filter is
    ``dV_c/dt = w_lf (v_pd - V_c)`` and the VCO integrates ``dtheta/dt = 2 pi k_vco (V_c - V_dd/2)``.
    The closed loop (eq. 2) has poles ``1/tau`` and ``w_lf - 1/tau`` when the loop gain is
    ``K = 2 pi k_vco k_pd = (1 - 1/(w_lf tau)) / tau`` (``k_vco`` is derived so), and then

    .. math::  x_i(t) = k_{pd} \Delta\phi \frac{w}{w-2}\big(e^{-(t-t_i)} - e^{-(w-1)(t-t_i)}\big),
               \quad w = w_{lf}\tau,

    i.e. exactly the kernel ``A e^{-(t - t_i - d)}`` once ``t - t_i >> 1/w``, delayed by the fixed synaptic
    latency ``d = ln((w-1)/(w-2)) tau`` and with area ``A = k_pd dphi / (K tau)``.
Weights = resistor conductances ``G_i = |w_i| G_u`` into a summing node held at ``V_dd/2`` (a negative
    weight takes the inverted copy of ``x_i``); ``G_u`` is derived so that weight 1 is one unit of
    current.  Optionally quantised to ``bits`` (:func:`quantize_weights`).
PWM modulator: the summed current ``I = sum_i w_i G_u x_i`` sets the duty cycle of the 'UP' signal,
    ``D = 1/2 + I / i_fs`` (clipped to [0, 1]: the modulator saturates).
VCO4 (membrane) runs at ``k_ico I_H`` while UP is high and ``k_ico I_L`` while low; cycle-averaged
    ``f_4 = k_ico (I_L + D (I_H - I_L))``.  VCO3 (threshold reference) runs at ``k_ico I_th``.  With
    ``I_th = (I_L + I_H)/2`` VCO3 runs at VCO4's rest rate, so the phase lead ``phi_4 - phi_3`` is the
    integral of the synaptic current alone: a non-leaky integrator, ``v = (phi_4 - phi_3) / (2 pi n_th)``.
DFF: the reset (t = 0) starts VCO3 ``n_th`` cycles ahead of VCO4; the DFF, clocked by VCO4, fires at the
    first rising edge of VCO4 after VCO4's phase has passed VCO3's (``v >= 1``).  The output spike time is
    thus quantised to VCO4 edges (a delay in ``[0, 1/f_4)``).  One spike per reset (single-spike neuron).

Behavioural level: phases, not transistors.  Oscillators, the XOR detector and the PWM are represented by
their averages over one carrier cycle, so ripple at the carrier frequencies is not modelled (valid for
carriers far above ``1/tau``).  Time is in units of tau in the public functions; spike times are the
package's ``t`` (``z = e^t``), ``inf`` (:data:`tcsnn.NO_SPIKE`) for no spike.

Integration (step ``dt``, :func:`circuit_step`): an input arriving inside a step contributes the
step-average of its reference phase step; the detector is evaluated at the mid-step VCO phase and the loop
filter advanced exactly for that held output (exponential midpoint rule); VCO phases by the trapezoidal
rule; the threshold crossing is interpolated inside the step and the firing moved to VCO4's next rising
edge.  :func:`simulate_neurons` reports the DFF time minus the fixed synaptic latency ``d`` by default.

The ``circuit`` CLI command reproduces Table 3 (output jitter vs input jitter and vs weight bits) and the
tracking error against the closed form (eq. 4); see ``docs/circuit.md``.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from tcsnn._constants import NO_SPIKE, THRESHOLD

#: Default time step, in units of tau (see docs/circuit.md for the error it gives).
DEFAULT_DT: float = 5e-3
#: Default observation window after the reset, in units of tau: a neuron silent until then never fires.
DEFAULT_T_MAX: float = 10.0
#: Default sweeps of the Table 3 experiment.
DEFAULT_JITTERS: tuple[float, ...] = (0.01, 0.03, 0.05, 0.07, 0.09)
DEFAULT_BITS: tuple[int, ...] = (4, 6, 8, 12, 16, 24, 32)
DEFAULT_TRACKING_DTS: tuple[float, ...] = (0.1, 0.03, 0.01, 5e-3, 2e-3, 1e-3, 3e-4)
#: Trial generator of the experiments: input times and weights drawn uniformly from these ranges, kept when
#: the closed-form neuron fires within ``TRIAL_T_OUT`` (so every trial is a well-conditioned spike).
TRIAL_T_IN: tuple[float, float] = (0.0, 1.5)
TRIAL_W: tuple[float, float] = (0.2, 1.5)
TRIAL_W_SIGNED: tuple[float, float] = (-0.8, 1.8)
TRIAL_T_OUT: tuple[float, float] = (0.5, 5.0)


@dataclass(frozen=True)
class CircuitParams:
    """Values of the phase-domain neuron circuit.  SI units; defaults and their sources in docs/circuit.md.

    The paper gives the architecture (Fig. 1) and tau = 1, threshold 1 in model units; all physical values
    below are our choices, made so that the circuit computes eq. (1) with a small, known error.
    """

    #: Synaptic time constant tau (s).  One model time unit.
    tau: float = 1e-6
    #: Supply = swing of the XOR phase detector output (V); k_pd = vdd / pi.
    vdd: float = 1.0
    #: Phase step an input spike applies to its synapse's reference oscillator (rad).
    spike_phase_step: float = math.pi / 4
    #: Pole of the PLL's RC loop filter (rad/s); sets the synaptic latency ln((w-1)/(w-2)) tau, w = w_lf tau.
    w_lf: float = 100e6
    #: Current-to-frequency gain of VCO3 and VCO4 (Hz/A).
    k_ico: float = 1e14
    #: VCO4 current while UP is low (A): f_L = k_ico i_l.
    i_l: float = 5e-6
    #: VCO4 current while UP is high (A): f_H = k_ico i_h.
    i_h: float = 15e-6
    #: VCO3 (threshold reference) current (A).  (i_l + i_h)/2 makes the neuron non-leaky; any other value
    #: adds the constant drift ((i_l + i_h)/2 - i_th) k_ico tau / n_th to dv/dt (per tau).
    i_th: float = 10e-6
    #: PWM full scale (A): a summed synaptic current of +i_fs/2 drives the duty cycle from 1/2 to 1.
    i_fs: float = 10e-6
    #: Threshold: the phase lead of VCO4 over VCO3 at which the DFF fires, in VCO cycles.
    n_th: float = 32.0

    def __post_init__(self) -> None:
        for name in ("tau", "vdd", "w_lf", "k_ico", "i_h", "i_th", "i_fs", "n_th", "spike_phase_step"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"CircuitParams.{name} must be a finite number > 0, got {value!r}")
        if not (math.isfinite(self.i_l) and 0 <= self.i_l < self.i_h):
            raise ValueError(f"CircuitParams needs 0 <= i_l < i_h, got i_l={self.i_l!r}, i_h={self.i_h!r}")
        if self.spike_phase_step > math.pi / 2:
            raise ValueError(
                f"spike_phase_step={self.spike_phase_step:.4g} rad leaves the XOR detector's linear range "
                "(lock at pi/2 + step must stay <= pi); use at most pi/2"
            )
        if self.w_lf * self.tau < 4:
            raise ValueError(
                f"w_lf * tau = {self.w_lf * self.tau:.4g} is too small: the loop filter pole must lie well "
                "above 1/tau (>= 4/tau) for the synapse to be first-order with time constant tau"
            )

    # ---- derived values (documented in docs/circuit.md) ----
    @property
    def k_pd(self) -> float:
        """XOR phase-detector gain (V/rad)."""
        return self.vdd / math.pi

    @property
    def loop_gain(self) -> float:
        """Loop gain K = 2 pi k_vco k_pd (1/s), placed so the closed-loop poles are 1/tau and w_lf - 1/tau."""
        return (1.0 - 1.0 / (self.w_lf * self.tau)) / self.tau

    @property
    def k_vco(self) -> float:
        """Synapse VCO gain (Hz/V), derived from the loop gain."""
        return self.loop_gain / (2 * math.pi * self.k_pd)

    @property
    def synaptic_latency(self) -> float:
        """Fixed delay d of the synaptic kernel from the loop-filter pole, in units of tau."""
        w = self.w_lf * self.tau
        return math.log((w - 1.0) / (w - 2.0))

    @property
    def kernel_area(self) -> float:
        """Area of one synapse's control-voltage response, in V * tau: k_pd dphi / (K tau)."""
        return self.k_pd * self.spike_phase_step / (self.loop_gain * self.tau)

    @property
    def f_l(self) -> float:
        """VCO4 frequency with UP low (Hz)."""
        return self.k_ico * self.i_l

    @property
    def f_h(self) -> float:
        """VCO4 frequency with UP high (Hz)."""
        return self.k_ico * self.i_h

    @property
    def f_th(self) -> float:
        """VCO3 frequency (Hz)."""
        return self.k_ico * self.i_th

    @property
    def unit_conductance(self) -> float:
        """G_u (S): the conductance of weight 1, which adds exactly 1 to v over one synaptic kernel."""
        return self.n_th * self.i_fs / ((self.f_h - self.f_l) * self.tau * self.kernel_area)

    @property
    def max_rate(self) -> float:
        """Largest |dv/dt| (1/tau) the PWM modulator passes before it saturates."""
        return (self.f_h - self.f_l) * self.tau / (2 * self.n_th)

    def derived(self) -> dict[str, float]:
        """The derived values, for reports."""
        return {
            "k_pd_V_per_rad": self.k_pd,
            "loop_gain_per_s": self.loop_gain,
            "k_vco_Hz_per_V": self.k_vco,
            "synaptic_latency_tau": self.synaptic_latency,
            "kernel_area_V_tau": self.kernel_area,
            "f_L_Hz": self.f_l,
            "f_H_Hz": self.f_h,
            "f_th_Hz": self.f_th,
            "unit_conductance_S": self.unit_conductance,
            "unit_resistance_ohm": 1.0 / self.unit_conductance,
            "max_rate_per_tau": self.max_rate,
        }


class CircuitState(NamedTuple):
    """State of K neurons with N synapses each (units of tau for time)."""

    theta: np.ndarray  #: (K, N) synapse VCO phase minus the reference carrier's, rad
    x: np.ndarray  #: (K, N) control-voltage deviation V_c - vdd/2, V
    phase4: np.ndarray  #: (K,) VCO4 phase since the reset, cycles
    lead: np.ndarray  #: (K,) phase of VCO4 minus VCO3 since the reset, cycles (fires at n_th)


class StepConstants(NamedTuple):
    """Constants of one time step, from :class:`CircuitParams` and ``dt`` (frequencies in cycles per tau)."""

    vdd: float  #: XOR output swing (V)
    lpf_decay: float  #: exp(-w_lf dt)
    half_vco: float  #: pi k_vco dt: half the synapse VCO phase per volt of control deviation per step (rad/V)
    duty_per_volt: float  #: G_u / (2 i_fs): PWM duty per unit weight and per volt of (x_start + x_end)
    f_l: float  #: VCO4 frequency with UP low
    f_span: float  #: f_h - f_l
    f_th: float  #: VCO3 frequency
    dt: float  #: step (tau)


def step_constants(params: CircuitParams, dt: float) -> StepConstants:
    """Precompute the per-step constants (time in units of tau)."""
    tau = params.tau
    return StepConstants(
        vdd=params.vdd,
        lpf_decay=math.exp(-params.w_lf * tau * dt),
        half_vco=0.5 * params.loop_gain * tau / params.k_pd * dt,  # pi k_vco tau dt
        duty_per_volt=0.5 * params.unit_conductance / params.i_fs,
        f_l=params.f_l * tau,
        f_span=(params.f_h - params.f_l) * tau,
        f_th=params.f_th * tau,
        dt=dt,
    )


#: The XOR detector's lock point (rad): the centre of its linear range [0, pi].
LOCK_PHASE: float = math.pi / 2


def _xor_pd(phase_error: np.ndarray, vdd: float) -> np.ndarray:
    """Cycle-averaged XOR output minus vdd/2 (V) for a phase error measured from the lock point (rad).

    Triangular in the absolute error: ``vdd |wrap(LOCK_PHASE + e)| / pi - vdd/2``, slope k_pd = vdd/pi near 0.
    """
    wrapped = np.abs(np.remainder(phase_error + (LOCK_PHASE + math.pi), 2 * math.pi) - math.pi)
    return vdd * (wrapped / math.pi - 0.5)


def circuit_step(
    state: CircuitState, ref_step: np.ndarray, weight: np.ndarray, k: StepConstants
) -> tuple[CircuitState, np.ndarray]:
    """Advance K neurons by one time step.

    Args:
        state: the circuit state at the step start.
        ref_step: (K, N) each synapse's reference phase offset averaged over the step (rad): 0 before its
            input spike, ``spike_phase_step`` after, the fraction of the step in between.
        weight: (K, N) signed weights (conductances in units of G_u).
        k: :func:`step_constants`.

    Returns:
        The state at the step end and VCO4's frequency over the step (K,) (cycles per tau).
    """
    # Synapse PLLs, exponential midpoint rule: the detector sees the VCO phase extrapolated to mid-step;
    # the loop filter is advanced exactly for that held detector output.
    theta_mid = state.theta + k.half_vco * state.x  # (K, N)
    pd = _xor_pd(ref_step - theta_mid, k.vdd)
    x_new = pd + (state.x - pd) * k.lpf_decay
    x_sum = state.x + x_new  # trapezoid over the step
    theta_new = state.theta + k.half_vco * x_sum
    # Resistor currents summed into the PWM modulator: duty 1/2 at zero current, clipped when saturated.
    duty = np.minimum(np.maximum(0.5 + (weight * x_sum).sum(axis=1) * k.duty_per_volt, 0.0), 1.0)  # (K,)
    f4 = k.f_l + duty * k.f_span
    new = CircuitState(theta_new, x_new, state.phase4 + f4 * k.dt, state.lead + (f4 - k.f_th) * k.dt)
    return new, f4


def quantize_weights(weight: np.ndarray, bits: int, *, axis: int | None = -1) -> np.ndarray:
    """Round weights to a symmetric uniform b-bit grid.

    Levels are ``q * k`` with integer ``k`` in ``[-(2^(b-1)-1), 2^(b-1)-1]`` and ``q = max|w| / (2^(b-1)-1)``:
    the largest weight is exact and zero is a level.  ``axis=-1`` (default) takes ``max|w|`` per row (one
    resistor bank per neuron); ``axis=None`` over the whole array.  An all-zero row stays zero.
    """
    _check_bits(bits)
    w = np.asarray(weight, dtype=np.float64)
    if not np.isfinite(w).all():
        raise ValueError("weights contain NaN or inf; quantisation needs finite weights")
    levels = 2 ** (bits - 1) - 1
    w_max = np.max(np.abs(w), axis=axis, keepdims=axis is not None)
    q = np.where(w_max > 0, w_max / levels, 1.0)
    return np.clip(np.round(w / q), -levels, levels) * q


def _check_bits(bits: int) -> None:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits < 2:
        raise ValueError(f"weight bits must be an integer >= 2 (a sign and one magnitude level), got {bits!r}")


def _check_dt(dt: float, t_max: float) -> None:
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"time step dt must be a finite number > 0 (units of tau), got {dt!r}")
    if not (math.isfinite(t_max) and t_max > dt):
        raise ValueError(f"t_max must be finite and larger than dt={dt}, got {t_max!r}")


def _check_times_weights(t_in: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(t_in, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    if t.ndim != 2 or w.shape != t.shape:
        raise ValueError(
            f"expected input times and weights of the same shape (neurons, inputs), got {t.shape} and {w.shape}"
        )
    if np.isnan(t).any() or (t < 0).any() or np.isneginf(t).any():
        raise ValueError("input spike times must be >= 0 (the reset is at t = 0) or +inf (no spike); got NaN/negative")
    if not np.isfinite(w).all():
        raise ValueError("weights contain NaN or inf")
    return t, w


def simulate_neurons(
    t_in: np.ndarray,
    weight: np.ndarray,
    params: CircuitParams | None = None,
    *,
    dt: float = DEFAULT_DT,
    t_max: float = DEFAULT_T_MAX,
    bits: int | None = None,
    subtract_latency: bool = True,
    progress: str | None = None,
) -> np.ndarray:
    """Output spike times of K independent circuit neurons.

    Args:
        t_in: (K, N) input spike times in units of tau (>= 0), ``inf`` for inputs that never spike.
        weight: (K, N) each neuron's synaptic weights.
        params: circuit values (default ``CircuitParams()``).
        dt: time step (tau).  t_max: observation window (tau); no spike by then means no spike.
        bits: quantise each neuron's weights to this many bits (:func:`quantize_weights`), or None.
        subtract_latency: report the DFF time minus the known synaptic latency ``params.synaptic_latency``
            (a fixed delay of every synapse, so a constant offset of the output).
        progress: a label to show a progress bar (tqdm, on stderr) over the time steps, or None for none.

    Returns:
        (K,) output spike times (tau), ``inf`` where the neuron does not fire before ``t_max``.
    """
    params = CircuitParams() if params is None else params
    _check_dt(dt, t_max)
    t, w = _check_times_weights(t_in, weight)
    if bits is not None:
        w = quantize_weights(w, bits, axis=-1)
    k, n = t.shape
    consts = step_constants(params, dt)
    state = CircuitState(np.zeros((k, n)), np.zeros((k, n)), np.zeros(k), np.zeros(k))
    out = np.full(k, NO_SPIKE)
    live = np.arange(k)  # neurons that have not fired yet
    arrival = t / dt  # (K, N) input times in steps; inf never arrives
    w_live = w
    n_steps = int(math.ceil(t_max / dt))
    from tqdm.auto import tqdm

    for step in tqdm(range(n_steps), desc=progress, unit="step", disable=progress is None, leave=False):
        # Step-average of each reference's phase step: the fraction of [step, step + 1) after the arrival.
        ref = np.minimum(np.maximum((step + 1) - arrival, 0.0), 1.0) * params.spike_phase_step  # (K', N)
        lead0 = state.lead
        state, f4 = circuit_step(state, ref, w_live, consts)
        crossed = state.lead >= params.n_th
        if crossed.any():
            # Linear crossing inside the step (f4 is constant over it); the next VCO4 edge clocks the DFF.
            rate = f4[crossed] - consts.f_th
            frac = (params.n_th - lead0[crossed]) / (rate * dt)
            t_cross = (step + frac) * dt
            phase_at = state.phase4[crossed] - (1.0 - frac) * f4[crossed] * dt
            out[live[crossed]] = t_cross + (np.ceil(phase_at) - phase_at) / f4[crossed]
            keep = ~crossed
            live, arrival, w_live = live[keep], arrival[keep], w_live[keep]
            state = CircuitState(*(s[keep] for s in state))
            if live.size == 0:
                break
    if subtract_latency:
        out = out - params.synaptic_latency
    return out


def circuit_linear(
    t_in: np.ndarray,
    weight: np.ndarray,
    params: CircuitParams | None = None,
    *,
    dt: float = DEFAULT_DT,
    t_max: float = DEFAULT_T_MAX,
    bits: int | None = None,
    subtract_latency: bool = True,
) -> np.ndarray:
    """A fully connected layer of circuit neurons: t_in (B, N), weight (M, N) -> (B, M) output times (tau).

    The circuit counterpart of :func:`tcsnn.functional.spike_linear` (which works in ``z = e^t``); keyword
    arguments as in :func:`simulate_neurons` (with ``bits``, each output neuron's row is quantised).
    """
    t = np.asarray(t_in, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    if t.ndim != 2 or w.ndim != 2 or t.shape[1] != w.shape[1]:
        raise ValueError(f"expected t_in (batch, inputs) and weight (outputs, inputs), got {t.shape} and {w.shape}")
    b, m = t.shape[0], w.shape[0]
    rows_t = np.repeat(t, m, axis=0)  # (B*M, N)
    rows_w = np.tile(w, (b, 1))  # (B*M, N)
    out = simulate_neurons(rows_t, rows_w, params, dt=dt, t_max=t_max, bits=bits, subtract_latency=subtract_latency)
    return out.reshape(b, m)


def synapse_response(
    duration: float, params: CircuitParams | None = None, *, dt: float = DEFAULT_DT
) -> tuple[np.ndarray, np.ndarray]:
    """One synapse's control-voltage deviation x(t) (V) after an input spike at t = 0, for t in (0, duration].

    Returns (t, x), both (S,), with t the end of each step.  Ideal: ``k_pd dphi w/(w-2) (e^-t - e^-(w-1)t)``.
    """
    params = CircuitParams() if params is None else params
    _check_dt(dt, duration)
    consts = step_constants(params, dt)
    state = CircuitState(np.zeros((1, 1)), np.zeros((1, 1)), np.zeros(1), np.zeros(1))
    ref = np.full((1, 1), params.spike_phase_step)
    n_steps = int(round(duration / dt))
    xs = np.empty(n_steps)
    for i in range(n_steps):
        state, _ = circuit_step(state, ref, np.zeros((1, 1)), consts)
        xs[i] = state.x[0, 0]
    return dt * np.arange(1, n_steps + 1), xs


# ---------------------------------------------------------------- experiments


def closed_form_times(t_in: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Exact n-LIF spike times (eq. 4) of K neurons with their own weights: (K, N), (K, N) -> (K,) (tau)."""
    import torch

    from tcsnn.functional import spike_linear

    t, w = _check_times_weights(t_in, weight)
    z = torch.from_numpy(np.exp(t))
    wt = torch.from_numpy(w)
    out = np.empty(t.shape[0])
    chunk = 256  # spike_linear pairs every row with every weight row; keep the diagonal
    for s in range(0, t.shape[0], chunk):
        zo = spike_linear(z[s : s + chunk], wt[s : s + chunk], backend="reference")
        out[s : s + chunk] = np.log(torch.diagonal(zo).numpy())
    return out


def jitter_inputs(t_in: np.ndarray, jitter: float, rng: np.random.Generator) -> np.ndarray:
    """Relative input timing jitter: each spike time moves by ``dt = +-jitter * t`` (random sign).

    So ``|dt|/t`` equals ``jitter`` for every input; ``inf`` (no spike) stays ``inf``.
    """
    _check_jitter(jitter)
    t = np.asarray(t_in, dtype=np.float64)
    sign = rng.choice(np.array([-1.0, 1.0]), size=t.shape)
    return t * (1.0 + jitter * sign)


def sample_trials(
    rng: np.random.Generator, trials: int, n_inputs: int, *, signed: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random neurons whose closed-form spike lies in ``TRIAL_T_OUT``: t_in (T, N), weight (T, N), t_out (T,).

    Input times uniform in ``TRIAL_T_IN``; weights uniform in ``TRIAL_W`` (``TRIAL_W_SIGNED`` if ``signed``).
    """
    _check_trials(trials)
    if n_inputs < 1:
        raise ValueError(f"a neuron needs at least one input, got n_inputs={n_inputs}")
    w_lo, w_hi = TRIAL_W_SIGNED if signed else TRIAL_W
    ts, ws, outs = [], [], []
    have = 0
    for _ in range(1000):
        t = rng.uniform(*TRIAL_T_IN, size=(4 * trials, n_inputs))
        w = rng.uniform(w_lo, w_hi, size=(4 * trials, n_inputs))
        out = closed_form_times(t, w)
        ok = (out >= TRIAL_T_OUT[0]) & (out <= TRIAL_T_OUT[1])
        ts.append(t[ok])
        ws.append(w[ok])
        outs.append(out[ok])
        have += int(ok.sum())
        if have >= trials:
            break
    else:  # pragma: no cover - the acceptance rate is tens of percent
        raise RuntimeError("could not draw enough firing neurons")
    return np.concatenate(ts)[:trials], np.concatenate(ws)[:trials], np.concatenate(outs)[:trials]


def _check_jitter(jitter: float) -> None:
    if (
        isinstance(jitter, bool)
        or not isinstance(jitter, (int, float))
        or not (math.isfinite(jitter) and 0 <= jitter < 1)
    ):
        raise ValueError(f"input jitter must be a fraction >= 0 and < 1 (0.01 = 1%), got {jitter!r}")


def _check_sweeps(jitters: Sequence[float], bits: Sequence[int]) -> None:
    if not jitters or not bits:
        raise ValueError("the Table 3 sweeps need at least one input jitter and one weight bit width")
    for j in jitters:
        _check_jitter(j)
    for b in bits:
        _check_bits(b)


def _check_trials(trials: int) -> None:
    if isinstance(trials, bool) or not isinstance(trials, (int, np.integer)) or trials < 1:
        raise ValueError(f"trials must be an integer >= 1, got {trials!r}")


def _rel_error(measured: np.ndarray, desired: np.ndarray) -> np.ndarray:
    """|measured - desired| / desired; a missed or spurious spike counts as error 1 (100%)."""
    both = np.isfinite(measured) & np.isfinite(desired)
    err = np.ones_like(desired)
    err[both] = np.abs(measured[both] - desired[both]) / desired[both]
    err[~np.isfinite(measured) & ~np.isfinite(desired)] = 0.0
    return err


def tracking_study(
    *,
    dts: Sequence[float] = DEFAULT_TRACKING_DTS,
    trials: int = 200,
    n_inputs: Sequence[int] = (2, 5),
    seed: int = 0,
    params: CircuitParams | None = None,
    progress: bool = False,
) -> list[dict[str, float]]:
    """Relative error |t_circuit - t_closed| / t_closed of random neurons (signed weights) per time step.

    ``progress`` shows a progress bar per simulation.
    """
    _check_trials(trials)
    rows = []
    for n in n_inputs:
        rng = np.random.default_rng([seed, n])
        t_in, w, t_closed = sample_trials(rng, trials, n, signed=True)
        for dt in dts:
            start = time.perf_counter()
            t_circ = simulate_neurons(t_in, w, params, dt=dt,
                                      progress=f"tracking, {n} inputs, dt {dt}" if progress else None)
            seconds = time.perf_counter() - start
            err = _rel_error(t_circ, t_closed)
            rows.append(
                {
                    "n_inputs": n,
                    "dt": float(dt),
                    "trials": trials,
                    "mean_rel_error": float(err.mean()),
                    "max_rel_error": float(err.max()),
                    "missed": int((~np.isfinite(t_circ)).sum()),
                    "seconds": round(seconds, 4),
                }
            )
    return rows


def table3(
    *,
    trials: int = 500,
    seed: int = 0,
    dt: float = DEFAULT_DT,
    jitters: Sequence[float] = DEFAULT_JITTERS,
    bits: Sequence[int] = DEFAULT_BITS,
    params: CircuitParams | None = None,
    progress: bool = False,
) -> list[dict[str, float | str]]:
    """The Table 3 experiment on 2-input neurons (positive weights), seeded (``progress``: a progress bar).

    Desired time = the closed form (eq. 4) with the nominal inputs and full-precision weights.  Rows:
    ``sweep="input_jitter"``: inputs jittered by ``level`` (:func:`jitter_inputs`), weights exact.
    ``sweep="weight_bits"``: inputs exact, weights quantised to ``level`` bits.
    Columns ``circuit_*``: the simulated circuit; ``ideal_*``: the closed form under the same perturbation
    (the part of the output jitter that is the neuron's own arithmetic, not the circuit's).
    """
    _check_trials(trials)
    _check_sweeps(jitters, bits)
    rng = np.random.default_rng(seed)
    t_in, w, t_des = sample_trials(rng, trials, 2)
    # One batched simulation for all rows (and the unperturbed circuit as row "none").
    cases: list[tuple[str, float, np.ndarray, np.ndarray]] = [("none", 0.0, t_in, w)]
    for j in jitters:
        cases.append(("input_jitter", float(j), jitter_inputs(t_in, j, rng), w))
    for b in bits:
        cases.append(("weight_bits", int(b), t_in, quantize_weights(w, b)))
    all_t = np.concatenate([c[2] for c in cases])
    all_w = np.concatenate([c[3] for c in cases])
    t_circ = simulate_neurons(all_t, all_w, params, dt=dt,
                              progress="table 3" if progress else None).reshape(len(cases), trials)
    t_ideal = closed_form_times(all_t, all_w).reshape(len(cases), trials)
    rows: list[dict[str, float | str]] = []
    for i, (sweep, level, t_case, _) in enumerate(cases):
        e_c = _rel_error(t_circ[i], t_des)
        e_i = _rel_error(t_ideal[i], t_des)
        moved = t_in > 0
        in_jit = np.abs(t_case - t_in)[moved] / t_in[moved]
        rows.append(
            {
                "sweep": sweep,
                "level": level,
                "input_jitter_mean": float(in_jit.mean()) if sweep == "input_jitter" else 0.0,
                "circuit_mean": float(e_c.mean()),
                "circuit_max": float(e_c.max()),
                "ideal_mean": float(e_i.mean()),
                "ideal_max": float(e_i.max()),
                "circuit_spikes_changed": int((np.isfinite(t_circ[i]) != np.isfinite(t_des)).sum()),
                "trials": trials,
            }
        )
    return rows


# ---------------------------------------------------------------- report files


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through :func:`tcsnn.io.write_text` (exclusive temp file, then rename)."""
    from tcsnn.io import write_text

    write_text(path, text)


def _csv_text(rows: Sequence[dict[str, object]]) -> str:
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def plot_table3(rows: Sequence[dict[str, float | str]], path: Path) -> None:
    """Two panels: output vs input jitter, output jitter vs weight bits (log scale).  Writes a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    jit = [r for r in rows if r["sweep"] == "input_jitter"]
    bit = [r for r in rows if r["sweep"] == "weight_bits"]
    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    x = [100 * float(r["level"]) for r in jit]
    # The two curves nearly coincide: the closed form is drawn first as large hollow squares on a dashed line,
    # the circuit on top as small filled circles, so that both stay visible.
    ideal_style = dict(linestyle="--", marker="s", markersize=10, markerfacecolor="none", markeredgewidth=1.5,
                       color="tab:orange", zorder=2, label="closed form (eq. 4)")
    circuit_style = dict(linestyle="-", marker="o", markersize=5, color="tab:blue", zorder=3, label="circuit")
    ax1.plot(x, x, "k:", label="output = input")
    ax1.plot(x, [100 * float(r["ideal_mean"]) for r in jit], **ideal_style)
    ax1.plot(x, [100 * float(r["circuit_mean"]) for r in jit], **circuit_style)
    ax1.set_xlabel("input timing jitter |dt|/t (%)")
    ax1.set_ylabel("mean output jitter |dt|/t (%)")
    ax1.set_title("2-input neuron: input jitter")
    ax1.legend()
    b = [int(r["level"]) for r in bit]
    floor = [100 * float(r["circuit_mean"]) for r in rows if r["sweep"] == "none"]
    if floor:
        ax2.axhline(floor[0], color="k", linestyle=":", label="circuit, exact weights")
    ax2.semilogy(b, [max(100 * float(r["ideal_mean"]), 1e-12) for r in bit], **ideal_style)
    ax2.semilogy(b, [100 * float(r["circuit_mean"]) for r in bit], **circuit_style)
    ax2.set_xlabel("weight bits")
    ax2.set_ylabel("mean output jitter |dt|/t (%)")
    ax2.set_title("2-input neuron: weight quantisation")
    ax2.legend()
    fig.tight_layout()
    from tcsnn.io import save_figure

    save_figure(fig, path, dpi=120)


def _format_table(rows: Sequence[dict[str, float | str]]) -> str:
    lines = [
        f"{'sweep':<13} {'level':>6} {'circuit mean':>13} {'circuit max':>12} "
        f"{'eq.4 mean':>11} {'eq.4 max':>10} {'changed':>7}"
    ]
    for r in rows:
        level = f"{100 * float(r['level']):.0f}%" if r["sweep"] == "input_jitter" else str(r["level"])
        if r["sweep"] == "none":
            level = "-"
        lines.append(
            f"{r['sweep']:<13} {level:>6} {100 * float(r['circuit_mean']):>12.4f}% "
            f"{100 * float(r['circuit_max']):>11.4f}% "
            f"{100 * float(r['ideal_mean']):>10.4f}% {100 * float(r['ideal_max']):>9.4f}% "
            f"{r['circuit_spikes_changed']:>7}"
        )
    return "\n".join(lines)


def _format_tracking(rows: Sequence[dict[str, float]]) -> str:
    lines = [f"{'inputs':>6} {'dt (tau)':>9} {'mean rel err':>13} {'max rel err':>12} {'missed':>6} {'seconds':>8}"]
    for r in rows:
        lines.append(
            f"{r['n_inputs']:>6} {r['dt']:>9.4g} {100 * r['mean_rel_error']:>12.4f}% "
            f"{100 * r['max_rel_error']:>11.4f}% "
            f"{r['missed']:>6} {r['seconds']:>8.3f}"
        )
    return "\n".join(lines)


def _versions() -> dict[str, str]:
    import platform

    from tcsnn import __version__

    return {"tcsnn": __version__, "numpy": np.__version__, "python": platform.python_version()}


def write_report(
    out: Path,
    *,
    trials: int = 500,
    seed: int = 0,
    dt: float = DEFAULT_DT,
    jitters: Sequence[float] = DEFAULT_JITTERS,
    bits: Sequence[int] = DEFAULT_BITS,
    tracking_dts: Sequence[float] = DEFAULT_TRACKING_DTS,
    tracking_trials: int | None = None,
    params: CircuitParams | None = None,
    progress: bool = False,
) -> tuple[list[dict[str, float | str]], list[dict[str, float]]]:
    """Run both studies and write table3.{csv,json,png} and tracking.{csv,json} into ``out``.

    ``progress`` shows a progress bar (tqdm, on stderr) for each simulation.
    """
    from tcsnn.io import ensure_folder

    params = CircuitParams() if params is None else params
    ensure_folder(out)
    rows = table3(trials=trials, seed=seed, dt=dt, jitters=jitters, bits=bits, params=params, progress=progress)
    track = tracking_study(dts=tracking_dts, trials=tracking_trials or trials, seed=seed, params=params,
                           progress=progress)
    config = {
        "trials": trials,
        "seed": seed,
        "dt": dt,
        "jitters": list(jitters),
        "bits": list(bits),
        "tracking_dts": list(tracking_dts),
        "tracking_trials": tracking_trials or trials,
        "trial_t_in": TRIAL_T_IN,
        "trial_w": TRIAL_W,
        "trial_w_signed": TRIAL_W_SIGNED,
        "trial_t_out": TRIAL_T_OUT,
        "threshold": THRESHOLD,
        "params": asdict(params),
        "derived": params.derived(),
        "versions": _versions(),
    }
    _write_atomic(out / "table3.csv", _csv_text(rows))
    _write_atomic(out / "table3.json", json.dumps({"config": config, "rows": rows}, indent=2) + "\n")
    _write_atomic(out / "tracking.csv", _csv_text(track))
    _write_atomic(out / "tracking.json", json.dumps({"config": config, "rows": track}, indent=2) + "\n")
    plot_table3(rows, out / "table3.png")
    return rows, track
