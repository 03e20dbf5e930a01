"""Spike-time backends behind one contract, and the registry that picks one per device.

Every backend module exposes::

    conv_forward(z, weight, bias, stride, padding) -> (z_out, w_c)
    conv_backward(z, weight, bias, stride, padding, z_out, w_c, grad) -> (grad_z, grad_weight, grad_bias | None)

with ``z`` (B, C, H, W), ``weight`` (O, C, k, k), ``bias`` (O,) or None, ints ``stride >= 1`` and
``padding >= 0`` (validated by the caller, :mod:`tcsnn.functional.spike`).  ``z_out`` and ``w_c`` are
(B, O, H', W'): the output spike values (``NO_SPIKE`` where a neuron never fires) and the causal weight sums
``W_C = sum_{i in C} w_ji`` (the bias weight included when the bias, an input at ``z = 1``, is causal).
Padded taps never spike.  ``conv_backward`` is the sort-free causal-set rule with ``C_j = {i : z_i <= z_j}``:
``dz_j/dw_ji = (z_i - z_j) / (W_C - 1)``, ``dz_j/dz_i = w_ji / (W_C - 1)``; silent outputs give no gradient.
A linear layer is the 1x1 convolution of (B, N, 1, 1).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from types import ModuleType

import torch


@dataclass(frozen=True)
class BackendInfo:
    """A registered backend: where it lives and what it runs on."""

    name: str
    module: str  # import path of the module implementing the contract
    devices: tuple[str, ...]  # torch device types, e.g. ("cpu",)
    dtypes: tuple[torch.dtype, ...]
    summary: str


SUPPORTED_DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.float64)

REGISTRY: dict[str, BackendInfo] = {
    info.name: info
    for info in (
        BackendInfo("reference", "tcsnn.functional.backends.reference", ("cpu", "cuda", "mps", "xpu"),
                    SUPPORTED_DTYPES, "plain PyTorch sort + gather + cumsum; autograd differentiates it"),
        BackendInfo("analytic", "tcsnn.functional.backends.analytic", ("cpu", "cuda", "mps", "xpu"),
                    SUPPORTED_DTYPES, "the reference forward, closed-form backward over the causal set"),
        BackendInfo("numba", "tcsnn.functional.backends.numba_cpu", ("cpu",), SUPPORTED_DTYPES,
                    "CPU kernels: time-ordered tap lists, SIMD over output channels, deterministic backward"),
        BackendInfo("triton", "tcsnn.functional.backends.triton_gpu", ("cuda",), SUPPORTED_DTYPES,
                    "Triton kernels for CUDA (optional extra: pip install tcsnn[triton])"),
    )
}


def load(name: str) -> ModuleType:
    """Import a backend's module (lazily: numba and triton load only when used)."""
    return importlib.import_module(REGISTRY[name].module)


def is_available(name: str) -> bool:
    """Whether a backend can run here (its module imports and, for Triton, triton and a GPU are present)."""
    try:
        module = load(name)
    except ImportError:
        return False
    check = getattr(module, "is_available", None)
    return bool(check()) if check is not None else True


def auto_backend(device: torch.device) -> str:
    """The default per device: ``numba`` on CPU, ``triton`` on CUDA when importable, else ``analytic``."""
    if device.type == "cpu":
        return "numba"
    if device.type == "cuda" and is_available("triton"):
        return "triton"
    return "analytic"


def devices(name: str) -> tuple[str, ...]:
    """Device types a backend accepts; Triton's interpreter (``TRITON_INTERPRET=1``) runs on CPU tensors too."""
    found = REGISTRY[name].devices
    if name == "triton" and os.environ.get("TRITON_INTERPRET") == "1":
        found = (*found, "cpu")
    return found


def resolve(name: str, z: torch.Tensor) -> str:
    """Map ``"auto"`` to a concrete backend for ``z``'s device and check the backend supports ``z``."""
    if name == "auto":
        name = auto_backend(z.device)
    info = REGISTRY[name]
    if z.device.type not in devices(name):
        raise ValueError(f"backend {name!r} runs on {', '.join(devices(name))} tensors, got a tensor on {z.device}")
    if z.dtype not in info.dtypes:
        raise TypeError(f"backend {name!r} supports {', '.join(map(str, info.dtypes))}, got {z.dtype}")
    if name == "triton" and not is_available("triton"):
        raise ImportError("backend 'triton' needs the triton package and a CUDA GPU: pip install tcsnn[triton]")
    return name


__all__ = ["BackendInfo", "REGISTRY", "SUPPORTED_DTYPES", "auto_backend", "devices", "is_available", "load", "resolve"]
