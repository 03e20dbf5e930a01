"""Attaching weight quantisation to a model: per-layer bit widths, the effective weights, the bit schedule.

See :mod:`tcsnn.quant.quantizer` for the quantiser itself.
"""

from __future__ import annotations

from typing import Any, Literal

from torch import Tensor, nn
from torch.nn.utils import parametrize

from tcsnn.nn.introspect import raw_parameter, spiking_layers
from tcsnn.quant.quantizer import check_bias_bits, check_bits, check_grid, check_scale, fake_quantize


class WeightQuantizer(nn.Module):
    """Parametrization of a spiking layer's ``weight`` or ``bias``: its value on the layer's b-bit grid.

    Registered with :func:`torch.nn.utils.parametrize.register_parametrization` by :func:`set_weight_bits`, so
    the layer itself knows nothing of quantisation: ``layer.weight`` / ``layer.bias`` read the quantised values
    (straight-through gradient to the full-precision ones, :func:`~tcsnn.quant.quantizer.fake_quantize`), and
    ``bits = None`` reads the full-precision values.  Weight and bias are quantised together (the bias sits on
    its row's grid), so each parametrization reads the other tensor's full-precision value from the layer.
    """

    def __init__(self, layer: nn.Module, role: Literal["weight", "bias"]) -> None:
        super().__init__()
        self.__dict__["_layer"] = layer  # a plain reference: not a submodule (no cycle in state_dict / modules)
        self.role = role
        self.bits: int | None = None
        self.scale = "max"
        self.grid = "symmetric"
        self.bias_bits: int | None = None

    def forward(self, value: Tensor) -> Tensor:
        if self.bits is None:
            return value
        layer = self.__dict__["_layer"]
        if self.role == "weight":
            bias = raw_parameter(layer, "bias")
            weight_hat, _ = fake_quantize(value, None if bias is None else bias.detach(), self.bits,
                                          scale=self.scale, grid=self.grid, bias_bits=self.bias_bits)
            return weight_hat
        _, bias_hat = fake_quantize(raw_parameter(layer, "weight").detach(), value, self.bits, scale=self.scale,
                                    grid=self.grid, bias_bits=self.bias_bits)
        assert bias_hat is not None
        return bias_hat

    def extra_repr(self) -> str:
        if self.bits is None:
            return "full precision"
        wide = "" if self.bias_bits is None else f", bias_bits={self.bias_bits}"
        return f"weight_bits={self.bits} ({self.scale}, {self.grid}{wide})"


def _plain_keys(module: nn.Module, state_dict: dict[str, Any], prefix: str, _metadata: Any) -> None:
    """state_dict hook: ``parametrizations.weight.original`` is saved as plain ``weight`` (the same for bias)."""
    for name in ("weight", "bias"):
        key = f"{prefix}parametrizations.{name}.original"
        if key in state_dict:
            state_dict[prefix + name] = state_dict.pop(key)


def _parametrized_keys(module: nn.Module, state_dict: dict[str, Any], prefix: str, *_args: Any) -> None:
    """load_state_dict pre-hook: plain ``weight`` / ``bias`` keys load into the parametrized originals."""
    for name in ("weight", "bias"):
        if parametrize.is_parametrized(module, name) and prefix + name in state_dict:
            state_dict[f"{prefix}parametrizations.{name}.original"] = state_dict.pop(prefix + name)


def _quantizers(layer: nn.Module) -> list[WeightQuantizer]:
    """The :class:`WeightQuantizer` of ``layer``'s weight and bias, registered on first use."""
    if not parametrize.is_parametrized(layer, "weight"):
        roles: list[Literal["weight", "bias"]] = ["weight"] + (["bias"] if layer.bias is not None else [])
        for role in roles:
            parametrize.register_parametrization(layer, role, WeightQuantizer(layer, role))
        layer.register_state_dict_post_hook(_plain_keys)
        layer.register_load_state_dict_pre_hook(_parametrized_keys)
    return [q for name in ("weight", "bias") if parametrize.is_parametrized(layer, name)
            for q in layer.parametrizations[name] if isinstance(q, WeightQuantizer)]


def effective_weights(layer: nn.Module) -> tuple[Tensor, Tensor | None]:
    """A spiking layer's ``(weight, bias)`` as its forward pass uses them, with the straight-through gradient.

    These are ``layer.weight`` / ``layer.bias``: quantised when :func:`set_weight_bits` attached a width.
    Tools that read weights outside ``forward`` (event simulation, NIR export, penalties) use them
    (``.detach()`` for numpy); :func:`tcsnn.nn.introspect.raw_parameter` gives the full-precision values.
    """
    return layer.weight, layer.bias


def effective_weight_layers(model: nn.Module) -> list[tuple[Tensor, Tensor | None]]:
    """:func:`effective_weights` of every spiking layer, in forward order."""
    return [effective_weights(m) for _, m in select_layers(model, None)]


def select_layers(model: nn.Module, layers: list[str] | None) -> list[tuple[str, nn.Module]]:
    """The spiking conv / linear layers (all, or those named in ``layers``); ValueError for unknown names."""
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

    The quantiser attaches from outside as a parametrization (:class:`WeightQuantizer`); the parameters
    stay the same objects (an optimiser built before keeps working) and ``state_dict`` keys stay plain
    ``weight`` / ``bias`` holding the full-precision values.
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
        if bits is None and not parametrize.is_parametrized(m, "weight") and scale is None and grid is None \
                and bias_bits in ("keep", None):
            continue  # full precision and default settings: nothing to attach
        for q in _quantizers(m):
            q.bits = bits
            if scale is not None:
                q.scale = scale
            if grid is not None:
                q.grid = grid
            if bias_bits != "keep":
                q.bias_bits = bias_bits


def get_weight_bits(model: nn.Module) -> dict[str, tuple[int | None, str, str, int | None]]:
    """Layer name -> ``(bits, scale rule, grid, bias bits)`` its forward pass uses (bits None = full precision)."""
    out: dict[str, tuple[int | None, str, str, int | None]] = {}
    for n, m in select_layers(model, None):
        qs = _quantizers(m) if parametrize.is_parametrized(m, "weight") else []
        out[n] = (qs[0].bits, qs[0].scale, qs[0].grid, qs[0].bias_bits) if qs else (None, "max", "symmetric", None)
    return out


def bits_at_epoch(quant_bits: list[int] | None, epochs_per_step: int, epoch: int) -> int | None:
    """The gradual schedule: ``quant_bits[i]`` for epochs ``[i*step, (i+1)*step)``, the last one until the end."""
    if not quant_bits:
        return None
    if epochs_per_step < 1 or epoch < 0:
        raise ValueError(f"need epochs_per_step >= 1 and epoch >= 0, got {epochs_per_step}, {epoch}")
    return int(quant_bits[min(epoch // epochs_per_step, len(quant_bits) - 1)])
