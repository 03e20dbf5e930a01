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

import numpy as np

from tcsnn._numba_setup import import_numba

numba = import_numba()
njit, prange = numba.njit, numba.prange

# No 'nnan'/'ninf': the kernels compare against +inf (NO_SPIKE) on purpose.
_FASTMATH = {"nsz", "arcp", "contract", "reassoc"}


@njit(inline="always", fastmath=_FASTMATH)
def _push(w_acc, s_acc, active, p, w, c, dy, dx, zi, one, zero):  # pragma: no cover - compiled
    # One input spike at z = zi reaches output position p: all channels at once.  w_acc, s_acc, active are
    # (P, O); w is (C, k, k, O).  Indexing the 2-d arrays directly (no row views) keeps reference counting
    # out of the hot loop.  `active` is 1 until the channel is found to have fired (then 0); `one`/`zero`
    # carry the array dtype so float32 stays float32 (a bare 1.0 literal would promote the loop to float64).
    # Returns the number of channels still active.
    n_active = zero
    for o in range(w_acc.shape[1]):
        wv = w_acc[p, o]
        fired = (wv > one) & (s_acc[p, o] <= zi * (wv - one))
        a = zero if fired else active[p, o]
        active[p, o] = a
        dw = w[c, dy, dx, o] * a
        w_acc[p, o] = wv + dw
        s_acc[p, o] += dw * zi
        n_active += a
    return n_active


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def conv_forward(z, order, wt, bias, has_bias, stride, pad, h_out, w_out):  # pragma: no cover - compiled
    """z (B, C, H, W), order (B, C*H*W) = argsort of each flattened sample, wt (C, k, k, O)
    -> (z_out, w_causal), both (B, O, H', W').

    The sort is done outside (numpy's SIMD argsort is several times faster than numba's)."""
    n_batch, n_chan, height, width = z.shape
    k = wt.shape[1]
    n_out = wt.shape[3]
    n_pos = h_out * w_out
    n_in = n_chan * height * width
    out = np.empty((n_batch, n_out, h_out, w_out), z.dtype)
    wsum = np.empty((n_batch, n_out, h_out, w_out), z.dtype)
    bias4 = bias.reshape(1, 1, 1, n_out)  # indexed like wt
    for b in prange(n_batch):
        zf = z[b].reshape(n_in)
        w_acc = np.zeros((n_pos, n_out), z.dtype)  # (P, O)
        s_acc = np.zeros((n_pos, n_out), z.dtype)  # (P, O)
        active = np.ones((n_pos, n_out), z.dtype)  # (P, O): 1 until fired
        alive = np.ones(n_pos, np.bool_)  # (P,): some channel of the position has not fired yet
        one = np.ones(1, z.dtype)[0]
        zero = np.zeros(1, z.dtype)[0]
        bias_pending = has_bias
        for n in range(n_in):
            idx = order[b, n]
            zi = zf[idx]
            if not zi < np.inf:  # NO_SPIKE inputs sort last and never arrive
                break
            if bias_pending and zi > 1.0:  # the bias input spikes at z = 1
                for p in range(n_pos):
                    alive[p] = _push(w_acc, s_acc, active, p, bias4, 0, 0, 0, one, one, zero) > zero
                bias_pending = False
            c = idx // (height * width)
            rem = idx - c * height * width
            y = rem // width
            x = rem - y * width
            # output rows/cols fed by (y, x): oy * stride + dy = y + pad with 0 <= dy < k (no division per tap)
            oy_lo = max(0, -((k - 1 - y - pad) // stride))
            oy_hi = min(h_out - 1, (y + pad) // stride)
            ox_lo = max(0, -((k - 1 - x - pad) // stride))
            ox_hi = min(w_out - 1, (x + pad) // stride)
            for oy in range(oy_lo, oy_hi + 1):
                dy = y + pad - oy * stride
                for ox in range(ox_lo, ox_hi + 1):
                    dx = x + pad - ox * stride
                    p = oy * w_out + ox
                    if alive[p]:
                        alive[p] = _push(w_acc, s_acc, active, p, wt, c, dy, dx, zi, one, zero) > zero
        if bias_pending:
            for p in range(n_pos):
                _push(w_acc, s_acc, active, p, bias4, 0, 0, 0, one, one, zero)
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
