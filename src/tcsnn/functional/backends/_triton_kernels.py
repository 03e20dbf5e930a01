"""Triton kernels of the ``triton`` backend (see :mod:`tcsnn.functional.backends.triton_gpu`).

Imported only on first use: it needs triton, and Triton reads ``TRITON_INTERPRET`` when the kernels
are defined (at import of this module).
"""

import triton
import triton.language as tl


@triton.jit
def conv_forward_kernel(
    zs_ptr, ch_ptr, wt_ptr, out_ptr, wc_ptr,
    C, H, W, OC, H_OUT, W_OUT, stride, pad, n_rows,
    K: tl.constexpr, HAS_BIAS: tl.constexpr, LANES: tl.constexpr, POS: tl.constexpr, BLOCK_O: tl.constexpr,
    IS_FP64: tl.constexpr, THRESHOLD_C: tl.constexpr, BIAS_Z_C: tl.constexpr,
):
    # zs: (B, H, W, C + 1) each pixel's channels sorted in time, then a NO_SPIKE sentinel;
    # ch: (B, H, W, C + 1) the channel of each entry (int32);
    # wt: (k*k*C [+1 bias row], OC); out, wc: (B, OC, H', W').
    # A program merges the receptive fields of POS output positions side by side (independent chains of
    # dependent loads in one warp) for BLOCK_O output channels.
    q = tl.program_id(0) * POS + tl.arange(0, POS)  # (POS,): b * H' * W' + oy * W' + ox
    q_ok = q < n_rows
    n_pos = H_OUT * W_OUT
    b = q // n_pos
    p = q % n_pos
    lane = tl.arange(0, LANES)  # one lane per tap (dy, dx); lane k*k is the bias
    y = ((p // W_OUT) * stride - pad)[:, None] + (lane // K)[None, :]  # (POS, LANES)
    x = ((p % W_OUT) * stride - pad)[:, None] + (lane % K)[None, :]
    inside = q_ok[:, None] & (lane < K * K)[None, :] & (y >= 0) & (y < H) & (x >= 0) & (x < W)
    cur = tl.where(inside, ((b[:, None] * H + y) * W + x) * (C + 1), 0)  # (POS, LANES): each list's head
    head = tl.load(zs_ptr + cur, mask=inside, other=float("inf"))  # (POS, LANES): next arrival per list
    if HAS_BIAS:
        head = tl.where(q_ok[:, None] & (lane == K * K)[None, :], BIAS_Z_C, head)

    o = tl.program_id(1) * BLOCK_O + tl.arange(0, BLOCK_O)
    o_ok = o < OC
    # float64 accumulators and float64 tests, rounded to the output dtype at the end: float32 layers are
    # evaluated in float64 as in every other backend (see tcsnn.functional.backends.reference).
    w_acc = tl.zeros([POS, BLOCK_O], dtype=tl.float64)
    s_acc = tl.zeros([POS, BLOCK_O], dtype=tl.float64)
    active = q_ok[:, None] & o_ok[None, :]  # (POS, BLOCK_O): not yet found to have fired
    z_i, a = tl.min(head, axis=1, return_indices=True)  # (POS,): the next arrival and its list
    go = (z_i < float("inf")) & (tl.sum(active.to(tl.int32), axis=1) > 0)
    while tl.sum(go.to(tl.int32), axis=0) > 0:
        # freeze the channels that fire no later than this arrival
        over = w_acc > THRESHOLD_C
        den = tl.where(over, w_acc - THRESHOLD_C, 1.0)
        cand = s_acc / den  # float64 division is IEEE round-to-nearest
        active = active & ~(over & (cand <= z_i.to(tl.float64)[:, None]))
        sel = (lane[None, :] == a[:, None]) & go[:, None]  # (POS, LANES): the list that delivers
        cur_a = tl.sum(tl.where(sel, cur, 0), axis=1)  # (POS,)
        is_tap = go & (a < K * K)
        c = tl.load(ch_ptr + cur_a, mask=is_tap, other=0)
        row = tl.where(a < K * K, a * C + c, K * K * C)  # the bias row follows the k*k*C tap rows
        w = tl.load(wt_ptr + row[:, None] * OC + o[None, :], mask=active & go[:, None], other=0.0)
        z_go = tl.where(go, z_i, 0.0)  # rows that stopped add nothing (and no 0 * inf)
        w64 = w.to(tl.float64)
        w_acc += w64
        s_acc += w64 * z_go.to(tl.float64)[:, None]
        nxt = tl.load(zs_ptr + cur_a + 1, mask=is_tap, other=float("inf"))  # the sentinel ends each list
        head = tl.where(sel, nxt[:, None], head)
        cur = tl.where(sel, cur + 1, cur)
        z_i, a = tl.min(head, axis=1, return_indices=True)
        go = (z_i < float("inf")) & (tl.sum(active.to(tl.int32), axis=1) > 0)
    over = w_acc > THRESHOLD_C
    den = tl.where(over, w_acc - THRESHOLD_C, 1.0)
    z_out = tl.where(over, s_acc / den, float("inf")).to(out_ptr.dtype.element_ty)
    w_r = w_acc.to(out_ptr.dtype.element_ty)
    dst = (b[:, None] * OC + o[None, :]) * n_pos + p[:, None]
    ok = q_ok[:, None] & o_ok[None, :]
    tl.store(out_ptr + dst, z_out, mask=ok)
    tl.store(wc_ptr + dst, w_r, mask=ok)


@triton.jit
def grad_prep_kernel(
    grad_ptr, zout_ptr, wc_ptr, coef_ptr, zo_ptr, gb_ptr,
    OC, n_pos, n_rows,
    HAS_BIAS: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_O: tl.constexpr,
    IS_FP64: tl.constexpr, THRESHOLD_C: tl.constexpr, BIAS_Z_C: tl.constexpr,
):
    # grad, zout, wc: (B, OC, H', W'); coef, zo: (B*H'*W', OC) rows; gb: (row blocks, OC) bias-gradient partials.
    # coef = grad / (W_C - 1) and zo = z_out where the output fired (and has a gradient), else 0 and 0:
    # every input has z > 0, so none is causal for zo = 0.
    pid_r = tl.program_id(0)
    r = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    o = tl.program_id(1) * BLOCK_O + tl.arange(0, BLOCK_O)
    ok = (r < n_rows)[:, None] & (o < OC)[None, :]
    src = ((r // n_pos)[:, None] * OC + o[None, :]) * n_pos + (r % n_pos)[:, None]  # (BLOCK_R, BLOCK_O)
    g = tl.load(grad_ptr + src, mask=ok, other=0.0)
    z_j = tl.load(zout_ptr + src, mask=ok, other=float("inf"))
    w_c = tl.load(wc_ptr + src, mask=ok, other=0.0)
    fired = (z_j < float("inf")) & (g != 0.0)
    den = tl.where(fired, w_c - THRESHOLD_C, 1.0)
    if IS_FP64:
        cf = g / den
    else:
        cf = tl.math.div_rn(g, den)
    cf = tl.where(fired, cf, 0.0)
    zo = tl.where(fired, z_j, 0.0)
    dst = r[:, None] * OC + o[None, :]
    tl.store(coef_ptr + dst, cf, mask=ok)
    tl.store(zo_ptr + dst, zo, mask=ok)
    if HAS_BIAS:
        # the bias is an input at z = 1: causal when 1 <= z_j
        gb = tl.sum(tl.where(zo >= BIAS_Z_C, cf * (BIAS_Z_C - zo), 0.0), axis=0)  # (BLOCK_O,)
        tl.store(gb_ptr + pid_r * OC + o, gb, mask=o < OC)


@triton.jit
def grad_z_kernel(
    zt_ptr, wt_ptr, coef_ptr, zo_ptr, gz_ptr,
    C, H, W, OC, H_OUT, W_OUT, stride, pad, n_pix,
    K: tl.constexpr, BLOCK_X: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_O: tl.constexpr,
):
    # zt: (B, H, W, C); gz: (B, C, H, W); wt: (k*k*C, OC); coef, zo: (B*H'*W', OC) rows.
    # A program owns BLOCK_X consecutive input pixels and BLOCK_C channels; each (BLOCK_C, BLOCK_O) weight tile
    # it loads serves all its pixels.
    pix = tl.program_id(0) * BLOCK_X + tl.arange(0, BLOCK_X)  # (BLOCK_X,): b * H * W + y * W + x
    pix_ok = pix < n_pix
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = c < C
    b = pix // (H * W)
    yx = pix % (H * W)
    y = yx // W
    x = yx % W
    z_i = tl.load(
        zt_ptr + pix[:, None] * C + c[None, :], mask=pix_ok[:, None] & c_ok[None, :], other=float("inf")
    )  # (BLOCK_X, BLOCK_C)
    acc = tl.zeros([BLOCK_X, BLOCK_C], dtype=zt_ptr.dtype.element_ty)
    for t in tl.static_range(K * K):
        # the output position that sees pixel (y, x) through tap t, if any
        ty = y + pad - t // K
        tx = x + pad - t % K
        oy = ty // stride
        ox = tx // stride
        hit = pix_ok & (ty >= 0) & (tx >= 0) & (ty % stride == 0) & (tx % stride == 0) & (oy < H_OUT) & (ox < W_OUT)
        row = tl.where(hit, (b * H_OUT + oy) * W_OUT + ox, 0)  # (BLOCK_X,)
        if tl.sum(hit.to(tl.int32), axis=0) > 0:
            for o0 in range(0, OC, BLOCK_O):
                o = o0 + tl.arange(0, BLOCK_O)
                o_ok = o < OC
                m = hit[:, None] & o_ok[None, :]
                cf = tl.load(coef_ptr + row[:, None] * OC + o[None, :], mask=m, other=0.0)  # (BLOCK_X, BLOCK_O)
                zo = tl.load(zo_ptr + row[:, None] * OC + o[None, :], mask=m, other=0.0)  # 0: nothing is causal
                w = tl.load(
                    wt_ptr + (t * C + c[:, None]) * OC + o[None, :], mask=c_ok[:, None] & o_ok[None, :], other=0.0
                )  # (BLOCK_C, BLOCK_O)
                causal = z_i[:, :, None] <= zo[:, None, :]  # (BLOCK_X, BLOCK_C, BLOCK_O)
                acc += tl.sum(tl.where(causal, w[None, :, :] * cf[:, None, :], 0.0), axis=2)
    tl.store(
        gz_ptr + (b[:, None] * C + c[None, :]) * (H * W) + yx[:, None], acc, mask=pix_ok[:, None] & c_ok[None, :]
    )


@triton.jit
def grad_w_kernel(
    zt_ptr, coef_ptr, zo_ptr, gw_ptr,
    C, H, W, OC, H_OUT, W_OUT, stride, pad, n_rows, rows_per_split,
    K: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_O: tl.constexpr,
):
    # zt: (B, H, W, C); coef, zo: (B*H'*W', OC) rows; gw: (splits, OC, C, k, k) partial sums.
    t = tl.program_id(0)  # tap dy * k + dx
    pid_co = tl.program_id(1)
    s = tl.program_id(2)  # row split
    n_cb = tl.cdiv(C, BLOCK_C)
    c = (pid_co % n_cb) * BLOCK_C + tl.arange(0, BLOCK_C)
    o = (pid_co // n_cb) * BLOCK_O + tl.arange(0, BLOCK_O)
    c_ok = c < C
    o_ok = o < OC
    dy = t // K
    dx = t % K
    acc = tl.zeros([BLOCK_C, BLOCK_O], dtype=zt_ptr.dtype.element_ty)
    r_lo = s * rows_per_split
    r_hi = tl.minimum(r_lo + rows_per_split, n_rows)
    for r0 in range(r_lo, r_hi, BLOCK_R):
        r = r0 + tl.arange(0, BLOCK_R)
        r_ok = r < r_hi
        b = r // (H_OUT * W_OUT)
        p = r % (H_OUT * W_OUT)
        y = (p // W_OUT) * stride - pad + dy
        x = (p % W_OUT) * stride - pad + dx
        inside = r_ok & (y >= 0) & (y < H) & (x >= 0) & (x < W)
        z_i = tl.load(
            zt_ptr + (((b * H + y) * W + x) * C)[:, None] + c[None, :],
            mask=inside[:, None] & c_ok[None, :], other=float("inf"),
        )  # (BLOCK_R, BLOCK_C); padded taps never arrive
        cf = tl.load(coef_ptr + r[:, None] * OC + o[None, :], mask=r_ok[:, None] & o_ok[None, :], other=0.0)
        zo = tl.load(zo_ptr + r[:, None] * OC + o[None, :], mask=r_ok[:, None] & o_ok[None, :], other=0.0)
        causal = z_i[:, :, None] <= zo[:, None, :]  # (BLOCK_R, BLOCK_C, BLOCK_O)
        dt = tl.where(causal, z_i[:, :, None] - zo[:, None, :], 0.0)  # 0, not inf - zo, off the causal set
        acc += tl.sum(cf[:, None, :] * dt, axis=0)
    # straight into the (OC, C, k, k) layout of the weight: no transposed copy afterwards
    tl.store(gw_ptr + ((s * OC + o[None, :]) * C + c[:, None]) * (K * K) + t, acc, mask=c_ok[:, None] & o_ok[None, :])
