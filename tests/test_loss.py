"""Loss terms of eq. (5) and the behaviours that decide the default."""

import math

import pytest
import torch

from tcsnn.functional.loss import LOSSES, classification_loss, distillation_loss, l2_penalty, weight_sum_penalty

INF = float("inf")


def test_paper_loss_is_unbounded_below():
    # as printed, -ln(z_c^-1 / sum_{i != c} z_i^-1) keeps falling as the wrong outputs are delayed
    target = torch.tensor([0])
    lates = (1e1, 1e3, 1e6)
    values = [classification_loss(torch.tensor([[2.0, late, late]]), target, "paper").item() for late in lates]
    assert values[0] > values[1] > values[2] and values[2] < -10


def test_paper_all_and_ce_are_bounded_below():
    target = torch.tensor([0])
    for kind in ("paper_all", "ce"):
        for late in (1e1, 1e3, 1e6):
            assert classification_loss(torch.tensor([[2.0, late, late]]), target, kind).item() >= 0.0


@pytest.mark.parametrize("kind", LOSSES)
def test_every_loss_rewards_delaying_wrong_outputs(kind):
    # all three push the wrong outputs later: the gradient w.r.t. a wrong output's z is negative
    z = torch.tensor([[3.0, 2.5, 4.0]], requires_grad=True)
    classification_loss(z, torch.tensor([0]), kind).backward()
    assert z.grad[0, 1] < 0 and z.grad[0, 2] < 0 and z.grad[0, 0] > 0


@pytest.mark.parametrize("kind", LOSSES)
def test_silent_outputs_keep_the_loss_finite(kind):
    z = torch.tensor([[INF, 2.0, 3.0], [INF, INF, INF]], requires_grad=True)
    loss = classification_loss(z, torch.tensor([0, 1]), kind)
    assert math.isfinite(loss.item())
    loss.backward()
    assert torch.isfinite(z.grad).all()
    assert z.grad[0, 1] < 0  # a silent correct output still delays the wrong ones


def test_ce_is_cross_entropy_on_minus_z():
    z = torch.tensor([[1.0, 2.0, 4.0]])
    expected = -torch.log_softmax(-z, dim=1)[0, 1]
    assert classification_loss(z, torch.tensor([1]), "ce").item() == pytest.approx(expected.item())


def test_time_loss_is_cross_entropy_on_minus_t_over_temperature_and_shift_invariant():
    z = torch.exp(torch.tensor([[2.0, 2.1, 2.3], [3.0, 2.95, 3.2]]))
    target = torch.tensor([0, 2])
    t = torch.log(z)
    for temp in (0.03, 0.5):
        expected = torch.nn.functional.cross_entropy(-t / temp, target)
        assert torch.allclose(classification_loss(z, target, "time", temp), expected)
        # every output 0.7 time units later: the same loss ("ce" on -z changes)
        later = z * math.exp(0.7)
        assert torch.allclose(classification_loss(later, target, "time", temp), expected, rtol=1e-5)
    assert not torch.isclose(classification_loss(z * math.exp(0.7), target), classification_loss(z, target))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        classification_loss(z, target, "time", 0.0)


def test_config_default_temperature_is_the_loss_default():
    from tcsnn.functional.loss import TIME_TEMPERATURE
    from tcsnn.train.config import TrainConfig

    assert TrainConfig().loss_temperature == TIME_TEMPERATURE
    with pytest.raises(ValueError, match="loss_temperature"):
        TrainConfig(loss="time", loss_temperature=-1.0)


def test_unknown_loss_is_named():
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        classification_loss(torch.ones(1, 2), torch.tensor([0]), "hinge")


def test_distillation_is_t2_kl_of_softmax_minus_z_over_t():
    torch.manual_seed(0)
    z_s = (torch.rand(5, 4, dtype=torch.float64) * 10 + 1).requires_grad_()
    z_t = torch.rand(5, 4, dtype=torch.float64) * 10 + 1
    T = 3.0
    p_t = torch.softmax(-z_t / T, 1)
    expected = T * T * (p_t * (p_t.log() - torch.log_softmax(-z_s / T, 1))).sum(1).mean()
    loss = distillation_loss(z_s, z_t, T)
    assert torch.allclose(loss, expected)
    assert distillation_loss(z_t, z_t, T).abs() < 1e-12  # agreeing outputs: nothing to learn
    loss.backward()
    assert torch.isfinite(z_s.grad).all() and z_s.grad.abs().sum() > 0


def test_distillation_handles_silent_outputs_and_names_bad_arguments():
    z_s = torch.tensor([[2.0, float("inf"), 5.0]], requires_grad=True)
    z_t = torch.tensor([[3.0, 4.0, float("inf")]])
    loss = distillation_loss(z_s, z_t)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z_s.grad).all()
    with pytest.raises(ValueError, match="temperature"):
        distillation_loss(z_s, z_t, 0.0)
    with pytest.raises(ValueError, match="teacher outputs"):
        distillation_loss(z_s, z_t[:, :2])


def test_weight_sum_penalty_counts_rows_below_beta_with_bias():
    w = torch.tensor([[0.2, 0.3], [1.0, 1.0]])
    b = torch.tensor([0.1, -0.5])
    # row sums with bias: 0.6 and 1.5 -> only the first is below beta = 1
    assert weight_sum_penalty([(w, b)], beta=1.0).item() == pytest.approx(0.4)
    assert weight_sum_penalty([(w, None)], beta=1.0).item() == pytest.approx(0.5)
    assert l2_penalty([w]).item() == pytest.approx(0.04 + 0.09 + 2.0)


def test_the_default_loss_is_the_one_that_trains(tmp_path):
    """5 epochs of the digits demo with each loss: only "ce" trains well; "paper" silences output neurons."""
    from tcsnn.train.engine import train
    from tcsnn.train.recipes import get_recipe

    last = {kind: train(get_recipe("digits", epochs=5, loss=kind), tmp_path / kind, progress=False) for kind in LOSSES}
    acc = {kind: m["test_accuracy"] for kind, m in last.items()}
    assert acc["ce"] > 0.85, acc
    assert acc["paper"] < acc["ce"] - 0.1 and acc["paper_all"] < acc["ce"] - 0.1, acc
    output_layer = list(last["ce"]["spike_share_per_layer"])[-1]
    assert last["ce"]["spike_share_per_layer"][output_layer] == 1.0
    assert last["paper"]["spike_share_per_layer"][output_layer] < 0.9  # wrong outputs are pushed to silence
