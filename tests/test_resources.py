"""tcsnn.resources: the memory estimate made before a run; unsupported precisions named at the model boundary."""

import pytest
import torch

from tcsnn.models import create_model
from tcsnn.resources import EVAL_FACTOR, TRAIN_FACTOR, check_inference_memory, check_train_memory, step_memory


def test_the_memory_estimate_scales_with_the_batch_and_grows_for_training():
    model = create_model("scnn_tiny", image_size=8, channels=4)
    b1, b2, b3 = (step_memory(model, (1, 8, 8), b, torch.float32, train=False) for b in (1000, 2000, 3000))
    assert b2 > b1 > 0 and abs((b3 - b2) - (b2 - b1)) <= 1  # linear in the batch, plus the weights once
    # per image: pixels 64 + encoder 64 + conv 4x8x8 + pool 4x4x4 + flatten 64 + out 10 elements, float32, EVAL_FACTOR
    assert (b2 - b1) / 1000 == pytest.approx((64 + 64 + 256 + 64 + 64 + 10) * 4 * EVAL_FACTOR)
    assert step_memory(model, (1, 8, 8), 1000, torch.float32, train=True) > b1
    assert step_memory(model, (1, 8, 8), 1000, torch.float64, train=False) > 1.9 * b1


def test_refusals_name_the_estimate_and_what_to_lower():
    model = create_model("scnn_tiny", image_size=8, channels=4)
    need = step_memory(model, (1, 8, 8), 100, torch.float32, train=True)
    assert need > step_memory(model, (1, 8, 8), 100, torch.float32, train=False) * TRAIN_FACTOR / EVAL_FACTOR / 2
    with pytest.raises(MemoryError, match=r"training step of 100 images needs about .* lower --batch-size"):
        check_train_memory(model, (1, 8, 8), 100, 10, torch.float32, available=need - 1)
    with pytest.raises(MemoryError, match=r"evaluating 1000 images at once .* eval_batch_size"):
        check_train_memory(model, (1, 8, 8), 1, 1000, torch.float32, available=need)
    with pytest.raises(MemoryError, match="lower --batch-size"):
        check_inference_memory(model, (1, 8, 8), 100, torch.float32, available=1000)
    assert check_inference_memory(model, (1, 8, 8), 100, torch.float32, available=1 << 40) > 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_name_the_supported_dtypes(dtype):
    model = create_model("scnn_tiny", image_size=8, channels=4).to(dtype)
    with pytest.raises(TypeError, match=r"float32.*float64"):
        model(torch.full((2, 1, 8, 8), 0.5, dtype=dtype))  # pixels
