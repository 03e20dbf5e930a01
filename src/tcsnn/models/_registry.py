"""The model registry: ``@register_model`` builders, one factory ``create_model(name, **kwargs)``.

Every builder takes keyword-only arguments with defaults; those defaults are the model's default config
(:func:`default_config`: input size, number of classes, input ``encoding`` and ``alpha``, ...).  Every model is
a :class:`tcsnn.nn.SpikingNetwork`: pixels in [0, 1] -> output spike values; the class is the earliest output
spike (argmin z).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a builder under its function name (keyword-only arguments, each with a default)."""
    params = inspect.signature(fn).parameters.values()
    bad = [p.name for p in params if p.kind is not inspect.Parameter.KEYWORD_ONLY or p.default is p.empty]
    if bad:
        raise TypeError(f"model builder {fn.__name__}: arguments {bad} must be keyword-only with a default")
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_MODELS)


def _builder(name: str) -> Callable[..., nn.Module]:
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return _MODELS[name]


def default_config(name: str) -> dict[str, Any]:
    """The builder's keyword defaults, e.g. ``{"in_channels": 1, "image_size": 28, "num_classes": 10,
    "encoding": "inverted", "alpha": 3.0}`` for ``scnn_mnist``."""
    return {p.name: p.default for p in inspect.signature(_builder(name)).parameters.values()}


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model; ``kwargs`` override its :func:`default_config` (unknown keys: ValueError)."""
    builder = _builder(name)
    unknown = sorted(set(kwargs) - set(default_config(name)))
    if unknown:
        raise ValueError(f"model {name!r} has no options {unknown}; it takes {sorted(default_config(name))}")
    return builder(**kwargs)
