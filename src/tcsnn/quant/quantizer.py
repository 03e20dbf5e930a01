r"""Weight quantisation of spiking layers (paper section 4.2) and the export of integer weight codes.

**The quantiser.**  Uniform, one step per neuron (output row / output channel), zero exactly on the grid,
the bias on the same grid as its row.  For ``b`` bits, ``L = 2^(b-1) - 1`` and, for neuron ``j`` with
weights ``w_j`` (bias included as one more entry) and step ``s_j``,

.. math::  k_{ji} = \mathrm{clamp}(\mathrm{round}(w_{ji} / s_j), k_{min}, k_{max}), \qquad \hat w_{ji} = s_j k_{ji}.

The code range (``grid=``, :data:`GRIDS`):

``"symmetric"`` (default)
    ``k in [-L, L]``: ``2^b - 1`` levels, a symmetric grid; ``b = 2`` is ternary ``{-s, 0, s}`` (1.58 bits).
``"full"``
    ``k in [-L, L + 1]``: all ``2^b`` codes of a b-bit word (offset binary), the extra level on the
    excitatory side; ``b = 2`` is ``{-s, 0, s, 2s}``.  A neuron fires when its *positive* weights carry the
    sum over threshold, while negative weights only delay it, so the extra level goes where precision
    decides the spike time.  At 2 bits it keeps the neurons firing and lifts quantisation-aware training
    by about a point on MNIST (docs/robustness.md).

A neuron whose weights are all zero gets ``s = 0`` and stays zero.  The step (``scale=``, :data:`SCALES`):

``"max"`` (default)
    the smallest step that clips nothing: ``s_j = max(max_i w_ji / k_max, max_i (-w_ji) / L)`` (for the
    symmetric grid simply ``max_i |w_ji| / L``); each neuron's extreme weight is exact.
``"mse"``
    the step that (locally) minimises ``sum_i (w_ji - \hat w_ji)^2``, by alternating minimisation (Lloyd)
    started from the ``"max"`` step; never worse than ``"max"`` in squared error.  At 2-3 bits this keeps
    many more weights away from zero and is the better choice for quantisation-aware training at 2 bits
    (see docs/robustness.md).

*Why per neuron:* a neuron fires when ``sum_i w_ji = 1`` is crossed (eq. 1), and ``s_j k_ji`` crossing 1
is integer weights ``k_ji`` crossing the threshold ``1 / s_j``.  On hardware the per-neuron scale is a
per-neuron threshold, not a multiplier, so it costs nothing, and the grid adapts to each neuron's range
(one large weight elsewhere in the layer does not flatten the small weights of this neuron).
*Why the bias shares its row's step:* the bias is the weight of one more input spiking at t = 0 (a
synapse like the others, :data:`tcsnn.BIAS_Z`); a separate scale would need a second threshold-like
constant per neuron.  :func:`tcsnn.neuromorphic.circuit.quantize_weights` uses the same per-row grid.

**Wider bias codes** (``bias_bits=``, default None).  With None the bias is one more b-bit code of its row
and takes part in the step fit.  Trained biases are often many steps large (in the MNIST network's second
layer up to 20 steps of the 2-bit grid), and a 2-bit bias code clips them to ``2 s_j``.  An integer
``bias_bits`` keeps the bias on the same step ``s_j`` (no second constant) but gives it its own code range,
``k_bias = clamp(round(b_j / s_j), code_range(bias_bits))``, the way integer inference keeps a wider bias
accumulator beside narrow weights; the step is then fitted to the weights alone.  (A row whose weights are
all zero takes the smallest step that holds its bias.)  It costs ``bias_bits - b`` bits per neuron.
``bias_bits`` must hold ``|b_j| / s_j``, which grows with ``b``: 8-bit bias codes clip the biases of 8-bit
weights, 16 held them at every width we tried.  On the 80-epoch MNIST model, post-training 2-bit
quantisation goes from 37.5 % to 95.8 % (first 2,000 test images) with 16-bit bias codes (docs/robustness.md).

The arithmetic is done in float64 and the result cast to the layer's dtype, so ``b = 32`` reproduces
float32 weights to within float32 rounding (relative change below 2^-31 of the row's largest weight).

**Training (straight-through estimator).**  A layer quantised to ``b`` bits (:func:`tcsnn.quant.set_weight_bits`,
a parametrization attached from outside the layer) runs its forward pass on ``\hat w`` while the optimiser
keeps and updates the full-precision ``w``: the backward pass treats quantisation as the identity,
``dL/dw = dL/d\hat w`` (:func:`fake_quantize`).  ``state_dict`` keys stay ``weight`` / ``bias`` and hold the
full-precision weights; :func:`tcsnn.train.checkpoint.load_model` re-applies the run's last bit width.
Penalties on what the neurons see (the weight-sum term of eq. 5) should be taken of
:func:`effective_weight_layers`, which carry the straight-through gradient: on the full-precision weights
they miss neurons that quantisation silenced, and at 2 bits the network can fall silent for good.

**Export.**  :func:`export_quantized` returns the integer codes ``k`` (int8 / int16 / int32) and scales
``s`` (float64, one per neuron) of every spiking layer; :func:`save_quantized` / :func:`load_quantized`
write and read them, :func:`load_quantized_model` rebuilds a model whose forward pass is exactly the
quantised one.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

#: Fewest bits: a sign and one magnitude level (ternary weights).
MIN_BITS = 2
#: Most bits: beyond 32 nothing changes for float32 weights (and the codes would not fit an int32).
MAX_BITS = 32
#: Rules for the per-neuron clipping value (see the module docstring).
SCALES: tuple[str, ...] = ("max", "mse")
#: Code ranges: "symmetric" [-L, L] or "full" [-L, L + 1] (all 2^b codes; see the module docstring).
GRIDS: tuple[str, ...] = ("symmetric", "full")
#: Rounds of alternating minimisation for the "mse" rule (it usually settles in fewer).
MSE_ITERS = 20



class QuantizedWeights(NamedTuple):
    """Integer codes and per-neuron scales of one layer: ``w_hat = scale[j] * codes[j, ...]``."""

    codes: Tensor  # (out, ...) integer, in [-L, L]
    bias_codes: Tensor | None  # (out,) integer, or None for a layer without bias
    scale: Tensor  # (out,) float64, >= 0


def check_bits(bits: object) -> int:
    """Return ``bits`` as an int, or raise ValueError unless it is an integer in [MIN_BITS, MAX_BITS]."""
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise ValueError(f"weight bits must be an integer in [{MIN_BITS}, {MAX_BITS}], got {bits!r}")
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(
            f"weight bits must be in [{MIN_BITS}, {MAX_BITS}] (2 = ternary, a sign and one level; 32 = float32 "
            f"precision), got {bits}"
        )
    return int(bits)


def check_scale(scale: object) -> str:
    if scale not in SCALES:
        raise ValueError(f"unknown quantisation scale rule {scale!r}; choose one of {', '.join(SCALES)}")
    return str(scale)


def check_grid(grid: object) -> str:
    if grid not in GRIDS:
        raise ValueError(f"unknown quantisation grid {grid!r}; choose one of {', '.join(GRIDS)}")
    return str(grid)


def num_levels(bits: int) -> int:
    """``L = 2^(b-1) - 1``: the symmetric grid's codes run over ``-L..L`` (``2^b - 1`` levels)."""
    return 2 ** (check_bits(bits) - 1) - 1


def code_range(bits: int, grid: str = "symmetric") -> tuple[int, int]:
    """``(k_min, k_max)``: ``(-L, L)`` for the symmetric grid, ``(-L, L + 1)`` for the full one."""
    levels = num_levels(bits)
    return -levels, levels + (check_grid(grid) == "full")


def _code_dtype(k_max: int) -> torch.dtype:
    for dtype in (torch.int8, torch.int16, torch.int32):
        if k_max <= torch.iinfo(dtype).max:
            return dtype
    return torch.int64


def _codes(w: Tensor, step: Tensor, lo: int, hi: int) -> Tensor:
    """Integer-valued float64 codes in ``[lo, hi]`` of rows ``w`` (out, n) for per-row steps ``step`` (out,)."""
    safe = torch.where(step > 0, step, torch.ones_like(step))  # an all-zero row stays zero
    return torch.clamp(torch.round(w / safe[:, None]), lo, hi)


def _max_step(w: Tensor, lo: int, hi: int) -> Tensor:
    """Smallest per-row step that clips nothing, rows ``w`` (out, n) float64 -> (out,)."""
    return torch.maximum(w.amax(dim=1).clamp_min(0) / hi, (-w).amax(dim=1).clamp_min(0) / -lo)


def _mse_step(w: Tensor, lo: int, hi: int) -> Tensor:
    """Per-row step that (locally) minimises the squared error, rows ``w`` (out, n) float64 -> (out,).

    Alternating minimisation (Lloyd) from the ``max`` step: codes ``k = clamp(round(w / s), lo, hi)`` are the
    best codes for ``s``, and ``s = <k, w> / <k, k>`` the best step for ``k``; neither update can raise the
    error, so the result is never worse than ``max``.  ``MSE_ITERS`` rounds of O(n) work each.
    """
    step = _max_step(w, lo, hi)  # (out,)
    for _ in range(MSE_ITERS):
        k = _codes(w, step, lo, hi)  # (out, n)
        kk = (k * k).sum(dim=1)
        new = torch.where(kk > 0, (k * w).sum(dim=1) / torch.where(kk > 0, kk, torch.ones_like(kk)), step)
        if torch.equal(new, step):
            break
        step = new
    return step


def _fit_step(w: Tensor, lo: int, hi: int, scale: str) -> Tensor:
    """Per-row step of rows ``w`` (out, n) float64 by the ``scale`` rule (:data:`SCALES`) -> (out,)."""
    return _max_step(w, lo, hi) if scale == "max" else _mse_step(w, lo, hi)


def check_bias_bits(bias_bits: object) -> int | None:
    """``bias_bits`` as an int (or None = the bias is one more b-bit weight of its row); ValueError otherwise."""
    return None if bias_bits is None else check_bits(bias_bits)


def quantize(weight: Tensor, bias: Tensor | None, bits: int, *, scale: str = "max",
             grid: str = "symmetric", bias_bits: int | None = None) -> QuantizedWeights:
    """Integer codes and scales of ``weight`` (out, ...) and ``bias`` (out,) on the per-neuron b-bit grid.

    ``scale`` picks the clipping value (:data:`SCALES`), ``grid`` the code range (:data:`GRIDS`).
    ``bias_bits`` None puts the bias on its row's b-bit codes (one more weight of the fit); an int fits the
    step to the weights alone and gives the bias ``bias_bits``-bit codes on that step (module docstring).
    Raises ValueError for non-finite weights or a bias of the wrong shape.
    """
    lo, hi = code_range(bits, grid)
    check_scale(scale)
    check_bias_bits(bias_bits)
    if weight.dim() < 1:
        raise ValueError(f"weight must have an output axis, got a {weight.dim()}-d tensor")
    if not torch.isfinite(weight).all() or (bias is not None and not torch.isfinite(bias).all()):
        raise ValueError("weights contain NaN or inf; quantisation needs finite weights")
    out = weight.shape[0]
    w = weight.detach().to(torch.float64).reshape(out, -1)  # (out, fan_in)
    if bias is not None:
        if bias.shape != (out,):
            raise ValueError(f"bias must have shape ({out},), got {tuple(bias.shape)}")
        b = bias.detach().to(torch.float64)[:, None]  # (out, 1)
        if bias_bits is not None:
            return _quantize_wide_bias(weight, w, b, lo, hi, scale, code_range(bias_bits, grid))
        w = torch.cat([w, b], dim=1)  # (out, fan_in + 1)
    step = _fit_step(w, lo, hi, scale)  # (out,)
    codes = _codes(w, step, lo, hi).to(_code_dtype(hi))
    if bias is not None:
        return QuantizedWeights(codes[:, :-1].reshape(weight.shape), codes[:, -1].clone(), step)
    return QuantizedWeights(codes.reshape(weight.shape), None, step)


def _quantize_wide_bias(weight: Tensor, w: Tensor, b: Tensor, lo: int, hi: int, scale: str,
                       bias_range: tuple[int, int]) -> QuantizedWeights:
    """Codes of rows ``w`` (out, fan_in) on their own steps, bias ``b`` (out, 1) on those steps with ``bias_range``.

    A row whose weights are all zero takes the smallest step that puts its bias on the bias codes unclipped.
    """
    step = _fit_step(w, lo, hi, scale)  # (out,)
    step = torch.where(step > 0, step, _max_step(b, *bias_range))
    codes = _codes(w, step, lo, hi).to(_code_dtype(hi)).reshape(weight.shape)
    bias_codes = _codes(b, step, *bias_range)[:, 0].to(_code_dtype(bias_range[1]))
    return QuantizedWeights(codes, bias_codes, step)


def dequantize(q: QuantizedWeights, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor | None]:
    """``(scale * codes, scale * bias_codes)`` computed in float64, then cast to ``dtype``."""
    scale = q.scale.to(torch.float64)
    shape = (-1,) + (1,) * (q.codes.dim() - 1)
    weight = (q.codes.to(torch.float64) * scale.reshape(shape)).to(dtype)
    bias = None if q.bias_codes is None else (q.bias_codes.to(torch.float64) * scale).to(dtype)
    return weight, bias


class _FakeQuantize(torch.autograd.Function):
    """Forward: the quantised weights.  Backward: the identity (straight-through estimator)."""

    @staticmethod
    def forward(ctx: Any, weight: Tensor, bias: Tensor | None, bits: int, scale: str, grid: str,
                bias_bits: int | None) -> tuple[Tensor, Tensor | None]:
        q = quantize(weight, bias, bits, scale=scale, grid=grid, bias_bits=bias_bits)
        w_hat, b_hat = dequantize(q, weight.dtype)
        return w_hat, b_hat

    @staticmethod
    def backward(ctx: Any, grad_w: Tensor, grad_b: Tensor | None
                 ) -> tuple[Tensor, Tensor | None, None, None, None, None]:
        return grad_w, grad_b, None, None, None, None


def fake_quantize(
    weight: Tensor, bias: Tensor | None, bits: int | None, *, scale: str = "max", grid: str = "symmetric",
    bias_bits: int | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Weights as the forward pass sees them: quantised to ``bits`` (None = unchanged), identity gradient."""
    if bits is None:
        return weight, bias
    check_bits(bits)
    check_scale(scale)
    check_grid(grid)
    check_bias_bits(bias_bits)
    return _FakeQuantize.apply(weight, bias, bits, scale, grid, bias_bits)
