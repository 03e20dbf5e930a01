"""Checkpoints: one self-describing file per save, written atomically (temp file, then ``os.replace``).

A checkpoint is a dict ``{"format": FORMAT, "version": VERSION, "model": name, "model_kwargs": {...},
"state_dict": ..., "config": resolved run config, "epoch": int, "optimizer": ...}`` (plus ``"train_state_dict"``
and ``"weight_average"`` for a run with a weight average).  ``model_kwargs`` include the input ``encoding`` and
``alpha``: the model rebuilt from them starts with its encoder, so the checkpoint alone says how to feed it.

Version 1 files (models as flat ``nn.Sequential`` stacks: keys ``0.weight``, ``3.weight``, ...; the encoding only
in the run config) are upgraded when read: their keys are mapped to the layer names of today's models, in
forward order, and ``encoding`` / ``alpha`` are moved from the config into ``model_kwargs``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from tcsnn.io import read_torch_file, save_torch

__all__ = [
    "FORMAT", "VERSION", "check_finite_weights", "load_checkpoint", "load_model", "read_torch_file", "save_atomic",
]

FORMAT = "tcsnn-checkpoint"
VERSION = 2
#: Versions :func:`load_checkpoint` reads (older ones are upgraded in memory).
READABLE_VERSIONS = (1, 2)


def save_atomic(obj: dict[str, Any], path: str | Path) -> None:
    """Write a checkpoint through :func:`tcsnn.io.save_torch` (exclusive temp file, fsync, rename)."""
    save_torch(obj, path)


def check_finite_weights(state_dict: dict[str, Any], where: Any) -> None:
    """ValueError naming the first floating-point tensor that holds NaN or infinite values."""
    for name, t in state_dict.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{where}: weights hold NaN or infinite values ({name!r}); the run diverged or the "
                             "file is damaged")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and validate a checkpoint file, upgraded to :data:`VERSION`; ValueError for corrupt or foreign files."""
    ckpt = read_torch_file(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not a tcsnn checkpoint (no '{FORMAT}' format tag)")
    if ckpt.get("version") not in READABLE_VERSIONS:
        raise ValueError(f"{path} has checkpoint version {ckpt.get('version')}; this tcsnn reads versions "
                         f"{', '.join(map(str, READABLE_VERSIONS))}")
    for key in ("model", "model_kwargs", "state_dict", "config"):
        if key not in ckpt:
            raise ValueError(f"{path} is missing the '{key}' entry")
    if not isinstance(ckpt["state_dict"], dict) or not isinstance(ckpt["config"], dict):
        raise ValueError(f"{path} is damaged: its state_dict or config is not a dict")
    check_finite_weights(ckpt["state_dict"], path)
    if isinstance(ckpt.get("train_state_dict"), dict):
        check_finite_weights(ckpt["train_state_dict"], path)
    if ckpt["version"] == 1:
        ckpt = upgrade_v1(ckpt, where=str(path))
    return ckpt


def _v1_encoding(config: dict[str, Any]) -> dict[str, Any]:
    """``{"encoding": kind, "alpha": a}`` of a version-1 run config (flat, or ``encoding: {kind, alpha}``)."""
    enc = config.get("encoding")
    if isinstance(enc, dict):
        return {"encoding": enc.get("kind"), "alpha": enc.get("alpha")}
    return {"encoding": enc, "alpha": config.get("alpha")}


def upgrade_v1(ckpt: dict[str, Any], *, where: str = "checkpoint") -> dict[str, Any]:
    """A version-1 checkpoint in the version-2 layout (see the module docstring); the input is not changed."""
    from tcsnn.models import create_model, default_config
    from tcsnn.nn.network import flat_layers

    kwargs = dict(ckpt["model_kwargs"])
    try:
        defaults = default_config(ckpt["model"])
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc
    for key, value in _v1_encoding(ckpt["config"]).items():
        if key in defaults and key not in kwargs and value is not None:
            kwargs[key] = value
    names = [name for name, _ in flat_layers(create_model(ckpt["model"], **kwargs))]

    def rename(state: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for key, value in state.items():
            head, dot, rest = key.partition(".")
            if head.isdigit() and int(head) < len(names):
                key = names[int(head)] + dot + rest
            out[key] = value
        return out

    new = {**ckpt, "version": VERSION, "model_kwargs": kwargs, "state_dict": rename(ckpt["state_dict"])}
    if "train_state_dict" in ckpt:
        new["train_state_dict"] = rename(ckpt["train_state_dict"])
    average = ckpt.get("weight_average")
    if isinstance(average, dict) and isinstance(average.get("params"), dict):  # the oldest average layout
        new["weight_average"] = {**average, "params": rename(average["params"])}
    return new


def load_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint in eval mode; returns ``(model, resolved_config)``.

    The config is the run's flat :class:`tcsnn.train.config.TrainConfig` as a dict: ``config["dataset"]``,
    ``config["data_root"]``, ``config["encoding"]`` (the kind, ``"inverted"`` or ``"direct"``),
    ``config["alpha"]``, ``config["dtype"]``, ``config["quant_bits"]``, ...  A quantisation-aware run's
    model comes back quantised to the width of its last trained epoch (``tcsnn.quant.set_weight_bits``), and
    a run trained with ``normalize`` whitens its pixels before the encoder (:func:`tcsnn.data.attach_whitening`).
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
    if config.get("normalize"):
        from tcsnn.data.transforms import attach_whitening

        attach_whitening(model, config["dataset"])
    model.eval()
    return model, config
