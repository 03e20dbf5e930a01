r"""Triton backend: exact spike times of a convolution (and of a linear layer, its 1x1 case) on CUDA.

Forward (paper eq. 4).  Each input pixel's channels are sorted once (``torch.sort`` over ``C`` of the
``(B, H, W, C)`` map, the channel order kept as int32, a ``NO_SPIKE`` sentinel ending each list).  A receptive
field of a ``k x k`` kernel is then ``k*k`` time-ordered lists, plus the bias as a one-element list at ``z = 1``.
A program (one warp) owns up to 4 output positions and a block of output channels; for each position it merges
the lists in time order (the smallest list head is the next input to arrive) and adds the input's weight row
to the channel accumulators:

.. math::  W \leftarrow W + w_{ji}, \qquad S \leftarrow S + w_{ji} z_i .

Before input ``i`` is added, a channel whose accumulators already fire in time, ``W > 1`` and
``S / (W - 1) <= z_i`` (the test of the ``reference`` backend, with IEEE-rounded division), is frozen: its
``W``, ``S`` are then the causal-set sums ``W_C``, ``S_C`` and ``z_j = S_C / (W_C - 1)``.  A channel with
``W <= 1`` after the last arriving input never fires (``NO_SPIKE``).  Inputs equal to ``NO_SPIKE`` never
arrive; padded taps are empty lists.  A program stops once every channel of its block is frozen.
The accumulators, the products ``w_ji z_i`` and the tests are float64, and ``z_j`` and ``W_C`` are rounded to
the input dtype at the end, as every backend evaluates float32 layers, so float32 results match the
``reference`` backend bit for bit in practice.

Backward (sort-free causal-set rule, ``C_j = {i : z_i <= z_j}``, ``coef_j = grad_j / (W_C - 1)``):

.. math::  \frac{\partial L}{\partial w_{ji}} = \sum coef_j (z_i - z_j), \qquad
           \frac{\partial L}{\partial z_i} = \sum_j coef_j w_{ji},

both summed over the pairs with ``i`` in ``C_j``; the bias is an input at ``z = 1``.  Three kernels, no atomics:
``grad_prep`` turns ``grad`` into ``coef`` and the firing times (and bias-gradient partials per row block);
``grad_z`` gathers, for 8 input pixels and a block of channels, over the output positions they feed;
``grad_w`` owns a (tap, channel block, output block) tile and sums over a fixed split of the ``B*H'*W'``
output positions, the splits added in a fixed order.  Results never depend on scheduling.

Memory beyond the input, the output and the weights: during the forward, the sorted map and its channel
order (2 x the input), the sort's buffers for at most ``_SORT_CHUNK_ELEMENTS`` elements at a time and a
transposed copy of the weights; ``W_C`` (1 x the output), kept for the backward; during the backward,
``coef`` and the firing times (2 x the output), a ``(B, H, W, C)`` copy of the input, ``grad_z``, a transposed
copy of the weights and the ``grad_w`` partial sums (at most ``_GRADW_SPLIT_ELEMENTS`` elements).  Nothing of
the size of the unfolded patches.

Triton is optional (``pip install tcsnn[triton]``).  The kernels run on CUDA tensors, and on CPU tensors
only under ``TRITON_INTERPRET=1`` (Triton's interpreter; slow, for tests).  Importing this module never
needs triton; the kernels are defined on first use (:mod:`tcsnn.functional.backends._triton_kernels`).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from types import ModuleType

import torch
from torch import Tensor

from tcsnn._constants import BIAS_Z, NO_SPIKE, THRESHOLD

#: Devices and dtypes this backend runs on (CPU only under the interpreter, see :func:`is_available`).
DEVICES: tuple[str, ...] = ("cuda",)
DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.float64)

#: Output-channel block of a forward program: at most this wide, and narrowed down to the minimum
#: while the grid has fewer than _FORWARD_PROGRAMS_PER_SM programs per SM.
_MAX_BLOCK_O = 128
_MIN_BLOCK_O = 32
#: Output positions merged side by side in one forward program (at most).
_MAX_POSITIONS = 4
#: Forward programs (one warp each) wanted per SM: 32 resident blocks per SM, twice over.
_FORWARD_PROGRAMS_PER_SM = 64
#: One warp per forward program: the per-arrival reductions (next input, active channels) stay in-warp.
_FORWARD_WARPS = 1
#: Rows per program of the backward's first kernel (coef, firing times, bias-gradient partials).
_PREP_BLOCK_ROWS = 64
#: Channel blocks of the backward kernels (input and output channels).
_BWD_MAX_BLOCK_C = 32
_BWD_MAX_BLOCK_O = 32
#: Input pixels per ``grad_z`` program (they share each weight tile it loads).
_GRADZ_BLOCK_PIXELS = 8
#: Target number of ``grad_w`` programs; the ``B*H'*W'`` rows are split to reach it (fixed per shape).
_GRADW_TARGET_PROGRAMS = 2048
#: Fewest rows a ``grad_w`` split sums (a multiple of the kernel's row block, 8).
_GRADW_MIN_ROWS = 512
#: Upper bound on the ``grad_w`` partial-sum buffer (elements), whatever the split.
_GRADW_SPLIT_ELEMENTS = 1 << 24
#: Elements sorted at once when ordering each pixel's channels (bounds the sort's int64 index buffer).
_SORT_CHUNK_ELEMENTS = 1 << 22
#: Offsets are int32 inside the kernels.
_MAX_ELEMENTS = 2**31 - 1


def _triton_installed() -> bool:
    try:
        return importlib.util.find_spec("triton") is not None
    except (ImportError, ValueError):  # e.g. a broken or stubbed-out triton module
        return False


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def is_available(device: str | torch.device = "cuda") -> bool:
    """Whether the Triton kernels can run on ``device``: triton is installed and the device is CUDA
    (with a GPU present), or the device is the CPU and ``TRITON_INTERPRET=1`` is set."""
    if not _triton_installed():
        return False
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.is_available()
    return kind == "cpu" and _interpreting()


def _require(z: Tensor) -> None:
    if not _triton_installed():
        raise ImportError("the 'triton' backend needs the triton package: pip install 'tcsnn[triton]'")
    if z.device.type == "cpu" and not _interpreting():
        raise ValueError(
            "the 'triton' backend runs on CUDA tensors; on CPU tensors only with TRITON_INTERPRET=1 "
            "(Triton's interpreter, for tests)"
        )
    if z.device.type not in ("cpu", "cuda"):
        raise ValueError(f"the 'triton' backend runs on CUDA tensors, got a tensor on {z.device}")
    if z.dtype not in DTYPES:
        raise TypeError(f"the 'triton' backend supports float32 and float64, got {z.dtype}")


@functools.cache
def _kernels() -> ModuleType:
    """The kernel module, imported on first use (triton is optional)."""
    from tcsnn.functional.backends import _triton_kernels

    return _triton_kernels


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _out_size(size: int, k: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - k) // stride + 1


def _check_sizes(*tensors: Tensor) -> None:
    for t in tensors:
        if t.numel() > _MAX_ELEMENTS:
            raise ValueError(f"the 'triton' backend indexes with int32: a tensor of {t.numel()} elements is too large")


def _sorted_pixels(z: Tensor) -> tuple[Tensor, Tensor]:
    """Each pixel's channels in time order: (B, C, H, W) -> values (B, H, W, C + 1), channels int32 (B, H, W, C + 1).

    The last entry of every list is a ``NO_SPIKE`` sentinel.  Sorted a few samples at a time, so the sort's
    int64 indices never exist for the whole batch."""
    n_batch, n_chan, height, width = z.shape
    zs = torch.empty(n_batch, height, width, n_chan + 1, dtype=z.dtype, device=z.device)
    ch = torch.zeros(n_batch, height, width, n_chan + 1, dtype=torch.int32, device=z.device)
    zs[..., n_chan] = NO_SPIKE
    z_hwc = z.detach().permute(0, 2, 3, 1)  # (B, H, W, C) view
    step = max(1, _SORT_CHUNK_ELEMENTS // max(1, n_chan * height * width))
    for b0 in range(0, n_batch, step):
        values, order = torch.sort(z_hwc[b0 : b0 + step], dim=3)
        zs[b0 : b0 + step, ..., :n_chan] = values
        ch[b0 : b0 + step, ..., :n_chan] = order  # int64 -> int32
    return zs, ch


def _tap_rows(weight: Tensor, bias: Tensor | None) -> Tensor:
    """(O, C, k, k) weights as rows (k*k*C [+1], O): row (dy*k + dx)*C + c is contiguous over O; the bias last."""
    n_out, n_chan, k, _ = weight.shape
    wt = weight.detach().permute(2, 3, 1, 0).reshape(k * k * n_chan, n_out)
    if bias is not None:
        wt = torch.cat([wt, bias.detach().reshape(1, n_out)])
    return wt.contiguous()


def _forward_blocks(n_rows: int, n_out: int, device: torch.device) -> tuple[int, int]:
    """Output positions and channels per forward program.

    Each program is one warp walking its positions' inputs in time order: a chain of dependent loads.
    Several positions per program (independent chains) and wide channel blocks cut the work per input,
    as long as enough programs remain to keep every SM busy; the results do not depend on the choice."""
    if device.type == "cuda":
        target = _FORWARD_PROGRAMS_PER_SM * torch.cuda.get_device_properties(device).multi_processor_count
    else:
        target = 1  # the interpreter: fewest programs
    block_o = min(_next_pow2(n_out), _MAX_BLOCK_O)
    while block_o > _MIN_BLOCK_O and n_rows * _cdiv(n_out, block_o) < target:
        block_o //= 2
    pos = _MAX_POSITIONS
    while pos > 1 and _cdiv(n_rows, pos) * _cdiv(n_out, block_o) < target:
        pos //= 2
    return pos, block_o


def conv_forward(
    z: Tensor, weight: Tensor, bias: Tensor | None, stride: int, padding: int
) -> tuple[Tensor, Tensor]:
    """Exact spike values and causal weight sums of a spiking convolution.

    Args:
        z: (B, C, H, W) input spike values ``e^t`` (``NO_SPIKE`` = never arrives).
        weight: (O, C, k, k).  bias: (O,) or None (an input at ``z = 1``).
        stride, padding: validated ints; padded taps never spike.

    Returns:
        ``(z_out, w_c)``, both (B, O, H', W'): output spike values (``NO_SPIKE`` where silent) and
        ``W_C = sum_{i in C} w_ji`` over the causal set (the bias weight included when causal).
    """
    _require(z)
    kern = _kernels()
    n_batch, n_chan, height, width = z.shape
    n_out, _, k, _ = weight.shape
    h_out, w_out = _out_size(height, k, stride, padding), _out_size(width, k, stride, padding)
    zs, ch = _sorted_pixels(z)
    wt = _tap_rows(weight, bias)
    out = torch.empty(n_batch, n_out, h_out, w_out, dtype=z.dtype, device=z.device)
    w_c = torch.empty_like(out)
    _check_sizes(zs, wt, out)
    n_rows = n_batch * h_out * w_out
    pos, block_o = _forward_blocks(n_rows, n_out, z.device)
    grid = (_cdiv(n_rows, pos), _cdiv(n_out, block_o))
    kern.conv_forward_kernel[grid](
        zs, ch, wt, out, w_c,
        n_chan, height, width, n_out, h_out, w_out, stride, padding, n_rows,
        K=k, HAS_BIAS=bias is not None, LANES=_next_pow2(k * k + 1), POS=pos, BLOCK_O=block_o,
        IS_FP64=z.dtype == torch.float64, THRESHOLD_C=THRESHOLD, BIAS_Z_C=BIAS_Z, num_warps=_FORWARD_WARPS,
    )
    return out, w_c


def conv_backward(
    z: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: int,
    padding: int,
    z_out: Tensor,
    w_c: Tensor,
    grad: Tensor,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Gradients by the causal-set rule ``C_j = {i : z_i <= z_j}``; silent outputs give none.

    ``dz_j/dw_ji = (z_i - z_j) / (W_C - 1)``, ``dz_j/dz_i = w_ji / (W_C - 1)``; the bias is an input at z = 1.
    grad (B, O, H', W') -> (grad_z (B, C, H, W), grad_weight (O, C, k, k), grad_bias (O,) or None).
    Deterministic: fixed reduction order, no atomics.
    """
    _require(z)
    kern = _kernels()
    n_batch, n_chan, height, width = z.shape
    n_out, _, k, _ = weight.shape
    h_out, w_out = z_out.shape[2], z_out.shape[3]
    n_rows = n_batch * h_out * w_out
    dtype, device = z.dtype, z.device
    flags = dict(IS_FP64=dtype == torch.float64, THRESHOLD_C=THRESHOLD, BIAS_Z_C=BIAS_Z)

    # coef = grad / (W_C - 1) and the firing times, as (B*H'*W', O) rows; the bias gradient per row block
    coef = torch.empty(n_rows, n_out, dtype=dtype, device=device)
    zo = torch.empty_like(coef)
    prep_r, prep_o = _PREP_BLOCK_ROWS, min(_next_pow2(n_out), _BWD_MAX_BLOCK_O)
    gb = torch.empty(_cdiv(n_rows, prep_r), n_out, dtype=dtype, device=device)
    _check_sizes(coef)
    kern.grad_prep_kernel[(_cdiv(n_rows, prep_r), _cdiv(n_out, prep_o))](
        grad.contiguous(), z_out.contiguous(), w_c.contiguous(), coef, zo, gb, n_out, h_out * w_out, n_rows,
        HAS_BIAS=bias is not None, BLOCK_R=prep_r, BLOCK_O=prep_o, num_warps=4, **flags,
    )
    grad_bias = gb.sum(dim=0) if bias is not None else None

    zt = z.detach().permute(0, 2, 3, 1).contiguous()  # (B, H, W, C)
    wt = _tap_rows(weight, None)
    _check_sizes(zt, wt)
    gz = torch.empty_like(z, memory_format=torch.contiguous_format)
    n_pix = n_batch * height * width
    block_c = min(_next_pow2(n_chan), _BWD_MAX_BLOCK_C)
    block_o = min(_next_pow2(n_out), _BWD_MAX_BLOCK_O)
    kern.grad_z_kernel[(_cdiv(n_pix, _GRADZ_BLOCK_PIXELS), _cdiv(n_chan, block_c))](
        zt, wt, coef, zo, gz,
        n_chan, height, width, n_out, h_out, w_out, stride, padding, n_pix,
        K=k, BLOCK_X=_GRADZ_BLOCK_PIXELS, BLOCK_C=block_c, BLOCK_O=block_o, num_warps=4,
    )

    # grad_w: (tap, channel block, output block) tiles, each summing a fixed split of the rows; splits added in order
    block_r = 8
    gw_c = min(_next_pow2(n_chan), _BWD_MAX_BLOCK_C)
    gw_o = min(_next_pow2(n_out), _BWD_MAX_BLOCK_O)
    tiles = k * k * _cdiv(n_chan, gw_c) * _cdiv(n_out, gw_o)
    max_split = max(1, _GRADW_SPLIT_ELEMENTS // (k * k * n_chan * n_out))
    splits = max(1, min(_cdiv(_GRADW_TARGET_PROGRAMS, tiles), _cdiv(n_rows, _GRADW_MIN_ROWS), max_split))
    rows_per_split = _cdiv(_cdiv(n_rows, splits), block_r) * block_r
    splits = _cdiv(n_rows, rows_per_split)
    gw = torch.empty(splits, n_out, n_chan, k, k, dtype=dtype, device=device)
    kern.grad_w_kernel[(k * k, _cdiv(n_chan, gw_c) * _cdiv(n_out, gw_o), splits)](
        zt, coef, zo, gw,
        n_chan, height, width, n_out, h_out, w_out, stride, padding, n_rows, rows_per_split,
        K=k, BLOCK_R=block_r, BLOCK_C=gw_c, BLOCK_O=gw_o, num_warps=4,
    )
    grad_weight = gw[0] if splits == 1 else gw.sum(dim=0)  # (O, C, k, k)
    return gz, grad_weight, grad_bias
