"""tcsnn.data.transforms and tcsnn.train.ema: random image shifts and the weight moving average."""

import pytest
import torch
from torch import nn

from tcsnn.data.transforms import random_shift
from tcsnn.train.ema import WeightAverage


def shifted(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """img (C, H, W) moved down by dy and right by dx, zero fill (plain slicing, independent of random_shift)."""
    _, h, w = img.shape
    out = torch.zeros_like(img)
    out[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = img[
        :, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def test_each_image_is_a_whole_pixel_translation_within_the_bound():
    x = torch.rand(64, 2, 7, 9)
    y = random_shift(x, 2, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    seen = set()
    for img, out in zip(x, y, strict=True):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if torch.equal(shifted(img, dy, dx), out)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) > 10  # the shifts vary across the batch


def test_zero_shift_is_identity_and_generator_makes_it_repeatable():
    x = torch.rand(8, 1, 5, 5)
    assert random_shift(x, 0) is x
    a = random_shift(x, 1, torch.Generator().manual_seed(3))
    b = random_shift(x, 1, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize("shape,shift,match", [((4, 5, 5), 1, "B, C, H, W"), ((1, 1, 4, 4), -1, "max_shift")])
def test_bad_shift_arguments_are_named(shape, shift, match):
    with pytest.raises(ValueError, match=match):
        random_shift(torch.zeros(shape), shift)


def test_weight_average_follows_the_ema_update_with_warmup():
    model = nn.Linear(3, 2)
    avg = WeightAverage(model, decay=0.99)
    expected = {k: p.detach().clone() for k, p in model.named_parameters()}
    for n in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        avg.update(model)
        d = min(0.99, (1 + n) / (10 + n))
        for k, p in model.named_parameters():
            expected[k] = d * expected[k] + (1 - d) * p.detach()
    for k, v in expected.items():
        torch.testing.assert_close(avg.params[k], v)
    other = nn.Linear(3, 2)
    avg.copy_to(other)
    for k, p in other.named_parameters():
        torch.testing.assert_close(p.detach(), expected[k])
    # the state holds the counters; the values come from the shipped model's state_dict (extra keys ignored)
    assert set(avg.state_dict()) == {"decay", "updates"}
    again = WeightAverage(nn.Linear(3, 2), decay=0.5)
    again.load_state_dict(avg.state_dict(), params={**other.state_dict(), "buffer": torch.zeros(1)})
    assert again.updates == 5 and again.decay == 0.99
    for k, v in expected.items():
        torch.testing.assert_close(again.params[k], v, rtol=0, atol=0)
    # the older layout carried its own values
    old = WeightAverage(nn.Linear(3, 2), decay=0.5)
    old.load_state_dict({**avg.state_dict(), "params": {k: v.clone() for k, v in expected.items()}})
    assert all(torch.equal(old.params[k], v) for k, v in expected.items())
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(model, decay=1.0)


@pytest.mark.parametrize("state,params,match", [
    ({"decay": 0.9, "updates": 1}, None, "no averaged values"),
    ({"decay": 0.9, "updates": 1}, {"weight": torch.zeros(2, 3)}, "lacks the model's parameters bias"),
    ({"decay": 0.9, "updates": 1}, {"weight": torch.zeros(3, 2), "bias": torch.zeros(2)}, "wrong shape for weight"),
    ({"updates": 1}, {"weight": torch.zeros(2, 3), "bias": torch.zeros(2)}, "malformed"),
    ({"decay": 2.0, "updates": 1}, {"weight": torch.zeros(2, 3), "bias": torch.zeros(2)}, "malformed"),
])
def test_weight_average_refuses_a_malformed_state(state, params, match):
    with pytest.raises(ValueError, match=match):
        WeightAverage(nn.Linear(3, 2), 0.9).load_state_dict(state, params=params)
