r"""Branched spiking graphs: parallel branches whose outputs are concatenated along channels.

Concatenation only groups neurons: the output neuron ``c`` of the block *is* neuron ``c - offset_b`` of branch
``b``, so its spike time is exact for every backend (nothing is computed).  A layer after the block sees the
union of the branches' spikes; eq. (4) of each of its neurons runs over that union, which is why

.. math::  \mathrm{layer}(\mathrm{cat}(z^{(1)}, \dots, z^{(B)})) \text{ has } \sum_b W^{(b)}_C, \sum_b S^{(b)}_C

over the joint causal set -- not a sum of per-branch spike times.  Tools that compile a graph (the event
simulator, NIR export) map a concatenation to an index map, never to neurons.

:class:`SpikingBranches` is the container (children ``branch1``, ``branch2``, ... in forward order, so
neurons get names such as ``inception_3a.branch2.1``); :class:`InceptionBlock` is GoogLeNet's block.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from tcsnn.functional import spike as _sp
from tcsnn.nn.layers import SpikingConv2d, SpikingLinear, SpikingMaxPool2d

#: Prefix of the branch names inside :class:`SpikingBranches`.
BRANCH = "branch"


def spike_concat(zs: Sequence[Tensor]) -> Tensor:
    """Concatenate spike maps along channels: [(B, C_b, H, W)] -> (B, sum C_b, H, W) (or (B, N_b) -> (B, sum N_b)).

    Raises ValueError when the maps disagree in batch, spatial size, number of dimensions or dtype.
    """
    if not zs:
        raise ValueError("spike_concat needs at least one spike map")
    first = zs[0]
    for i, z in enumerate(zs[1:], start=2):
        if z.dim() != first.dim() or z.shape[0] != first.shape[0] or z.shape[2:] != first.shape[2:]:
            raise ValueError(f"branch {i} outputs shape {tuple(z.shape)}, which does not concatenate along "
                             f"channels with branch 1's {tuple(first.shape)}: batch and spatial sizes must agree")
        if z.dtype != first.dtype:
            raise TypeError(f"branch {i} outputs {z.dtype} but branch 1 outputs {first.dtype}")
    return torch.cat(list(zs), dim=1)


class SpikingBranches(nn.Module):
    """Run every branch on the same input spike map and concatenate their outputs along channels.

    ``(B, C, H, W) -> (B, sum_b C_b, H', W')``; every branch must keep the same ``H', W'``.  The branches are
    children named ``branch1, branch2, ...``, in the order their channels appear in the output.
    """

    def __init__(self, *branches: nn.Module) -> None:
        super().__init__()
        if not branches:
            raise ValueError("SpikingBranches needs at least one branch")
        for i, b in enumerate(branches, start=1):
            if not isinstance(b, nn.Module):
                raise TypeError(f"branch {i} must be an nn.Module, got {type(b).__name__}")
            self.add_module(f"{BRANCH}{i}", b)

    def branches(self) -> list[tuple[str, nn.Module]]:
        """``[(name, branch)]`` in output-channel order."""
        return list(self.named_children())

    def forward(self, z: Tensor) -> Tensor:
        return spike_concat([b(z) for _, b in self.branches()])


def _conv(c_in: int, c_out: int, k: int) -> SpikingConv2d:
    return SpikingConv2d(c_in, c_out, k, padding=k // 2)


class InceptionBlock(SpikingBranches):
    """GoogLeNet's inception block (Szegedy et al. 2015, Table 1) with spiking layers; (B, C, H, W) -> (B, C', H, W).

    ``branch1``: 1x1 conv (``c1``); ``branch2``: 1x1 (``c3_reduce``) then 3x3 (``c3``); ``branch3``: 1x1
    (``c5_reduce``) then 5x5 (``c5``); ``branch4``: 3x3 stride-1 earliest-spike pool (padded taps never spike)
    then 1x1 (``pool_proj``).  ``C' = c1 + c3 + c5 + pool_proj``.  Every convolution is "same"-padded, so all
    branches keep H x W.
    """

    def __init__(
        self, in_channels: int, c1: int, c3_reduce: int, c3: int, c5_reduce: int, c5: int, pool_proj: int,
    ) -> None:
        super().__init__(
            nn.Sequential(_conv(in_channels, c1, 1)),
            nn.Sequential(_conv(in_channels, c3_reduce, 1), _conv(c3_reduce, c3, 3)),
            nn.Sequential(_conv(in_channels, c5_reduce, 1), _conv(c5_reduce, c5, 5)),
            nn.Sequential(SpikingMaxPool2d(3, 1, padding=1), _conv(in_channels, pool_proj, 1)),
        )
        self.in_channels, self.out_channels = in_channels, c1 + c3 + c5 + pool_proj


def set_backend(model: nn.Module, backend: _sp.Backend) -> nn.Module:
    """Set the spike-time backend of every spiking layer and pool of ``model`` (in place); returns ``model``."""
    _sp._check_backend(backend)
    for m in model.modules():
        if isinstance(m, (SpikingConv2d, SpikingLinear, SpikingMaxPool2d)):
            m.backend = backend
    return model
