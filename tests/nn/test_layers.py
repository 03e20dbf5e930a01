"""The nn.Module wrappers: shapes, parameters, dtype, errors at the public boundary."""

import pytest
import torch

from tcsnn.functional import encode_direct, encode_inverted
from tcsnn.models import create_model, list_models
from tcsnn.nn import DirectEncoder, InvertedEncoder, SpikingConv2d, SpikingLinear, SpikingMaxPool2d, spiking_layers


def test_shapes_and_parameters_like_torch():
    lin = SpikingLinear(20, 7)
    assert lin.weight.shape == (7, 20) and lin.bias.shape == (7,)
    assert SpikingLinear(20, 7, bias=False).bias is None
    conv = SpikingConv2d(3, 8, 5, padding="same")
    assert conv.weight.shape == (8, 3, 5, 5)
    z = torch.exp(torch.rand(2, 3, 12, 12))
    assert conv(z).shape == (2, 8, 12, 12)
    assert SpikingConv2d(3, 8, 3, stride=2, padding=1)(z).shape == torch.nn.Conv2d(3, 8, 3, 2, 1)(z).shape
    assert SpikingMaxPool2d(2)(conv(z)).shape == (2, 8, 6, 6)
    assert lin(torch.exp(torch.rand(4, 20))).shape == (4, 7)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_both_dtypes_work(dtype):
    layer = SpikingLinear(10, 4, dtype=dtype)
    out = layer(torch.exp(torch.rand(3, 10, dtype=dtype)))
    assert out.dtype == dtype


def test_default_init_makes_neurons_fire():
    model = create_model("scnn_mnist")
    z = encode_inverted(torch.rand(8, 1, 28, 28), 3.0)
    h = model.features[0](z)
    assert torch.isfinite(h).float().mean() > 0.5


def test_mnist_model_has_about_21k_weights():
    model = create_model("scnn_mnist")
    weights = sum(m.weight.numel() for _, m in spiking_layers(model))
    assert weights == 32 * 25 + 16 * 32 * 25 + 784 * 10 == 21440
    assert "scnn_mnist" in list_models()
    with pytest.raises(ValueError, match="unknown model"):
        create_model("resnet")


@pytest.mark.parametrize(
    "z,match",
    [
        (torch.tensor([[1.0, float("nan")]]), "NaN"),
        (torch.tensor([[1.0, -2.0]]), "<= 0"),
        (torch.tensor([[1, 2]]), "floating-point"),
        (torch.ones(2, 3), "3 features"),
    ],
)
def test_bad_inputs_are_named(z, match):
    with pytest.raises((ValueError, TypeError), match=match):
        SpikingLinear(2, 3)(z)


def test_encoders():
    p = torch.tensor([0.0, 0.5, 1.0])
    torch.testing.assert_close(encode_inverted(p, 2.0), torch.exp(2.0 * (1 - p)))
    torch.testing.assert_close(encode_direct(p, 2.0), torch.exp(2.0 * p))
    assert torch.equal(InvertedEncoder(2.0)(p), encode_inverted(p, 2.0))
    assert torch.equal(DirectEncoder(2.0)(p), encode_direct(p, 2.0))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        encode_inverted(torch.tensor([0.0, 255.0]), 1.0)
    with pytest.raises(ValueError, match="NaN"):
        encode_direct(torch.tensor([float("nan")]), 1.0)
    with pytest.raises(ValueError, match="overflows"):
        encode_direct(torch.tensor([1.0]), 100.0)  # e^100 is not a float32
    assert torch.isfinite(encode_direct(torch.tensor([1.0]), 100.0, dtype=torch.float64)).all()
