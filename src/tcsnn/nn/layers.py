"""Spiking layers shaped like their ``torch.nn`` twins.  Inputs and outputs are spike values ``z = e^t``."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from tcsnn.functional import spike as _sp


def init_spiking_weight_(weight: Tensor, bias: Tensor | None, *, mean_sum: float = 2.0) -> None:
    r"""Initialise so that a typical neuron fires: :math:`w \sim \mathcal N(\bar w, (1/\sqrt{n})^2)`.

    ``n`` is the fan-in (+1 for the bias) and ``\bar w = mean_sum / n``, so the expected total weight
    of a neuron is ``mean_sum`` (> threshold 1).  Zero-mean schemes such as Kaiming leave most neurons
    silent, and silent neurons get no gradient.
    """
    fan_in = weight[0].numel() + (1 if bias is not None else 0)
    with torch.no_grad():
        weight.normal_(mean_sum / fan_in, 1.0 / math.sqrt(fan_in))
        if bias is not None:
            bias.normal_(mean_sum / fan_in, 1.0 / math.sqrt(fan_in))


class _SpikingLayer(nn.Module):
    """What spiking conv / linear layers share: ``weight`` / ``bias`` and their initialisation.

    The forward reads ``self.weight`` / ``self.bias``; quantisation attaches from outside as a
    ``torch.nn.utils.parametrize`` parametrization of them (:func:`tcsnn.quant.set_weight_bits`).
    """

    weight: nn.Parameter
    bias: nn.Parameter | None

    def _init_parameters(self, weight_shape: tuple[int, ...], bias: bool, dtype: torch.dtype | None) -> None:
        self.weight = nn.Parameter(torch.empty(weight_shape, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(weight_shape[0], dtype=dtype)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_spiking_weight_(self.weight, self.bias)


class SpikingLinear(_SpikingLayer):
    """Fully-connected spiking layer, (B, in_features) -> (B, out_features), eq. (4) per neuron.

    ``weight`` is (out_features, in_features); ``bias`` (out_features,) is the weight of an input at t = 0.
    """

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, *,
        backend: _sp.Backend = "auto", dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(f"in_features and out_features must be >= 1, got {in_features}, {out_features}")
        _sp._check_backend(backend)
        self.in_features, self.out_features, self.backend = in_features, out_features, backend
        self._init_parameters((out_features, in_features), bias, dtype)

    def forward(self, z: Tensor) -> Tensor:
        _sp.check_spike_input(z)
        return _sp.spike_linear(z, self.weight, self.bias, backend=self.backend)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class SpikingConv2d(_SpikingLayer):
    """Convolutional spiking layer, (B, C, H, W) -> (B, C', H', W'); padded taps never spike."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
        padding: int | str = 0, bias: bool = True, *,
        backend: _sp.Backend = "auto", dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if min(in_channels, out_channels, kernel_size, stride) < 1:
            raise ValueError("in_channels, out_channels, kernel_size and stride must all be >= 1")
        _sp._check_backend(backend)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.backend = kernel_size, stride, backend
        self.padding = padding
        self._pad = _sp.resolve_padding(padding, kernel_size, stride)
        self._init_parameters((out_channels, in_channels, kernel_size, kernel_size), bias, dtype)

    def forward(self, z: Tensor) -> Tensor:
        _sp.check_spike_input(z)
        return _sp.spike_conv2d(z, self.weight, self.bias, self.stride, self._pad, backend=self.backend)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, bias={self.bias is not None}")


class SpikingMaxPool2d(nn.Module):
    """Earliest spike (min z) of each window: max-pooling in time order.

    ``padding`` adds taps that never spike (``NO_SPIKE``) around the map, so a window that overlaps the border
    takes the earliest of its real inputs (GoogLeNet's stride-1 pooling branch keeps the map size this way).
    """

    def __init__(
        self, kernel_size: int, stride: int | None = None, padding: int = 0, *, backend: _sp.Backend = "auto",
    ) -> None:
        super().__init__()
        _sp._check_backend(backend)
        self.kernel_size, self.stride = kernel_size, stride if stride is not None else kernel_size
        self.padding, self.backend = _sp.check_pool_padding(padding, kernel_size), backend

    def forward(self, z: Tensor) -> Tensor:
        return _sp.spike_max_pool2d(z, self.kernel_size, self.stride, self.padding, backend=self.backend)

    def extra_repr(self) -> str:
        pad = f", padding={self.padding}" if self.padding else ""
        return f"kernel_size={self.kernel_size}, stride={self.stride}{pad}"
