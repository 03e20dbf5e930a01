"""The functional core: pure tensor maps of spike values ``z = e^t``."""

from tcsnn.functional.encode import ENCODINGS, encode, encode_direct, encode_inverted
from tcsnn.functional.spike import (
    BACKENDS,
    Backend,
    check_spike_input,
    spike_conv2d,
    spike_linear,
    spike_max_pool2d,
)

__all__ = [
    "BACKENDS",
    "Backend",
    "check_spike_input",
    "ENCODINGS",
    "encode",
    "encode_direct",
    "encode_inverted",
    "spike_conv2d",
    "spike_linear",
    "spike_max_pool2d",
]
