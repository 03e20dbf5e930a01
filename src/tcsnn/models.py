"""Registered spiking architectures, built by one factory: ``create_model(name, **kwargs)``.

Every model maps input spike values z (B, C, H, W) to output spike values (B, num_classes); the class is the
earliest output spike (argmin z).  Models are plain ``nn.Sequential`` stacks of :mod:`tcsnn.nn` layers.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from tcsnn.nn import SpikingConv2d, SpikingLinear, SpikingMaxPool2d

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


@register_model
def scnn_mnist(*, in_channels: int = 1, num_classes: int = 10, image_size: int = 28) -> nn.Sequential:
    """Paper Table 1: SCNN(5,32,2) -> SCNN(5,16,2) -> FC(num_classes); padding 2, 28 -> 14 -> 7.

    SCNN(k, c, p) is a k x k spiking convolution with c channels followed by p x p max-pooling (earliest
    spike).  About 21.5K weights for MNIST.
    """
    side = image_size // 4
    return nn.Sequential(
        SpikingConv2d(in_channels, 32, 5, padding=2),
        SpikingMaxPool2d(2),
        SpikingConv2d(32, 16, 5, padding=2),
        SpikingMaxPool2d(2),
        nn.Flatten(),
        SpikingLinear(16 * side * side, num_classes),
    )


@register_model
def scnn_tiny(*, in_channels: int = 1, num_classes: int = 10, image_size: int = 8, channels: int = 16) -> nn.Sequential:
    """A small spiking CNN for the 8x8 digits demo: SCNN(3, c, 2) -> FC(num_classes)."""
    side = image_size // 2
    return nn.Sequential(
        SpikingConv2d(in_channels, channels, 3, padding=1),
        SpikingMaxPool2d(2),
        nn.Flatten(),
        SpikingLinear(channels * side * side, num_classes),
    )


@register_model
def sfc(
    *, in_features: int = 784, hidden: tuple[int, ...] | list[int] = (800,), num_classes: int = 10
) -> nn.Sequential:
    """Fully-connected spiking net, Flatten -> FC(hidden...) -> FC(num_classes) (784-800-10 by default).

    It has no max-pooling, so it exports to NIR exactly (``tcsnn export-nir``).
    """
    sizes = [in_features, *hidden, num_classes]
    layers: list[nn.Module] = [nn.Flatten()]
    layers += [SpikingLinear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    return nn.Sequential(*layers)
