"""Export of integer weight codes: :func:`export_quantized`, :func:`save_quantized`, :func:`load_quantized_model`.

The file holds, per spiking layer, the integer codes ``k`` (int8 / int16 / int32) and the scales ``s`` (float64,
one per neuron) of :func:`tcsnn.quant.quantizer.quantize`; loading rebuilds a model whose forward pass is exactly
the quantised one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from tcsnn.io import read_torch_file, save_torch
from tcsnn.nn.introspect import raw_parameter
from tcsnn.quant.attach import select_layers, set_weight_bits
from tcsnn.quant.quantizer import (
    QuantizedWeights,
    check_bias_bits,
    check_bits,
    check_grid,
    check_scale,
    code_range,
    dequantize,
    quantize,
)

QUANT_FORMAT = "tcsnn-quantized"
QUANT_VERSION = 1
#: Name of the quantiser, recorded in exports.
SCHEME = "uniform-per-neuron, zero on the grid, bias on its row's grid"


def export_quantized(
    model: nn.Module,
    bits: int,
    *,
    scale: str = "max",
    grid: str = "symmetric",
    bias_bits: int | None = None,
    model_name: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Integer codes and scales of every spiking layer at ``bits`` bits (of the full-precision weights).

    Returns ``{"format", "version", "bits", "scale_rule", "grid", "bias_bits", "scheme", "layers": {name: {"codes",
    "bias_codes", "scale", "dtype"}}, "model", "model_kwargs", "config"}``; ``model`` / ``model_kwargs`` (the
    :func:`tcsnn.models.create_model` arguments) let :func:`load_quantized_model` rebuild the network.
    """
    check_bits(bits)
    check_scale(scale)
    check_grid(grid)
    check_bias_bits(bias_bits)
    found = select_layers(model, None)
    if not found:
        raise ValueError("the model has no spiking conv / linear layers to quantise")
    out: dict[str, Any] = {}
    for name, m in found:
        weight, bias = raw_parameter(m, "weight"), raw_parameter(m, "bias")  # full precision
        q = quantize(weight, bias, bits, scale=scale, grid=grid, bias_bits=bias_bits)
        out[name] = {"codes": q.codes.cpu(), "bias_codes": None if q.bias_codes is None else q.bias_codes.cpu(),
                     "scale": q.scale.cpu(), "dtype": str(weight.dtype).removeprefix("torch.")}
    return {"format": QUANT_FORMAT, "version": QUANT_VERSION, "bits": int(bits), "scale_rule": scale,
            "grid": grid, "bias_bits": bias_bits, "scheme": SCHEME, "layers": out, "model": model_name,
            "model_kwargs": dict(model_kwargs or {}), "config": dict(config or {})}


def save_quantized(export: dict[str, Any], path: str | Path) -> None:
    """Write an :func:`export_quantized` dict atomically (``torch.save`` format, loadable with weights_only)."""
    _check_export(export, str(path))
    save_torch(export, path)


def load_quantized(path: str | Path) -> dict[str, Any]:
    """Read and validate a file written by :func:`save_quantized`."""
    export = read_torch_file(path, "quantised model")
    _check_export(export, str(path))
    return export


def _check_export(export: Any, where: str) -> None:
    if not isinstance(export, dict) or export.get("format") != QUANT_FORMAT:
        raise ValueError(f"{where} is not a tcsnn quantised model (no '{QUANT_FORMAT}' format tag)")
    if export.get("version") != QUANT_VERSION:
        raise ValueError(f"{where} has version {export.get('version')}; this tcsnn reads version {QUANT_VERSION}")
    grid = export.get("grid", "symmetric")
    bias_bits = export.get("bias_bits") or export.get("bits")  # None (or a version-1 file without it): b bits
    ranges = (code_range(export.get("bits"), grid), code_range(bias_bits, grid))  # type: ignore[arg-type]
    for name, layer in export.get("layers", {}).items():
        for c, (lo, hi), what in ((layer["codes"], ranges[0], export["bits"]),
                                  (layer["bias_codes"], ranges[1], bias_bits)):
            if c is None:
                continue
            if c.dtype.is_floating_point or (c.numel() and (int(c.min()) < lo or int(c.max()) > hi)):
                raise ValueError(f"{where}: layer {name!r} holds codes outside the {what}-bit range")
        if layer["scale"].shape != (layer["codes"].shape[0],) or not (layer["scale"] >= 0).all():
            raise ValueError(f"{where}: layer {name!r} needs one scale >= 0 per output")
        if not torch.isfinite(layer["scale"]).all():
            raise ValueError(f"{where}: layer {name!r} has NaN or infinite scales; the file is damaged")


def apply_quantized(model: nn.Module, export: dict[str, Any]) -> None:
    """Write the dequantised weights of ``export`` into ``model`` (full precision from then on).

    The model then computes exactly what the source model computed with ``weight_bits = export["bits"]``
    and the same scale rule.  Raises ValueError when the layer names or shapes do not match.
    """
    _check_export(export, "export")
    found = dict(select_layers(model, None))
    if set(found) != set(export["layers"]):
        raise ValueError(f"export holds layers {sorted(export['layers'])}, the model has {sorted(found)}")
    for name, layer in export["layers"].items():
        m = found[name]
        q = QuantizedWeights(layer["codes"], layer["bias_codes"], layer["scale"])
        if q.codes.shape != m.weight.shape or (q.bias_codes is None) != (m.bias is None):
            raise ValueError(f"layer {name!r}: export weight {tuple(q.codes.shape)} does not fit "
                             f"{tuple(m.weight.shape)} (or bias presence differs)")
        set_weight_bits(model, None, layers=[name])
        weight, bias = raw_parameter(m, "weight"), raw_parameter(m, "bias")
        w, b = dequantize(q, weight.dtype)
        with torch.no_grad():
            weight.copy_(w)
            if b is not None:
                bias.copy_(b)


def load_quantized_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network of a :func:`save_quantized` file in eval mode; returns ``(model, config)``."""
    from tcsnn.models import create_model, default_config
    from tcsnn.nn.network import flat_layers

    export = load_quantized(path)
    if not export.get("model"):
        raise ValueError(f"{path} does not name its model; export it with model_name=... to make it loadable")
    kwargs = dict(export["model_kwargs"])
    config = export.get("config") or {}
    defaults = default_config(export["model"])
    for key, value in (("encoding", config.get("encoding")), ("alpha", config.get("alpha"))):
        if key in defaults and key not in kwargs and value is not None:  # an export of tcsnn <= 0.1's checkpoints
            kwargs[key] = value
    model = create_model(export["model"], **kwargs)
    names = [n for n, _ in flat_layers(model)]
    current = {n for n, _ in select_layers(model, None)}
    if all(k.isdigit() for k in export["layers"]) and set(export["layers"]) != current:
        # layers named by their index in a flat nn.Sequential (files of tcsnn <= 0.1): today's names, in order
        export = {**export, "layers": {names[int(k)] if int(k) < len(names) else k: v
                                       for k, v in export["layers"].items()}}
    dtypes = {layer["dtype"] for layer in export["layers"].values()}
    if len(dtypes) == 1:
        model = model.to(getattr(torch, dtypes.pop()))
    apply_quantized(model, export)
    model.eval()
    return model, export["config"]
