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
#: Per model, the keyword overrides that make it tiny enough for a forward + backward test in seconds.
_SMOKE: dict[str, dict[str, Any]] = {}


def register_model(
    fn: Callable[..., nn.Module] | None = None, *, smoke: dict[str, Any] | None = None,
) -> Any:
    """Register a builder under its function name (keyword-only arguments, each with a default).

    Use bare (``@register_model``) or with ``smoke={...}``: keyword overrides that shrink a large model (width,
    image size) for the test that runs every registered model forward and backward (:func:`smoke_config`).
    """
    if fn is None:
        return lambda f: _register(f, smoke or {})
    return _register(fn, smoke or {})


def _register(fn: Callable[..., nn.Module], smoke: dict[str, Any]) -> Callable[..., nn.Module]:
    params = inspect.signature(fn).parameters.values()
    bad = [p.name for p in params if p.kind is not inspect.Parameter.KEYWORD_ONLY or p.default is p.empty]
    if bad:
        raise TypeError(f"model builder {fn.__name__}: arguments {bad} must be keyword-only with a default")
    unknown = sorted(set(smoke) - {p.name for p in inspect.signature(fn).parameters.values()})
    if unknown:
        raise TypeError(f"model builder {fn.__name__}: smoke options {unknown} are not among its arguments")
    _MODELS[fn.__name__] = fn
    _SMOKE[fn.__name__] = dict(smoke)
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


def smoke_config(name: str) -> dict[str, Any]:
    """:func:`default_config` with the model's smoke overrides: a tiny instance for tests."""
    return {**default_config(name), **_SMOKE.get(name, {})}


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model; ``kwargs`` override its :func:`default_config` (unknown keys: ValueError)."""
    builder = _builder(name)
    unknown = sorted(set(kwargs) - set(default_config(name)))
    if unknown:
        raise ValueError(f"model {name!r} has no options {unknown}; it takes {sorted(default_config(name))}")
    return builder(**kwargs)
