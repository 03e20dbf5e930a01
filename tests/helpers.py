"""Small shared test fixtures-as-functions (imported by the test modules; pytest puts tests/ on sys.path)."""

import torch

from tcsnn.models import create_model

#: A 4-channel scnn_tiny for 8x8 inputs: a whole network that runs in milliseconds.
TINY = {"image_size": 8, "channels": 4}


def tiny_model() -> torch.nn.Module:
    return create_model("scnn_tiny", **TINY).eval()
