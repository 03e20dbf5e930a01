r"""The ground truth: plain PyTorch sort + gather + cumsum over every receptive field (paper eq. 4).

Sort the receptive field's inputs; the neuron fires after the k-th input for the first prefix ``k`` with
``W_k = sum_{i<=k} w > 1`` and ``S_k / (W_k - 1) <= z_{k+1}`` (the next input has not arrived yet), at
``z = S_k / (W_k - 1)``.  No such prefix: ``NO_SPIKE``.  Autograd differentiates it; it holds a
(rows x outputs x fan-in) tensor per chunk, so it is slow and meant for checking the other backends.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from tcsnn._constants import BIAS_Z, NO_SPIKE, THRESHOLD

#: Rows x outputs x fan-in elements materialised at once (memory bound).
_CHUNK_ELEMENTS = 1 << 23


def unfold_rows(z: Tensor, k: int, stride: int, padding: int) -> Tensor:
    """(B, C, H, W) -> (B * P, C k k) receptive fields; padded taps are ``NO_SPIKE`` (they never spike)."""
    zp = F.pad(z, (padding,) * 4, value=NO_SPIKE) if padding else z
    patches = F.unfold(zp, k, stride=stride)  # (B, C k k, P)
    return patches.transpose(1, 2).reshape(-1, patches.shape[1])


def augment_bias(rows: Tensor, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor]:
    """Append the bias as one more input at z = 1: (R, N) -> (R, N + 1), (M, N) -> (M, N + 1)."""
    if bias is None:
        return rows, weight
    ones = torch.full_like(rows[:, :1], BIAS_Z)
    return torch.cat([rows, ones], dim=1), torch.cat([weight, bias[:, None]], dim=1)


def rows_to_map(x: Tensor, batch: int, h_out: int, w_out: int) -> Tensor:
    """(B * P, O) -> (B, O, H', W')."""
    n_out = x.shape[1]
    return x.reshape(batch, h_out * w_out, n_out).transpose(1, 2).reshape(batch, n_out, h_out, w_out)


def out_size(z: Tensor, k: int, stride: int, padding: int) -> tuple[int, int]:
    return (z.shape[2] + 2 * padding - k) // stride + 1, (z.shape[3] + 2 * padding - k) // stride + 1


def sorted_prefix(z: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """Sort + gather + cumsum.  z (R, N), weight (M, N) -> (z_out (R, M), W_C (R, M))."""
    zs, order = torch.sort(z, dim=1)  # (R, N)
    arrived = torch.isfinite(zs)  # (R, N)
    ws = weight[:, order].permute(1, 0, 2)  # (R, M, N): weights in each row's time order
    ws = torch.where(arrived[:, None, :], ws, torch.zeros_like(ws))
    zs_f = torch.where(arrived, zs, torch.zeros_like(zs))
    w_cum = ws.cumsum(dim=2)  # (R, M, N)
    s_cum = (ws * zs_f[:, None, :]).cumsum(dim=2)  # (R, M, N)
    over = w_cum > THRESHOLD
    denom = torch.where(over, w_cum - THRESHOLD, torch.ones_like(w_cum))
    cand = s_cum / denom  # (R, M, N); meaningful only where `over`
    z_next = torch.cat([zs[:, 1:], torch.full_like(zs[:, :1], NO_SPIKE)], dim=1)  # (R, N)
    valid = over & arrived[:, None, :] & (cand <= z_next[:, None, :])
    fires = valid.any(dim=2)  # (R, M)
    k = valid.to(torch.uint8).argmax(dim=2, keepdim=True)  # first valid prefix
    z_out = cand.gather(2, k).squeeze(2)
    w_c = torch.where(fires, w_cum.gather(2, k).squeeze(2), w_cum[:, :, -1] if w_cum.shape[2] else 0.0)
    z_out = torch.where(fires, z_out, torch.full_like(z_out, NO_SPIKE))
    return z_out, w_c


def spike_rows(rows: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`sorted_prefix` in chunks of rows that bound the memory."""
    n = max(1, _CHUNK_ELEMENTS // max(1, weight.shape[0] * weight.shape[1]))
    parts = [sorted_prefix(r, weight) for r in rows.split(n)] or [sorted_prefix(rows, weight)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def conv_forward(z: Tensor, weight: Tensor, bias: Tensor | None, stride: int, padding: int) -> tuple[Tensor, Tensor]:
    """(B, C, H, W) -> (z_out, w_c), both (B, O, H', W'); differentiable by autograd.

    float32 layers are evaluated in float64 and rounded at the end: whether ``W_C > 1`` is then decided on
    the exact sums of the float32 weights, not on their float32 rounding (which would make near-threshold
    neurons fire or not depending on the summation order).
    """
    if z.dtype == torch.float32:
        z_out, w_c = conv_forward(z.double(), weight.double(), bias.double() if bias is not None else None,
                                  stride, padding)
        return z_out.float(), w_c.float()
    n_out, _, k, _ = weight.shape
    h_out, w_out = out_size(z, k, stride, padding)
    rows, wa = augment_bias(unfold_rows(z, k, stride, padding), weight.reshape(n_out, -1), bias)
    z_out, w_c = spike_rows(rows, wa)
    return rows_to_map(z_out, z.shape[0], h_out, w_out), rows_to_map(w_c, z.shape[0], h_out, w_out)


def conv_backward(
    z: Tensor, weight: Tensor, bias: Tensor | None, stride: int, padding: int,
    z_out: Tensor, w_c: Tensor, grad: Tensor,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Autograd of :func:`conv_forward` (the forward is recomputed)."""
    with torch.enable_grad():
        leaves = [t.detach().requires_grad_() for t in (z, weight) + ((bias,) if bias is not None else ())]
        out, _ = conv_forward(leaves[0], leaves[1], leaves[2] if bias is not None else None, stride, padding)
        g = torch.where(torch.isfinite(out), grad, torch.zeros_like(grad))
        grads = torch.autograd.grad(out, leaves, g, allow_unused=True)
    grads = [gr if gr is not None else torch.zeros_like(t) for gr, t in zip(grads, leaves, strict=True)]
    return grads[0], grads[1], grads[2] if bias is not None else None
