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

Determinism: the backward runs in parallel over chunks of input channels, each owning its part of the
weight gradient and of grad_z, so no sum is split across threads; every sum runs over (sample, position) in
the same order whatever the chunk size, so results are bit-identical for any number of threads and any chunk
size (:func:`backward_chunk` picks it for speed).  The forward is per sample, so it is too.

Nothing here holds a (batch x positions x fan-in x channels) tensor: the forward keeps two float64
(band positions x channels) accumulators per sample, the backward (batch x positions x channels) coefficients.
"""

from __future__ import annotations

import numpy as np

from tcsnn._numba_setup import import_numba

numba = import_numba()
njit, prange = numba.njit, numba.prange

# No 'nnan'/'ninf': the kernels compare against +inf (NO_SPIKE) on purpose.
_FASTMATH = {"nsz", "arcp", "contract", "reassoc"}

#: Most input channels per parallel task of the backward (their weight-gradient rows stay in cache).
MAX_BACKWARD_CHUNK = 32


def backward_chunk(n_chan: int, n_threads: int) -> int:
    """Input channels per task of :func:`conv_backward`: about two tasks per thread, at most
    MAX_BACKWARD_CHUNK channels (larger chunks load each position's output coefficients fewer times).  The
    chunk size changes no result (module docstring), only the speed."""
    return max(1, min(MAX_BACKWARD_CHUNK, -(-n_chan // (2 * max(1, n_threads)))))


#: Counting-sort buckets per sample: one per finite input, at least this many (the insertion sort after
#: it makes the order exact; with few entries per bucket it moves little and its branches predict well).
MIN_BUCKETS = 64


@njit(cache=True)
def time_order(zf, bits, height, width, zs, pk, counts, keys):  # pragma: no cover - compiled
    """The finite entries of one sample zf (C H W,) in increasing z: zs their values, pk their packed
    coordinates ``c << 32 | y << 16 | x``; returns their number.  counts (>= max(MIN_BUCKETS, n) + 1,) and
    keys (n,) are scratch space (reused across samples, so the caller allocates them once).

    A counting sort on ``bits`` (the bit patterns of zf, which order like positive floats) into one bucket
    per finite entry, then an insertion sort that fixes the order inside buckets (few entries per bucket; both
    are stable, so ties keep their (c, y, x) order whatever the number of buckets).  Values and
    coordinates are moved together, so the loops that follow read them in order instead of looking them up.
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
    n_buckets = max(MIN_BUCKETS, n_fin)
    scale = n_buckets / (float(hi - lo) + 1.0)  # in float: int64 bit differences times n_buckets overflow
    counts[: n_buckets + 1] = 0
    for i in range(n):
        if zf[i] < np.inf:
            kk = min(n_buckets - 1, int(float(np.int64(bits[i]) - lo) * scale))  # monotone in z
            keys[i] = kk
            counts[kk + 1] += 1
        else:
            keys[i] = -1
    for kk in range(n_buckets):
        counts[kk + 1] += counts[kk]
    i = 0
    for c in range(n // (height * width)):
        for y in range(height):
            for x in range(width):
                kk = keys[i]
                if kk >= 0:
                    m = counts[kk]
                    zs[m] = zf[i]
                    pk[m] = (np.int64(c) << 32) | (np.int64(y) << 16) | np.int64(x)
                    counts[kk] = m + 1
                i += 1
    for m in range(1, n_fin):  # insertion sort: entries are out of order only within a bucket
        zi = zs[m]
        pi = pk[m]
        j = m
        while j > 0 and zs[j - 1] > zi:
            zs[j] = zs[j - 1]
            pk[j] = pk[j - 1]
            j -= 1
        zs[j] = zi
        pk[j] = pi
    return n_fin


@njit(inline="always", fastmath=_FASTMATH)
def _push(w_acc, s_acc, a0, w, w0, n, zi, one, zero):  # pragma: no cover - compiled
    # One input spike at z = zi reaches a run of output positions: n consecutive accumulator entries from a0
    # (positions x channels, flattened float64 sums) against n consecutive weights from w0 (flattened, the
    # layer's dtype).  The weight layout (see conv_forward) makes the weights of consecutive positions fed by
    # one input contiguous, so one long SIMD loop covers them all.
    # A channel has fired before zi iff its potential there, v(zi) = W - S / zi, is >= 1, i.e.
    # S <= zi (W - 1).  (W > 1 then holds: v first reached 1 while rising, which needs W > 1 at that prefix,
    # and nothing has been added since.)  Once true this stays true for every later zi because the sums no
    # longer change ("freeze"), so no per-channel flag is stored.
    a = np.uint64(a0)  # unsigned indices: no negative-index wrap-around code, so the loop vectorises
    i = np.uint64(w0)
    for r in range(n):
        ru = np.uint64(r)
        wv = w_acc[a + ru]
        sv = s_acc[a + ru]
        fired = sv <= zi * (wv - one)  # v(zi) = W - S / zi >= 1
        dw = zero if fired else w[i + ru]
        w_acc[a + ru] = wv + dw
        s_acc[a + ru] = sv + dw * zi


@njit(cache=True)
def _geometry(height, width, k, stride, pad, h_out, w_out, rows):  # pragma: no cover - compiled
    """Lookup tables that keep integer divisions out of the per-input loops.

    Returns oyr (4, H): first and last output row fed by each input row and the first and last band of
    ``rows`` output rows; oxr (2, W): first and last output column fed.  (Output row oy is fed by input row y
    iff oy * stride + dy = y + pad for some 0 <= dy < k.)
    """
    oyr = np.empty((4, height), np.int32)
    for y in range(height):
        lo = max(0, -((k - 1 - y - pad) // stride))
        hi = min(h_out - 1, (y + pad) // stride)
        oyr[0, y] = lo
        oyr[1, y] = hi
        oyr[2, y] = lo // rows if lo <= hi else 1
        oyr[3, y] = hi // rows if lo <= hi else 0
    oxr = np.empty((2, width), np.int32)
    for x in range(width):
        oxr[0, x] = max(0, -((k - 1 - x - pad) // stride))
        oxr[1, x] = min(w_out - 1, (x + pad) // stride)
    return oyr, oxr


@njit(cache=True, fastmath=_FASTMATH)
def _forward_sample(zf, bits, b, w_flat, bias, has_bias, k, stride, pad, n_out, n_j, height, width, h_out, w_out,
                    rows, n_bands, oyr, oxr, xj, zs, pk, counts, keys, bz, bp, bcnt, w_acc, s_acc, out,
                    wsum):  # pragma: no cover - compiled
    """Sample b of :func:`conv_forward` (zf (C*H*W,) its spike values); writes out[b] and wsum[b].  The
    remaining arrays are scratch space of the calling task."""
    one = 1.0
    zero = 0.0
    n_fin = time_order(zf, bits, height, width, zs, pk, counts, keys)
    bcnt[:] = 0
    for n in range(n_fin):
        y = (pk[n] >> 16) & 0xFFFF
        for g in range(oyr[2, y], oyr[3, y] + 1):
            m = bcnt[g]
            bz[g, m] = zs[n]
            bp[g, m] = pk[n]
            bcnt[g] = m + 1
    for g in range(n_bands):
        oy0 = g * rows
        oy1 = min(h_out, oy0 + rows)
        n_q = (oy1 - oy0) * w_out
        w_acc[: n_q * n_out] = zero
        s_acc[: n_q * n_out] = zero
        bias_pending = has_bias
        for n in range(bcnt[g]):  # NO_SPIKE inputs never arrive
            zi = np.float64(bz[g, n])
            if bias_pending and zi > one:  # the bias input spikes at z = 1
                for q in range(n_q):
                    _push(w_acc, s_acc, q * n_out, bias, 0, n_out, one, one, zero)
                bias_pending = False
            pkd = bp[g, n]
            c = pkd >> 32
            y = (pkd >> 16) & 0xFFFF
            x = pkd & 0xFFFF
            ox_lo = oxr[0, x]
            n_run = (oxr[1, x] - ox_lo + 1) * n_out
            if n_run <= 0:
                continue
            for oy in range(max(oy0, oyr[0, y]), min(oy1 - 1, oyr[1, y]) + 1):
                dy = y + pad - oy * stride
                w0 = (((c * k + dy) * stride + xj[0, x]) * n_j + xj[1, x] + ox_lo) * n_out
                _push(w_acc, s_acc, ((oy - oy0) * w_out + ox_lo) * n_out, w_flat, w0, n_run, zi, one, zero)
        if bias_pending:
            for q in range(n_q):
                _push(w_acc, s_acc, q * n_out, bias, 0, n_out, one, one, zero)
        # channel by channel: a band's rows of one output map are contiguous in out (B, O, H', W'), a
        # position's channels are not (strided writes cost more than the strided reads of the accumulators)
        for o in range(n_out):
            for r in range(oy1 - oy0):
                for ox in range(w_out):
                    a = (r * w_out + ox) * n_out + o
                    wv = w_acc[a]
                    wsum[b, o, oy0 + r, ox] = wv
                    out[b, o, oy0 + r, ox] = s_acc[a] / (wv - one) if wv > one else np.inf


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def conv_forward(z, zbits, wr, bias, has_bias, k, stride, pad, h_out, w_out, rows, n_threads):  # pragma: no cover
    """z (B, C, H, W), zbits (B, C*H*W) the bit patterns of z as ints, wr (C, k, stride, J, O) the weights
    rearranged by :func:`tcsnn.functional.backends.numba_cpu.run_layout` -> (z_out, w_causal), (B, O, H', W').
    ``n_threads`` (numba's thread count) sets how many blocks of samples run in parallel.

    Output rows go in bands of ``rows`` whose accumulators stay in cache: each sample's time-ordered inputs
    are split, in order, by the bands they feed, and each band is integrated on its own.  Within an output
    row, the positions fed by input column x are a run ox_lo..ox_hi, and with ``dx' = k - 1 - dx`` stored as
    ``(dx' % stride, dx' // stride)`` their weights are the consecutive rows j0 + ox of ``wr[c, dy, phase]``.
    """
    n_batch, n_chan, height, width = z.shape
    n_j = wr.shape[3]
    n_out = wr.shape[4]
    n_in = n_chan * height * width
    n_bands = (h_out + rows - 1) // rows
    capacity = n_chan * width * min(height, (rows - 1) * stride + k)
    out = np.empty((n_batch, n_out, h_out, w_out), z.dtype)
    wsum = np.empty((n_batch, n_out, h_out, w_out), z.dtype)
    w_flat = wr.reshape(wr.size)
    oyr, oxr = _geometry(height, width, k, stride, pad, h_out, w_out, rows)
    # per input column x: the phase and the j of output column 0 (may be negative; only ox >= ox_lo is used)
    xj = np.empty((2, width), np.int64)
    for x in range(width):
        d0 = k - 1 - x - pad  # dx' at ox = 0
        ph = d0 % stride
        xj[0, x] = ph
        xj[1, x] = (d0 - ph) // stride
    # one task per thread, each with its scratch buffers allocated once for a contiguous block of samples
    # (samples are independent: the block split does not change any result)
    n_tasks = max(1, min(n_batch, n_threads))
    per_task = (n_batch + n_tasks - 1) // n_tasks
    for task in prange(n_tasks):
        zs = np.empty(n_in, z.dtype)  # a sample's spikes in time order
        pk = np.empty(n_in, np.int64)  # and their packed (c, y, x)
        counts = np.empty(max(MIN_BUCKETS, n_in) + 1, np.int64)
        keys = np.empty(n_in, np.int32)
        bz = np.empty((n_bands, capacity), z.dtype)  # the spikes of each band, in time order
        bp = np.empty((n_bands, capacity), np.int64)
        bcnt = np.empty(n_bands, np.int64)
        # float64 sums for every input dtype: whether W_C > 1 (fire or stay silent) is decided on the exact
        # sums of the given float32 weights, as in the reference, not on float32 rounding of them
        w_acc = np.empty(rows * w_out * n_out, np.float64)  # (band positions, O) flattened
        s_acc = np.empty(rows * w_out * n_out, np.float64)
        for b in range(task * per_task, min(n_batch, (task + 1) * per_task)):
            _forward_sample(z[b].reshape(n_in), zbits[b], b, w_flat, bias, has_bias, k, stride, pad, n_out, n_j,
                            height, width, h_out, w_out, rows, n_bands, oyr, oxr, xj, zs, pk, counts, keys, bz, bp,
                            bcnt, w_acc, s_acc, out, wsum)
    return out, wsum


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def conv_backward(z, wt, out, wsum, grad, has_bias, stride, pad, chunk):  # pragma: no cover - compiled
    """Sort-free backward; returns (grad_z (B, C, H, W), grad_wt (C, k, k, O), grad_bias (O,)).

    Parallel over chunks of ``chunk`` input channels: a chunk owns its rows of the weight gradient and
    its channels of grad_z, so nothing is reduced across threads and every sum runs in the same order for
    any number of threads and any chunk size (bit-identical results).  Per chunk, each (sample, position)
    loads its output coefficients once and reuses them for all taps of the chunk, whose weight-gradient rows
    stay in cache.
    """
    n_batch, n_chan, height, width = z.shape
    k = wt.shape[1]
    n_out = wt.shape[3]
    h_out = out.shape[2]
    w_out = out.shape[3]
    n_pos = h_out * w_out
    one = np.ones(1, z.dtype)[0]
    zero = np.zeros(1, z.dtype)[0]
    # (B, P, O) coefficients g_j / (W_C - 1) and spike values; silent outputs get zo = 0 (z > 0: none causal)
    coef = np.zeros((n_batch, n_pos, n_out), z.dtype)
    zo = np.zeros((n_batch, n_pos, n_out), z.dtype)
    zmax = np.zeros((n_batch, n_pos), z.dtype)  # latest output spike of the position (0: nothing to do)
    for b in prange(n_batch):
        for o in range(n_out):
            for p in range(n_pos):
                oy = p // w_out
                ox = p - oy * w_out
                zj = out[b, o, oy, ox]
                gj = grad[b, o, oy, ox]
                if zj < np.inf and gj != zero:
                    coef[b, p, o] = gj / (wsum[b, o, oy, ox] - one)
                    zo[b, p, o] = zj
                    zmax[b, p] = max(zmax[b, p], zj)
    gz = np.zeros_like(z)
    gw = np.zeros((n_chan, k, k, n_out), z.dtype)
    n_chunks = (n_chan + chunk - 1) // chunk
    for ch in prange(n_chunks):
        for b in range(n_batch):
            for p in range(n_pos):
                z_last = zmax[b, p]
                if z_last == zero:
                    continue
                oy = p // w_out
                ox = p - oy * w_out
                for c in range(ch * chunk, min(n_chan, (ch + 1) * chunk)):
                    for dy in range(k):
                        y = oy * stride - pad + dy
                        if y < 0 or y >= height:
                            continue
                        for dx in range(k):
                            x = ox * stride - pad + dx
                            if x < 0 or x >= width:
                                continue
                            zi = z[b, c, y, x]
                            if not zi <= z_last:  # later than every output spike here, or NO_SPIKE
                                continue
                            acc = zero
                            for o in range(n_out):
                                cf = coef[b, p, o] if zi <= zo[b, p, o] else zero
                                gw[c, dy, dx, o] += cf * (zi - zo[b, p, o])
                                acc += cf * wt[c, dy, dx, o]
                            gz[b, c, y, x] += acc
    gb = np.zeros(n_out, z.dtype)
    if has_bias:  # the bias is an input at z = 1, causal where 1 <= z_j
        for b in range(n_batch):
            for p in range(n_pos):
                for o in range(n_out):
                    if one <= zo[b, p, o]:
                        gb[o] += coef[b, p, o] * (one - zo[b, p, o])
    return gz, gw, gb
