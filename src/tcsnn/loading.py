"""One loader for every command that runs a trained model: a checkpoint or a quantised export, plus its test data.

``tcsnn eval``, ``simulate``, ``robustness`` and ``export-nir`` all call :func:`load_trained` and
:func:`load_test_split`, so they accept the same things and fail with the same one-line errors:

* a checkpoint file written by ``tcsnn train`` (``checkpoint.pt``), or the run folder holding it;
* a quantised export written by ``tcsnn robustness --save-quantized`` (``quantized-<b>bit.pt``).

Weights that hold NaN or infinite values are refused (they would evaluate to 0 % without a word).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

__all__ = ["CHECKPOINT_NAME", "Trained", "load_test_split", "load_trained", "resolve_checkpoint"]

#: The checkpoint file name inside a run folder.
CHECKPOINT_NAME = "checkpoint.pt"
#: How many folders above a checkpoint a relative data folder of an older run is looked up from.
_RELATIVE_ROOT_LEVELS = 4


@dataclass
class Trained:
    """A model ready for inference and what it was trained with."""

    model: nn.Module
    #: the run's flat config (``dataset``, ``data_root``, ``encoding``, ``alpha``, ``dtype``, ...)
    config: dict[str, Any]
    #: the file read (a run folder resolves to its checkpoint.pt)
    path: Path
    #: "checkpoint" or "quantized"
    kind: str
    #: the :func:`tcsnn.models.create_model` name and arguments
    model_name: str
    model_kwargs: dict[str, Any]


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file as given, or ``FOLDER/checkpoint.pt`` for a run folder; one-line errors otherwise."""
    path = Path(path).expanduser()
    if path.is_dir():
        inner = path / CHECKPOINT_NAME
        if not inner.is_file():
            raise ValueError(f"{path} is a folder without a {CHECKPOINT_NAME}; give a checkpoint file "
                             "or a `tcsnn train` run folder")
        return inner
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return path


def load_trained(path: str | Path) -> Trained:
    """Rebuild the model (eval mode) of a checkpoint, a run folder or a quantised export."""
    from tcsnn.io import read_torch_file
    from tcsnn.quant.export import QUANT_FORMAT, load_quantized_model
    from tcsnn.train.checkpoint import FORMAT, load_model

    file = resolve_checkpoint(path)
    head = read_torch_file(file)
    if isinstance(head, dict) and head.get("format") == QUANT_FORMAT:
        model, config = load_quantized_model(file)
        kind = "quantized"
    elif isinstance(head, dict) and head.get("format") == FORMAT:
        model, config = load_model(file)
        kind = "checkpoint"
    else:
        raise ValueError(f"{file} is neither a tcsnn checkpoint nor a quantised export (no '{FORMAT}' or "
                         f"'{QUANT_FORMAT}' format tag)")
    return Trained(model=model, config=dict(config), path=file, kind=kind, model_name=head["model"],
                   model_kwargs=dict(head["model_kwargs"]))


def _recorded_root(root: Any, checkpoint: Any) -> Any:
    """The data folder a run recorded.  Older versions stored it as typed, relative to the shell that trained:
    when it is not found from the working directory, it is looked up from the folders above the checkpoint
    (a run folder usually sits in ``<project>/runs/``)."""
    if not isinstance(root, str) or Path(root).is_absolute() or Path(root).exists() or checkpoint is None:
        return root
    for base in list(Path(checkpoint).resolve().parents)[:_RELATIVE_ROOT_LEVELS]:
        if (base / root).is_dir():
            return str(base / root)
    return root


def load_test_split(
    config: dict[str, Any], data_root: str | Path | None = None, limit: int | None = None, *, where: Any = None,
) -> tuple[Tensor, Tensor]:
    """The test images ``x`` (N, C, H, W) and labels ``y`` (N,) a model was trained on.

    ``data_root`` overrides the folder recorded in ``config``; ``limit`` keeps the first N images (N >= 1).
    Raises ValueError for a config without a data set, a bad limit, or a test split without images.
    """
    from tcsnn.data import load_arrays

    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"--limit must be an integer >= 1, got {limit!r}")
    if "dataset" not in config:
        raise ValueError(f"{where or 'the model'}: its run config has no 'dataset'; cannot load the test inputs")
    root = data_root if data_root is not None else _recorded_root(config.get("data_root"), where)
    x, y = load_arrays(config["dataset"], root, train=False)
    if x.shape[0] == 0:
        raise ValueError(f"the {config['dataset']} test split in {root} holds no images")
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return x, y
