"""tcsnn.quant: the b-bit grid, the straight-through estimator, 32-bit passthrough, export round trip, QAT."""

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import TINY, tiny_model
from tcsnn.nn import SpikingConv2d, SpikingLinear
from tcsnn.nn.introspect import raw_parameter
from tcsnn.quant import (
    GRIDS,
    MAX_BITS,
    SCALES,
    apply_quantized,
    bits_at_epoch,
    code_range,
    dequantize,
    effective_weight_layers,
    export_quantized,
    fake_quantize,
    get_weight_bits,
    load_quantized,
    load_quantized_model,
    num_levels,
    quantize,
    save_quantized,
    select_layers,
    set_weight_bits,
)
from tcsnn.quant import quantizer as quant_module
from tcsnn.train.checkpoint import FORMAT, VERSION, load_model, save_atomic
from tcsnn.train.config import TrainConfig
from tcsnn.train.engine import train
from tcsnn.train.recipes import get_recipe


def tiny_input(n: int = 16) -> torch.Tensor:
    return torch.exp(torch.rand(n, 1, 8, 8))  # (B, 1, 8, 8) spike values, t in [0, 1)


# ------------------------------------------------------------------------------------------------- grid


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_values_land_on_a_symmetric_b_bit_grid(bits, scale):
    w, b = torch.randn(6, 3, 3, 3), torch.randn(6)
    q = quantize(w, b, bits, scale=scale)
    levels = num_levels(bits)
    assert levels == 2 ** (bits - 1) - 1
    rows = torch.cat([q.codes.reshape(6, -1), q.bias_codes[:, None]], dim=1).long()  # (out, fan_in + 1)
    assert rows.abs().max() <= levels and not q.codes.dtype.is_floating_point
    w_hat, b_hat = dequantize(q, torch.float64)
    for j in range(6):
        values = torch.cat([w_hat[j].flatten(), b_hat[j : j + 1]])
        assert values.unique().numel() <= 2**bits - 1
        # every value is an integer multiple of the row's step, inside [-L s, L s]
        k = values / q.scale[j]
        assert torch.allclose(k, k.round(), atol=1e-9) and k.abs().max() <= levels + 1e-9
    if scale == "max":  # nothing clipped: each row's largest |w| is a grid point
        w_max = torch.cat([w.reshape(6, -1), b[:, None]], 1).abs().amax(1).double()
        assert torch.allclose(q.scale * levels, w_max)
    else:
        assert (rows.abs().amax(1) == levels).all()  # the clipping value is reached


@given(st.integers(2, 12), st.integers(0, 2**31 - 1), st.sampled_from(SCALES))
@settings(max_examples=30, deadline=None)
def test_grid_is_odd_symmetric_and_idempotent(bits, seed, scale):
    g = torch.Generator().manual_seed(seed)
    w, b = torch.randn(4, 7, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)
    q, q_neg = quantize(w, b, bits, scale=scale), quantize(-w, -b, bits, scale=scale)
    assert torch.equal(q_neg.codes, -q.codes) and torch.equal(q_neg.bias_codes, -q.bias_codes)
    w_hat, b_hat = dequantize(q, torch.float64)
    again = dequantize(quantize(w_hat, b_hat, bits, scale="max"), torch.float64)
    assert torch.allclose(again[0], w_hat, rtol=0, atol=1e-12) and torch.allclose(again[1], b_hat, atol=1e-12)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_full_grid_uses_all_2_to_the_b_codes(bits, scale):
    """grid="full": codes in [-L, L + 1]; "max" clips nothing; the 8-bit codes (up to 128) get a wider dtype."""
    g = torch.Generator().manual_seed(bits)
    w = torch.randn(64, 50, generator=g, dtype=torch.float64) + 0.3  # (out, fan_in), mostly excitatory
    b = torch.randn(64, generator=g, dtype=torch.float64)
    lo, hi = code_range(bits, "full")
    assert (lo, hi) == (-num_levels(bits), num_levels(bits) + 1) and hi - lo + 1 == 2**bits
    q = quantize(w, b, bits, scale=scale, grid="full")
    rows = torch.cat([q.codes, q.bias_codes[:, None]], dim=1).long()
    assert rows.min() >= lo and rows.max() <= hi and torch.iinfo(q.codes.dtype).max >= hi
    if bits <= 4:  # 64 rows of 51 weights reach every code
        assert set(rows.unique().tolist()) == set(range(lo, hi + 1))
    w_hat, b_hat = dequantize(q, torch.float64)
    if scale == "max":  # nothing clipped: every weight within half a step of its grid point; idempotent
        err = torch.cat([(w_hat - w), (b_hat - b)[:, None]], 1).abs()
        assert (err <= q.scale[:, None] / 2 + 1e-12).all()
        again = dequantize(quantize(w_hat, b_hat, bits, scale="max", grid="full"), torch.float64)
        torch.testing.assert_close(again, (w_hat, b_hat), rtol=0, atol=1e-12)


def test_two_bit_full_grid_by_hand():
    w = torch.tensor([[2.0, 1.1, -0.9, 0.2], [-1.0, 0.4, 0.0, 0.0]])
    w_hat, _ = fake_quantize(w, None, 2, grid="full")  # row 0: step 1, codes 2, 1, -1, 0
    assert torch.equal(w_hat[0], torch.tensor([2.0, 1.0, -1.0, 0.0]))
    assert torch.equal(w_hat[1], torch.tensor([-1.0, 0.0, 0.0, 0.0]))  # step 1 (the -1 needs it), 0.4 -> 0
    with pytest.raises(ValueError, match="grid"):
        fake_quantize(w, None, 2, grid="asymmetric")


def test_full_grid_export_round_trip_and_range_check(tmp_path):
    model = tiny_model()
    export = export_quantized(model, 8, scale="mse", grid="full", model_name="scnn_tiny", model_kwargs=TINY)
    assert export["grid"] == "full"
    save_quantized(export, tmp_path / "q.pt")
    loaded, _ = load_quantized_model(tmp_path / "q.pt")
    set_weight_bits(model, 8, scale="mse", grid="full")
    z = tiny_input()
    torch.testing.assert_close(loaded.body(z), model.body(z), rtol=0, atol=0)
    export["grid"] = "symmetric"  # codes of 128 do not fit the symmetric 8-bit range
    with pytest.raises(ValueError, match="outside the 8-bit range"):
        save_quantized(export, tmp_path / "bad.pt")


def test_ternary_and_zero_rows():
    w = torch.tensor([[0.2, -1.0, 0.6, 0.0], [0.0, 0.0, 0.0, 0.0]])
    w_hat, b_hat = fake_quantize(w, torch.tensor([0.1, 0.0]), 2)
    assert torch.equal(w_hat, torch.tensor([[0.0, -1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]))
    assert torch.equal(b_hat, torch.zeros(2))


def test_bias_shares_its_rows_scale():
    w, b = torch.tensor([[0.1, 0.2]]), torch.tensor([3.0])  # the bias is the row's largest weight
    q = quantize(w, b, 4)
    assert q.scale.item() == pytest.approx(3.0 / 7) and q.bias_codes.item() == 7


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("grid", GRIDS)
def test_wide_bias_codes_sit_on_the_step_fitted_to_the_weights(scale, grid):
    """bias_bits: the weights quantise as if there were no bias; the bias gets wider codes on the same step."""
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(6, 3, 5, 5, generator=gen, dtype=torch.float64)
    b = torch.randn(6, generator=gen, dtype=torch.float64) * 20  # far beyond a 2-bit code of any row
    q = quantize(w, b, 2, scale=scale, grid=grid, bias_bits=8)
    alone = quantize(w, None, 2, scale=scale, grid=grid)
    assert torch.equal(q.codes, alone.codes) and torch.equal(q.scale, alone.scale)
    lo, hi = code_range(8, grid)
    assert q.bias_codes.dtype == (torch.int8 if hi <= 127 else torch.int16)  # the full grid's 8-bit top is 128
    assert int(q.bias_codes.min()) >= lo and int(q.bias_codes.max()) <= hi
    assert torch.equal(q.bias_codes.double(), torch.clamp(torch.round(b / q.scale), lo, hi))
    w_hat, b_hat = dequantize(q, torch.float64)
    inside = (b / q.scale).abs() <= hi
    assert inside.any() and ((b_hat - b).abs()[inside] <= q.scale[inside] / 2 + 1e-12).all()
    # sharing the 2-bit codes, the large bias either clips (mse) or flattens the row's weights (max)
    w_shared, b_shared = dequantize(quantize(w, b, 2, scale=scale, grid=grid), torch.float64)
    wide_err = ((w_hat - w) ** 2).sum() + ((b_hat - b) ** 2).sum()
    assert wide_err < ((w_shared - w) ** 2).sum() + ((b_shared - b) ** 2).sum()


def test_wide_bias_of_a_row_without_weights_is_kept():
    w, b = torch.tensor([[0.5, -0.25], [0.0, 0.0]]), torch.tensor([0.3, -2.0])
    q = quantize(w, b, 2, bias_bits=8)
    w_hat, b_hat = dequantize(q)
    assert torch.equal(w_hat[1], torch.zeros(2)) and b_hat[1].item() == pytest.approx(-2.0)


@pytest.mark.parametrize("bias_bits", [1, MAX_BITS + 1, 2.5])
def test_bad_bias_bits(bias_bits):
    with pytest.raises(ValueError, match="weight bits"):
        quantize(torch.randn(2, 2), torch.randn(2), 4, bias_bits=bias_bits)
    with pytest.raises(ValueError, match="weight bits"):
        set_weight_bits(tiny_model(), 4, bias_bits=bias_bits)
    with pytest.raises(ValueError, match="bad config: quant_bias_bits"):
        TrainConfig(quant_bits=[4], quant_bias_bits=bias_bits)


def test_wide_bias_export_round_trip_and_range_check(tmp_path):
    model = tiny_model()
    with torch.no_grad():
        model.features[0].bias.mul_(30)  # biases of many steps
    set_weight_bits(model, 2, scale="mse", grid="full", bias_bits=8)
    assert "bias_bits=8" in repr(model)
    z = tiny_input()
    expected = model.body(z)
    export = export_quantized(model, 2, scale="mse", grid="full", bias_bits=8, model_name="scnn_tiny",
                              model_kwargs=TINY)
    assert export["bias_bits"] == 8 and int(export["layers"]["features.0"]["bias_codes"].abs().max()) > 2
    save_quantized(export, tmp_path / "q.pt")
    loaded, _ = load_quantized_model(tmp_path / "q.pt")
    assert torch.equal(loaded.body(z), expected)
    export["bias_bits"] = None  # the same codes claimed to be 2-bit biases
    with pytest.raises(ValueError, match="outside the 2-bit range"):
        save_quantized(export, tmp_path / "bad.pt")


@pytest.mark.parametrize("bits", [1, 0, MAX_BITS + 1, 2.5, True, "8"])
def test_bad_bits(bits):
    with pytest.raises(ValueError, match="weight bits"):
        quantize(torch.randn(2, 2), None, bits)
    with pytest.raises(ValueError, match="weight bits"):
        set_weight_bits(tiny_model(), bits)


def test_bad_weights_scale_and_layer_names():
    with pytest.raises(ValueError, match="NaN or inf"):
        quantize(torch.tensor([[float("nan"), 1.0]]), None, 4)
    with pytest.raises(ValueError, match="bias must have shape"):
        quantize(torch.randn(3, 2), torch.randn(2), 4)
    with pytest.raises(ValueError, match="scale rule"):
        quantize(torch.randn(3, 2), None, 4, scale="minmax")
    with pytest.raises(ValueError, match="unknown layer name"):
        set_weight_bits(tiny_model(), 4, layers=["7"])


# --------------------------------------------------------------------------------------------- layers


def test_32_bits_changes_nothing_measurable():
    model = tiny_model()
    z = tiny_input(64)
    full = model.body(z)
    set_weight_bits(model, 32)
    for (_, m), (w, b) in zip(select_layers(model, None), effective_weight_layers(model), strict=True):
        w_max = max(m.weight.abs().max(), m.bias.abs().max())
        # at most half a step (w_max / (2^31 - 1)) plus float32 rounding of the weight itself
        assert (w - m.weight).abs().max() <= w_max * 2.0**-31 + m.weight.abs().max() * 2.0**-24
        assert (b - m.bias).abs().max() <= w_max * 2.0**-31 + m.bias.abs().max() * 2.0**-24
    quant = model.body(z)
    assert torch.equal(torch.isfinite(full), torch.isfinite(quant))
    fin = torch.isfinite(full)
    assert torch.allclose(quant[fin], full[fin], rtol=1e-5, atol=0)


@pytest.mark.parametrize("layer", [SpikingLinear(12, 5), SpikingConv2d(2, 3, 3, padding=1)], ids=["linear", "conv"])
@pytest.mark.parametrize("bits", [2, 4])
def test_ste_gradient_equals_the_full_precision_gradient_at_the_quantised_weights(layer, bits):
    z = torch.exp(torch.rand(8, 12) if isinstance(layer, SpikingLinear) else torch.rand(8, 2, 5, 5))
    quantised = copy.deepcopy(layer)
    set_weight_bits(torch.nn.Sequential(quantised), bits)
    plain = copy.deepcopy(layer)  # full precision, its weights set to the quantised values
    with torch.no_grad():
        w_hat, b_hat = fake_quantize(layer.weight, layer.bias, bits)
        plain.weight.copy_(w_hat)
        plain.bias.copy_(b_hat)

    def loss(out: torch.Tensor) -> torch.Tensor:
        t = torch.log(out[torch.isfinite(out)])
        return (t * torch.linspace(-1, 1, t.numel())).sum()

    out_q, out_p = quantised(z), plain(z)
    assert torch.equal(out_q, out_p)
    assert torch.isfinite(out_q).any()
    loss(out_q).backward()
    loss(out_p).backward()
    weight, bias = raw_parameter(quantised, "weight"), raw_parameter(quantised, "bias")  # what the optimiser holds
    assert weight.grad.abs().sum() > 0
    assert torch.equal(weight.grad, plain.weight.grad)
    assert torch.equal(bias.grad, plain.bias.grad)
    # the optimiser updates the full-precision weights, which were not rounded
    assert torch.equal(weight, layer.weight)
    assert not torch.equal(quantised.weight, layer.weight)  # while the forward reads the quantised ones


def test_quantisation_attaches_from_outside_and_keeps_the_parameters():
    """set_weight_bits parametrizes weight and bias: same Parameter objects (an optimiser built before keeps
    them), plain state_dict keys, and a plain state_dict loads into a quantised model."""
    model = tiny_model()
    params = list(model.parameters())
    opt = torch.optim.SGD(params, lr=0.1)
    set_weight_bits(model, 2)
    assert {id(p) for p in model.parameters()} == {id(p) for p in params}
    assert not any("parametrizations" in k for k in model.state_dict())
    z = torch.exp(torch.rand(4, 1, 8, 8))
    out = model.body(z)
    out[torch.isfinite(out)].sum().backward()
    before = [p.detach().clone() for p in params]
    opt.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, params, strict=True))
    other = tiny_model()
    set_weight_bits(other, 2)
    other.load_state_dict(model.state_dict())
    assert torch.equal(other.body(z), model.body(z))
    for _, m in select_layers(model, None):
        assert not hasattr(m, "weight_bits")


#: get_weight_bits of the tiny model without quantisation: its two spiking layers, by name
FULL_PRECISION = {"features.0": (None, "max", "symmetric", None), "classifier.0": (None, "max", "symmetric", None)}


def test_state_dict_keys_stay_plain_and_load_into_a_fresh_model():
    model = tiny_model()
    before = sorted(model.state_dict())
    set_weight_bits(model, 4, scale="mse")
    assert sorted(model.state_dict()) == before == ["classifier.0.bias", "classifier.0.weight", "features.0.bias",
                                                    "features.0.weight"]
    fresh = tiny_model()
    fresh.load_state_dict(model.state_dict())
    assert get_weight_bits(fresh) == FULL_PRECISION
    assert get_weight_bits(model) == {name: (4, "mse", "symmetric", None) for name in FULL_PRECISION}
    set_weight_bits(model, None, layers=["classifier.0"])
    assert get_weight_bits(model)["classifier.0"] == (None, "mse", "symmetric", None)
    assert "weight_bits=4 (mse, symmetric)" in repr(model)


# --------------------------------------------------------------------------------------------- export


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("bits", [2, 4, 8, 16, 32])
def test_export_round_trip_reproduces_the_quantised_forward(tmp_path, bits, scale):
    model = tiny_model()
    z = tiny_input()
    set_weight_bits(model, bits, scale=scale)
    expected = model.body(z)
    export = export_quantized(model, bits, scale=scale, model_name="scnn_tiny", model_kwargs=TINY,
                              config={"dataset": "digits"})
    expected_dtype = torch.int8 if bits <= 8 else torch.int16 if bits <= 16 else torch.int32
    assert export["layers"]["features.0"]["codes"].dtype == expected_dtype
    save_quantized(export, tmp_path / "q.pt")
    loaded, config = load_quantized_model(tmp_path / "q.pt")
    assert config == {"dataset": "digits"} and not loaded.training
    assert get_weight_bits(loaded) == FULL_PRECISION
    assert torch.equal(loaded.body(z), expected)
    again = tiny_model()
    apply_quantized(again, load_quantized(tmp_path / "q.pt"))
    assert torch.equal(again.body(z), expected)


def test_bad_exports_are_refused(tmp_path):
    export = export_quantized(tiny_model(), 4)
    save_quantized(export, tmp_path / "anon.pt")
    with pytest.raises(ValueError, match="does not name its model"):
        load_quantized_model(tmp_path / "anon.pt")
    bad = copy.deepcopy(export)
    bad["layers"]["features.0"]["codes"][0, 0, 0, 0] = 100
    with pytest.raises(ValueError, match="outside the 4-bit range"):
        save_quantized(bad, tmp_path / "bad.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a readable"):
        load_quantized(tmp_path / "junk.pt")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a tcsnn quantised model"):
        load_quantized(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        load_quantized(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="export holds layers"):
        apply_quantized(torch.nn.Sequential(SpikingLinear(3, 2)), export)


# ------------------------------------------------------------------------------------ schedule and QAT


def test_schedule_matches_the_engine():
    for bits, step in [([16, 8, 4], 2), ([8], 1), ([8, 4, 2], 3)]:
        cfg = TrainConfig(quant_bits=bits, quant_epochs_per_step=step)
        assert [bits_at_epoch(bits, step, e) for e in range(10)] == [cfg.bits_at(e) for e in range(10)]
    assert bits_at_epoch(None, 1, 5) is None


def test_load_model_reapplies_the_last_trained_bit_width(tmp_path):
    model = tiny_model()
    cfg = {"dataset": "digits", "encoding": "inverted", "alpha": 1.0, "quant_bits": [16, 8, 4],
           "quant_epochs_per_step": 2, "quant_scale": "mse"}
    for epoch, bits in [(0, 16), (3, 8), (9, 4)]:
        save_atomic({"format": FORMAT, "version": VERSION, "model": "scnn_tiny", "model_kwargs": TINY,
                     "state_dict": model.state_dict(), "config": cfg, "epoch": epoch}, tmp_path / "c.pt")
        loaded, _ = load_model(tmp_path / "c.pt")
        assert set(get_weight_bits(loaded).values()) == {(bits, "mse", "symmetric", None)}
    cfg["quant_bias_bits"] = 8
    save_atomic({"format": FORMAT, "version": VERSION, "model": "scnn_tiny", "model_kwargs": TINY,
                 "state_dict": model.state_dict(), "config": cfg, "epoch": 9}, tmp_path / "c.pt")
    loaded, _ = load_model(tmp_path / "c.pt")
    assert set(get_weight_bits(loaded).values()) == {(4, "mse", "symmetric", 8)}


def test_gradual_quantisation_aware_training_end_to_end(tmp_path):
    """A digits run with the schedule 8 -> 4 bits: the engine applies it, load_model restores the last width."""
    cfg = get_recipe("digits", epochs=4, quant_bits=[8, 4], quant_epochs_per_step=2)
    last = train(cfg, tmp_path / "qat", progress=False)  # about 2 s (full precision reaches 91 % here)
    assert last["bits"] == 4 and last["test_accuracy"] > 0.8
    model, _ = load_model(tmp_path / "qat" / "checkpoint.pt")
    assert set(get_weight_bits(model).values()) == {(4, "max", "symmetric", None)}
    # the checkpoint keeps full-precision weights; the 4-bit forward is what the run evaluated
    assert torch.unique(model.classifier[0].weight.detach()).numel() > 2**4


def test_engine_trains_and_reloads_with_wide_bias_codes(tmp_path, monkeypatch):
    """quant_bias_bits reaches the forward during training, and load_model restores it with the last width."""
    cfg = get_recipe("digits", epochs=2, quant_bits=[2], quant_scale="mse", quant_grid="full", quant_bias_bits=16)
    seen = []
    original = quant_module._FakeQuantize.apply

    def spy(*args):
        seen.append(args[-1])  # the bias_bits argument
        return original(*args)

    monkeypatch.setattr(quant_module._FakeQuantize, "apply", spy)
    train(cfg, tmp_path / "wide", progress=False)
    monkeypatch.undo()
    assert seen and set(seen) == {16}
    model, _ = load_model(tmp_path / "wide" / "checkpoint.pt")
    assert set(get_weight_bits(model).values()) == {(2, "mse", "full", 16)}
