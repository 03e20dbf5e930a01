"""The model registry: ``@register_model`` builders, one factory ``create_model(name, **kwargs)``.

Every model maps input spike values z (B, C, H, W) to output spike values (B, num_classes); the class is the
earliest output spike (argmin z).  Models are plain ``nn.Sequential`` stacks of :mod:`tcsnn.nn` layers.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_MODELS)


def create_model(name: str, **kwargs: object) -> nn.Module:
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return _MODELS[name](**kwargs)
