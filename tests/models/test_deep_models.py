"""The paper's deep networks: SpikingVGG16 (Table 1), SpikingGoogLeNet, and the compact cifar10-small design."""

import pytest
import torch

from tcsnn.models import create_model, smoke_config
from tcsnn.models.googlenet import AuxClassifier, aux_outputs
from tcsnn.models.vgg import vgg16_weight_count
from tcsnn.nn import InceptionBlock, SpikingMaxPool2d, spiking_layers


def _n_weights(model):
    return sum(p.numel() for p in model.parameters())


def test_vgg16_has_table_1_weight_count_without_running_it():
    assert vgg16_weight_count() == 54_313_802  # Table 1's layers: the issue's "about 54 million"
    model = create_model("spiking_vgg16")  # built (about 0.2 GB of float32), never run
    assert _n_weights(model) == 54_313_802
    convs = [m for _, m in spiking_layers(model) if hasattr(m, "kernel_size")]
    assert [m.out_channels for m in convs] == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 1024, 1024, 1024]
    assert all(m.kernel_size == 3 and m._pad == 1 for m in convs)
    assert [m.out_features for _, m in spiking_layers(model)[13:]] == [4096, 4096, 512, 10]
    small = smoke_config("spiking_vgg16")
    assert vgg16_weight_count(width=small["width"], fc_widths=small["fc_widths"]) == _n_weights(
        create_model("spiking_vgg16", **small))


def test_vgg_small_design():
    model = create_model("spiking_vgg_small")
    assert _n_weights(model) == 1_186_378
    assert _n_weights(create_model("spiking_vgg_small", width=32)) == 307_498  # what cifar10-small trains
    assert len(spiking_layers(model)) == 7
    with pytest.raises(ValueError, match="multiple"):
        create_model("spiking_vgg_small", image_size=20)


def test_vgg_init_sum_sets_the_expected_input_weight_per_neuron():
    torch.manual_seed(0)
    for init_sum in (1.5, 4.0):
        model = create_model("spiking_vgg_small", width=16, init_sum=init_sum)
        for _, layer in spiking_layers(model):
            rows = layer.weight.detach().flatten(1).sum(1) + layer.bias.detach()  # (out,)
            # each row sum is N(init_sum, 1): the mean over >= 10 rows is within 4 / sqrt(rows) of it
            assert abs(float(rows.mean()) - init_sum) < 4 / rows.numel() ** 0.5


def test_googlenet_structure_names_and_replacements():
    cfg = {**smoke_config("spiking_googlenet"), "width": 8}
    model = create_model("spiking_googlenet", **cfg)
    names = [n for n, _ in spiking_layers(model)]
    assert "inception_3a.branch2.1" in names and names[-1] == "classifier.0"
    assert sum(isinstance(m, InceptionBlock) for m in model.modules()) == 9
    # GoogLeNet's final average pool is a global earliest-spike pool (see the model's docstring)
    assert isinstance(model.global_pool, SpikingMaxPool2d)
    assert _n_weights(create_model("spiking_googlenet", width=64, image_size=224)) == 6_998_552
    with pytest.raises(ValueError, match="multiple of 32"):
        create_model("spiking_googlenet", image_size=100)


def test_googlenet_global_pool_is_the_earliest_spike_of_each_channel():
    model = create_model("spiking_googlenet", **{**smoke_config("spiking_googlenet"), "image_size": 64}).eval()
    seen = {}
    model.global_pool.register_forward_hook(lambda m, i, o: seen.update(inp=i[0], out=o))
    model(torch.rand(2, 3, 64, 64))
    assert seen["inp"].shape[2:] == (2, 2)
    assert torch.equal(seen["out"][:, :, 0, 0], seen["inp"].amin(dim=(2, 3)))


def test_googlenet_auxiliary_classifiers_are_optional_and_train_only():
    cfg = {**smoke_config("spiking_googlenet"), "aux_classifiers": True, "image_size": 96}
    model = create_model("spiking_googlenet", **cfg)
    assert sum(isinstance(m, AuxClassifier) for m in model.modules()) == 2
    p = torch.rand(2, 3, 96, 96)
    model.train()
    out = model(p)
    aux = aux_outputs(model)
    assert out.shape == (2, 5) and [a.shape for a in aux] == [(2, 5), (2, 5)]
    model.eval()
    assert torch.equal(model(p), out) and aux_outputs(model) == []
    plain = create_model("spiking_googlenet", **{**cfg, "aux_classifiers": False})
    assert not any(isinstance(m, AuxClassifier) for m in plain.modules())


def test_eval_statistics_skip_auxiliary_heads_that_did_not_run():
    from tcsnn.metrics import evaluate

    cfg = {**smoke_config("spiking_googlenet"), "aux_classifiers": True, "image_size": 96}
    model = create_model("spiking_googlenet", **cfg)
    m = evaluate(model, torch.rand(2, 3, 96, 96), torch.tensor([0, 1]))
    reported = set(m["spike_share_per_layer"])
    assert "inception_3a.branch2.1" in reported and not any(k.startswith("aux_") for k in reported)
