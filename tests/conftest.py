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


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished one-epoch `tcsnn train` run folder (a 64-8-10 sfc on the digits): copy it before changing it."""
    from tcsnn.cli import main

    run = tmp_path_factory.mktemp("tiny") / "run"
    rc = main(["train", "--epochs", "1", "--train-limit", "64", "--out", str(run), "--no-progress",
               "--set", "model=sfc", "--set", 'model_kwargs={"in_features": 64, "hidden": [8]}'])
    assert rc == 0
    return run
