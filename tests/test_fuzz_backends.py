"""Every backend against ``reference`` on random layers: values, the spike / no-spike pattern and gradients.

Kept to a few seconds: small shapes, a fixed number of seeded draws covering equal-time inputs, padded taps,
negative weights, silent neurons, strides 1-3, paddings 0-2 and kernels 1-5.
"""

import pytest
import torch

from tcsnn.functional import backends, spike_conv2d

INF = float("inf")
FAST = tuple(n for n in ("analytic", "numba", "triton") if "cpu" in backends.devices(n) and backends.is_available(n))


def draw(seed: int, dtype: torch.dtype):
    g = torch.Generator().manual_seed(seed)
    r = lambda *a: int(torch.randint(a[0], a[1] + 1, (1,), generator=g))  # noqa: E731
    k, stride, pad = r(1, 5), r(1, 3), r(0, 2)
    side = r(max(1, k - 2 * pad), 8)
    n_in, n_out, batch = r(1, 4), r(1, 9), r(1, 3)
    z = torch.exp(3 * torch.rand(batch, n_in, side, side, generator=g, dtype=torch.float64))
    z = torch.where(torch.rand(z.shape, generator=g) < 0.15, torch.full_like(z, INF), z)  # silent inputs
    ties = torch.rand(z.shape, generator=g) < 0.2
    z = torch.where(ties & torch.isfinite(z), torch.full_like(z, 2.0), z)  # many inputs at the same time
    w = 0.6 * torch.randn(n_out, n_in, k, k, generator=g, dtype=torch.float64) + 0.15  # mixed signs
    b = torch.randn(n_out, generator=g, dtype=torch.float64) if r(0, 1) else None
    return z.to(dtype), w.to(dtype), (b.to(dtype) if b is not None else None), stride, pad


def run(backend, z, w, b, stride, pad, gout):
    leaves = [t.clone().requires_grad_() for t in (z, w) + ((b,) if b is not None else ())]
    out = spike_conv2d(leaves[0], leaves[1], leaves[2] if b is not None else None, stride, pad, backend=backend)
    g = gout if gout is not None else torch.randn(out.shape, generator=torch.Generator().manual_seed(9)).to(z.dtype)
    torch.where(torch.isfinite(out), out * g, torch.zeros_like(out)).sum().backward()
    return out.detach(), [t.grad for t in leaves], g


@pytest.fixture
def one_torch_thread():
    """Tiny tensors: torch's thread pool only adds start-up latency (large on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fuzz_against_reference(backend, dtype, one_torch_thread):
    rtol = 1e-12 if dtype == torch.float64 else 1e-6
    n_fired = n_silent = 0
    for seed in range(40):
        z, w, b, stride, pad = draw(seed, dtype)
        ref, ref_grads, g = run("reference", z, w, b, stride, pad, None)
        out, grads, _ = run(backend, z, w, b, stride, pad, g)
        fired = torch.isfinite(ref)
        assert torch.equal(torch.isfinite(out), fired), f"seed {seed}: spike / no-spike pattern differs"
        n_fired, n_silent = n_fired + int(fired.sum()), n_silent + int((~fired).sum())
        if fired.any():
            rel = ((out[fired] - ref[fired]).abs() / ref[fired]).max().item()
            assert rel <= rtol, f"seed {seed}: relative error {rel}"
        for a, r in zip(grads, ref_grads, strict=True):
            scale = r.abs().max().item() + 1.0
            assert (a - r).abs().max().item() <= (1e-9 if dtype == torch.float64 else 1e-4) * scale, seed
    assert n_fired > 100 and n_silent > 100  # both cases exercised
