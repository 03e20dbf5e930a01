"""Event-driven numba kernels for spiking convolution (and linear layers as 1x1 convolutions).

Forward (per sample): sort the input map once, then push every input spike, in time order, to the output
positions it feeds, all output channels of a position together.  An output's accumulators
``W = sum_i w_ji`` and ``S = sum_i w_ji z_i`` stop growing ("freeze") the moment it is found to have
fired before the arriving input, i.e. when ``W > 1`` and ``S / (W - 1) <= z_i``.  Frozen accumulators
are then exactly the causal-set sums, so ``z_j = S / (W - 1)`` (paper eq. 4) at the end.

Backward needs no sort: the causal set of output j is ``{i : z_i < z_j}`` and
``dz_j/dw_ji = (z_i - z_j) / (W_C - 1)``, ``dz_j/dz_i = w_ji / (W_C - 1)``.

Nothing here holds a (batch x positions x fan-in x channels) tensor: the forward keeps two
(positions x channels) accumulators per sample, the backward one weight-gradient buffer per thread.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache" / "tcsnn" / "numba"))

import numba  # noqa: E402
import numpy as np  # noqa: E402
from numba import njit, prange  # noqa: E402

# No 'nnan'/'ninf': the kernels compare against +inf (NO_SPIKE) on purpose.
_FASTMATH = {"nsz", "arcp", "contract", "reassoc"}


@njit(inline="always", fastmath=_FASTMATH)
def _push(w_acc, s_acc, active, w_row, zi):  # pragma: no cover - compiled
    # One input spike at z = zi reaches one output position: all channels at once, shapes (O,).
    for o in range(w_acc.shape[0]):
        wv = w_acc[o]
        fired = wv > 1.0 and s_acc[o] <= zi * (wv - 1.0)
        a = active[o] and not fired
        active[o] = a
        dw = w_row[o] if a else 0.0
        w_acc[o] = wv + dw
        s_acc[o] += dw * zi


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def conv_forward(z, wt, bias, has_bias, stride, pad, h_out, w_out):  # pragma: no cover - compiled
    """z (B, C, H, W), wt (C, k, k, O) -> (z_out, w_causal), both (B, O, H', W')."""
    n_batch, n_chan, height, width = z.shape
    k = wt.shape[1]
    n_out = wt.shape[3]
    n_pos = h_out * w_out
    n_in = n_chan * height * width
    out = np.empty((n_batch, n_out, h_out, w_out), z.dtype)
    wsum = np.empty((n_batch, n_out, h_out, w_out), z.dtype)
    for b in prange(n_batch):
        zf = z[b].reshape(n_in)
        order = np.argsort(zf)
        w_acc = np.zeros((n_pos, n_out), z.dtype)  # (P, O)
        s_acc = np.zeros((n_pos, n_out), z.dtype)  # (P, O)
        active = np.ones((n_pos, n_out), np.bool_)  # (P, O)
        bias_pending = has_bias
        for n in range(n_in):
            idx = order[n]
            zi = zf[idx]
            if not zi < np.inf:  # NO_SPIKE inputs sort last and never arrive
                break
            if bias_pending and zi > 1.0:  # the bias input spikes at z = 1
                for p in range(n_pos):
                    _push(w_acc[p], s_acc[p], active[p], bias, 1.0)
                bias_pending = False
            c = idx // (height * width)
            rem = idx - c * height * width
            y = rem // width
            x = rem - y * width
            for dy in range(k):
                ty = y + pad - dy
                if ty < 0:
                    break
                if ty % stride != 0:
                    continue
                oy = ty // stride
                if oy >= h_out:
                    continue
                for dx in range(k):
                    tx = x + pad - dx
                    if tx < 0:
                        break
                    if tx % stride != 0:
                        continue
                    ox = tx // stride
                    if ox >= w_out:
                        continue
                    p = oy * w_out + ox
                    _push(w_acc[p], s_acc[p], active[p], wt[c, dy, dx], zi)
        if bias_pending:
            for p in range(n_pos):
                _push(w_acc[p], s_acc[p], active[p], bias, 1.0)
        for p in range(n_pos):
            oy = p // w_out
            ox = p - oy * w_out
            for o in range(n_out):
                wv = w_acc[p, o]
                wsum[b, o, oy, ox] = wv
                out[b, o, oy, ox] = s_acc[p, o] / (wv - 1.0) if wv > 1.0 else np.inf
    return out, wsum


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def conv_backward(z, wt, out, wsum, grad, has_bias, stride, pad, n_chunks):  # pragma: no cover - compiled
    """Analytic backward; returns (grad_z (B, C, H, W), grad_wt (C, k, k, O), grad_bias (O,))."""
    n_batch, n_chan, height, width = z.shape
    k = wt.shape[1]
    n_out = wt.shape[3]
    h_out = out.shape[2]
    w_out = out.shape[3]
    gz = np.zeros_like(z)
    gw = np.zeros((n_chunks, n_chan, k, k, n_out), z.dtype)  # one buffer per thread-chunk
    gb = np.zeros((n_chunks, n_out), z.dtype)
    per_chunk = (n_batch + n_chunks - 1) // n_chunks
    for t in prange(n_chunks):
        coef = np.empty(n_out, z.dtype)
        zo = np.empty(n_out, z.dtype)
        for b in range(t * per_chunk, min(n_batch, (t + 1) * per_chunk)):
            for oy in range(h_out):
                for ox in range(w_out):
                    any_fired = False
                    for o in range(n_out):
                        zj = out[b, o, oy, ox]
                        gj = grad[b, o, oy, ox]
                        if zj < np.inf and gj != 0.0:
                            coef[o] = gj / (wsum[b, o, oy, ox] - 1.0)
                            zo[o] = zj
                            any_fired = True
                        else:
                            coef[o] = 0.0
                            zo[o] = 0.0  # z > 0 always, so no input is "causal" for it
                    if not any_fired:
                        continue
                    if has_bias:
                        for o in range(n_out):
                            if 1.0 < zo[o]:
                                gb[t, o] += coef[o] * (1.0 - zo[o])
                    for c in range(n_chan):
                        for dy in range(k):
                            y = oy * stride - pad + dy
                            if y < 0 or y >= height:
                                continue
                            for dx in range(k):
                                x = ox * stride - pad + dx
                                if x < 0 or x >= width:
                                    continue
                                zi = z[b, c, y, x]
                                if not zi < np.inf:
                                    continue
                                w_row = wt[c, dy, dx]
                                g_row = gw[t, c, dy, dx]
                                acc = 0.0
                                for o in range(n_out):
                                    cf = coef[o] if zi < zo[o] else 0.0
                                    g_row[o] += cf * (zi - zo[o])
                                    acc += cf * w_row[o]
                                gz[b, c, y, x] += acc
    return gz, gw.sum(axis=0), gb.sum(axis=0)


def num_chunks(batch: int) -> int:
    return max(1, min(batch, numba.get_num_threads()))


@njit(parallel=True, cache=True)
def min_pool_forward(z, k, stride):  # pragma: no cover - compiled
    """Earliest spike per window: z (B, C, H, W) -> (z_out (B, C, H', W'), flat argmin int64 (B, C, H', W'))."""
    n_batch, n_chan, height, width = z.shape
    h_out = (height - k) // stride + 1
    w_out = (width - k) // stride + 1
    out = np.empty((n_batch, n_chan, h_out, w_out), z.dtype)
    arg = np.empty((n_batch, n_chan, h_out, w_out), np.int64)
    for bc in prange(n_batch * n_chan):
        b = bc // n_chan
        c = bc - b * n_chan
        for oy in range(h_out):
            for ox in range(w_out):
                best = np.inf
                best_i = oy * stride * width + ox * stride
                for dy in range(k):
                    for dx in range(k):
                        y = oy * stride + dy
                        x = ox * stride + dx
                        v = z[b, c, y, x]
                        if v < best:
                            best = v
                            best_i = y * width + x
                out[b, c, oy, ox] = best
                arg[b, c, oy, ox] = best_i
    return out, arg


@njit(parallel=True, cache=True)
def min_pool_backward(grad, arg, height, width):  # pragma: no cover - compiled
    n_batch, n_chan, h_out, w_out = grad.shape
    gz = np.zeros((n_batch, n_chan, height, width), grad.dtype)
    for bc in prange(n_batch * n_chan):
        b = bc // n_chan
        c = bc - b * n_chan
        for oy in range(h_out):
            for ox in range(w_out):
                i = arg[b, c, oy, ox]
                y = i // width
                gz[b, c, y, i - y * width] += grad[b, c, oy, ox]
    return gz
