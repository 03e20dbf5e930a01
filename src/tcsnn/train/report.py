"""Training curves of a run folder: test/train accuracy and the share of neurons that spike, per epoch.

``tcsnn report RUN_DIR`` (:mod:`tcsnn.commands.report`) reads ``RUN_DIR/metrics.jsonl`` and writes
``RUN_DIR/curves.png`` plus a markdown table on stdout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch lines of ``run_dir/metrics.jsonl``; ValueError names a bad line
    (:func:`tcsnn.train.runfolder.read_metrics_lines`, which also reads the file for ``--resume``)."""
    from tcsnn.train.runfolder import read_metrics_lines

    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics.jsonl in {run_dir} (is it a `tcsnn train` run folder?)")
    rows, torn = read_metrics_lines(path)
    if torn:
        raise ValueError(f"{path}: the last line is torn (the run was killed while writing it); "
                         "`tcsnn train --resume` drops it")
    if not rows:
        raise ValueError(f"{path} holds no epochs yet")
    return rows


def display_epochs(rows: list[dict[str, Any]]) -> list[int]:
    """The epochs of ``rows`` counted from 1, as every printed line and plot shows them.

    Files that count from 0 (written before ``metrics.jsonl`` counted from 1) start at epoch 0: their lines lose
    only trailing epochs on ``--resume``, never the first one.
    """
    offset = 1 if min(int(m["epoch"]) for m in rows) == 0 else 0
    return [int(m["epoch"]) + offset for m in rows]


def layer_names(rows: list[dict[str, Any]], run_dir: str | Path | None = None) -> dict[str, str]:
    """Readable names (``conv1``, ..., ``out``) of the per-layer keys of ``rows``.

    From the rows' ``layer_names`` (written by :func:`tcsnn.metrics.evaluate`); for older files, from the model
    named in ``run_dir/config.json`` (:func:`tcsnn.nn.introspect.layer_labels`, matched in forward order); else
    the keys themselves.
    """
    keys = list(rows[-1]["spike_share_per_layer"])  # a resumed older run may name its layers by index first
    names = rows[-1].get("layer_names") or rows[0].get("layer_names")
    if isinstance(names, dict) and all(k in names for k in keys):
        return {k: str(names[k]) for k in keys}
    labels = _labels_from_config(run_dir) if run_dir is not None else None
    if labels is not None and len(labels) == len(keys):
        return dict(zip(keys, labels, strict=True))
    return {k: k for k in keys}


def _labels_from_config(run_dir: str | Path) -> list[str] | None:
    path = Path(run_dir) / "config.json"
    try:
        config = json.loads(path.read_text()).get("config", {})
        from tcsnn.models import create_model
        from tcsnn.nn.introspect import layer_labels

        model = create_model(config["model"], **config.get("model_kwargs", {}))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # no readable config: the caller prints the keys
    return list(layer_labels(model).values())


def markdown_table(rows: list[dict[str, Any]], names: dict[str, str] | None = None) -> str:
    """One line per epoch; ``names`` maps the per-layer keys to the names printed (default: :func:`layer_names`)."""
    layers = list(rows[-1]["spike_share_per_layer"])  # today's names; older lines are read by position
    names = layer_names(rows) if names is None else names
    head = ("| epoch | bits | test acc. | train acc. | neurons spiking | per layer ("
            + " / ".join(names.get(k, k) for k in layers)
            + ") | energy / image | mean decision t | train s |")
    lines = [head, "|" + "---|" * 9]
    for epoch, m in zip(display_epochs(rows), rows, strict=True):
        per = " / ".join(f"{100 * v:.1f}" for v in m["spike_share_per_layer"].values())  # in forward order
        bits = m.get("bits") or "fp"
        lines.append(
            f"| {epoch} | {bits} | {100 * m['test_accuracy']:.2f} % | {100 * m['train_accuracy']:.2f} % | "
            f"{100 * m['spike_share']:.1f} % | {per} | {1e9 * m['energy_per_image_J']:.1f} nJ | "
            f"{m['mean_decision_time']:.3f} | {m['train_time_s']:.0f} |"
        )
    return "\n".join(lines)


def plot_curves(rows: list[dict[str, Any]], path: str | Path, names: dict[str, str] | None = None) -> Path:
    """Accuracy and spiking share per epoch (whole-number epoch ticks), one line per layer; written to ``path``
    (``.png`` added when it has no suffix).  Returns the path written."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from tcsnn.io import save_figure

    names = layer_names(rows) if names is None else names
    epochs = display_epochs(rows)
    fig = Figure(figsize=(10, 3.8))
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(epochs, [100 * m["test_accuracy"] for m in rows], "o-", label="test")
    ax1.plot(epochs, [100 * m["train_accuracy"] for m in rows], "s--", label="train (noisy inputs)")
    ax1.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    ax1.legend()
    for i, name in enumerate(rows[-1]["spike_share_per_layer"]):  # by position: older runs name layers by index
        ax2.plot(epochs, [100 * list(m["spike_share_per_layer"].values())[i] for m in rows], "o-",
                 label=names.get(name, name))
    ax2.set(xlabel="epoch", ylabel="neurons that spike (%)", title="spiking share (test)")
    ax2.legend()
    for ax in (ax1, ax2):  # whole epochs only: every epoch of a short run, else whole-number steps
        if len(epochs) <= 10:
            ax.set_xticks(epochs)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)
