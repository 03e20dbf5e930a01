"""Branched graphs: spiking concatenation, inception blocks, padded earliest-spike pooling."""

import pytest
import torch

from tcsnn import NO_SPIKE
from tcsnn.functional.spike import spike_conv2d
from tcsnn.nn import InceptionBlock, SpikingBranches, SpikingConv2d, SpikingMaxPool2d, set_backend, spike_concat


def _spikes(*shape, silent=0.2, dtype=torch.float64):
    z = torch.exp(torch.rand(*shape, dtype=dtype) * 2)
    return torch.where(torch.rand(*shape) < silent, torch.full_like(z, NO_SPIKE), z)


def test_concat_groups_neurons_and_refuses_mismatched_maps():
    a, b = _spikes(2, 3, 4, 4), _spikes(2, 5, 4, 4)
    out = spike_concat([a, b])
    assert torch.equal(out[:, :3], a) and torch.equal(out[:, 3:], b)
    with pytest.raises(ValueError, match="spatial sizes must agree"):
        spike_concat([a, _spikes(2, 5, 3, 4)])
    with pytest.raises(TypeError, match="float32"):
        spike_concat([a, b.float()])
    with pytest.raises(ValueError, match="at least one"):
        spike_concat([])
    with pytest.raises(ValueError, match="at least one branch"):
        SpikingBranches()


def test_layer_after_a_concat_sees_the_union_of_the_branches():
    """The next layer's causal set runs over both branches: equal to one conv over the concatenated map."""
    z = _spikes(2, 3, 6, 6)
    br = SpikingBranches(SpikingConv2d(3, 2, 3, padding=1), SpikingConv2d(3, 4, 1)).double()
    nxt = SpikingConv2d(6, 3, 3, padding=1).double()
    cat = torch.cat([spike_conv2d(z, br.branch1.weight, br.branch1.bias, 1, 1, backend="reference"),
                     spike_conv2d(z, br.branch2.weight, br.branch2.bias, 1, 0, backend="reference")], 1)
    expected = spike_conv2d(cat, nxt.weight, nxt.bias, 1, 1, backend="reference")
    torch.testing.assert_close(nxt(br(z)), expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("padding", [0, 1])
def test_padded_pool_takes_the_earliest_real_input(padding):
    z = _spikes(2, 3, 5, 5)
    z[0, 0] = NO_SPIKE  # a silent channel stays silent, padding or not
    out = SpikingMaxPool2d(3, 1, padding=padding)(z)
    n = 5 + 2 * padding - 2
    assert out.shape == (2, 3, n, n)
    for y in range(n):
        for x in range(n):
            ys = slice(max(0, y - padding), min(5, y - padding + 3))
            xs = slice(max(0, x - padding), min(5, x - padding + 3))
            assert torch.equal(out[:, :, y, x], z[:, :, ys, xs].amin(dim=(2, 3)))
    assert torch.isinf(out[0, 0]).all()
    with pytest.raises(ValueError, match="padding"):
        SpikingMaxPool2d(3, 1, padding=2)


def test_inception_block_is_the_same_for_every_backend_forward_and_backward():
    torch.manual_seed(1)
    block = InceptionBlock(4, 3, 2, 4, 2, 3, 2).double()
    z = _spikes(3, 4, 6, 6)
    results = {}
    for backend in ("reference", "analytic", "numba"):
        set_backend(block, backend)
        block.zero_grad()
        zi = z.clone().requires_grad_(True)
        out = block(zi)
        assert out.shape == (3, 3 + 4 + 3 + 2, 6, 6)
        fired = torch.isfinite(out)
        (out[fired] * torch.linspace(0.1, 1, int(fired.sum()), dtype=out.dtype)).sum().backward()
        results[backend] = (out.detach(), zi.grad.clone(), [p.grad.clone() for p in block.parameters()])
    ref = results["reference"]
    assert torch.isfinite(ref[0]).float().mean() > 0.3  # a meaningful share of the block fires
    for backend in ("analytic", "numba"):
        out, gz, gp = results[backend]
        torch.testing.assert_close(out, ref[0], rtol=1e-10, atol=0)
        torch.testing.assert_close(gz, ref[1], rtol=1e-8, atol=1e-10)
        for a, b in zip(gp, ref[2], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_inception_block_gradcheck_float64():
    torch.manual_seed(2)
    block = set_backend(InceptionBlock(2, 2, 2, 2, 1, 2, 1).double(), "analytic")
    z = _spikes(1, 2, 4, 4, silent=0.0).requires_grad_(True)

    def f(z):
        out = block(z)
        return torch.where(torch.isfinite(out), out, torch.zeros_like(out))

    assert torch.autograd.gradcheck(f, (z,), eps=1e-7, atol=1e-5)


def test_set_backend_refuses_unknown_names():
    with pytest.raises(ValueError, match="unknown backend"):
        set_backend(InceptionBlock(2, 1, 1, 1, 1, 1, 1), "cuda-magic")
