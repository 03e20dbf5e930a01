r"""Exact spike times of non-leaky integrate-and-fire neurons (Zhou et al. 2021, eq. 1-4).

Neuron ``j`` integrates :math:`dv_j/dt = \sum_i w_{ji} u(t - t_i) e^{-(t - t_i)}` (tau = 1) and fires once,
when ``v_j`` reaches 1.  With ``z = e^t`` and ``C`` the inputs that spike before ``j`` (the causal set),

.. math::  z_j = \frac{\sum_{i \in C} w_{ji} z_i}{\sum_{i \in C} w_{ji} - 1}.            \quad (4)

``C`` is found exactly: in time order, the spike happens after the k-th input for the first prefix ``k``
with ``W_k = sum_{i<=k} w > 1`` and ``S_k / (W_k - 1) <= z_{k+1}`` (the next input has not yet arrived).
No such prefix means the neuron never fires and outputs :data:`tcsnn.NO_SPIKE` (``+inf``).  Inputs equal
to ``NO_SPIKE`` never arrive.  A bias is the weight of one more input at ``z = 1`` (t = 0).

Gradients use the causal set ``C_j = {i : z_i <= z_j}``: ``dz_j/dw_ji = (z_i - z_j)/(W_C - 1)``,
``dz_j/dz_i = w_ji/(W_C - 1)``; silent neurons get none.

Numerics: ``z_j`` is a ratio with denominator ``W_C - 1``, so rounding errors of the sums are amplified by
the condition number ``W_C / (W_C - 1)``: a relative error of about ``eps * W_C / (W_C - 1)`` for sums in
precision ``eps``.  Near threshold that is large in float32 (``eps`` = 1.2e-7): with 20 weights of 1/20 the
float32 sum lands on either side of 1 depending on the summation order, so the neuron would fire at a huge
time or not at all by chance.  Every backend therefore sums float32 layers in float64 (``eps`` = 2.2e-16) and
rounds the result: a float32 ``z_j`` is the float64 result rounded (relative error <= 2^-24 plus
``2.2e-16 * W_C / (W_C - 1)``), and backends agree on which neurons fire.

Backends (selected by name, all tested against ``"reference"``; see :mod:`tcsnn.functional.backends`):

``"reference"``
    plain PyTorch: sort, gather, cumsum; autograd differentiates it.  Readable ground truth.
``"analytic"``
    the same forward, with the closed-form backward in PyTorch.  Any device.
``"numba"``
    CPU kernels: time-ordered tap lists per output position, SIMD over output channels; deterministic for
    any thread count (:func:`tcsnn.set_num_threads`).  CPU tensors only.
``"triton"``
    Triton kernels for CUDA tensors (optional ``triton`` package).
``"auto"``
    ``"numba"`` for CPU tensors; ``"triton"`` for CUDA tensors when triton is installed, else ``"analytic"``.

Every backend except ``"reference"`` runs as the ``torch.library`` custom op ``tcsnn::spike_conv2d``
(:mod:`tcsnn.functional._ops`), so ``torch.compile`` traces the layers without graph breaks.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from tcsnn.functional import backends as _backends

Backend = Literal["auto", "reference", "analytic", "numba", "triton"]
BACKENDS: tuple[str, ...] = ("auto", "reference", "analytic", "numba", "triton")


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def _resolve_backend(backend: str, z: Tensor) -> str:
    _check_backend(backend)
    return _backends.resolve(backend, z)


def _describe(x: object) -> str:
    return str(tuple(x.shape)) if isinstance(x, Tensor) else type(x).__name__


def _check_dtype(t: Tensor, name: str) -> None:
    if t.dtype not in _backends.SUPPORTED_DTYPES:
        raise TypeError(f"{name} must be a floating-point tensor of a supported dtype (float32, float64), "
                        f"got {t.dtype}")


def check_spike_input(z: Tensor, name: str = "input") -> None:
    """Raise a specific error unless ``z`` holds valid spike values ``z = e^t`` (> 0, no NaN)."""
    if not isinstance(z, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of spike values z = exp(t), got {type(z).__name__}")
    _check_dtype(z, name)
    if torch.compiler.is_compiling():  # value checks are data-dependent branches: they would break the graph
        return
    if torch.isnan(z).any():
        raise ValueError(f"{name} contains NaN; spike values are z = exp(t) > 0, or NO_SPIKE (+inf)")
    if (z <= 0).any():
        raise ValueError(f"{name} contains values <= 0; spike values are z = exp(t) > 0, or NO_SPIKE (+inf)")


def _check_params(z: Tensor, weight: Tensor, bias: Tensor | None, ndim: int, what: str) -> None:
    """One validation in front of every backend: shapes, dtypes, devices, NaN (same errors for all)."""
    check_spike_input(z)
    if not isinstance(weight, Tensor) or weight.dim() != ndim:
        raise ValueError(f"{what} weight must be a {ndim}-d tensor, got shape {tuple(getattr(weight, 'shape', ()))}")
    _check_dtype(weight, "weight")
    if weight.dtype != z.dtype:
        raise TypeError(f"input dtype {z.dtype} does not match weight dtype {weight.dtype}")
    if weight.device != z.device:
        raise ValueError(f"input is on {z.device} but weight is on {weight.device}")
    if not torch.compiler.is_compiling() and not torch.isfinite(weight).all():
        raise ValueError(f"{what} weight contains NaN or inf")
    if bias is None:
        return
    if not isinstance(bias, Tensor) or bias.dim() != 1:
        raise ValueError(f"bias must be a 1-d tensor, got shape {tuple(getattr(bias, 'shape', ()))}")
    if bias.dtype != weight.dtype:
        raise TypeError(f"bias dtype {bias.dtype} does not match weight dtype {weight.dtype}")
    if bias.device != weight.device:
        raise ValueError(f"bias is on {bias.device} but weight is on {weight.device}")
    if bias.shape[0] != weight.shape[0]:
        raise ValueError(f"bias has {bias.shape[0]} entries but weight has {weight.shape[0]} outputs")
    if not torch.compiler.is_compiling() and not torch.isfinite(bias).all():
        raise ValueError(f"{what} bias contains NaN or inf")


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _conv(z: Tensor, weight: Tensor, bias: Tensor | None, stride: int, padding: int, backend: str) -> Tensor:
    if backend == "reference":
        from tcsnn.functional.backends import reference

        return reference.conv_forward(z, weight, bias, stride, padding)[0]
    from tcsnn.functional._ops import spike_conv2d_op

    return spike_conv2d_op(z, weight, bias, stride, padding, backend)[0]


def spike_linear(z: Tensor, weight: Tensor, bias: Tensor | None = None, *, backend: Backend = "auto") -> Tensor:
    """Spike times of a fully-connected layer (paper eq. 4).

    Args:
        z: (B, N) input spike values ``e^t``; ``NO_SPIKE`` for silent inputs.
        weight: (M, N) synaptic weights ``w_ji``.
        bias: (M,) weights of an extra input spiking at t = 0, or None.
        backend: see the module docstring.

    Returns:
        (B, M) output spike values; ``NO_SPIKE`` where a neuron never fires.
    """
    if not isinstance(z, Tensor) or z.dim() != 2:
        raise ValueError(f"spike_linear expects input of shape (batch, in_features), got {_describe(z)}")
    _check_params(z, weight, bias, 2, "spike_linear")
    if z.shape[1] != weight.shape[1]:
        raise ValueError(f"input has {z.shape[1]} features but weight expects {weight.shape[1]}")
    backend_ = _resolve_backend(backend, z)
    out = _conv(z[:, :, None, None], weight[:, :, None, None], bias, 1, 0, backend_)  # (B, M, 1, 1)
    return out[:, :, 0, 0]


def resolve_padding(padding: int | str, kernel_size: int, stride: int) -> int:
    """``torch.nn.Conv2d``-style padding: an int, ``"valid"`` (0) or ``"same"`` (stride 1, odd kernel)."""
    if padding == "valid":
        return 0
    if padding == "same":
        if stride != 1:
            raise ValueError("padding='same' is supported for stride 1 only (as in torch.nn.Conv2d)")
        if kernel_size % 2 == 0:
            raise ValueError(f"padding='same' needs an odd kernel_size, got {kernel_size}")
        return (kernel_size - 1) // 2
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be a non-negative int, 'same' or 'valid', got {padding!r}")
    return padding


def spike_conv2d(
    z: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int = 1,
    padding: int | str = 0,
    *,
    backend: Backend = "auto",
) -> Tensor:
    """Spike times of a convolutional layer: eq. (4) over each receptive field.

    Padded taps never spike (they are ``NO_SPIKE`` inputs, not zeros).

    Args:
        z: (B, C, H, W) input spike values.
        weight: (O, C, k, k) weights.
        bias: (O,) or None.
        stride, padding: as in ``torch.nn.Conv2d`` (square kernels, int stride).

    Returns:
        (B, O, H', W') output spike values.
    """
    if not isinstance(z, Tensor) or z.dim() != 4:
        raise ValueError(f"spike_conv2d expects input of shape (batch, channels, height, width), got {_describe(z)}")
    _check_params(z, weight, bias, 4, "spike_conv2d")
    n_out, n_chan, k, k2 = weight.shape
    if k != k2:
        raise ValueError(f"only square kernels are supported, got {k}x{k2}")
    if z.shape[1] != n_chan:
        raise ValueError(f"input has {z.shape[1]} channels but weight expects {n_chan}")
    stride = _check_int(stride, "stride", 1)
    pad = resolve_padding(padding, k, stride)
    h_out = (z.shape[2] + 2 * pad - k) // stride + 1
    w_out = (z.shape[3] + 2 * pad - k) // stride + 1
    if h_out < 1 or w_out < 1:
        raise ValueError(f"input {tuple(z.shape[2:])} is smaller than the kernel {k}x{k} with padding {pad}")
    return _conv(z, weight, bias, stride, pad, _resolve_backend(backend, z))


def check_pool_padding(padding: object, kernel_size: int) -> int:
    """``padding`` of an earliest-spike pool: an int in ``[0, kernel_size // 2]`` (every window keeps a real input)."""
    if isinstance(padding, bool) or not isinstance(padding, int) or not 0 <= padding <= kernel_size // 2:
        raise ValueError(f"padding must be an int in [0, kernel_size // 2], got {padding!r}")
    return padding


def spike_max_pool2d(
    z: Tensor, kernel_size: int, stride: int | None = None, padding: int = 0, *, backend: Backend = "auto"
) -> Tensor:
    """Max-pooling of spike times = the earliest spike (min z) of each window.  (B, C, H, W) -> (B, C, H', W').

    ``padding`` adds taps that never spike (``NO_SPIKE``) around the map: a window that overlaps the border takes
    the earliest of its real inputs.  Every backend computes ``-max_pool2d(-z)``, whose implicit ``-inf`` padding
    is exactly such a tap (ties: the first window entry gets the gradient); ``backend`` is validated like the
    layers' so a model can pass one name everywhere.
    """
    if not isinstance(z, Tensor) or z.dim() != 4:
        raise ValueError(f"spike_max_pool2d expects (batch, channels, height, width), got {_describe(z)}")
    check_spike_input(z)
    kernel_size = _check_int(kernel_size, "kernel_size", 1)
    stride = _check_int(stride if stride is not None else kernel_size, "stride", 1)
    padding = check_pool_padding(padding, kernel_size)
    if kernel_size > min(z.shape[2], z.shape[3]) + 2 * padding:
        raise ValueError(f"pooling kernel_size={kernel_size} is larger than the input {tuple(z.shape[2:])}"
                         + (f" with padding {padding}" if padding else ""))
    _resolve_backend(backend, z)
    return -F.max_pool2d(-z, kernel_size, stride, padding)
