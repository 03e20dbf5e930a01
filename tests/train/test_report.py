"""tcsnn.train.report: the per-epoch table and curves of a run, with readable layer names and epochs from 1."""

import json

import pytest
from matplotlib.figure import Figure

from tcsnn.train.report import display_epochs, layer_names, markdown_table, plot_curves


def _row(epoch, names=True):
    row = {"epoch": epoch, "bits": None, "test_accuracy": 0.9, "train_accuracy": 0.8, "spike_share": 0.5,
           "spike_share_per_layer": {"0": 0.4, "2": 0.6, "5": 1.0}, "energy_per_image_J": 2e-7,
           "mean_decision_time": 2.0, "train_time_s": 3.0}
    if names:
        row["layer_names"] = {"0": "conv1", "2": "conv2", "5": "out"}
    return row


def test_epochs_are_shown_from_1_whichever_way_the_file_counts():
    assert display_epochs([_row(0), _row(1)]) == [1, 2]  # files that count from 0
    assert display_epochs([_row(1), _row(2)]) == [1, 2]  # files that count from 1


def test_table_prints_readable_layer_names_and_epochs_from_1():
    table = markdown_table([_row(0), _row(1)])
    assert "per layer (conv1 / conv2 / out)" in table
    assert [ln.split("|")[1].strip() for ln in table.splitlines()[2:]] == ["1", "2"]


def test_older_files_take_the_names_from_the_run_config(tmp_path):
    rows = [_row(0, names=False)]
    (tmp_path / "config.json").write_text(json.dumps({"config": {"model": "scnn_mnist", "model_kwargs": {}}}))
    assert layer_names(rows, tmp_path) == {"0": "conv1", "2": "conv2", "5": "out"}
    # no config (or a model that does not match): the keys themselves
    assert layer_names(rows, tmp_path / "elsewhere") == {"0": "0", "2": "2", "5": "5"}
    (tmp_path / "config.json").write_text(json.dumps({"config": {"model": "scnn_tiny", "model_kwargs": {}}}))
    assert layer_names(rows, tmp_path) == {"0": "0", "2": "2", "5": "5"}


@pytest.mark.parametrize("n_epochs", [1, 2, 3, 7, 13, 80])
def test_curves_have_whole_epoch_ticks_and_named_layers(tmp_path, monkeypatch, n_epochs):
    figures = []
    save = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: (figures.append(fig), save(fig, *a, **k)))
    plot_curves([_row(e) for e in range(n_epochs)], tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    (fig,) = figures
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        shown = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert shown and all(float(t).is_integer() for t in shown), shown
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == ["conv1", "conv2", "out"]


def _row_old(epoch: int, per_layer: dict[str, float]) -> dict:
    return {"epoch": epoch, "bits": None, "test_accuracy": 0.5, "train_accuracy": 0.6, "spike_share": 0.7,
            "spike_share_per_layer": per_layer, "energy_per_image_J": 1e-9, "mean_decision_time": 1.0,
            "train_time_s": 3.0}


def test_table_reads_layers_by_position_when_a_resumed_run_renamed_them():
    rows = [_row_old(0, {"0": 0.25, "3": 1.0}), _row_old(1, {"features.0": 0.5, "classifier.0": 0.75})]
    table = markdown_table(rows).splitlines()
    assert "features.0 / classifier.0" in table[0]
    assert "| 25.0 / 100.0 |" in table[2] and "| 50.0 / 75.0 |" in table[3]
