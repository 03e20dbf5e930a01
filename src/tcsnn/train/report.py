"""Training curves of a run folder: test/train accuracy and the share of neurons that spike, per epoch.

``tcsnn report RUN_DIR`` (:mod:`tcsnn.commands.report`) reads ``RUN_DIR/metrics.jsonl`` and writes
``RUN_DIR/curves.png`` plus a markdown table on stdout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch lines of ``run_dir/metrics.jsonl``; ValueError names a bad line."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics.jsonl in {run_dir} (is it a `tcsnn train` run folder?)")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n} is not valid JSON: {exc}") from exc
    if not rows:
        raise ValueError(f"{path} holds no epochs yet")
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    layers = list(rows[0]["spike_share_per_layer"])
    head = ("| epoch | bits | test acc. | train acc. | neurons spiking | per layer (" + " / ".join(layers)
            + ") | energy / image | mean decision t | train s |")
    lines = [head, "|" + "---|" * 9]
    for m in rows:
        per = " / ".join(f"{100 * m['spike_share_per_layer'][k]:.1f}" for k in layers)
        bits = m.get("bits") or "fp"
        lines.append(
            f"| {m['epoch'] + 1} | {bits} | {100 * m['test_accuracy']:.2f} % | {100 * m['train_accuracy']:.2f} % | "
            f"{100 * m['spike_share']:.1f} % | {per} | {1e9 * m['energy_per_image_J']:.1f} nJ | "
            f"{m['mean_decision_time']:.3f} | {m['train_time_s']:.0f} |"
        )
    return "\n".join(lines)


def plot_curves(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write the curves to ``path`` (``.png`` added when it has no suffix); returns the path written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tcsnn.io import save_figure

    epochs = [m["epoch"] + 1 for m in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.plot(epochs, [100 * m["test_accuracy"] for m in rows], "o-", label="test")
    ax1.plot(epochs, [100 * m["train_accuracy"] for m in rows], "s--", label="train (noisy inputs)")
    ax1.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    ax1.legend()
    for name in rows[0]["spike_share_per_layer"]:
        ax2.plot(epochs, [100 * m["spike_share_per_layer"][name] for m in rows], "o-", label=f"layer {name}")
    ax2.set(xlabel="epoch", ylabel="neurons that spike (%)", title="spiking share (test)")
    ax2.legend()
    fig.tight_layout()
    try:
        return save_figure(fig, path, dpi=120)
    finally:
        plt.close(fig)
