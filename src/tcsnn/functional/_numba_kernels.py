r"""numba kernels of the CPU backend: exact spike times of a convolution (a linear layer is a 1x1 one).

Forward (per sample): put the sample's inputs in time order (a counting sort on the bits of ``z`` -- positive
floats order like their bit patterns -- finished by an insertion sort, exact and linear in practice), then push
every input spike, in time order, to the output positions it feeds, all output channels of a position together
(SIMD over channels).  An output's accumulators ``W = sum_i w_ji`` and ``S = sum_i w_ji z_i`` stop growing
("freeze") the moment it is found to have fired before the arriving input, i.e. when ``W > 1`` and
``S / (W - 1) <= z_i``.  Frozen accumulators are then exactly the causal-set sums, so ``z_j = S / (W - 1)``
(paper eq. 4) at the end.

Backward needs no sort: the causal set of output j is ``{i : z_i <= z_j}`` and
``dz_j/dw_ji = (z_i - z_j) / (W_C - 1)``, ``dz_j/dz_i = w_ji / (W_C - 1)``.

Determinism: the backward splits the batch into :data:`N_BLOCKS` fixed blocks of samples; each block sums its
weight gradient in sample order into its own buffer and the buffers are added in block order, so results are
bit-identical for any number of threads.  The forward is per sample, so it is too.

Nothing here holds a (batch x positions x fan-in x channels) tensor: the forward keeps two
(positions x channels) accumulators per sample, the backward one weight-gradient buffer per block.
"""

from __future__ import annotations

import numpy as np

from tcsnn._numba_setup import import_numba

numba = import_numba()
njit, prange = numba.njit, numba.prange

# No 'nnan'/'ninf': the kernels compare against +inf (NO_SPIKE) on purpose.
_FASTMATH = {"nsz", "arcp", "contract", "reassoc"}

#: Fixed number of sample blocks of the backward (the weight-gradient reduction order; not the thread count).
N_BLOCKS = 8
#: Counting-sort buckets per sample (the insertion sort after it makes the order exact).
N_BUCKETS = 4096


@njit(cache=True)
def time_order(zf, bits, order):  # pragma: no cover - compiled
    """Indices of the finite entries of zf (N,) in increasing z into order (N,); returns their number.

    A counting sort on ``bits`` (the bit patterns of zf, which order like positive floats) into N_BUCKETS
    buckets, then an insertion sort that fixes the order inside buckets (few entries per bucket).
    """
    n = zf.shape[0]
    lo = np.int64(0)
    hi = np.int64(0)
    n_fin = 0
    for i in range(n):
        if zf[i] < np.inf:
            b = np.int64(bits[i])
            if n_fin == 0 or b < lo:
                lo = b
            if n_fin == 0 or b > hi:
                hi = b
            n_fin += 1
    if n_fin == 0:
        return 0
    scale = N_BUCKETS / (float(hi - lo) + 1.0)  # in float: int64 bit differences times N_BUCKETS overflow
    counts = np.zeros(N_BUCKETS + 1, np.int64)
    keys = np.empty(n, np.int64)
    for i in range(n):
        if zf[i] < np.inf:
            kk = min(N_BUCKETS - 1, int(float(np.int64(bits[i]) - lo) * scale))  # monotone in z
            keys[i] = kk
            counts[kk + 1] += 1
        else:
            keys[i] = -1
    for kk in range(N_BUCKETS):
        counts[kk + 1] += counts[kk]
    for i in range(n):
        kk = keys[i]
        if kk >= 0:
            order[counts[kk]] = i
            counts[kk] += 1
    for m in range(1, n_fin):  # insertion sort: entries are out of order only within a bucket
        idx = order[m]
        zi = zf[idx]
        j = m
        while j > 0 and zf[order[j - 1]] > zi:
            order[j] = order[j - 1]
            j -= 1
        order[j] = idx
    return n_fin


@njit(inline="always", fastmath=_FASTMATH)
def _push(w_acc, s_acc, p, w, c, dy, dx, zi, one, zero):  # pragma: no cover - compiled
    # One input spike at z = zi reaches output position p: all channels at once.  w_acc, s_acc are (P, O);
    # w is (C, k, k, O).  Indexing the arrays in place (no row views) keeps reference counting out of the hot
    # loop.  The sums are float64, the weights the layer's dtype.  A channel has fired before zi iff W > 1 and S / (W - 1) <= zi; once true this
    # stays true for every later (larger) zi because the sums no longer change, so no flag is stored.
    # Returns the number of channels still integrating.
    n_active = 0
    for o in range(w_acc.shape[1]):
        wv = w_acc[p, o]
        sv = s_acc[p, o]
        fired = (wv > one) & (sv <= zi * (wv - one))
        dw = zero if fired else w[c, dy, dx, o]
        w_acc[p, o] = wv + dw
        s_acc[p, o] = sv + dw * zi
        n_active += 0 if fired else 1
    return n_active


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def conv_forward(z, zbits, wt, bias, has_bias, stride, pad, h_out, w_out):  # pragma: no cover - compiled
    """z (B, C, H, W), zbits (B, C*H*W) the bit patterns of z as ints, wt (C, k, k, O)
    -> (z_out, w_causal), both (B, O, H', W')."""
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
        order = np.empty(n_in, np.int64)
        n_fin = time_order(zf, zbits[b], order)
        # float64 sums for every input dtype: whether W_C > 1 (fire or stay silent) is decided on the exact
        # sums of the given float32 weights, as in the reference, not on float32 rounding of them
        w_acc = np.zeros((n_pos, n_out), np.float64)  # (P, O)
        s_acc = np.zeros((n_pos, n_out), np.float64)  # (P, O)
        alive = np.ones(n_pos, np.bool_)  # (P,): some channel of the position has not fired yet
        one = 1.0
        zero = 0.0
        bias_pending = has_bias
        for n in range(n_fin):  # NO_SPIKE inputs never arrive
            idx = order[n]
            zi = np.float64(zf[idx])
            if bias_pending and zi > one:  # the bias input spikes at z = 1
                for p in range(n_pos):
                    alive[p] = _push(w_acc, s_acc, p, bias4, 0, 0, 0, one, one, zero) > 0
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
                        alive[p] = _push(w_acc, s_acc, p, wt, c, dy, dx, zi, one, zero) > 0
        if bias_pending:
            for p in range(n_pos):
                _push(w_acc, s_acc, p, bias4, 0, 0, 0, one, one, zero)
        for p in range(n_pos):
            oy = p // w_out
            ox = p - oy * w_out
            for o in range(n_out):
                wv = w_acc[p, o]
                wsum[b, o, oy, ox] = wv
                out[b, o, oy, ox] = s_acc[p, o] / (wv - one) if wv > one else np.inf
    return out, wsum


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def conv_backward(z, wt, out, wsum, grad, has_bias, stride, pad):  # pragma: no cover - compiled
    """Sort-free backward; returns (grad_z (B, C, H, W), grad_wt (C, k, k, O), grad_bias (O,)).

    The batch goes in N_BLOCKS fixed blocks, each reducing into its own buffer; buffers are summed in block
    order, so the result does not depend on the number of threads.
    """
    n_batch, n_chan, height, width = z.shape
    k = wt.shape[1]
    n_out = wt.shape[3]
    h_out = out.shape[2]
    w_out = out.shape[3]
    one = np.ones(1, z.dtype)[0]
    zero = np.zeros(1, z.dtype)[0]
    gz = np.zeros_like(z)
    n_blocks = min(N_BLOCKS, n_batch)
    per_block = (n_batch + n_blocks - 1) // n_blocks
    gw = np.zeros((n_blocks, n_chan, k, k, n_out), z.dtype)  # one buffer per block
    gb = np.zeros((n_blocks, n_out), z.dtype)
    for blk in prange(n_blocks):
        coef = np.empty(n_out, z.dtype)
        zo = np.empty(n_out, z.dtype)
        for b in range(blk * per_block, min(n_batch, (blk + 1) * per_block)):
            for oy in range(h_out):
                for ox in range(w_out):
                    any_fired = False
                    for o in range(n_out):
                        zj = out[b, o, oy, ox]
                        gj = grad[b, o, oy, ox]
                        if zj < np.inf and gj != zero:
                            coef[o] = gj / (wsum[b, o, oy, ox] - one)
                            zo[o] = zj
                            any_fired = True
                        else:
                            coef[o] = zero
                            zo[o] = zero  # z > 0 always, so no input is "causal" for it
                    if not any_fired:
                        continue
                    if has_bias:
                        for o in range(n_out):
                            if one <= zo[o]:
                                gb[blk, o] += coef[o] * (one - zo[o])
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
                                acc = zero
                                for o in range(n_out):
                                    cf = coef[o] if zi <= zo[o] else zero
                                    gw[blk, c, dy, dx, o] += cf * (zi - zo[o])
                                    acc += cf * wt[c, dy, dx, o]
                                gz[b, c, y, x] += acc
    gw_total = np.zeros((n_chan, k, k, n_out), z.dtype)
    gb_total = np.zeros(n_out, z.dtype)
    for blk in range(n_blocks):  # fixed order
        gw_total += gw[blk]
        gb_total += gb[blk]
    return gz, gw_total, gb_total
