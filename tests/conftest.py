from pathlib import Path

import pytest
import torch

#: ../shared/data beside the checkout (read-only data sets; see its README).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def mnist_root() -> Path:
    root = SHARED_DATA / "mnist"
    if not (root / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST not found in {root}")
    return root


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
