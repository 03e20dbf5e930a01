"""tcsnn.nn.introspect: the one list of a model's spiking layers and their readable names."""

import pytest
from torch import nn

from tcsnn.models import create_model
from tcsnn.nn import SpikingConv2d, SpikingLinear, SpikingMaxPool2d
from tcsnn.nn.introspect import layer_labels, spiking_layers


@pytest.mark.parametrize(
    "name,kwargs,labels",
    [
        ("scnn_mnist", {}, ["conv1", "conv2", "out"]),
        ("scnn_tiny", {"image_size": 8, "channels": 4}, ["conv1", "out"]),
        ("sfc", {"hidden": [800]}, ["fc1", "out"]),
    ],
)
def test_registered_models_get_readable_names(name, kwargs, labels):
    model = create_model(name, **kwargs)
    got = layer_labels(model)
    assert list(got) == [n for n, _ in spiking_layers(model)]  # keyed by the module names, in forward order
    assert list(got.values()) == labels


def test_names_count_each_kind_and_skip_pools_and_nesting():
    model = nn.Sequential(
        nn.Sequential(SpikingConv2d(1, 2, 3), SpikingMaxPool2d(2), SpikingConv2d(2, 2, 3)),
        nn.Flatten(),
        SpikingLinear(8, 6),
        SpikingLinear(6, 4),
        SpikingLinear(4, 3),
    )
    assert layer_labels(model) == {"0.0": "conv1", "0.2": "conv2", "2": "fc1", "3": "fc2", "4": "out"}


def test_a_model_without_spiking_layers_has_no_names():
    assert layer_labels(nn.Sequential(nn.Flatten())) == {}
