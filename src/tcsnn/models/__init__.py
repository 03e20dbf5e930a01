"""Registered spiking architectures, one file per family, built by one factory: ``create_model(name, **kwargs)``.

Every model maps input spike values z (B, C, H, W) to output spike values (B, num_classes); the class is the
earliest output spike (argmin z).
"""

from tcsnn.models import fc, scnn  # noqa: F401  (registers the builders)
from tcsnn.models._registry import _MODELS, create_model, list_models, register_model

__all__ = ["_MODELS", "create_model", "list_models", "register_model"]
