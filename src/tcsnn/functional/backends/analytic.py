r"""The reference forward with the closed-form, sort-free backward, in plain PyTorch (any device).

Backward over the causal set ``C_j = {i : z_i <= z_j}`` (``<=``: the input that triggered the spike is
included when ``z_j`` rounds to its time, e.g. with huge weights):

.. math::  \frac{\partial z_j}{\partial w_{ji}} = \frac{z_i - z_j}{W_C - 1}, \qquad
           \frac{\partial z_j}{\partial z_i} = \frac{w_{ji}}{W_C - 1}.

It holds the unfolded receptive fields and a (rows x outputs x fan-in) mask per chunk.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from tcsnn._constants import THRESHOLD
from tcsnn.functional.backends import reference as _ref


def conv_forward(z: Tensor, weight: Tensor, bias: Tensor | None, stride: int, padding: int) -> tuple[Tensor, Tensor]:
    with torch.no_grad():
        return _ref.conv_forward(z, weight, bias, stride, padding)


def causal_rows_backward(
    rows: Tensor, weight: Tensor, z_out: Tensor, w_c: Tensor, grad: Tensor
) -> tuple[Tensor, Tensor]:
    """rows (R, N), weight (M, N), z_out/w_c/grad (R, M) -> (grad_rows (R, N), grad_weight (M, N))."""
    fired = torch.isfinite(z_out)
    coef = torch.where(fired, grad / torch.where(fired, w_c - THRESHOLD, torch.ones_like(w_c)), 0.0)  # (R, M)
    zo = torch.where(fired, z_out, torch.zeros_like(z_out))  # silent: no input is causal (z > 0)
    grad_w = torch.zeros_like(weight)
    grad_rows = []
    n = max(1, _ref._CHUNK_ELEMENTS // max(1, weight.shape[0] * weight.shape[1]))
    for zc, zoc, cc in zip(rows.split(n), zo.split(n), coef.split(n), strict=True):
        causal = zc[:, None, :] <= zoc[:, :, None]  # (r, M, N)
        dt = torch.where(causal, zc[:, None, :] - zoc[:, :, None], 0.0)  # (r, M, N)
        grad_w += torch.einsum("rm,rmn->mn", cc, dt)
        grad_rows.append(torch.einsum("rm,rmn->rn", cc, causal.to(weight.dtype) * weight))
    return (torch.cat(grad_rows) if grad_rows else torch.zeros_like(rows)), grad_w


def conv_backward(
    z: Tensor, weight: Tensor, bias: Tensor | None, stride: int, padding: int,
    z_out: Tensor, w_c: Tensor, grad: Tensor,
) -> tuple[Tensor, Tensor, Tensor | None]:
    n_out, n_chan, k, _ = weight.shape
    batch, _, height, width = z.shape
    rows, wa = _ref.augment_bias(_ref.unfold_rows(z, k, stride, padding), weight.reshape(n_out, -1), bias)
    n_pos = z_out.shape[2] * z_out.shape[3]
    flat = lambda t: t.reshape(batch, n_out, n_pos).transpose(1, 2).reshape(-1, n_out)  # noqa: E731
    g_rows, g_w = causal_rows_backward(rows, wa, flat(z_out), flat(w_c), flat(grad))
    grad_bias = g_w[:, -1].clone() if bias is not None else None
    g_rows = g_rows[:, : n_chan * k * k]
    g_w = g_w[:, : n_chan * k * k].reshape(weight.shape)
    # fold the receptive fields back (sums the overlaps); padded taps are cropped away
    g_patches = g_rows.reshape(batch, n_pos, n_chan * k * k).transpose(1, 2)  # (B, C k k, P)
    hp, wp = height + 2 * padding, width + 2 * padding
    g_z = F.fold(g_patches, (hp, wp), k, stride=stride)
    g_z = g_z[:, :, padding : padding + height, padding : padding + width].contiguous()
    return g_z, g_w, grad_bias
