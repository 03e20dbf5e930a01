"""Checkpoints: one self-describing file per save, written atomically (temp file, then ``os.replace``).

A checkpoint is a dict ``{"format": FORMAT, "version": VERSION, "model": name, "model_kwargs": {...},
"state_dict": ..., "config": resolved run config, "epoch": int, "optimizer": ..., "rng": ...}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from tcsnn._io import read_torch_file, save_atomic

__all__ = ["FORMAT", "VERSION", "load_checkpoint", "load_model", "read_torch_file", "save_atomic"]

FORMAT = "tcsnn-checkpoint"
VERSION = 1


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and validate a checkpoint file; raises ValueError for corrupt or foreign files."""
    ckpt = read_torch_file(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not a tcsnn checkpoint (no '{FORMAT}' format tag)")
    if ckpt.get("version") != VERSION:
        raise ValueError(f"{path} has checkpoint version {ckpt.get('version')}; this tcsnn reads version {VERSION}")
    for key in ("model", "model_kwargs", "state_dict", "config"):
        if key not in ckpt:
            raise ValueError(f"{path} is missing the '{key}' entry")
    return ckpt


def load_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint in eval mode; returns ``(model, resolved_config)``.

    The config is the run's flat :class:`tcsnn.train.config.TrainConfig` as a dict: ``config["dataset"]``,
    ``config["data_root"]``, ``config["encoding"]`` (the kind, ``"inverted"`` or ``"direct"``),
    ``config["alpha"]``, ``config["dtype"]``, ``config["quant_bits"]``, ...  A quantisation-aware run's
    model comes back quantised to the width of its last trained epoch (``tcsnn.quant.set_weight_bits``).
    """
    from tcsnn.models import create_model

    ckpt = load_checkpoint(path)
    model = create_model(ckpt["model"], **ckpt["model_kwargs"])
    model = model.to(getattr(torch, ckpt["config"].get("dtype", "float32")))  # before loading: keep float64 exact
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not fit model {ckpt['model']!r}: {exc}") from exc
    # bit widths are not in the state_dict: a quantisation-aware run's forward used its last bit width.
    config = ckpt["config"]
    if config.get("quant_bits"):
        from tcsnn.quant.attach import bits_at_epoch, set_weight_bits

        set_weight_bits(model, bits_at_epoch(config["quant_bits"], int(config.get("quant_epochs_per_step", 1)),
                                             int(ckpt.get("epoch", 0))),
                        scale=config.get("quant_scale", "max"), grid=config.get("quant_grid", "symmetric"),
                        bias_bits=config.get("quant_bias_bits"))
    model.eval()
    return model, config
