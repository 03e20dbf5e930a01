"""Attaching weight quantisation to a model: per-layer bit widths, the effective weights, the bit schedule.

See :mod:`tcsnn.quant.quantizer` for the quantiser itself.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from tcsnn.quant.quantizer import check_bias_bits, check_bits, check_grid, check_scale


def effective_weights(layer: nn.Module) -> tuple[Tensor, Tensor | None]:
    """A spiking layer's ``(weight, bias)`` as its forward pass uses them, with the straight-through gradient.

    Tools that read weights outside ``forward`` (event simulation, NIR export, penalties) should call this
    (and ``.detach()`` for numpy).
    """
    return layer.forward_weights()


def effective_weight_layers(model: nn.Module) -> list[tuple[Tensor, Tensor | None]]:
    """:func:`effective_weights` of every spiking layer, in forward order."""
    return [effective_weights(m) for _, m in select_layers(model, None)]


def select_layers(model: nn.Module, layers: list[str] | None) -> list[tuple[str, nn.Module]]:
    """The spiking conv / linear layers (all, or those named in ``layers``); ValueError for unknown names."""
    from tcsnn.nn.introspect import spiking_layers

    found = spiking_layers(model)
    if layers is None:
        return found
    names = [n for n, _ in found]
    unknown = [n for n in layers if n not in names]
    if unknown:
        raise ValueError(f"unknown layer name(s) {unknown}; the spiking layers of this model are {names}")
    return [(n, m) for n, m in found if n in layers]


def set_weight_bits(
    model: nn.Module, bits: int | None, *, scale: str | None = None, grid: str | None = None,
    bias_bits: int | None | Literal["keep"] = "keep", layers: list[str] | None = None,
) -> None:
    """Make every spiking layer (or the named ``layers``) run on ``bits``-bit weights; None = full precision.

    ``scale`` (:data:`SCALES`) and ``grid`` (:data:`GRIDS`) set the clipping rule and the code range too;
    None keeps each layer's own (initially "max" and "symmetric").  ``bias_bits`` sets the bias codes' width
    (None: the bias is one more b-bit weight of its row, the initial setting); "keep" keeps each layer's own.
    """
    if bits is not None:
        check_bits(bits)
    if scale is not None:
        check_scale(scale)
    if grid is not None:
        check_grid(grid)
    if bias_bits != "keep":
        check_bias_bits(bias_bits)
    for _, m in select_layers(model, layers):
        m.weight_bits = bits
        if scale is not None:
            m.weight_scale = scale
        if grid is not None:
            m.weight_grid = grid
        if bias_bits != "keep":
            m.bias_bits = bias_bits


def get_weight_bits(model: nn.Module) -> dict[str, tuple[int | None, str, str, int | None]]:
    """Layer name -> ``(bits, scale rule, grid, bias bits)`` its forward pass uses (bits None = full precision)."""
    return {n: (getattr(m, "weight_bits", None), getattr(m, "weight_scale", "max"),
                getattr(m, "weight_grid", "symmetric"), getattr(m, "bias_bits", None))
            for n, m in select_layers(model, None)}


def bits_at_epoch(quant_bits: list[int] | None, epochs_per_step: int, epoch: int) -> int | None:
    """The gradual schedule: ``quant_bits[i]`` for epochs ``[i*step, (i+1)*step)``, the last one until the end."""
    if not quant_bits:
        return None
    if epochs_per_step < 1 or epoch < 0:
        raise ValueError(f"need epochs_per_step >= 1 and epoch >= 0, got {epochs_per_step}, {epoch}")
    return int(quant_bits[min(epoch // epochs_per_step, len(quant_bits) - 1)])
