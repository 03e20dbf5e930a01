"""Small shared test fixtures-as-functions (imported by the test modules; pytest puts tests/ on sys.path)."""

import importlib.util
from pathlib import Path
from types import ModuleType

import torch

from tcsnn.models import create_model

#: A 4-channel scnn_tiny for 8x8 inputs: a whole network that runs in milliseconds.
TINY = {"image_size": 8, "channels": 4}


def tiny_model() -> torch.nn.Module:
    return create_model("scnn_tiny", **TINY).eval()


def write_jpegs(root, classes=("cat", "dog"), per_class=3, size=(24, 32)):
    """root/{train,val}/<class>/<i>.jpg: a plain colour per class (red, blue) plus a little noise."""
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    for split in ("train", "val"):
        for label, name in enumerate(classes):
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                # a plain colour per class, so the decoded image says which class it is
                colour = [200, 30, 30] if label == 0 else [30, 30, 200]
                noise = torch.randint(0, 10, (size[0], size[1], 3), generator=gen)
                arr = (torch.tensor(colour) + noise).clamp(0, 255).to(torch.uint8).numpy()
                Image.fromarray(arr).save(root / split / name / f"{i}.jpg", quality=95)
    return root


def load_benchmark(name: str) -> ModuleType:
    """The script ``benchmarks/<name>.py`` imported as a module (the benchmarks folder is not a package)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
