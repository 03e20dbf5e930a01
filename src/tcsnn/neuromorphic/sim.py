r"""Exact simulation of single-spike integrate-and-fire networks in time (Zhou et al. 2021, eq. 1).

Each neuron integrates :math:`dv/dt = \sum_i w_i\,u(t - t_i)\,e^{-(t - t_i)}` (tau = 1) from ``v(0) = 0``,
fires once when ``v`` reaches 1 and then ignores its inputs.  Two independent checks of the closed form
of :mod:`tcsnn.functional` (eq. 4) live here:

ODE check (``simulate_neuron``, ``simulate_layer_ode``, ``simulate_conv2d_ode``)
    One neuron at a time in the time domain.  The state ``(v, I)`` of :math:`dv/dt = I,\ dI/dt = -I`
    is carried exactly from input to input (an input adds its weight to ``I``; ``v`` is continuous), and
    in each inter-input interval :math:`v(a + s) = v_a + I_a (1 - e^{-s})` is searched for the threshold
    crossing by bracketing and bisection.  ``v`` is monotone in an interval (``dv/dt = I_a e^{-s}`` keeps
    the sign of ``I_a``), so the first crossing is found whenever there is one.  Nothing here uses
    ``z = S / (W - 1)``.  Small shapes only: a Python loop per neuron.

Event-driven engine (``compile_network``, ``simulate_events``, ``simulate_images``)
    A whole trained network (spiking conv, linear, max-pool, flatten; branches concatenated along channels,
    as in an inception block) as an asynchronous event
    simulation.  A priority queue holds spike events in time order (ties: deeper layer first, then lower
    index, as the closed form resolves them).  Delivering a spike at ``z_i`` with weight ``w`` updates
    the target's accumulators ``W += w``, ``S += w z_i`` and, when ``W > 1``, reschedules its tentative
    firing at ``z = S / (W - 1)`` -- the exact solution of eq. (1) for the inputs received so far.  A
    queued firing made stale by a later input is dropped (or re-queued) when popped.  Max-pool forwards
    the first spike of its window, flatten re-indexes, biases are one source spiking at t = 0.

Counting conventions (per image): *spikes* are firings of spiking conv/linear neurons (what
:data:`tcsnn.ENERGY_PER_SPIKE_J` prices, as :mod:`tcsnn.metrics` counts them); input spikes are
reported apart and max-pool forwards only in the per-population counts.
*Synaptic events* are weighted deliveries (spike x synapse, bias deliveries included), counted whether
or not the target has already fired.
"""

from __future__ import annotations

import functools
import heapq
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from tcsnn._constants import BIAS_Z, ENERGY_PER_SPIKE_J, NO_SPIKE, THRESHOLD

if TYPE_CHECKING:
    from torch import nn

#: Bisection stops once the bracket on the crossing time is this narrow (time units, tau = 1).
ODE_TIME_TOL = 1e-13

#: Time at which the bias input spikes (z = 1).
BIAS_T = math.log(BIAS_Z)

#: Node kinds of a compiled network.
SOURCE, NEURON, POOL = 0, 1, 2

Stop = Literal["decision", "outputs", "all"]
_STOP_DECISION, _STOP_OUTPUTS, _STOP_ALL = 0, 1, 2
_STOP_CODES = {"decision": _STOP_DECISION, "outputs": _STOP_OUTPUTS, "all": _STOP_ALL}

#: Event-engine backends: the plain-Python loop is the readable ground truth, numba runs the same code.
SIM_BACKENDS = ("numba", "python")


# ---------------------------------------------------------------------------------------------------------
# ODE check: one neuron at a time, in the time domain
# ---------------------------------------------------------------------------------------------------------


def _as_float64(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN")
    return arr


def _v_after(v0: float, i0: float, s: float) -> float:
    """Membrane potential ``s >= 0`` after a point where it was ``v0`` with current ``i0`` (no new input)."""
    return v0 - i0 * math.expm1(-s)


def _first_crossing(v0: float, i0: float, span: float) -> float | None:
    """Smallest ``s`` in ``(0, span]`` with ``v0 + i0 (1 - e^{-s}) >= 1``, or None.

    ``v0 < 1`` on entry; ``span`` (to the next input) may be inf.
    """
    if i0 <= 0.0:
        return None  # v is non-increasing in this interval and starts below threshold
    if math.isinf(span):
        if v0 + i0 <= THRESHOLD:
            return None  # the asymptote v0 + i0 is never exceeded at a finite time
        hi = 1.0
        while _v_after(v0, i0, hi) < THRESHOLD:
            hi *= 2.0
    else:
        if _v_after(v0, i0, span) < THRESHOLD:
            return None
        hi = span
    lo = 0.0  # invariant: v(lo) < 1 <= v(hi)
    while hi - lo > ODE_TIME_TOL:
        mid = 0.5 * (lo + hi)
        if not lo < mid < hi:
            break  # the bracket is down to adjacent floats
        if _v_after(v0, i0, mid) >= THRESHOLD:
            hi = mid
        else:
            lo = mid
    return hi


def simulate_neuron(t_in: Any, w: Any, bias: float | None = None) -> float:
    r"""Spike time of one neuron by integrating eq. (1) in time; ``inf`` if it never fires.

    Between inputs, with ``a`` the last input time, :math:`v(a + s) = v_a + I_a (1 - e^{-s})` and
    :math:`I(a + s) = I_a e^{-s}`; an input of weight ``w`` at ``a`` makes ``I_a += w``.  Inputs with equal
    times arrive together.  The returned time is where ``v`` first reaches the threshold, to
    :data:`ODE_TIME_TOL`; a crossing exactly at the next input time counts as before that input.

    Args:
        t_in: (N,) input spike times; ``inf`` for inputs that never spike.
        w: (N,) weights (any sign).
        bias: weight of one more input at t = 0, or None.

    Returns:
        The spike time ``t`` (float), ``inf`` for a silent neuron.
    """
    t = _as_float64(t_in, "t_in").ravel()
    wt = _as_float64(w, "w").ravel()
    if t.shape != wt.shape:
        raise ValueError(f"t_in has {t.size} entries but w has {wt.size}")
    if np.isinf(wt).any():
        raise ValueError("weights must be finite")
    if (t == -np.inf).any():
        raise ValueError("input times must be > -inf (z = exp(t) > 0); use +inf for inputs that never spike")
    if bias is not None:
        if not math.isfinite(bias):
            raise ValueError(f"bias must be finite, got {bias}")
        t = np.append(t, BIAS_T)
        wt = np.append(wt, bias)
    arrived = np.isfinite(t)
    times, inverse = np.unique(t[arrived], return_inverse=True)  # sorted distinct arrival times
    jumps = np.bincount(inverse.ravel(), weights=wt[arrived], minlength=times.size)  # summed weight per time

    v, current, t_prev = 0.0, 0.0, -math.inf
    for tk, dw in zip(times.tolist(), jumps.tolist(), strict=True):
        if current != 0.0:  # before the first input nothing moves
            span = tk - t_prev
            s = _first_crossing(v, current, span)
            if s is not None:
                return t_prev + s
            v = _v_after(v, current, span)
            current *= math.exp(-span)
        current += dw
        t_prev = tk
    s = _first_crossing(v, current, math.inf)
    return NO_SPIKE if s is None else t_prev + s


def _z_to_t(z: np.ndarray, name: str) -> np.ndarray:
    if (z <= 0).any():
        raise ValueError(f"{name} contains values <= 0; spike values are z = exp(t) > 0, or NO_SPIKE (+inf)")
    with np.errstate(divide="ignore"):
        return np.log(z)


def simulate_layer_ode(z_in: Any, weight: Any, bias: Any = None) -> np.ndarray:
    """Fully-connected layer by :func:`simulate_neuron` per neuron.  z (B, N), weight (M, N) -> z (B, M).

    Inputs and outputs are spike values ``z = e^t`` (float64 numpy); ``NO_SPIKE`` for silent ones.
    """
    z = _as_float64(z_in, "z_in")
    wt = _as_float64(weight, "weight")
    if z.ndim != 2 or wt.ndim != 2 or z.shape[1] != wt.shape[1]:
        raise ValueError(f"expected z (B, N) and weight (M, N), got {z.shape} and {wt.shape}")
    b = None if bias is None else _as_float64(bias, "bias").ravel()
    if b is not None and b.shape != (wt.shape[0],):
        raise ValueError(f"bias must have shape ({wt.shape[0]},), got {b.shape}")
    t = _z_to_t(z, "z_in")
    out = np.empty((z.shape[0], wt.shape[0]))  # (B, M)
    for r in range(z.shape[0]):
        for m in range(wt.shape[0]):
            out[r, m] = simulate_neuron(t[r], wt[m], None if b is None else float(b[m]))
    return np.exp(out)


def simulate_conv2d_ode(
    z_in: Any, weight: Any, bias: Any = None, stride: int = 1, padding: int = 0
) -> np.ndarray:
    """Convolutional layer by :func:`simulate_neuron` per output.  z (B, C, H, W), weight (O, C, k, k).

    Receptive fields are gathered by explicit index arithmetic; taps that fall in the padding are
    absent (they never spike).  Returns z (B, O, H', W') as float64 numpy.
    """
    z = _as_float64(z_in, "z_in")
    wt = _as_float64(weight, "weight")
    if z.ndim != 4 or wt.ndim != 4 or z.shape[1] != wt.shape[1] or wt.shape[2] != wt.shape[3]:
        raise ValueError(f"expected z (B, C, H, W) and weight (O, C, k, k), got {z.shape} and {wt.shape}")
    if stride < 1 or padding < 0:
        raise ValueError(f"stride must be >= 1 and padding >= 0, got {stride}, {padding}")
    b = None if bias is None else _as_float64(bias, "bias").ravel()
    n_b, n_c, height, width = z.shape
    n_o, _, k, _ = wt.shape
    h_out = (height + 2 * padding - k) // stride + 1
    w_out = (width + 2 * padding - k) // stride + 1
    if h_out < 1 or w_out < 1:
        raise ValueError(f"input {height}x{width} is smaller than the kernel {k}x{k} with padding {padding}")
    t = _z_to_t(z, "z_in")
    out = np.empty((n_b, n_o, h_out, w_out))
    for oy in range(h_out):
        for ox in range(w_out):
            ys = [oy * stride - padding + ky for ky in range(k)]
            xs = [ox * stride - padding + kx for kx in range(k)]
            taps = [(ky, kx) for ky in range(k) for kx in range(k)
                    if 0 <= ys[ky] < height and 0 <= xs[kx] < width]
            for r in range(n_b):
                t_field = np.array([[t[r, c, ys[ky], xs[kx]] for ky, kx in taps] for c in range(n_c)])
                for o in range(n_o):
                    w_field = np.array([[wt[o, c, ky, kx] for ky, kx in taps] for c in range(n_c)])
                    out[r, o, oy, ox] = simulate_neuron(t_field, w_field, None if b is None else float(b[o]))
    return np.exp(out)


# ---------------------------------------------------------------------------------------------------------
# Event-driven network engine
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Population:
    """A block of nodes of a compiled network: the input, or the output of one spiking layer."""

    name: str
    kind: int  # SOURCE, NEURON or POOL
    start: int  # first node id
    shape: tuple[int, ...]  # per-image shape, e.g. (C, H, W) or (N,)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def stop(self) -> int:
        return self.start + self.size


@dataclass(frozen=True)
class EventNetwork:
    """A network as nodes and weighted edges (CSR by source node), ready for :func:`simulate_events`.

    Node ids: the inputs (flattened, C-order), then the bias source (if any layer has a bias), then one
    population per spiking layer.  ``rank`` orders simultaneous events: deeper layers first.
    """

    populations: tuple[Population, ...]  # [0] is the input, [-1] the output
    bias_node: int  # -1 when no layer has a bias
    kind: np.ndarray  # (n_nodes,) int8
    rank: np.ndarray  # (n_nodes,) int64
    indptr: np.ndarray  # (n_nodes + 1,) int64
    targets: np.ndarray  # (n_edges,) int64
    weights: np.ndarray  # (n_edges,) float64; 0 on edges into max-pool nodes
    synapses_out: np.ndarray  # (n_nodes,) int64: weighted deliveries one spike of the node makes

    @property
    def n_nodes(self) -> int:
        return int(self.kind.shape[0])

    @property
    def n_edges(self) -> int:
        return int(self.targets.shape[0])

    @property
    def input(self) -> Population:
        return self.populations[0]

    @property
    def output(self) -> Population:
        return self.populations[-1]


def _to_numpy(t: Any) -> np.ndarray:
    import torch

    return t.detach().cpu().to(torch.float64).numpy()


def _tap_rows(n_out: int, stride: int, pad: int, offset: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Along one axis, the outputs whose window tap ``offset`` lands on a real input, and those inputs:
    ``(o, i)`` with ``i = o * stride - pad + offset`` in ``[0, size)`` (taps in the padding never spike)."""
    o = np.arange(n_out)
    i = o * stride - pad + offset
    keep = (i >= 0) & (i < size)
    return o[keep], i[keep]


def _window_taps(
    out_hw: tuple[int, int], in_hw: tuple[int, int], k: int, stride: int, pad: int
) -> Iterator[tuple[int, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Every tap ``(ky, kx)`` of a k x k window that lands on real inputs somewhere, with its output rows / cols
    ``oy``, ``ox`` and the input rows / cols ``y``, ``x`` they read."""
    for ky in range(k):
        oy, y = _tap_rows(out_hw[0], stride, pad, ky, in_hw[0])
        for kx in range(k):
            ox, x = _tap_rows(out_hw[1], stride, pad, kx, in_hw[1])
            if oy.size and ox.size:
                yield ky, kx, oy, y, ox, x


def _conv_edges(
    weight: np.ndarray, in_shape: tuple[int, ...], stride: int, pad: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int, int]]:
    """Edges of a convolution: (src local, dst local, weight) over all taps that hit the input map."""
    n_o, n_c, k, _ = weight.shape
    _, height, width = in_shape
    h_out = (height + 2 * pad - k) // stride + 1
    w_out = (width + 2 * pad - k) // stride + 1
    src, dst, wts = [], [], []
    chan_in = np.arange(n_c)[:, None, None] * (height * width)  # (C, 1, 1)
    chan_out = np.arange(n_o)[:, None, None] * (h_out * w_out)  # (O, 1, 1)
    for ky, kx, oy, y, ox, x in _window_taps((h_out, w_out), (height, width), k, stride, pad):
        s = chan_in + (y[:, None] * width + x[None, :])[None]  # (C, Y, X)
        d = chan_out + (oy[:, None] * w_out + ox[None, :])[None]  # (O, Y, X)
        shape = (n_o, n_c, oy.size, ox.size)
        src.append(np.broadcast_to(s[None], shape).ravel())
        dst.append(np.broadcast_to(d[:, None], shape).ravel())
        wts.append(np.broadcast_to(weight[:, :, ky, kx][:, :, None, None], shape).ravel())
    return np.concatenate(src), np.concatenate(dst), np.concatenate(wts), (n_o, h_out, w_out)


def _pool_edges(
    in_shape: tuple[int, ...], k: int, stride: int, pad: int = 0
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
    """Edges of a max-pool (floor mode): every real input of a window -> the window's node.

    Taps in the padding are absent (they never spike), as in :class:`tcsnn.nn.SpikingMaxPool2d`.
    """
    n_c, height, width = in_shape
    h_out = (height + 2 * pad - k) // stride + 1
    w_out = (width + 2 * pad - k) // stride + 1
    if h_out < 1 or w_out < 1:
        raise ValueError(f"max-pool window {k} does not fit the {height}x{width} input")
    c = np.arange(n_c)[:, None, None]
    src, dsts = [], []
    for _, _, oy, y, ox, x in _window_taps((h_out, w_out), (height, width), k, stride, pad):
        src.append(((c * height + y[None, :, None]) * width + x[None, None, :]).ravel())
        dsts.append(((c * h_out + oy[None, :, None]) * w_out + ox[None, None, :]).ravel())
    return np.concatenate(src), np.concatenate(dsts), (n_c, h_out, w_out)


def compile_network(model: nn.Module, input_shape: Sequence[int]) -> EventNetwork:
    """Turn a network of tcsnn layers into an :class:`EventNetwork`.

    The graph may branch: ``nn.Sequential`` is a chain, :class:`tcsnn.nn.SpikingBranches` (e.g. an inception
    block) runs its branches on the same input and concatenates their outputs along channels.  A
    concatenation creates no nodes: the next layer's edges go to the branches' nodes directly.  Populations are
    named by module path (``features.0``, ``inception_3a.branch2.1``) and laid out in forward (topological)
    order, so "deeper first" on ties means "after in the graph first".

    Args:
        model: a :class:`tcsnn.nn.SpikingNetwork` (its body is compiled) or a module of spiking
            conv/linear/max-pool layers, ``nn.Flatten``, branches, identities (auxiliary heads in eval).
        input_shape: per-image input shape, (C, H, W) for convolutional models or (N,) for linear ones.

    Raises:
        ValueError: for an unsupported module or shapes that do not fit.
    """
    import torch
    from torch import nn

    from tcsnn.models.googlenet import AuxClassifier
    from tcsnn.nn import SpikingBranches, SpikingConv2d, SpikingLinear, SpikingMaxPool2d, body_of, spiking_layers
    from tcsnn.quant import effective_weights

    shape = tuple(int(s) for s in input_shape)
    if not shape or min(shape) < 1:
        raise ValueError(f"input_shape must be a non-empty tuple of positive sizes, got {tuple(input_shape)}")
    body = body_of(model)
    has_bias = any(m.bias is not None for _, m in spiking_layers(body))
    n_in = math.prod(shape)
    pops = [Population("input", SOURCE, 0, shape)]
    bias_node = n_in if has_bias else -1
    next_id = n_in + (1 if has_bias else 0)
    src_all: list[np.ndarray] = []
    dst_all: list[np.ndarray] = []
    w_all: list[np.ndarray] = []

    def layer(name: str, m: nn.Module, ids: np.ndarray, cur_shape: tuple[int, ...]) -> tuple[np.ndarray, tuple]:
        """One leaf: ``ids`` are the node ids of its input (flattened C-order); returns its output's ids."""
        nonlocal next_id
        if isinstance(m, nn.Flatten):
            if m.start_dim != 1 or m.end_dim != -1:
                raise ValueError(f"{name}: only nn.Flatten(start_dim=1, end_dim=-1) is supported")
            return ids, (math.prod(cur_shape),)
        if isinstance(m, (nn.Identity, AuxClassifier)):  # an auxiliary head is the identity in eval mode
            return ids, cur_shape
        if isinstance(m, SpikingConv2d):
            if len(cur_shape) != 3 or cur_shape[0] != m.in_channels:
                raise ValueError(f"{name} expects ({m.in_channels}, H, W) input, got {cur_shape}")
            w = _to_numpy(effective_weights(m)[0])  # the weights the forward uses (quantised in QAT)
            if (cur_shape[1] + 2 * m._pad - m.kernel_size) // m.stride + 1 < 1:
                raise ValueError(f"{name}: input {cur_shape[1:]} is smaller than the kernel")
            s, d, wt, out_shape = _conv_edges(w, cur_shape, m.stride, m._pad)
            kind = NEURON
        elif isinstance(m, SpikingLinear):
            if len(cur_shape) != 1 or cur_shape[0] != m.in_features:
                raise ValueError(f"{name} expects ({m.in_features},) input, got {cur_shape}; add nn.Flatten?")
            w = _to_numpy(effective_weights(m)[0])  # (M, N), as the forward uses them
            n_out = w.shape[0]
            s = np.repeat(np.arange(m.in_features), n_out)
            d = np.tile(np.arange(n_out), m.in_features)
            wt = w.T.ravel()
            out_shape = (n_out,)
            kind = NEURON
        elif isinstance(m, SpikingMaxPool2d):
            if len(cur_shape) != 3:
                raise ValueError(f"{name} expects (C, H, W) input, got {cur_shape}")
            s, d, out_shape = _pool_edges(cur_shape, int(m.kernel_size), int(m.stride), int(m.padding))
            wt = np.zeros(s.shape)
            kind = POOL
        else:
            raise ValueError(
                f"{name} ({type(m).__name__}) is not supported by the event simulation (supported: SpikingConv2d, "
                "SpikingLinear, SpikingMaxPool2d, nn.Flatten, nn.Sequential, SpikingBranches)"
            )
        bias_eff = effective_weights(m)[1] if kind == NEURON else None
        if not np.isfinite(wt).all() or (bias_eff is not None and not torch.isfinite(bias_eff).all()):
            raise ValueError(f"{name}: weights or bias contain NaN or inf")
        pop = Population(name, kind, next_id, out_shape)
        src_all.append(ids[s])
        dst_all.append(d + pop.start)
        w_all.append(wt)
        if bias_eff is not None:
            src_all.append(np.full(pop.size, bias_node))
            dst_all.append(np.arange(pop.start, pop.stop))
            b = _to_numpy(bias_eff)  # (channels,): one value per output channel
            w_all.append(np.repeat(b, pop.size // b.size))
        pops.append(pop)
        next_id = pop.stop
        return np.arange(pop.start, pop.stop), out_shape

    def walk(prefix: str, m: nn.Module, ids: np.ndarray, cur_shape: tuple[int, ...]) -> tuple[np.ndarray, tuple]:
        if isinstance(m, nn.Sequential):
            for child_name, child in m.named_children():
                ids, cur_shape = walk(f"{prefix}.{child_name}" if prefix else child_name, child, ids, cur_shape)
            return ids, cur_shape
        if isinstance(m, SpikingBranches):
            outs = [walk(f"{prefix}.{bn}", b, ids, cur_shape) for bn, b in m.branches()]
            shapes = [o[1] for o in outs]
            if any(len(sh) != 3 or sh[1:] != shapes[0][1:] for sh in shapes):
                raise ValueError(f"{prefix}: branch outputs {shapes} do not concatenate along channels")
            # (C, H, W) flattened channel-first: concatenating along channels concatenates the id blocks
            return np.concatenate([o[0] for o in outs]), (sum(sh[0] for sh in shapes), *shapes[0][1:])
        return layer(prefix or "0", m, ids, cur_shape)

    out_ids, _ = walk("", body, np.arange(n_in), shape)
    if len(pops) == 1:
        raise ValueError("the model has no spiking layer")
    last = pops[-1]
    if last.kind != NEURON or not np.array_equal(out_ids, np.arange(last.start, last.stop)):
        raise ValueError("the model must end with a spiking conv or linear layer (its neurons are the outputs)")

    n_nodes = next_id
    kind_arr = np.zeros(n_nodes, np.int8)  # inputs and bias: SOURCE
    rank = np.empty(n_nodes, np.int64)
    next_rank = 0
    for p in reversed(pops[1:]):  # deeper populations win ties
        kind_arr[p.start:p.stop] = p.kind
        rank[p.start:p.stop] = np.arange(next_rank, next_rank + p.size)
        next_rank += p.size
    rank[:pops[1].start] = np.arange(next_rank, next_rank + pops[1].start)

    src = np.concatenate(src_all).astype(np.int64)
    dst = np.concatenate(dst_all).astype(np.int64)
    wts = np.concatenate(w_all).astype(np.float64)
    order = np.argsort(src, kind="stable")
    counts = np.bincount(src, minlength=n_nodes)
    indptr = np.zeros(n_nodes + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    synapses_out = np.bincount(src, weights=(kind_arr[dst] == NEURON), minlength=n_nodes).astype(np.int64)
    return EventNetwork(
        populations=tuple(pops), bias_node=bias_node, kind=kind_arr, rank=rank, indptr=indptr,
        targets=np.ascontiguousarray(dst[order]), weights=np.ascontiguousarray(wts[order]),
        synapses_out=synapses_out,
    )


def _event_loop(z_src, kind, rank, indptr, targets, weights, out_lo, out_hi, stop_mode, fire_z, fire_seq):
    """One image.  z_src: spike values of the source nodes (inputs, bias).  Fills fire_z and fire_seq.

    Plain Python over numpy arrays and ``heapq``; the numba backend compiles this same function.
    Queue entries are ``(z, rank, node)``.  ``live[v]`` is the key of the node's one valid entry (inf: none);
    entries with another key are stale and skipped.  A node is re-queued only when its tentative firing
    moves earlier than its live entry; when the live entry pops and the tentative firing has moved
    later, it is re-queued at the new time.  Returns the number of queue pushes.
    """
    n_nodes = kind.shape[0]
    w_acc = np.zeros(n_nodes)  # W: summed weights received
    s_acc = np.zeros(n_nodes)  # S: summed w * z received
    tent = np.full(n_nodes, np.inf)  # tentative firing z from the current accumulators
    live = np.full(n_nodes, np.inf)
    heap = [(0.0, np.int64(0), np.int64(0))]
    heap.pop()
    pushes = 0
    for u in range(z_src.shape[0]):
        if z_src[u] < np.inf:
            tent[u] = z_src[u]
            live[u] = z_src[u]
            heapq.heappush(heap, (z_src[u], rank[u], np.int64(u)))
            pushes += 1
    outputs_left = out_hi - out_lo
    decision = np.inf  # z of the first output spike
    seq = 0
    while len(heap) > 0:
        key, _, u = heapq.heappop(heap)
        if stop_mode == _STOP_DECISION and key > decision:
            break  # events at the decision time itself still run, so that output ties are seen
        if fire_seq[u] >= 0 or key != live[u]:
            continue
        live[u] = np.inf
        if tent[u] != key:  # later inputs moved the firing later (or cancelled it)
            if tent[u] < np.inf:
                live[u] = tent[u]
                heapq.heappush(heap, (tent[u], rank[u], u))
                pushes += 1
            continue
        fire_z[u] = key
        fire_seq[u] = seq
        seq += 1
        if out_lo <= u < out_hi:
            outputs_left -= 1
            decision = min(decision, key)
            if stop_mode == _STOP_OUTPUTS and outputs_left == 0:
                break
        for e in range(indptr[u], indptr[u + 1]):
            v = targets[e]
            if fire_seq[v] >= 0:
                continue
            if kind[v] == POOL:  # forward the first spike of the window
                if tent[v] == np.inf:
                    tent[v] = key
                    live[v] = key
                    heapq.heappush(heap, (key, rank[v], v))
                    pushes += 1
                continue
            wv = w_acc[v] + weights[e]
            sv = s_acc[v] + weights[e] * key
            w_acc[v] = wv
            s_acc[v] = sv
            tv = sv / (wv - THRESHOLD) if wv > THRESHOLD else np.inf  # eq. (4)
            tent[v] = tv
            if tv < live[v]:
                live[v] = tv
                heapq.heappush(heap, (tv, rank[v], v))
                pushes += 1
    return pushes


@functools.cache
def _numba_event_loop():  # pragma: no cover - exercised through simulate_events
    from tcsnn._numba_setup import import_numba

    try:
        numba = import_numba()
    except ImportError as exc:
        raise ImportError(
            "the 'numba' sim backend needs numba: pip install numba (or use backend='python')"
        ) from exc
    return numba.njit(cache=True, nogil=True)(_event_loop)


def _check_backend(backend: str) -> None:
    if backend not in SIM_BACKENDS:
        raise ValueError(f"unknown sim backend {backend!r}; choose one of {', '.join(SIM_BACKENDS)}")


@dataclass(frozen=True)
class EventTrace:
    """What one image's event run left: firing z and firing order of every node (inf / -1: did not fire)."""

    fire_z: np.ndarray  # (n_nodes,) float64
    fire_seq: np.ndarray  # (n_nodes,) int64
    pushes: int  # priority-queue pushes (work measure)

    def population_z(self, net: EventNetwork, index: int) -> np.ndarray:
        """Spike values of population ``index`` (0: input, -1: output) in its shape."""
        p = net.populations[index]
        return self.fire_z[p.start:p.stop].reshape(p.shape)


def _check_image(net: EventNetwork, z: Any) -> np.ndarray:
    zi = _as_float64(z, "z")
    if zi.shape != net.input.shape:
        raise ValueError(f"expected one image of shape {net.input.shape}, got {zi.shape}")
    if (zi <= 0).any():
        raise ValueError("z contains values <= 0; spike values are z = exp(t) > 0, or NO_SPIKE (+inf)")
    return zi


def simulate_events(
    net: EventNetwork, z: Any, *, stop: Stop = "outputs", backend: str = "numba"
) -> EventTrace:
    """Run one image (input spike values ``z`` of shape ``net.input.shape``) through the event engine.

    ``stop``: ``"decision"`` ends after the events at the time of the first output spike (so that two
    outputs firing together are seen), ``"outputs"`` once every output neuron has fired (or nothing is
    left to happen), ``"all"`` when the queue is empty (every node that ever fires has fired).
    """
    if stop not in _STOP_CODES:
        raise ValueError(f"unknown stop {stop!r}; choose one of {', '.join(_STOP_CODES)}")
    _check_backend(backend)
    zi = _check_image(net, z)
    return _run(net, zi, _STOP_CODES[stop], backend)


def _run(net: EventNetwork, zi: np.ndarray, stop_code: int, backend: str) -> EventTrace:
    n_src = net.input.size + (1 if net.bias_node >= 0 else 0)
    z_src = np.empty(n_src)
    z_src[:net.input.size] = zi.ravel()
    if net.bias_node >= 0:
        z_src[net.bias_node] = BIAS_Z
    fire_z = np.full(net.n_nodes, np.inf)
    fire_seq = np.full(net.n_nodes, -1, np.int64)
    loop = _numba_event_loop() if backend == "numba" else _event_loop
    pushes = loop(z_src, net.kind, net.rank, net.indptr, net.targets, net.weights,
                  net.output.start, net.output.stop, stop_code, fire_z, fire_seq)
    return EventTrace(fire_z, fire_seq, int(pushes))


@dataclass(frozen=True)
class ImageRun:
    """Per-image report.  Times are ``t`` (tau = 1).

    ``full_*`` count until every output neuron has fired; they are None when the run stopped at the
    decision (``early_stop``).
    """

    prediction: int  # earliest output neuron; -1 when none fires or two share the earliest spike
    decision_time: float  # t of the first output spike; inf without one
    decision_spikes: int  # neuron spikes processed up to and including the decision
    decision_synaptic_events: int
    input_spikes: int
    output_times: np.ndarray  # (num_classes,) t; inf = not fired by the end of the run
    full_spikes: int | None  # running until every output neuron has fired
    full_synaptic_events: int | None
    layer_spikes: tuple[int, ...]  # spikes per non-input population by the end of the run
    pushes: int


def _report(net: EventNetwork, trace: EventTrace, early_stop: bool) -> ImageRun:
    seq = trace.fire_seq
    out = net.output
    out_seq = seq[out.start:out.stop]
    out_z = trace.fire_z[out.start:out.stop]
    neuron = net.kind == NEURON
    fired = seq >= 0
    if (out_seq >= 0).any():
        first = int(np.argmin(np.where(out_seq >= 0, out_seq, np.iinfo(np.int64).max)))
        dec_seq = int(out_seq[first])
        decision_time = math.log(out_z[first])
        if (out_z == out_z[first]).sum() > 1:
            first = -1  # two outputs share the earliest spike: no decision (as tcsnn.metrics)
    else:
        first, dec_seq, decision_time = -1, int(seq.max()), math.inf  # never decided: everything counts
    before = fired & (seq <= dec_seq)
    with np.errstate(divide="ignore"):
        output_times = np.log(out_z).reshape(out.shape)
    return ImageRun(
        prediction=first,
        decision_time=decision_time,
        decision_spikes=int((before & neuron).sum()),
        decision_synaptic_events=int(net.synapses_out[before].sum()),
        input_spikes=int(fired[:net.input.size].sum()),
        output_times=output_times,
        full_spikes=None if early_stop else int((fired & neuron).sum()),
        full_synaptic_events=None if early_stop else int(net.synapses_out[fired].sum()),
        layer_spikes=tuple(int(fired[p.start:p.stop].sum()) for p in net.populations[1:]),
        pushes=trace.pushes,
    )


def simulate_images(
    net: EventNetwork, z: Any, *, early_stop: bool = False, backend: str = "numba", threads: int | None = None,
    progress: bool = False,
) -> list[ImageRun]:
    """Run a batch of images (B, *input_shape) and report each; images run in parallel threads.

    With ``early_stop`` each image stops at its first output spike (the decision); otherwise it runs
    until every output neuron has fired and the decision-time counts are read off the same run.
    ``progress`` shows a progress bar (tqdm, on stderr) over the images.
    """
    _check_backend(backend)
    zb = _as_float64(z, "z")
    if zb.shape[1:] != net.input.shape:
        raise ValueError(f"expected images of shape (B, *{net.input.shape}), got {zb.shape}")
    if (zb <= 0).any():
        raise ValueError("z contains values <= 0; spike values are z = exp(t) > 0, or NO_SPIKE (+inf)")
    stop_code = _STOP_CODES["decision" if early_stop else "outputs"]
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    n_threads = threads if threads is not None else (os.cpu_count() or 1)
    if backend == "numba":
        _numba_event_loop()  # compile once, before the threads start

    def one(i: int) -> ImageRun:
        return _report(net, _run(net, zb[i], stop_code, backend), early_stop)

    from tqdm.auto import tqdm

    def bar(runs: Iterable[ImageRun]) -> list[ImageRun]:
        return list(tqdm(runs, total=len(zb), desc="simulate", unit="image", disable=not progress, leave=False))

    if n_threads == 1 or backend == "python" or len(zb) < 2:
        return bar(one(i) for i in range(len(zb)))
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=n_threads) as pool:
        return bar(pool.map(one, range(len(zb))))


def summarize(runs: Sequence[ImageRun], labels: Any) -> dict[str, Any]:
    """Aggregate per-image reports: accuracy (no decision = wrong), decision time, spikes, energy."""
    y = np.asarray(labels).ravel()
    if len(runs) != y.size:
        raise ValueError(f"{len(runs)} runs but {y.size} labels")
    if not runs:
        raise ValueError("no images to summarize")
    pred = np.array([r.prediction for r in runs])
    t_dec = np.array([r.decision_time for r in runs])
    decided = pred >= 0

    def mean(values: list[float]) -> float:
        return float(np.mean(values))

    summary: dict[str, Any] = {
        "images": len(runs),
        "accuracy": float(np.mean(pred == y)),
        "no_decision": int((~decided).sum()),
        "decision_time_mean": float(t_dec[decided].mean()) if decided.any() else math.inf,
        "decision_time_p95": float(np.percentile(t_dec[decided], 95)) if decided.any() else math.inf,
        "input_spikes_mean": mean([r.input_spikes for r in runs]),
        "decision_spikes_mean": mean([r.decision_spikes for r in runs]),
        "decision_synaptic_events_mean": mean([r.decision_synaptic_events for r in runs]),
    }
    summary["decision_energy_J_mean"] = summary["decision_spikes_mean"] * ENERGY_PER_SPIKE_J
    full = runs[0].full_spikes is not None
    summary["full_spikes_mean"] = mean([r.full_spikes for r in runs]) if full else None  # type: ignore[misc]
    summary["full_synaptic_events_mean"] = (
        mean([r.full_synaptic_events for r in runs]) if full else None  # type: ignore[misc]
    )
    summary["full_energy_J_mean"] = summary["full_spikes_mean"] * ENERGY_PER_SPIKE_J if full else None
    summary["layer_spikes_mean"] = np.mean([r.layer_spikes for r in runs], axis=0).tolist()
    summary["energy_per_spike_J"] = ENERGY_PER_SPIKE_J
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """The aggregate as a few aligned lines for the terminal."""
    lines = [
        f"images            {summary['images']}",
        f"accuracy          {100 * summary['accuracy']:.2f} %  (no decision: {summary['no_decision']})",
        f"decision time     mean {summary['decision_time_mean']:.4f}  p95 {summary['decision_time_p95']:.4f}"
        "  (t, tau = 1)",
        f"spikes / image    {summary['decision_spikes_mean']:.1f} to the decision",
        f"energy / image    {summary['decision_energy_J_mean'] * 1e9:.3f} nJ to the decision",
        f"synaptic events   {summary['decision_synaptic_events_mean']:.0f} to the decision",
    ]
    if summary.get("full_spikes_mean") is not None:
        lines[3] += f", {summary['full_spikes_mean']:.1f} until all outputs fired"
        lines[4] += f", {summary['full_energy_J_mean'] * 1e9:.3f} nJ until all outputs fired"
        lines[5] += f", {summary['full_synaptic_events_mean']:.0f} until all outputs fired"
    if "wall_s" in summary:
        lines.append(f"wall time         {summary['wall_s']:.1f} s  ({summary['images_per_s']:.2f} images/s, "
                     f"{summary['threads']} threads)")
    return "\n".join(lines)
