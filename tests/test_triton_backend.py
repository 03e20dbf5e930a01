"""The Triton backend, run by Triton's interpreter on CPU tensors: exact against ``reference``, forward and backward.

``TRITON_INTERPRET=1`` is set before the kernels are first defined, so these tests need no GPU.  The
interpreter executes every program in Python: shapes stay tiny.
"""

import math
import os

os.environ["TRITON_INTERPRET"] = "1"  # read when the kernels are defined (their module's first import)

import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from torch.autograd import gradcheck  # noqa: E402

pytest.importorskip("triton", reason="the triton backend needs triton: pip install 'tcsnn[triton]'")

import tcsnn  # noqa: E402
from tcsnn.functional import spike_conv2d, spike_linear  # noqa: E402
from tcsnn.functional.backends import triton_gpu  # noqa: E402

INF = float("inf")
REPO = Path(__file__).resolve().parents[1]


class TritonConv(torch.autograd.Function):
    """The backend's forward and backward as one differentiable op (as the backend registry wires it)."""

    @staticmethod
    def forward(ctx, z, weight, bias, stride, padding):  # type: ignore[override]
        z_out, w_c = triton_gpu.conv_forward(z, weight, bias, stride, padding)
        ctx.save_for_backward(z, weight, bias, z_out, w_c)
        ctx.conf = (stride, padding)
        return z_out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        z, weight, bias, z_out, w_c = ctx.saved_tensors
        gz, gw, gb = triton_gpu.conv_backward(z, weight, bias, *ctx.conf, z_out, w_c, grad)
        return gz, gw, gb, None, None


def triton_conv(z, weight, bias=None, stride=1, padding=0):
    return TritonConv.apply(z, weight, bias, stride, padding)


def finite(o: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(o), o, torch.zeros_like(o))


def rand_inputs(*shape, dtype=torch.float64, silent=0.1, levels=None):
    """z = exp(3 U(0, 1)); with ``levels``, times on a grid of that many values (many exact ties)."""
    u = torch.rand(*shape, dtype=dtype)
    if levels is not None:
        u = torch.floor(u * levels) / levels
    z = torch.exp(3.0 * u)
    z[torch.rand(*shape) < silent] = INF
    return z


def assert_same_spikes(a: torch.Tensor, b: torch.Tensor, rtol: float, mixed: bool = True) -> None:
    fa, fb = torch.isfinite(a), torch.isfinite(b)
    assert torch.equal(fa, fb), f"{int((fa != fb).sum())} spike/no-spike disagreements"
    assert fa.any() and (not mixed or (~fa).any()), "the case should have spiking (and silent) outputs"
    rel = ((a[fa] - b[fa]).abs() / b[fa]).max().item()
    assert rel <= rtol, rel


def fwd_bwd(fn, z, w, b, grad_out):
    z, w = z.clone().requires_grad_(), w.clone().requires_grad_()
    b = b.clone().requires_grad_() if b is not None else None
    out = fn(z, w, b)
    (finite(out) * grad_out).sum().backward()
    return out.detach(), z.grad, w.grad, (b.grad if b is not None else None)


RTOL = {torch.float32: 1e-6, torch.float64: 1e-12}


# ---------------------------------------------------------------- agreement with the reference


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "k,stride,padding,bias,levels",
    [(3, 1, 1, True, None), (3, 2, 1, False, None), (2, 1, 0, True, 4), (5, 2, 2, True, None)],
    ids=["3x3-pad1-bias", "3x3-stride2-nobias", "2x2-ties-bias", "5x5-stride2-pad2"],
)
def test_conv_matches_reference_forward_and_backward(dtype, k, stride, padding, bias, levels, monkeypatch):
    # small blocks so that the chunked sort, the channel blocks of the backward (3 input channels in blocks of 2,
    # 4 output channels), the bias-gradient partials and the grad_w splits all have several parts
    monkeypatch.setattr(triton_gpu, "_SORT_CHUNK_ELEMENTS", 1)
    monkeypatch.setattr(triton_gpu, "_BWD_MAX_BLOCK_C", 2)
    monkeypatch.setattr(triton_gpu, "_BWD_MAX_BLOCK_O", 2)
    monkeypatch.setattr(triton_gpu, "_PREP_BLOCK_ROWS", 4)
    monkeypatch.setattr(triton_gpu, "_GRADW_MIN_ROWS", 8)
    z = rand_inputs(2, 3, 4, 4, dtype=dtype, levels=levels)
    mean = 0.1 if k <= 3 else 0.0  # mixed signs, a total weight near threshold: some neurons stay silent
    w = (0.3 * torch.randn(4, 3, k, k) + mean).to(dtype)
    b = torch.randn(4, dtype=dtype) if bias else None
    h = (4 + 2 * padding - k) // stride + 1
    g = torch.randn(2, 4, h, h, dtype=dtype)
    ref = fwd_bwd(lambda z, w, b: spike_conv2d(z, w, b, stride, padding, backend="reference"), z, w, b, g)
    got = fwd_bwd(lambda z, w, b: triton_conv(z, w, b, stride, padding), z, w, b, g)
    assert_same_spikes(got[0], ref[0], RTOL[dtype])
    # gradients: the same sums in another order (float32 weight gradients sum O(100) terms)
    tol = {torch.float64: dict(rtol=1e-10, atol=1e-10), torch.float32: dict(rtol=1e-4, atol=1e-4)}[dtype]
    for name, a, r in zip(("z", "weight", "bias"), got[1:], ref[1:], strict=True):
        if r is None:
            assert a is None
            continue
        torch.testing.assert_close(a, r, **tol, msg=lambda m, name=name: f"grad {name}: {m}")


def test_forward_blocking_changes_nothing(monkeypatch):
    # positions per program and channel-block width are tuning choices: results must be bit-identical
    z = rand_inputs(1, 2, 3, 3, dtype=torch.float32)
    w = 0.4 * torch.randn(5, 2, 3, 3) + 0.15
    b = torch.randn(5)
    results = []
    for pos, block_o in [(1, 2), (2, 4), (4, 8)]:  # 9 positions: the last program of 2 and 4 is partial
        monkeypatch.setattr(triton_gpu, "_forward_blocks", lambda *_, p=pos, o=block_o: (p, o))
        results.append(triton_gpu.conv_forward(z, w, b, 1, 1))
    assert_same_spikes(results[0][0], spike_conv2d(z, w, b, 1, 1, backend="reference"), RTOL[torch.float32])
    for z_out, w_c in results[1:]:
        assert torch.equal(z_out, results[0][0]) and torch.equal(w_c, results[0][1])


def test_w_c_is_the_causal_weight_sum():
    z = rand_inputs(1, 2, 4, 4)
    w = 0.5 * torch.randn(3, 2, 3, 3, dtype=torch.float64) + 0.2
    b = torch.randn(3, dtype=torch.float64)
    z_out, w_c = triton_gpu.conv_forward(z, w, b, 1, 1)
    zp = torch.nn.functional.pad(z, (1, 1, 1, 1), value=INF)
    fired = torch.isfinite(z_out)
    assert fired.any()
    for o, y, x in fired[0].nonzero().tolist():
        patch = zp[0, :, y : y + 3, x : x + 3]
        causal = patch <= z_out[0, o, y, x]
        expected = w[o][causal].sum() + (b[o] if z_out[0, o, y, x] >= 1.0 else 0.0)
        assert w_c[0, o, y, x].item() == pytest.approx(expected.item(), rel=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_linear_is_the_1x1_convolution(dtype):
    z = rand_inputs(3, 20, dtype=dtype)
    w = (0.4 * torch.randn(6, 20) + 0.08).to(dtype)
    b = torch.randn(6, dtype=dtype)
    ref = spike_linear(z, w, b, backend="reference")
    out, _ = triton_gpu.conv_forward(z[:, :, None, None], w[:, :, None, None], b, 1, 0)
    assert_same_spikes(out[:, :, 0, 0], ref, RTOL[dtype])


# ---------------------------------------------------------------- edge cases (hand-checked values)


def linear(z, w, b=None):
    """(B, N) x (M, N) through the conv kernels as 1x1 convolutions -> (B, M)."""
    out, _ = triton_gpu.conv_forward(z[:, :, None, None], w[:, :, None, None], b, 1, 0)
    return out[:, :, 0, 0]


def test_ties_give_the_same_time_in_any_order():
    z = torch.tensor([[2.0, 2.0, 2.0, 20.0]], dtype=torch.float64)
    w = torch.tensor([[0.4, 0.4, 0.4, 10.0]], dtype=torch.float64)
    assert linear(z, w).item() == pytest.approx(1.2 * 2.0 / 0.2, rel=1e-15)  # the three tied inputs are causal
    perm = torch.tensor([2, 3, 0, 1])
    assert linear(z[:, perm], w[:, perm]).item() == pytest.approx(1.2 * 2.0 / 0.2, rel=1e-15)


def test_silent_neurons_silent_inputs_and_bias():
    z = torch.tensor([[1.5, 2.0, INF], [INF, INF, INF]], dtype=torch.float64)
    w = torch.tensor([[0.5, 0.4, 9.0], [-1.0, 2.0, 2.0], [3.0, 0.0, 0.0]], dtype=torch.float64)
    out = linear(z, w)
    assert math.isinf(out[0, 0])  # 0.9 < 1 arrives; the heavy input never does
    assert math.isinf(out[0, 1])  # W = -1 + 2 reaches exactly 1: never above threshold
    assert out[0, 2].item() == pytest.approx(3.0 * 1.5 / 2.0)
    assert torch.isinf(out[1]).all()  # nothing arrives: nothing fires
    b = torch.tensor([2.0, 0.5, -1.0], dtype=torch.float64)  # the bias alone (z = 1) fires at 2 / (2 - 1)
    out_b = linear(z[1:], w, b)
    assert out_b[0, 0].item() == pytest.approx(2.0) and torch.isinf(out_b[0, 1:]).all()


def test_negative_weight_prevents_a_spike():
    z = torch.tensor([[1.0, 1.01]], dtype=torch.float64)
    w = torch.tensor([[1.5, -3.0], [1.5, 0.0]], dtype=torch.float64)
    out = linear(z, w)
    assert math.isinf(out[0, 0]) and out[0, 1].item() == pytest.approx(3.0)


def test_padded_taps_never_spike():
    # a 1x1 input, a 5x5 kernel and padding 2: only the centre tap is real (zero-padding would fire at once)
    z = torch.full((1, 1, 1, 1), 2.0, dtype=torch.float64)
    w = torch.full((1, 1, 5, 5), 3.0, dtype=torch.float64)
    out, w_c = triton_gpu.conv_forward(z, w, None, 1, 2)
    assert out.item() == pytest.approx(3.0 * 2.0 / 2.0) and w_c.item() == 3.0


def test_huge_alpha_is_shift_invariant():
    # t -> t + 600 multiplies every z by e^600 (finite in float64): spike times shift by exactly 600
    z = rand_inputs(2, 12, silent=0.0)
    w = 0.3 * torch.randn(5, 12, dtype=torch.float64) + 0.1
    base, shifted = linear(z, w), linear(z * math.exp(600.0), w)
    assert_same_spikes(torch.log(shifted) - 600.0, torch.log(base), 1e-12, mixed=False)


def test_huge_weight_fires_at_its_input_and_keeps_its_gradient():
    # z_j rounds to the triggering input's time; C_j = {z_i <= z_j} still holds that input
    z = torch.tensor([[2.0, 3.0]], dtype=torch.float64)[:, :, None, None].requires_grad_()
    w = torch.tensor([[1e17, 1.0]], dtype=torch.float64)[:, :, None, None].requires_grad_()
    out = triton_conv(z, w)
    assert out.item() == 2.0
    out.sum().backward()
    assert z.grad[0, 0].item() == pytest.approx(1.0) and z.grad[0, 1].item() == 0.0


# ---------------------------------------------------------------- gradients


def test_gradcheck_tiny_conv():
    z = rand_inputs(1, 1, 3, 3, silent=0.1).requires_grad_()
    w = (0.5 * torch.randn(2, 1, 2, 2, dtype=torch.float64) + 0.3).requires_grad_()
    b = torch.randn(2, dtype=torch.float64).requires_grad_()
    assert gradcheck(lambda z, w, b: finite(triton_conv(z, w, b, 1, 0)), (z, w, b))


def test_gradcheck_strided_padded_conv_fast_mode():
    z = rand_inputs(1, 2, 4, 4, silent=0.1).requires_grad_()
    w = (0.3 * torch.randn(2, 2, 3, 3, dtype=torch.float64) + 0.1).requires_grad_()
    b = torch.randn(2, dtype=torch.float64).requires_grad_()
    assert gradcheck(lambda z, w, b: finite(triton_conv(z, w, b, 2, 1)), (z, w, b), fast_mode=True)


# ---------------------------------------------------------------- availability and errors


def test_cpu_tensors_need_the_interpreter(monkeypatch):
    assert triton_gpu.is_available("cpu")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert not triton_gpu.is_available("cpu")
    with pytest.raises(ValueError, match="TRITON_INTERPRET=1"):
        triton_gpu.conv_forward(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 1, 1), None, 1, 0)


def test_without_triton_the_backend_says_how_to_install_it(monkeypatch):
    real = triton_gpu.importlib.util.find_spec
    monkeypatch.setattr(triton_gpu.importlib.util, "find_spec", lambda name: None if name == "triton" else real(name))
    assert not triton_gpu.is_available("cpu") and not triton_gpu.is_available("cuda")
    with pytest.raises(ImportError, match=r"pip install 'tcsnn\[triton\]'"):
        triton_gpu.conv_forward(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 1, 1), None, 1, 0)


def test_rejects_other_dtypes():
    with pytest.raises(TypeError, match="float32 and float64"):
        triton_gpu.conv_forward(torch.ones(1, 1, 2, 2, dtype=torch.float16), torch.ones(1, 1, 1, 1).half(), None, 1, 0)


# ---------------------------------------------------------------- the GPU check script never rots


def test_gpu_check_smoke(tmp_path):
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(Path(tcsnn.__file__).resolve().parents[1])}
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--smoke", "--out", str(tmp_path),
         "--train-minutes", "0.05"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    import json

    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["stages"]["exactness"]["ok"], result["stages"]["exactness"]
    assert result["stages"]["ratios"]["ok"] and result["stages"]["ratios"]["rows"]
    assert result["stages"]["train"]["ok"], result["stages"]["train"]  # the SpikingVGG16 stage, tiny
    assert result["stages"]["profile"]["ok"] and result["stages"]["profile"]["rows"][0]["top"]
    assert (tmp_path / "gpu_check.md").exists()
