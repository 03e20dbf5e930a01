"""Trained models shipped inside the package, named after the recipes that produced them.

``manifest.json`` (beside this file) lists them: name -> weight file, recipe, model, data set, the file's SHA-256,
the accuracy on the whole test set and on the first ``first_n`` test images, and the command that produced them.
A weight file is a stripped checkpoint (model, its arguments, the weights, the run config; no optimiser state),
read by :func:`tcsnn.train.checkpoint.load_model`.

>>> from tcsnn.pretrained import load_pretrained, list_pretrained   # doctest: +SKIP
>>> model = load_pretrained("mnist")                                 # doctest: +SKIP

Command line: ``tcsnn eval --pretrained NAME --data-root DIR [--json FILE]``.  Maintainers add an entry with
:func:`pack_pretrained` from a finished run's checkpoint; nothing is written here at run time otherwise.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from torch import nn

from tcsnn.io import sha256_file, write_json

#: The folder that holds the shipped manifest and weight files.
PACKAGE_DIR = Path(__file__).resolve().parent
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "tcsnn-pretrained"
MANIFEST_VERSION = 1
#: Checkpoint entries kept in a shipped weight file (training state is dropped).
_KEEP = ("format", "version", "model", "model_kwargs", "state_dict", "config", "epoch")


@dataclass(frozen=True)
class PretrainedEntry:
    """One manifest entry.  Accuracies count a sample with no (or a tied) earliest output spike as wrong."""

    name: str
    file: str  # weight file name, relative to the manifest's folder
    sha256: str
    recipe: str
    model: str
    dataset: str
    test_accuracy: float  # on the whole test set
    n_test: int
    first_n: int  # the quick check: accuracy on the first first_n test images
    first_n_accuracy: float
    command: str  # the command that trained the model

    @classmethod
    def from_dict(cls, name: str, d: Any, where: str) -> PretrainedEntry:
        fields = set(cls.__dataclass_fields__) - {"name"}
        if not isinstance(d, dict) or set(d) != fields:
            got = sorted(d) if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"{where}: entry {name!r} must have exactly the keys {sorted(fields)}, got {got}")
        entry = cls(name=name, **d)
        for key in ("test_accuracy", "first_n_accuracy"):
            value = getattr(entry, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{where}: entry {name!r}: {key} must be a fraction in [0, 1], got {value!r}")
        for key in ("n_test", "first_n"):
            value = getattr(entry, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{where}: entry {name!r}: {key} must be a positive int, got {value!r}")
        if Path(entry.file).name != entry.file:
            raise ValueError(f"{where}: entry {name!r}: file must be a plain file name, got {entry.file!r}")
        return entry


def _root(root: str | Path | None) -> Path:
    return PACKAGE_DIR if root is None else Path(root)


def read_manifest(root: str | Path | None = None) -> dict[str, PretrainedEntry]:
    """The entries of ``root/manifest.json`` (default: the shipped one), by name; ValueError if malformed."""
    path = _root(root) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"no pretrained manifest at {path}")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT or doc.get("version") != MANIFEST_VERSION:
        raise ValueError(f"{path} is not a version-{MANIFEST_VERSION} {MANIFEST_FORMAT!r} manifest")
    models = doc.get("models")
    if not isinstance(models, dict):
        raise ValueError(f"{path}: 'models' must be an object of name -> entry")
    return {name: PretrainedEntry.from_dict(name, d, str(path)) for name, d in models.items()}


def list_pretrained(root: str | Path | None = None) -> list[str]:
    """Names of the shipped (or ``root``'s) pretrained models."""
    return sorted(read_manifest(root))


def pretrained_entry(name: str, root: str | Path | None = None) -> PretrainedEntry:
    """The manifest entry of ``name``; ValueError naming the known models when there is none."""
    entries = read_manifest(root)
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none yet"
        raise ValueError(f"no pretrained model {name!r}; available: {known}")
    return entries[name]



def load_pretrained(name: str, *, root: str | Path | None = None) -> nn.Module:
    """The pretrained :class:`tcsnn.nn.SpikingNetwork` ``name`` in eval mode, its file checked against the manifest.

    Raises:
        ValueError: unknown name, or a weight file whose SHA-256 differs from the manifest's (damaged, or a
            Git LFS pointer instead of the file).
        FileNotFoundError: the weight file is missing.
    """
    from tcsnn.train.checkpoint import load_model

    entry = pretrained_entry(name, root)
    path = _root(root) / entry.file
    if not path.is_file():
        raise FileNotFoundError(f"pretrained model {name!r}: weight file {path} is missing")
    digest = sha256_file(path)
    if digest != entry.sha256:
        raise ValueError(f"pretrained model {name!r}: {path} has SHA-256 {digest}, the manifest says {entry.sha256} "
                         "(a damaged or replaced file)")
    model, _ = load_model(path)
    return model


def pack_pretrained(
    checkpoint: str | Path, name: str, *, root: str | Path, recipe: str, command: str,
    data_root: str | Path | None = None, first_n: int = 1000, batch_size: int = 500,
) -> PretrainedEntry:
    """Add (or replace) the entry ``name`` in ``root``: a stripped copy of ``checkpoint`` and its measured accuracy.

    The accuracies are measured here, on the checkpoint's test set (``data_root`` or the one it recorded), with
    :func:`tcsnn.metrics.evaluate`; nothing is copied from the run's logs.  ``root`` gets ``<name>.pt`` and an
    updated ``manifest.json`` (created if missing), both written atomically.
    """
    from tcsnn.data import load_arrays
    from tcsnn.metrics import evaluate
    from tcsnn.train.checkpoint import load_checkpoint, load_model, save_atomic

    if not name or Path(name).name != name or name.startswith("."):
        raise ValueError(f"pretrained name must be a plain file-name stem, got {name!r}")
    if first_n < 1:
        raise ValueError(f"first_n must be >= 1, got {first_n}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    ckpt = load_checkpoint(checkpoint)
    model, config = load_model(checkpoint)
    x, y = load_arrays(config["dataset"], data_root if data_root is not None else config.get("data_root"),
                       train=False)
    full = evaluate(model, x, y, batch_size=batch_size)
    first = evaluate(model, x[:first_n], y[:first_n], batch_size=batch_size)
    config = {k: v for k, v in ckpt["config"].items() if k != "data_root"}  # no machine paths in shipped files
    weight_file = root / f"{name}.pt"
    save_atomic({k: (config if k == "config" else ckpt[k]) for k in _KEEP if k in ckpt}, weight_file)
    entry = PretrainedEntry(
        name=name, file=weight_file.name, sha256=sha256_file(weight_file), recipe=recipe, model=ckpt["model"],
        dataset=config["dataset"], test_accuracy=full["test_accuracy"], n_test=int(full["n_test"]),
        first_n=min(first_n, int(full["n_test"])), first_n_accuracy=first["test_accuracy"], command=command,
    )
    path = root / MANIFEST
    doc = json.loads(path.read_text()) if path.is_file() else {
        "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "models": {}}
    doc["models"][name] = {k: v for k, v in asdict(entry).items() if k != "name"}
    write_json(path, doc, sort_keys=True)
    return entry


def check_pretrained(name: str, *, data_root: str | Path | None, root: str | Path | None = None,
                     batch_size: int = 500) -> tuple[float, PretrainedEntry]:
    """Accuracy of ``name`` on its first ``first_n`` test images, measured now, and its entry (to compare)."""
    from tcsnn.data import load_arrays
    from tcsnn.metrics import evaluate

    entry = pretrained_entry(name, root)
    model = load_pretrained(name, root=root)
    x, y = load_arrays(entry.dataset, data_root, train=False)
    m = evaluate(model, x[: entry.first_n], y[: entry.first_n], batch_size=batch_size)
    return float(m["test_accuracy"]), entry


__all__ = [
    "MANIFEST",
    "PretrainedEntry",
    "check_pretrained",
    "list_pretrained",
    "load_pretrained",
    "pack_pretrained",
    "pretrained_entry",
    "read_manifest",
]
