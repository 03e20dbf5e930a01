"""The spiking layers as torch.library custom ops: registration checks and torch.compile without graph breaks."""

import pytest
import torch

from tcsnn.functional._ops import spike_conv2d_op
from tcsnn.nn import SpikingConv2d, SpikingLinear, SpikingMaxPool2d


def finite(o: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(o), o, torch.zeros_like(o))


@pytest.mark.parametrize("backend", ["analytic", "numba"])
@pytest.mark.parametrize("bias", [True, False])
def test_opcheck(backend, bias):
    g = torch.Generator().manual_seed(0)
    z = torch.exp(2 * torch.rand(2, 3, 5, 5, generator=g, dtype=torch.float64)).requires_grad_()
    w = (0.3 * torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64) + 0.2).requires_grad_()
    b = torch.randn(4, generator=g, dtype=torch.float64).requires_grad_() if bias else None
    torch.library.opcheck(spike_conv2d_op, (z, w, b, 2, 1, backend),
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))


def small_model(backend: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        SpikingConv2d(2, 4, 3, padding=1, backend=backend), SpikingMaxPool2d(2), torch.nn.Flatten(),
        SpikingLinear(4 * 3 * 3, 5, backend=backend),
    ).double()


@pytest.mark.parametrize("backend", ["numba", "analytic"])
def test_compile_traces_without_graph_breaks(backend):
    torch._dynamo.reset()
    model = small_model(backend)
    z = torch.exp(2 * torch.rand(3, 2, 6, 6, dtype=torch.float64))
    eager_z = z.clone().requires_grad_()
    eager = model(eager_z)
    finite(eager).sum().backward()
    eager_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")  # fullgraph: a graph break raises
    comp_z = z.clone().requires_grad_()
    out = compiled(comp_z)
    finite(out).sum().backward()
    torch.testing.assert_close(out, eager, rtol=0, atol=0)
    torch.testing.assert_close(comp_z.grad, eager_z.grad)
    for p, g in zip(model.parameters(), eager_grads, strict=True):
        torch.testing.assert_close(p.grad, g)
