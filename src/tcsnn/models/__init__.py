"""Registered spiking architectures, one file per family, built by one factory: ``create_model(name, **kwargs)``.

Every model is a :class:`tcsnn.nn.SpikingNetwork`: its encoder maps pixels (B, C, H, W) in [0, 1] to input spike
values, its body maps those to output spike values (B, num_classes); the class is the earliest output spike.
"""

from tcsnn.models import fc, googlenet, scnn, vgg  # noqa: F401  (registers the builders)
from tcsnn.models._registry import _MODELS, create_model, default_config, list_models, register_model, smoke_config

__all__ = ["_MODELS", "create_model", "default_config", "list_models", "register_model", "smoke_config"]
