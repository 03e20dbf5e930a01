"""The spiking convolution as ``torch.library`` custom ops, so ``torch.compile`` traces it without graph breaks.

``tcsnn::spike_conv2d`` runs a backend's ``conv_forward`` and returns ``(z_out, w_c)``;
``tcsnn::spike_conv2d_backward`` runs its ``conv_backward``.  Both have fake (meta) implementations that only
compute shapes, and the forward's autograd formula calls the backward op.  The ``reference`` backend is not
routed through here: autograd differentiates its plain PyTorch forward directly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tcsnn.functional import backends as _backends


@torch.library.custom_op("tcsnn::spike_conv2d", mutates_args=())
def spike_conv2d_op(
    z: Tensor, weight: Tensor, bias: Tensor | None, stride: int, padding: int, backend: str
) -> tuple[Tensor, Tensor]:
    """(B, C, H, W) -> (z_out, w_c), both (B, O, H', W')."""
    z_out, w_c = _backends.load(backend).conv_forward(z.contiguous(), weight.contiguous(), bias, stride, padding)
    return z_out.contiguous(), w_c.contiguous()  # the fake implementation promises contiguous outputs


@spike_conv2d_op.register_fake
def _(z: Tensor, weight: Tensor, bias: Tensor | None, stride: int, padding: int, backend: str) -> tuple[Tensor, Tensor]:
    k = weight.shape[2]
    h_out = (z.shape[2] + 2 * padding - k) // stride + 1
    w_out = (z.shape[3] + 2 * padding - k) // stride + 1
    shape = (z.shape[0], weight.shape[0], h_out, w_out)
    return z.new_empty(shape), z.new_empty(shape)


@torch.library.custom_op("tcsnn::spike_conv2d_backward", mutates_args=())
def spike_conv2d_backward_op(
    z: Tensor, weight: Tensor, bias: Tensor | None, stride: int, padding: int, backend: str,
    z_out: Tensor, w_c: Tensor, grad: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """-> (grad_z, grad_weight, grad_bias); grad_bias is (O,) zeros when there is no bias."""
    gz, gw, gb = _backends.load(backend).conv_backward(
        z.contiguous(), weight.contiguous(), bias, stride, padding, z_out, w_c, grad.contiguous()
    )
    gb = gb if gb is not None else weight.new_zeros(weight.shape[0])
    return gz.contiguous(), gw.contiguous(), gb.contiguous()


@spike_conv2d_backward_op.register_fake
def _(z, weight, bias, stride, padding, backend, z_out, w_c, grad):  # type: ignore[no-untyped-def]
    return torch.empty_like(z), torch.empty_like(weight), weight.new_empty(weight.shape[0])


def _setup_context(ctx, inputs, output) -> None:  # type: ignore[no-untyped-def]
    z, weight, bias, stride, padding, backend = inputs
    z_out, w_c = output
    ctx.save_for_backward(z, weight, bias, z_out, w_c)
    ctx.conf = (stride, padding, backend, bias is not None)


def _backward(ctx, grad_z_out, grad_w_c):  # type: ignore[no-untyped-def]
    z, weight, bias, z_out, w_c = ctx.saved_tensors
    stride, padding, backend, has_bias = ctx.conf
    if grad_z_out is None:
        grad_z_out = torch.zeros_like(z_out)
    gz, gw, gb = spike_conv2d_backward_op(z, weight, bias, stride, padding, backend, z_out, w_c, grad_z_out)
    return gz, gw, (gb if has_bias else None), None, None, None


spike_conv2d_op.register_autograd(_backward, setup_context=_setup_context)
