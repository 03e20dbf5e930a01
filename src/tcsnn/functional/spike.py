r"""Exact spike times of non-leaky integrate-and-fire neurons (Zhou et al. 2021, eq. 1-4).

Neuron ``j`` integrates :math:`dv_j/dt = \sum_i w_{ji} u(t - t_i) e^{-(t - t_i)}` (tau = 1) and fires once,
when ``v_j`` reaches 1.  With ``z = e^t`` and ``C`` the inputs that spike before ``j`` (the causal set),

.. math::  z_j = \frac{\sum_{i \in C} w_{ji} z_i}{\sum_{i \in C} w_{ji} - 1}.            \quad (4)

``C`` is found exactly: sort the inputs; the spike happens after the k-th input for the first prefix ``k``
with ``W_k = sum_{i<=k} w > 1`` and ``S_k / (W_k - 1) <= z_{k+1}`` (the next input has not yet arrived).
No such prefix means the neuron never fires and outputs :data:`tcsnn.NO_SPIKE` (``+inf``).  Inputs equal
to ``NO_SPIKE`` never arrive.  A bias is the weight of one more input at ``z = 1`` (t = 0).

Backends (selected by name, all tested against ``"reference"``):

``"reference"``
    plain PyTorch: sort, gather, cumsum; autograd differentiates it.  Readable ground truth.
``"analytic"``
    the same forward, with the closed-form backward over the causal set
    ``dz_j/dw_ji = (z_i - z_j)/(W_C - 1)``, ``dz_j/dz_i = w_ji/(W_C - 1)``.
``"numba"``
    event-driven CPU kernels (:mod:`tcsnn.functional._numba_kernels`): each input map is sorted once per
    sample and its spikes pushed to the outputs they feed; analytic backward.  CPU tensors only.
``"auto"``
    ``"numba"`` for CPU tensors, ``"analytic"`` otherwise.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from tcsnn._constants import BIAS_Z, NO_SPIKE, THRESHOLD

Backend = Literal["auto", "reference", "analytic", "numba"]
BACKENDS: tuple[str, ...] = ("auto", "reference", "analytic", "numba")

#: Rows x outputs x fan-in elements materialised at once by the torch paths (memory bound).
_CHUNK_ELEMENTS = 1 << 23


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def _resolve_backend(backend: str, z: Tensor) -> str:
    _check_backend(backend)
    if backend == "auto":
        return "numba" if z.device.type == "cpu" else "analytic"
    if backend == "numba" and z.device.type != "cpu":
        raise ValueError(f"backend 'numba' runs on CPU tensors only, got a tensor on {z.device}")
    return backend


def check_spike_input(z: Tensor, name: str = "input") -> None:
    """Raise a specific error unless ``z`` holds valid spike values ``z = e^t`` (> 0, no NaN)."""
    if not isinstance(z, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of spike values z = exp(t), got {type(z).__name__}")
    if z.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name} must be a floating-point tensor, float32 or float64 (the spike-time op is not "
                        f"implemented in lower precision), got {z.dtype}")
    if torch.isnan(z).any():
        raise ValueError(f"{name} contains NaN; spike values are z = exp(t) > 0, or NO_SPIKE (+inf)")
    if (z <= 0).any():
        raise ValueError(f"{name} contains values <= 0; spike values are z = exp(t) > 0, or NO_SPIKE (+inf)")


def _augment_bias(z: Tensor, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor]:
    """Append the bias as one more input at z = 1: (R, N) -> (R, N + 1), (M, N) -> (M, N + 1)."""
    if bias is None:
        return z, weight
    ones = torch.full_like(z[:, :1], BIAS_Z)
    return torch.cat([z, ones], dim=1), torch.cat([weight, bias[:, None]], dim=1)


def _rows_per_chunk(n_out: int, n_in: int) -> int:
    return max(1, _CHUNK_ELEMENTS // max(1, n_out * n_in))


def _sorted_prefix(z: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """Plain sort + gather + cumsum.  z (R, N), weight (M, N) -> (z_out (R, M), W_C (R, M))."""
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
    w_c = w_cum.gather(2, k).squeeze(2)
    z_out = torch.where(fires, z_out, torch.full_like(z_out, NO_SPIKE))
    return z_out, w_c


def _reference_rows(z: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    rows = _rows_per_chunk(weight.shape[0], weight.shape[1])
    parts = [_sorted_prefix(zc, weight) for zc in z.split(rows)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


class _AnalyticSpikeTimes(torch.autograd.Function):
    """Sorted-prefix forward, closed-form backward over the causal set {i : z_i < z_j}."""

    @staticmethod
    def forward(ctx, z: Tensor, weight: Tensor) -> Tensor:  # type: ignore[override]
        with torch.no_grad():
            z_out, w_c = _reference_rows(z, weight)
        ctx.save_for_backward(z, weight, z_out, w_c)
        return z_out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        z, weight, z_out, w_c = ctx.saved_tensors
        grad_z, grad_w = causal_backward(z, weight, z_out, w_c, grad)
        return grad_z, grad_w


def causal_backward(z: Tensor, weight: Tensor, z_out: Tensor, w_c: Tensor, grad: Tensor) -> tuple[Tensor, Tensor]:
    """Closed-form gradients.  z (R, N), weight (M, N), z_out/w_c/grad (R, M) -> ((R, N), (M, N))."""
    fired = torch.isfinite(z_out)
    coef = torch.where(fired, grad / torch.where(fired, w_c - THRESHOLD, torch.ones_like(w_c)), 0.0)  # (R, M)
    zo = torch.where(fired, z_out, torch.zeros_like(z_out))  # silent: no input is causal (z > 0)
    grad_w = torch.zeros_like(weight)
    grad_z = []
    rows = _rows_per_chunk(weight.shape[0], weight.shape[1])
    for zc, zoc, cc in zip(z.split(rows), zo.split(rows), coef.split(rows), strict=True):
        causal = zc[:, None, :] < zoc[:, :, None]  # (r, M, N)
        dt = torch.where(causal, zc[:, None, :] - zoc[:, :, None], 0.0)  # (r, M, N)
        grad_w += torch.einsum("rm,rmn->mn", cc, dt)
        grad_z.append(torch.einsum("rm,rmn->rn", cc, causal.to(weight.dtype) * weight))
    return torch.cat(grad_z), grad_w


class _NumbaConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, weight, bias, stride, padding, h_out, w_out):  # type: ignore[override]
        from tcsnn.functional import _numba_kernels as nk

        z_np = z.detach().contiguous().numpy()
        wt = weight.detach().permute(1, 2, 3, 0).contiguous().numpy()  # (C, k, k, O)
        has_bias = bias is not None
        b_np = bias.detach().contiguous().numpy() if has_bias else np.zeros(wt.shape[3], wt.dtype)
        order = np.argsort(z_np.reshape(z_np.shape[0], -1), axis=1)  # (B, C*H*W): each sample sorted once
        out, wsum = nk.conv_forward(z_np, order, wt, b_np, has_bias, stride, padding, h_out, w_out)
        out_t, wsum_t = torch.from_numpy(out), torch.from_numpy(wsum)
        ctx.save_for_backward(z, weight, out_t, wsum_t)
        ctx.conf = (has_bias, stride, padding)
        return out_t

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        from tcsnn.functional import _numba_kernels as nk

        z, weight, out, wsum = ctx.saved_tensors
        has_bias, stride, padding = ctx.conf
        wt = weight.detach().permute(1, 2, 3, 0).contiguous().numpy()
        gz, gw, gb = nk.conv_backward(
            z.detach().contiguous().numpy(), wt, out.numpy(), wsum.numpy(),
            grad.detach().contiguous().numpy(), has_bias, stride, padding, nk.num_chunks(z.shape[0]),
        )
        grad_w = torch.from_numpy(gw).permute(3, 0, 1, 2).contiguous()
        return torch.from_numpy(gz), grad_w, (torch.from_numpy(gb) if has_bias else None), None, None, None, None


def _check_weight(weight: Tensor, z: Tensor, ndim: int, what: str) -> None:
    if not isinstance(weight, Tensor) or weight.dim() != ndim:
        raise ValueError(f"{what} weight must be a {ndim}-d tensor, got shape {tuple(getattr(weight, 'shape', ()))}")
    if weight.dtype != z.dtype:
        raise TypeError(f"input dtype {z.dtype} does not match weight dtype {weight.dtype}")


def spike_linear(z: Tensor, weight: Tensor, bias: Tensor | None = None, *, backend: Backend = "auto") -> Tensor:
    """Spike times of a fully-connected layer (paper eq. 4).

    Args:
        z: (B, N) input spike values ``e^t``; ``NO_SPIKE`` for silent inputs.
        weight: (M, N) synaptic weights ``w_ji``.
        bias: (M,) weights of an extra input spiking at t = 0, or None.
        backend: see the module docstring.

    Returns:
        (B, M) output spike values; ``NO_SPIKE`` where a neuron never fires.
    """
    if z.dim() != 2:
        raise ValueError(f"spike_linear expects input of shape (batch, in_features), got {tuple(z.shape)}")
    _check_weight(weight, z, 2, "spike_linear")
    if z.shape[1] != weight.shape[1]:
        raise ValueError(f"input has {z.shape[1]} features but weight expects {weight.shape[1]}")
    backend_ = _resolve_backend(backend, z)
    if backend_ == "numba":
        return _NumbaConv2d.apply(z[:, :, None, None], weight[:, :, None, None], bias, 1, 0, 1, 1)[:, :, 0, 0]
    za, wa = _augment_bias(z, weight, bias)
    if backend_ == "reference":
        return _reference_rows(za, wa)[0]
    return _AnalyticSpikeTimes.apply(za, wa)


def resolve_padding(padding: int | str, kernel_size: int, stride: int) -> int:
    """``torch.nn.Conv2d``-style padding: an int, ``"valid"`` (0) or ``"same"`` (stride 1, odd kernel)."""
    if padding == "valid":
        return 0
    if padding == "same":
        if stride != 1:
            raise ValueError("padding='same' is supported for stride 1 only (as in torch.nn.Conv2d)")
        if kernel_size % 2 == 0:
            raise ValueError(f"padding='same' needs an odd kernel_size, got {kernel_size}")
        return (kernel_size - 1) // 2
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be a non-negative int, 'same' or 'valid', got {padding!r}")
    return padding


def spike_conv2d(
    z: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int = 1,
    padding: int | str = 0,
    *,
    backend: Backend = "auto",
) -> Tensor:
    """Spike times of a convolutional layer: eq. (4) over each receptive field.

    Padded taps never spike (they are ``NO_SPIKE`` inputs, not zeros).

    Args:
        z: (B, C, H, W) input spike values.
        weight: (O, C, k, k) weights.
        bias: (O,) or None.
        stride, padding: as in ``torch.nn.Conv2d`` (square kernels, int stride).

    Returns:
        (B, O, H', W') output spike values.
    """
    if z.dim() != 4:
        raise ValueError(f"spike_conv2d expects input of shape (batch, channels, height, width), got {tuple(z.shape)}")
    _check_weight(weight, z, 4, "spike_conv2d")
    n_out, n_chan, k, k2 = weight.shape
    if k != k2:
        raise ValueError(f"only square kernels are supported, got {k}x{k2}")
    if z.shape[1] != n_chan:
        raise ValueError(f"input has {z.shape[1]} channels but weight expects {n_chan}")
    pad = resolve_padding(padding, k, stride)
    h_out = (z.shape[2] + 2 * pad - k) // stride + 1
    w_out = (z.shape[3] + 2 * pad - k) // stride + 1
    if h_out < 1 or w_out < 1:
        raise ValueError(f"input {tuple(z.shape[2:])} is smaller than the kernel {k}x{k} with padding {pad}")
    backend_ = _resolve_backend(backend, z)
    if backend_ == "numba":
        return _NumbaConv2d.apply(z, weight, bias, stride, pad, h_out, w_out)
    # (B, C*k*k, P): padded taps are NO_SPIKE, so pad with +inf before unfolding.
    zp = F.pad(z, (pad, pad, pad, pad), value=NO_SPIKE) if pad else z
    patches = F.unfold(zp, k, stride=stride)
    rows = patches.transpose(1, 2).reshape(-1, n_chan * k * k)  # (B*P, C*k*k)
    za, wa = _augment_bias(rows, weight.reshape(n_out, -1), bias)
    out = _reference_rows(za, wa)[0] if backend_ == "reference" else _AnalyticSpikeTimes.apply(za, wa)
    return out.reshape(z.shape[0], h_out * w_out, n_out).transpose(1, 2).reshape(z.shape[0], n_out, h_out, w_out)


class _NumbaMinPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, kernel_size, stride):  # type: ignore[override]
        from tcsnn.functional import _numba_kernels as nk

        out, arg = nk.min_pool_forward(z.detach().contiguous().numpy(), kernel_size, stride)
        ctx.save_for_backward(torch.from_numpy(arg))
        ctx.in_hw = (z.shape[2], z.shape[3])
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        from tcsnn.functional import _numba_kernels as nk

        (arg,) = ctx.saved_tensors
        gz = nk.min_pool_backward(grad.detach().contiguous().numpy(), arg.numpy(), *ctx.in_hw)
        return torch.from_numpy(gz), None, None


def spike_max_pool2d(
    z: Tensor, kernel_size: int, stride: int | None = None, *, backend: Backend = "auto"
) -> Tensor:
    """Max-pooling of spike times = the earliest spike (min z) of each window.  (B, C, H, W) -> (B, C, H', W').

    ``"reference"``/``"analytic"`` use ``-max_pool2d(-z)``; ``"numba"`` a fused min-pool kernel (CPU).
    """
    if z.dim() != 4:
        raise ValueError(f"spike_max_pool2d expects (batch, channels, height, width), got {tuple(z.shape)}")
    stride = stride if stride is not None else kernel_size
    if kernel_size < 1 or stride < 1 or kernel_size > min(z.shape[2], z.shape[3]):
        raise ValueError(f"bad pooling: kernel_size={kernel_size}, stride={stride} for input {tuple(z.shape[2:])}")
    if _resolve_backend(backend, z) == "numba":
        return _NumbaMinPool.apply(z, kernel_size, stride)
    return -F.max_pool2d(-z, kernel_size, stride)
