"""The backend contract and registry, the one validation layer in front of it, and the numerical edge cases."""

import math

import pytest
import torch
from torch.autograd import gradcheck

import tcsnn
from tcsnn.functional import backends, spike_conv2d, spike_linear, spike_max_pool2d

INF = float("inf")
#: Backends that run on CPU tensors here (Triton too when its interpreter is on: TRITON_INTERPRET=1).
CPU_BACKENDS = tuple(n for n in ("analytic", "numba", "triton") if "cpu" in backends.devices(n)
                     and backends.is_available(n))


def finite(o: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(o), o, torch.zeros_like(o))


# ---------------------------------------------------------------- registry


def test_every_backend_module_implements_the_contract():
    for name in ("reference", "analytic", "numba"):
        module = backends.load(name)
        assert callable(module.conv_forward) and callable(module.conv_backward), name
        info = backends.REGISTRY[name]
        assert set(info.dtypes) == {torch.float32, torch.float64}


def test_auto_picks_numba_on_cpu_and_triton_or_analytic_on_cuda():
    assert backends.auto_backend(torch.device("cpu")) == "numba"
    expected = "triton" if backends.is_available("triton") else "analytic"
    assert backends.auto_backend(torch.device("cuda")) == expected


def test_triton_module_import_never_fails_without_triton():
    # the registry imports it lazily; without triton (or without the module) it reports unavailable
    assert isinstance(backends.is_available("triton"), bool)


def test_backend_refuses_a_device_it_does_not_support():
    if "cpu" in backends.devices("triton"):
        pytest.skip("Triton interpreter is on: CPU tensors are allowed")
    with pytest.raises((ValueError, ImportError), match="triton"):
        spike_linear(torch.ones(1, 2), torch.ones(1, 2), backend="triton")


def test_contract_outputs_and_causal_weight_sums():
    # z_out and W_C of one neuron by hand: inputs at 2 and 3 with weights 0.8, 0.7 fire at (1.6 + 2.1) / 0.5
    z = torch.tensor([[2.0, 3.0, 50.0]], dtype=torch.float64)[:, :, None, None]
    w = torch.tensor([[0.8, 0.7, 5.0]], dtype=torch.float64)[:, :, None, None]
    for name in ("reference", "analytic", "numba"):
        z_out, w_c = backends.load(name).conv_forward(z, w, None, 1, 0)
        assert z_out.shape == w_c.shape == (1, 1, 1, 1)
        assert z_out.item() == pytest.approx(3.7 / 0.5) and w_c.item() == pytest.approx(1.5), name


# ---------------------------------------------------------------- validation (same errors on every backend)


BAD_CALLS = [
    (lambda b: spike_linear(torch.tensor([[1.0, math.nan]]), torch.ones(1, 2), backend=b), ValueError, "NaN"),
    (lambda b: spike_linear(torch.ones(1, 2), torch.tensor([[1.0, math.nan]]), backend=b), ValueError, "NaN"),
    (lambda b: spike_linear(torch.ones(1, 2), torch.ones(1, 2), torch.tensor([math.nan]), backend=b),
     ValueError, "NaN"),
    (lambda b: spike_linear(torch.ones(1, 2, dtype=torch.int64), torch.ones(1, 2), backend=b), TypeError,
     "float32, float64"),
    (lambda b: spike_linear(torch.ones(1, 2), torch.ones(1, 2, dtype=torch.int32), backend=b), TypeError,
     "float32, float64"),
    (lambda b: spike_linear(torch.ones(1, 2, dtype=torch.float16), torch.ones(1, 2, dtype=torch.float16),
                            backend=b), TypeError, "float32, float64"),
    (lambda b: spike_linear(torch.ones(1, 2, dtype=torch.bfloat16), torch.ones(1, 2, dtype=torch.bfloat16),
                            backend=b), TypeError, "float32, float64"),
    (lambda b: spike_linear(torch.ones(1, 2), torch.ones(1, 2), torch.ones(1, dtype=torch.float64), backend=b),
     TypeError, "bias dtype"),
    (lambda b: spike_linear(torch.ones(1, 2), torch.ones(3, 2), torch.ones(2), backend=b), ValueError,
     "bias has 2 entries but weight has 3"),
    (lambda b: spike_conv2d(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 3, 3), None, 0, backend=b), ValueError,
     "stride"),
    (lambda b: spike_conv2d(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 3, 3), None, -1, backend=b), ValueError,
     "stride"),
    (lambda b: spike_conv2d(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 3, 3), None, 1.5, backend=b), ValueError,
     "stride"),
    (lambda b: spike_max_pool2d(torch.full((1, 1, 2, 2), math.nan), 2, backend=b), ValueError, "NaN"),
    (lambda b: spike_max_pool2d(torch.ones(1, 1, 4, 4), 2, 0, backend=b), ValueError, "stride"),
]


@pytest.mark.parametrize("backend", ("reference", *CPU_BACKENDS))
@pytest.mark.parametrize("case", range(len(BAD_CALLS)))
def test_bad_input_gives_one_clear_error(backend, case):
    call, err, match = BAD_CALLS[case]
    with pytest.raises(err, match=match):
        call(backend)


@pytest.mark.parametrize("backend", ("reference", *CPU_BACKENDS))
def test_empty_batch_gives_an_empty_result(backend):
    z = torch.ones(0, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    out = spike_conv2d(z, w, torch.zeros(4, dtype=torch.float64), 2, 1, backend=backend)
    assert out.shape == (0, 4, 3, 3)
    out.sum().backward()
    assert z.grad.shape == z.shape and torch.equal(w.grad, torch.zeros_like(w))
    assert spike_linear(torch.ones(0, 5), torch.ones(2, 5), backend=backend).shape == (0, 2)
    assert spike_max_pool2d(torch.ones(0, 2, 4, 4), 2, backend=backend).shape == (0, 2, 2, 2)


# ---------------------------------------------------------------- numerical edge cases


def _grads(backend, z, w, b, g):
    zz, ww, bb = (t.clone().requires_grad_() for t in (z, w, b))
    out = spike_linear(zz, ww, bb, backend=backend)
    (finite(out) * g).sum().backward()
    return out.detach(), zz.grad, ww.grad, bb.grad


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_huge_weights_fire_at_the_input_time_with_correct_gradients(backend):
    # w = 1e30: the neuron fires as the heavy input arrives, z_j = w z_i / (w - 1) rounds to z_i exactly
    z = torch.tensor([[2.0, 3.0, 5.0]], dtype=torch.float64)
    w = torch.tensor([[0.3, 1e30, 0.2], [0.5, 0.4, 0.9]], dtype=torch.float64)
    b = torch.tensor([0.0, 0.1], dtype=torch.float64)
    g = torch.tensor([[1.0, -0.5]], dtype=torch.float64)
    out, gz, gw, gb = _grads(backend, z, w, b, g)
    ref = _grads("reference", z, w, b, g)
    assert out[0, 0].item() == pytest.approx(3.0, rel=1e-15)
    torch.testing.assert_close(out, ref[0], rtol=1e-12, atol=0)
    for a, r in zip((gz, gw, gb), ref[1:], strict=True):
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-12)
    # the input that triggered the spike carries it: dz_0/dz_1 = w / (W_C - 1) = 1 (the causal set uses <=);
    # neuron 1 fires at (0.1 + 0.5 * 2 + 0.4 * 3 + 0.9 * 5) / 0.9 with every input causal: dz_1/dz_1 = 0.4 / 0.9
    assert out[0, 1].item() == pytest.approx(6.8 / 0.9)
    assert gz[0, 1].item() == pytest.approx(1.0 - 0.5 * 0.4 / 0.9, rel=1e-12)
    # finite differences on the finite weights
    eps = 1e-6
    w2 = w.clone()
    w2[1, 2] += eps
    fd = (spike_linear(z, w2, b, backend=backend) - out) / eps
    assert (fd[0, 1] * g[0, 1]).item() == pytest.approx(gw[1, 2].item(), rel=1e-4)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_float32_rows_at_threshold_agree_on_silence(backend):
    # 20 inputs with weights 1/20 sum to 1 (+ rounding): a neuron on the edge of threshold, in float32
    n = 20
    z = torch.exp(torch.linspace(0.0, 2.0, n))[None].repeat(4, 1)
    w = torch.full((3, n), 1.0 / n)
    w[1] += 1.5e-8 / n  # W = 1 + 1.5e-8: below the float32 resolution of 1
    w[2] *= 1.5  # clearly above threshold
    ref = spike_linear(z, w, backend="reference")
    out = spike_linear(z, w, backend=backend)
    assert torch.equal(torch.isfinite(out), torch.isfinite(ref))
    fired = torch.isfinite(ref)
    assert fired[:, 2].all()
    torch.testing.assert_close(out[fired], ref[fired], rtol=1e-5, atol=0)


def test_float32_layers_round_the_float64_result():
    # float32 layers sum in float64: z is the float64 result rounded (relative error <= 2^-24), and the
    # fire / silent decision is the float64 one, however close W_C is to 1
    g = torch.Generator().manual_seed(3)
    z = torch.exp(3 * torch.rand(64, 40, generator=g)).float()
    w = (0.3 * torch.randn(16, 40, generator=g) + 0.05).float()
    exact = spike_linear(z.double(), w.double(), backend="reference")
    for backend in ("reference", *CPU_BACKENDS):
        out = spike_linear(z, w, backend=backend).double()
        assert torch.equal(torch.isfinite(out), torch.isfinite(exact)), backend
        fired = torch.isfinite(exact)
        assert (((out - exact).abs() / exact)[fired] <= 2.0**-24).all(), backend


# ---------------------------------------------------------------- determinism and threads


def test_numba_results_do_not_depend_on_the_thread_count():
    numba = pytest.importorskip("numba")
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba was started with one thread")
    g = torch.Generator().manual_seed(5)
    z = torch.exp(3 * torch.rand(13, 4, 9, 9, generator=g))
    w = 0.3 * torch.randn(6, 4, 3, 3, generator=g) + 0.05
    b = torch.randn(6, generator=g)
    gout = torch.randn(13, 6, 9, 9, generator=g)
    results = []
    before = numba.get_num_threads()
    try:
        for threads in (1, 2, 1):
            numba.set_num_threads(threads)
            zz, ww, bb = (t.clone().requires_grad_() for t in (z, w, b))
            out = spike_conv2d(zz, ww, bb, 1, 1, backend="numba")
            (finite(out) * gout).sum().backward()
            results.append((out.detach(), zz.grad, ww.grad, bb.grad))
    finally:
        numba.set_num_threads(before)
    for other in results[1:]:
        for a, r in zip(other, results[0], strict=True):
            assert torch.equal(a, r)


def test_numba_backward_does_not_depend_on_the_channel_chunk():
    # the chunk size follows the thread count (speed); no sum's order may depend on it
    from tcsnn.functional import _numba_kernels as nk
    from tcsnn.functional.backends import numba_cpu

    torch.manual_seed(5)
    z = torch.exp(3 * torch.rand(3, 7, 6, 6))
    z[0, 1, 2, 3] = INF
    w = 0.4 * torch.randn(5, 7, 3, 3) + 0.05
    b = 0.1 * torch.randn(5)
    out, w_c = numba_cpu.conv_forward(z, w, b, 2, 1)
    g = torch.randn_like(out)
    wt, _ = numba_cpu._weights(w, b)
    args = (z.numpy(), wt, out.numpy(), w_c.numpy(), g.numpy(), True, 2, 1)
    results = [nk.conv_backward(*args, chunk) for chunk in (1, 2, 3, 7, 32)]
    for r in results[1:]:
        for a, ref in zip(r, results[0], strict=True):
            assert (a == ref).all()
    assert nk.backward_chunk(3, 2) == 1 and nk.backward_chunk(256, 2) == 32 and nk.backward_chunk(64, 2) == 16


def test_set_num_threads_validates_and_applies():
    numba = pytest.importorskip("numba")
    before_torch, before_numba = torch.get_num_threads(), numba.get_num_threads()
    try:
        tcsnn.set_num_threads(1)
        assert torch.get_num_threads() == 1 and numba.get_num_threads() == 1
    finally:
        torch.set_num_threads(before_torch)
        numba.set_num_threads(before_numba)
    for bad in (0, -2, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads"):
            tcsnn.set_num_threads(bad)  # type: ignore[arg-type]


def test_default_threads_is_a_fair_share(monkeypatch):
    from tcsnn import _threads

    monkeypatch.setattr(_threads, "available_cores", lambda: 8)
    for load, expected in ((0.0, 8), (2.2, 6), (7.6, 1), (40.0, 1)):
        monkeypatch.setattr(_threads.os, "getloadavg", lambda load=load: (load, load, load))
        assert _threads.default_num_threads() == expected


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize("backend", ("reference", *CPU_BACKENDS))
def test_gradcheck_conv_stride_and_padding(backend):
    g = torch.Generator().manual_seed(7)
    z = torch.exp(2 * torch.rand(2, 2, 5, 5, generator=g, dtype=torch.float64))
    z[0, 0, 1, 1] = INF
    z = z.requires_grad_()
    w = (0.3 * torch.randn(3, 2, 2, 2, generator=g, dtype=torch.float64) + 0.2).requires_grad_()
    b = torch.randn(3, generator=g, dtype=torch.float64).requires_grad_()
    assert gradcheck(lambda z, w, b: finite(spike_conv2d(z, w, b, 2, 2, backend=backend)), (z, w, b))


def test_default_threads_come_from_the_environment(monkeypatch):
    numba = pytest.importorskip("numba")
    from tcsnn import _threads

    before = numba.get_num_threads()
    try:
        monkeypatch.setattr(_threads, "_state", {"chosen": False})
        monkeypatch.setenv("TCSNN_NUM_THREADS", "1")
        _threads.apply_default()
        assert numba.get_num_threads() == 1
        monkeypatch.setattr(_threads, "_state", {"chosen": False})
        monkeypatch.setenv("TCSNN_NUM_THREADS", "two")
        with pytest.raises(ValueError, match="TCSNN_NUM_THREADS"):
            _threads.apply_default()
    finally:
        numba.set_num_threads(before)
