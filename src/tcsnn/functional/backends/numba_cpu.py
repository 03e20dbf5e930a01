r"""The CPU backend: exact event kernels in numba (:mod:`tcsnn.functional._numba_kernels`).

Forward: each sample's inputs are put in time order once and pushed, in that order, to the output positions
they feed, SIMD over output channels; an output's sums freeze when it fires (paper eq. 4 on the causal set).
Backward: the sort-free causal-set rule, deterministic (parallel over chunks of input channels that own
their gradients), so results do not depend on the number of threads (:func:`tcsnn.set_num_threads`).

The forward sums in float64 for float32 layers too (like the reference), so float32 outputs are the float64
result rounded and agree with the reference on which neurons fire; the backward runs in the layer's dtype.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from tcsnn import _threads
from tcsnn.functional.backends.reference import out_size

#: Forward accumulators (two float64 sums per output) of a band of output rows, sized to stay in a core's L1
#: data cache (32-48 KB on current x86 cores; at least one output row per band).  Measured on the 2-core
#: development machine: 8-30 % faster forwards than L2-sized (256 KB) bands at the VGG shapes.
_BAND_BYTES = 1 << 15


def _band_rows(h_out: int, w_out: int, n_out: int) -> int:
    return max(1, min(h_out, _BAND_BYTES // (16 * w_out * n_out)))


def _bits(z_np: np.ndarray) -> np.ndarray:
    """(B, ...) -> (B, N) bit patterns as ints (they order like the positive floats)."""
    return z_np.reshape(z_np.shape[0], -1).view(np.int32 if z_np.dtype == np.float32 else np.int64)


def _weights(weight: Tensor, bias: Tensor | None) -> tuple[np.ndarray, np.ndarray]:
    """(O, C, k, k) -> (C, k, k, O) contiguous (channels last: SIMD over output channels), bias (O,)."""
    wt = weight.detach().permute(1, 2, 3, 0).contiguous().numpy()
    b = bias.detach().contiguous().numpy() if bias is not None else np.zeros(wt.shape[3], wt.dtype)
    return wt, b


def run_layout(weight: Tensor, stride: int) -> np.ndarray:
    """(O, C, k, k) -> (C, k, stride, J, O), J = ceil(k / stride): ``dx' = k - 1 - dx`` stored at
    ``(dx' % stride, dx' // stride)``, so consecutive output columns fed by one input use consecutive rows."""
    n_out, n_chan, k, _ = weight.shape
    n_j = -(-k // stride)
    w = weight.detach().flip(3)  # index dx' = k - 1 - dx
    w = torch.nn.functional.pad(w, (0, n_j * stride - k))  # (O, C, k, J * stride): zero rows never used
    w = w.reshape(n_out, n_chan, k, n_j, stride).permute(1, 2, 4, 3, 0)  # (C, k, stride, J, O)
    return w.contiguous().numpy()


def conv_forward(z: Tensor, weight: Tensor, bias: Tensor | None, stride: int, padding: int) -> tuple[Tensor, Tensor]:
    from tcsnn.functional import _numba_kernels as nk

    _threads.apply_default()
    h_out, w_out = out_size(z, weight.shape[2], stride, padding)
    if z.shape[0] == 0:
        empty = z.new_empty((0, weight.shape[0], h_out, w_out))
        return empty, empty.clone()
    z_np = z.detach().contiguous().numpy()
    _, b = _weights(weight, bias)
    out, wsum = nk.conv_forward(z_np, _bits(z_np), run_layout(weight, stride), b, bias is not None, weight.shape[2],
                                stride, padding, h_out, w_out, _band_rows(h_out, w_out, weight.shape[0]),
                                nk.numba.get_num_threads())
    return torch.from_numpy(out), torch.from_numpy(wsum)


def conv_backward(
    z: Tensor, weight: Tensor, bias: Tensor | None, stride: int, padding: int,
    z_out: Tensor, w_c: Tensor, grad: Tensor,
) -> tuple[Tensor, Tensor, Tensor | None]:
    from tcsnn.functional import _numba_kernels as nk

    _threads.apply_default()
    if z.shape[0] == 0:
        return torch.zeros_like(z), torch.zeros_like(weight), (torch.zeros_like(bias) if bias is not None else None)
    wt, _ = _weights(weight, bias)
    np_ = lambda t: t.detach().contiguous().numpy()  # noqa: E731
    gz, gw, gb = nk.conv_backward(np_(z), wt, np_(z_out), np_(w_c), np_(grad), bias is not None, stride, padding,
                                  nk.backward_chunk(z.shape[1], nk.numba.get_num_threads()))
    grad_w = torch.from_numpy(gw).permute(3, 0, 1, 2).contiguous()
    return torch.from_numpy(gz), grad_w, (torch.from_numpy(gb) if bias is not None else None)
