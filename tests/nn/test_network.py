"""SpikingNetwork: the encoder at the front, readable layer names, the one list of spiking layers."""

import pytest
import torch
from torch import nn

from tcsnn.functional import encode
from tcsnn.models import create_model, list_models, smoke_config
from tcsnn.nn import (
    SpikeEncoder,
    SpikingLinear,
    SpikingNetwork,
    body_of,
    flat_layers,
    make_encoder,
    spiking_layers,
)


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_maps_pixels_to_outputs_forward_and_backward(name):
    """A registered model needs no test code of its own: built from its default config (shrunk by its smoke
    overrides, so that deep models run in seconds), fed pixels."""
    cfg = smoke_config(name)
    model = create_model(name, **cfg)
    assert isinstance(model, SpikingNetwork)
    assert (model.encoder.kind, model.encoder.alpha) == (cfg["encoding"], cfg["alpha"])
    side = cfg.get("image_size")
    shape = (cfg.get("in_channels", 1), side, side) if side else (1, 28, 28)
    p = torch.rand(3, *shape)
    out = model(p)
    assert out.shape == (3, cfg["num_classes"])
    # the same as encoding by hand and running the body
    assert torch.equal(out, model.body(encode(p, cfg["encoding"], cfg["alpha"])))
    assert torch.isfinite(out).any(), "no output neuron fires at initialisation: the model cannot learn"
    out[torch.isfinite(out)].sum().backward()
    assert all(m.weight.grad is not None for _, m in spiking_layers(model))
    assert spiking_layers(model)[0][1].weight.grad.abs().sum() > 0  # the gradient reaches the first layer


def test_layer_names_are_readable_and_stable():
    model = create_model("scnn_mnist")
    assert [n for n, _ in spiking_layers(model)] == ["features.0", "features.2", "classifier.0"]
    assert [n for n, _ in flat_layers(model)] == ["features.0", "features.1", "features.2", "features.3",
                                                  "flatten", "classifier.0"]
    assert [n for n, _ in spiking_layers(model.body)] == [n for n, _ in spiking_layers(model)]
    assert sorted(model.state_dict()) == sorted(f"{n}.{p}" for n, _ in spiking_layers(model) for p in ("weight",
                                                                                                        "bias"))
    assert [n for n, _ in spiking_layers(create_model("sfc", hidden=[20, 10]))] == ["classifier.0", "classifier.1",
                                                                                   "classifier.2"]


def test_encoder_follows_the_model_dtype_and_has_no_state():
    model = create_model("scnn_tiny").double()
    assert model(torch.rand(2, 1, 8, 8)).dtype == torch.float64
    assert not any(k.startswith("encoder") for k in model.state_dict())
    assert make_encoder("direct", 2.0).kind == "direct"
    with pytest.raises(ValueError, match="unknown encoding"):
        make_encoder("log", 1.0)


def test_body_of_and_bad_networks():
    body = nn.Sequential(SpikingLinear(4, 2))
    assert body_of(body) is body
    net = SpikingNetwork(SpikeEncoder(1.0), {"fc": SpikingLinear(4, 2)})
    assert list(dict(body_of(net).named_children())) == ["fc"]
    assert isinstance(net[1:], nn.Sequential) and net[0] is net.encoder
    with pytest.raises(ValueError, match="reserved"):
        SpikingNetwork(SpikeEncoder(1.0), {"encoder": SpikingLinear(4, 2)})
    with pytest.raises(TypeError, match="SpikeEncoder"):
        SpikingNetwork(nn.Identity(), {"fc": SpikingLinear(4, 2)})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no options"):
        create_model("scnn_tiny", width=3)
