"""The exact spike-time core: backends agree, gradients are right, edge cases hold."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.autograd import gradcheck

from tcsnn import NO_SPIKE
from tcsnn.functional import spike_conv2d, spike_linear, spike_max_pool2d

INF = float("inf")
FAST = ("analytic", "numba")


def finite(o: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(o), o, torch.zeros_like(o))


def rand_inputs(*shape, dtype=torch.float64, silent=0.1, span=3.0):
    z = torch.exp(span * torch.rand(*shape, dtype=dtype))
    z[torch.rand(*shape) < silent] = INF
    return z


def assert_same_spikes(a: torch.Tensor, b: torch.Tensor, rtol: float) -> None:
    fa, fb = torch.isfinite(a), torch.isfinite(b)
    assert torch.equal(fa, fb), f"{int((fa != fb).sum())} spike/no-spike disagreements"
    if fa.any():
        rel = ((a[fa] - b[fa]).abs() / b[fa]).max().item()
        assert rel <= rtol, rel


def hand_spike(t_in: list[float], w: list[float]) -> float:
    """Closed form by hand for a tiny neuron, scanning prefixes in time order."""
    order = sorted(range(len(t_in)), key=lambda i: t_in[i])
    wsum = ssum = 0.0
    for n, i in enumerate(order):
        if math.isinf(t_in[i]):
            break
        wsum += w[i]
        ssum += w[i] * math.exp(t_in[i])
        nxt = math.exp(t_in[order[n + 1]]) if n + 1 < len(order) else INF
        if wsum > 1 and ssum / (wsum - 1) <= nxt:
            return ssum / (wsum - 1)
    return INF


# ---------------------------------------------------------------- forward agreement


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-12), (torch.float32, 1e-3)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_backends_agree(backend, dtype, rtol, bias):
    z = rand_inputs(16, 30, dtype=dtype)
    w = (0.4 * torch.randn(12, 30) + 0.08).to(dtype)  # mixed-sign weights
    b = torch.randn(12, dtype=dtype) if bias else None
    ref = spike_linear(z, w, b, backend="reference")
    assert 0.2 < torch.isfinite(ref).float().mean() < 1.0  # both firing and silent neurons present
    assert_same_spikes(spike_linear(z, w, b, backend=backend), ref, rtol)


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("stride,padding,k", [(1, 0, 3), (1, 2, 5), (2, 1, 3), (1, "same", 3), (3, 0, 2)])
def test_conv_backends_agree(backend, stride, padding, k):
    z = rand_inputs(3, 4, 11, 11)
    w = 0.3 * torch.randn(6, 4, k, k, dtype=torch.float64) + 0.05
    b = torch.randn(6, dtype=torch.float64)
    ref = spike_conv2d(z, w, b, stride, padding, backend="reference")
    out = spike_conv2d(z, w, b, stride, padding, backend=backend)
    assert out.shape == ref.shape == torch.nn.functional.conv2d(z, w, b, stride, padding).shape
    assert_same_spikes(out, ref, 1e-12)


def test_linear_matches_hand_computation():
    t_in = [0.5, 0.1, 2.0, INF]
    w = [0.7, 0.6, 3.0, 5.0]
    expected = hand_spike(t_in, w)
    z = torch.tensor([[math.exp(t) for t in t_in]], dtype=torch.float64)
    wt = torch.tensor([w], dtype=torch.float64)
    for backend in ("reference", *FAST):
        assert spike_linear(z, wt, backend=backend).item() == pytest.approx(expected, rel=1e-14)
    # inputs at 0.1 and 0.5 give W = 1.3 > 1 and z = (0.6 e^0.1 + 0.7 e^0.5) / 0.3, before e^2
    assert expected == pytest.approx((0.6 * math.exp(0.1) + 0.7 * math.exp(0.5)) / 0.3)


def test_conv_equals_linear_on_each_patch():
    z = rand_inputs(2, 3, 6, 6)
    w = 0.3 * torch.randn(5, 3, 3, 3, dtype=torch.float64) + 0.1
    b = torch.randn(5, dtype=torch.float64)
    out = spike_conv2d(z, w, b, 1, 1, backend="numba")
    zp = torch.nn.functional.pad(z, (1, 1, 1, 1), value=INF)  # padded taps never spike
    for y in range(6):
        for x in range(6):
            patch = zp[:, :, y : y + 3, x : x + 3].reshape(2, -1)
            expected = spike_linear(patch, w.reshape(5, -1), b, backend="reference")
            assert_same_spikes(out[:, :, y, x], expected, 1e-12)


# ---------------------------------------------------------------- edge cases


@pytest.mark.parametrize("backend", ("reference", *FAST))
def test_ties_give_the_same_time_in_any_order(backend):
    # three inputs at exactly the same time, weights only large enough together
    z = torch.tensor([[2.0, 2.0, 2.0, 20.0]], dtype=torch.float64)
    w = torch.tensor([[0.4, 0.4, 0.4, 10.0]], dtype=torch.float64)
    out = spike_linear(z, w, backend=backend).item()
    assert out == pytest.approx(1.2 * 2.0 / 0.2)  # all three tied inputs are causal, the 4th is not
    perm = torch.tensor([2, 3, 0, 1])
    assert spike_linear(z[:, perm], w[:, perm], backend=backend).item() == pytest.approx(out, rel=1e-15)


@pytest.mark.parametrize("backend", ("reference", *FAST))
def test_silent_neurons_and_silent_inputs(backend):
    z = torch.tensor([[1.5, 2.0, INF], [INF, INF, INF]], dtype=torch.float64)
    w = torch.tensor([[0.5, 0.4, 9.0], [-1.0, 2.0, 2.0], [3.0, 0.0, 0.0]], dtype=torch.float64)
    out = spike_linear(z, w, backend=backend)
    assert math.isinf(out[0, 0])  # 0.9 < 1: never reaches threshold; the heavy input never arrives
    assert out[0, 1].item() == pytest.approx(hand_spike([math.log(1.5), math.log(2.0), INF], [-1.0, 2.0, 2.0]))
    assert out[0, 2].item() == pytest.approx(3.0 * 1.5 / 2.0)
    assert torch.isinf(out[1]).all()  # no input arrives: nothing fires
    b = torch.tensor([2.0, 0.5, -1.0], dtype=torch.float64)  # bias alone (input at z = 1) fires at 2/(2-1)
    out_b = spike_linear(z[1:], w, b, backend=backend)
    assert out_b[0, 0].item() == pytest.approx(2.0)
    assert torch.isinf(out_b[0, 1:]).all()


@pytest.mark.parametrize("backend", ("reference", *FAST))
def test_negative_weights_can_prevent_a_spike(backend):
    # 2 arrives first but a strong inhibitory input right after keeps v below threshold for ever
    z = torch.tensor([[1.0, 1.01]], dtype=torch.float64)
    w = torch.tensor([[1.5, -3.0], [1.5, 0.0]], dtype=torch.float64)
    out = spike_linear(z, w, backend=backend)
    assert math.isinf(out[0, 0]) and out[0, 1].item() == pytest.approx(3.0)


@pytest.mark.parametrize("backend", FAST)
def test_huge_alpha_is_shift_invariant(backend):
    # t -> t + 600 multiplies every z by e^600 (finite in float64): spike times shift by the same amount
    z = rand_inputs(4, 20, silent=0.0)
    w = 0.3 * torch.randn(6, 20, dtype=torch.float64) + 0.1
    base = spike_linear(z, w, backend=backend)
    shifted = spike_linear(z * math.exp(600.0), w, backend=backend)
    assert_same_spikes(torch.log(shifted) - 600.0, torch.log(base), 1e-12)


def test_padding_only_window_is_silent():
    # a 1x1 input with padding 2 and a 5x5 kernel: only the centre tap is real
    z = torch.full((1, 1, 1, 1), 2.0, dtype=torch.float64)
    w = torch.full((1, 1, 5, 5), 3.0, dtype=torch.float64)
    for backend in ("reference", *FAST):
        out = spike_conv2d(z, w, None, 1, 2, backend=backend)
        assert out.shape == (1, 1, 1, 1) and out.item() == pytest.approx(3.0 * 2.0 / 2.0)


@pytest.mark.parametrize("backend", ("reference", *FAST))
def test_max_pool_is_earliest_spike(backend):
    z = torch.tensor([[[[3.0, INF], [2.0, 5.0]]]])
    assert spike_max_pool2d(z, 2, backend=backend).item() == 2.0
    assert math.isinf(spike_max_pool2d(torch.full((1, 1, 2, 2), INF), 2, backend=backend).item())


@pytest.mark.parametrize("kernel_size,stride", [(2, 2), (3, 2), (2, 1)])
def test_pool_is_the_window_minimum_and_routes_the_gradient_to_it(kernel_size, stride):
    z = rand_inputs(2, 3, 7, 7).requires_grad_()
    out = spike_max_pool2d(z, kernel_size, stride)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    (finite(out) * g).sum().backward()
    expected_grad = torch.zeros_like(z)
    for oy in range(out.shape[2]):
        for ox in range(out.shape[3]):
            win = z.detach()[:, :, oy * stride : oy * stride + kernel_size, ox * stride : ox * stride + kernel_size]
            flat = win.reshape(2, 3, -1)
            assert torch.equal(out[:, :, oy, ox], flat.min(dim=2).values)
            arg = flat.argmin(dim=2)
            for b in range(2):
                for c in range(3):
                    if torch.isfinite(out[b, c, oy, ox]):
                        dy, dx = divmod(int(arg[b, c]), kernel_size)
                        expected_grad[b, c, oy * stride + dy, ox * stride + dx] += g[b, c, oy, ox]
    torch.testing.assert_close(z.grad, expected_grad, rtol=0, atol=0)


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize("backend", ("reference", *FAST))
def test_gradcheck_linear(backend):
    z = rand_inputs(4, 10, silent=0.1).requires_grad_()
    w = (0.5 * torch.randn(5, 10, dtype=torch.float64) + 0.2).requires_grad_()
    b = torch.randn(5, dtype=torch.float64).requires_grad_()
    assert gradcheck(lambda z, w, b: finite(spike_linear(z, w, b, backend=backend)), (z, w, b))


@pytest.mark.parametrize("backend", ("reference", *FAST))
def test_gradcheck_conv(backend):
    z = rand_inputs(2, 2, 5, 5, silent=0.1).requires_grad_()
    w = (0.3 * torch.randn(3, 2, 3, 3, dtype=torch.float64) + 0.1).requires_grad_()
    b = torch.randn(3, dtype=torch.float64).requires_grad_()
    assert gradcheck(lambda z, w, b: finite(spike_conv2d(z, w, b, 2, 1, backend=backend)), (z, w, b))


@pytest.mark.parametrize("backend", FAST)
def test_backward_matches_reference(backend):
    z = rand_inputs(4, 3, 8, 8)
    w = 0.3 * torch.randn(5, 3, 3, 3, dtype=torch.float64) + 0.08
    b = torch.randn(5, dtype=torch.float64)
    grads = {}
    for be in ("reference", backend):
        zz, ww, bb = (t.clone().requires_grad_() for t in (z, w, b))
        out = spike_conv2d(zz, ww, bb, 1, 1, backend=be)
        g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        (finite(out) * g).sum().backward()
        grads[be] = (zz.grad, ww.grad, bb.grad)
    for a, r in zip(grads[backend], grads["reference"], strict=True):
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------- properties


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 8), m=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_permuting_inputs_and_weights_changes_nothing(n, m, seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.exp(3 * torch.rand(3, n, generator=g, dtype=torch.float64))
    w = torch.randn(m, n, generator=g, dtype=torch.float64) + 0.3
    perm = torch.randperm(n, generator=g)
    a = spike_linear(z, w, backend="numba")
    b = spike_linear(z[:, perm], w[:, perm], backend="numba")
    assert_same_spikes(a, b, 1e-12)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 8), seed=st.integers(0, 10_000), bump=st.floats(0.0, 2.0))
def test_raising_the_earliest_weight_never_delays_the_spike(n, seed, bump):
    g = torch.Generator().manual_seed(seed)
    z = torch.exp(3 * torch.rand(1, n, generator=g, dtype=torch.float64))
    w = torch.randn(1, n, generator=g, dtype=torch.float64) + 0.4
    first = int(z.argmin())
    w2 = w.clone()
    w2[0, first] += bump
    before, after = spike_linear(z, w, backend="numba").item(), spike_linear(z, w2, backend="numba").item()
    assert after <= before * (1 + 1e-12)


# ---------------------------------------------------------------- memory and errors


def test_conv_fwd_bwd_memory_under_1gb():
    """fwd+bwd of SpikingConv2d(64, 64, 3, padding=1), batch 32, 32x32: peak RSS growth < 1 GB (own process)."""
    import subprocess
    import sys

    code = (
        "import resource, torch\n"
        "from tcsnn.nn import SpikingConv2d\n"
        "torch.manual_seed(0)\n"
        "layer = SpikingConv2d(64, 64, 3, padding=1)\n"
        "z = torch.exp(3 * torch.rand(32, 64, 32, 32)).requires_grad_()\n"
        "layer(z[:1, :, :4, :4]).sum()\n"  # compile the kernels first
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "out = layer(z)\n"
        "torch.where(torch.isfinite(out), out, 0).sum().backward()\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024)\n"
    )
    extra = int(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    assert extra < 1e9, f"{extra / 1e9:.2f} GB"


@pytest.mark.parametrize(
    "call,err,match",
    [
        (lambda: spike_linear(torch.ones(3), torch.ones(2, 3)), ValueError, "batch, in_features"),
        (lambda: spike_linear(torch.ones(2, 4), torch.ones(2, 3)), ValueError, "4 features"),
        (lambda: spike_linear(torch.ones(2, 3), torch.ones(2, 3, dtype=torch.float64)), TypeError, "dtype"),
        (lambda: spike_linear(torch.ones(2, 3), torch.ones(2, 3), backend="cuda"), ValueError, "unknown backend"),
        (lambda: spike_conv2d(torch.ones(1, 2, 5, 5), torch.ones(1, 3, 3, 3)), ValueError, "channels"),
        (lambda: spike_conv2d(torch.ones(1, 1, 5, 5), torch.ones(1, 1, 2, 2), padding="same"), ValueError, "odd"),
        (lambda: spike_conv2d(torch.ones(1, 1, 5, 5), torch.ones(1, 1, 3, 3), None, 2, "same"), ValueError, "stride"),
        (lambda: spike_conv2d(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 3, 3)), ValueError, "smaller than the kernel"),
    ],
)
def test_bad_arguments_are_named(call, err, match):
    with pytest.raises(err, match=match):
        call()


def test_no_spike_constant():
    assert NO_SPIKE == float("inf")


def test_compiled_kernels_are_cached_outside_the_package():
    from pathlib import Path

    from tcsnn.functional import _numba_kernels as nk

    cache = Path(nk.numba.config.CACHE_DIR).resolve()
    package = Path(nk.__file__).resolve().parents[1]
    assert cache.parts[: len(package.parts)] != package.parts
