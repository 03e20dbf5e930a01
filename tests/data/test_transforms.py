"""Training transforms (torch ops), whitening, and the class-folder data set on JPEGs written here."""

import pytest
import torch

from helpers import write_jpegs
from tcsnn.data.folder import ImageFolder, collate
from tcsnn.data.transforms import (
    WHITEN_SPAN,
    Whiten,
    apply_flip,
    apply_shift,
    draw_flip,
    draw_shift,
    random_hflip,
    random_resized_crop,
    random_shift,
    resize_center_crop,
)


def test_cifar_crop_is_a_crop_of_the_zero_padded_image():
    x = torch.rand(5, 3, 8, 8)
    corners = draw_shift(5, 4, torch.Generator().manual_seed(0))
    out = apply_shift(x, corners, 4)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(5):
        oy, ox = corners[:, i].tolist()
        assert torch.equal(out[i], padded[i, :, oy : oy + 8, ox : ox + 8])
    # the one-call form draws the same numbers
    assert torch.equal(random_shift(x, 4, torch.Generator().manual_seed(0)), out)


def test_flip_mirrors_the_chosen_images_only():
    x = torch.rand(6, 2, 4, 5)
    flip = torch.tensor([True, False, True, False, False, True])
    out = apply_flip(x, flip)
    for i in range(6):
        assert torch.equal(out[i], x[i].flip(-1) if flip[i] else x[i])
    gen_a, gen_b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(random_hflip(x, gen_a), apply_flip(x, draw_flip(6, gen_b)))


def test_a_slice_of_global_draws_is_what_one_process_sees():
    """Drawing for the whole batch and applying a slice = applying the whole and slicing (data parallelism)."""
    x = torch.rand(8, 1, 6, 6)
    corners, flip = draw_shift(8, 2, torch.Generator().manual_seed(1)), draw_flip(8, torch.Generator().manual_seed(2))
    whole = apply_flip(apply_shift(x, corners, 2), flip)
    part = apply_flip(apply_shift(x[3:7], corners[:, 3:7], 2), flip[3:7])
    assert torch.equal(whole[3:7], part)


def test_whiten_maps_mean_to_half_and_span_to_the_pixel_range():
    w = Whiten((0.5, 0.2), (0.1, 0.05))
    p = torch.tensor([0.5, 0.5 + WHITEN_SPAN * 0.1, 0.5 - WHITEN_SPAN * 0.1, 0.9]).reshape(1, 1, 2, 2)
    p = torch.cat([p, torch.full_like(p, 0.2)], dim=1)  # (1, 2, 2, 2)
    out = w(p)
    torch.testing.assert_close(out[0, 0].flatten(), torch.tensor([0.5, 1.0, 0.0, 1.0]))  # 0.9 is beyond: clamped
    torch.testing.assert_close(out[0, 1], torch.full((2, 2), 0.5))
    with pytest.raises(ValueError, match="2 channels"):
        w(torch.rand(1, 3, 2, 2))
    with pytest.raises(ValueError, match="no channel statistics"):
        Whiten.for_dataset("digits")


def test_resized_crops_have_the_asked_size_and_follow_the_seed():
    img = torch.rand(3, 40, 60)
    a = random_resized_crop(img, 16, torch.Generator().manual_seed(4))
    b = random_resized_crop(img, 16, torch.Generator().manual_seed(4))
    c = random_resized_crop(img, 16, torch.Generator().manual_seed(5))
    assert a.shape == (3, 16, 16) and torch.equal(a, b) and not torch.equal(a, c)
    assert 0 <= float(a.min()) and float(a.max()) <= 1
    centre = resize_center_crop(img, 16)  # shorter side 40 -> round(256/224*16) = 18, then the central 16
    assert centre.shape == (3, 16, 16)
    flat = torch.ones(3, 30, 50) * 0.25
    torch.testing.assert_close(resize_center_crop(flat, 8), torch.full((3, 8, 8), 0.25))


def test_image_folder_reads_class_folders_of_jpegs(tmp_path):
    root = write_jpegs(tmp_path / "imgs")
    train = ImageFolder(root / "train", train=True, image_size=16)
    val = ImageFolder(root / "val", train=False, image_size=16)
    assert train.classes == ["cat", "dog"] and len(train) == 6 and train.targets.tolist() == [0, 0, 0, 1, 1, 1]
    img, label = train[(4, 123)]
    again, _ = train[(4, 123)]
    other, _ = train[(4, 124)]
    assert img.shape == (3, 16, 16) and label == 1 and torch.equal(img, again)
    assert not torch.equal(img, other)
    raw = train.load(0)
    assert raw.shape == (3, 24, 32) and raw[0].mean() > 0.7 and raw[2].mean() < 0.2  # red cat, RGB order
    x, y = collate([val[i] for i in range(6)])
    assert x.shape == (6, 3, 16, 16) and y.tolist() == [0, 0, 0, 1, 1, 1]
    assert x[:3, 0].mean() > x[:3, 2].mean() and x[3:, 2].mean() > x[3:, 0].mean()
    assert torch.equal(val[2][0], val[2][0])  # evaluation is deterministic


def test_image_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolder(tmp_path / "none", train=True, image_size=8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no class sub-folders"):
        ImageFolder(tmp_path / "empty", train=True, image_size=8)
    (tmp_path / "empty" / "a").mkdir()
    with pytest.raises(FileNotFoundError, match="no .jpg"):
        ImageFolder(tmp_path / "empty", train=True, image_size=8)
    (tmp_path / "empty" / "a" / "x.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="not a readable image"):
        ImageFolder(tmp_path / "empty", train=True, image_size=8)[0]
