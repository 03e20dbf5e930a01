"""Run reports: the per-epoch table of a run folder, also of an older run resumed under today's layer names."""

from tcsnn.train.report import markdown_table


def _row(epoch: int, per_layer: dict[str, float]) -> dict:
    return {"epoch": epoch, "bits": None, "test_accuracy": 0.5, "train_accuracy": 0.6, "spike_share": 0.7,
            "spike_share_per_layer": per_layer, "energy_per_image_J": 1e-9, "mean_decision_time": 1.0,
            "train_time_s": 3.0}


def test_table_reads_layers_by_position_when_a_resumed_run_renamed_them():
    rows = [_row(0, {"0": 0.25, "3": 1.0}), _row(1, {"features.0": 0.5, "classifier.0": 0.75})]
    table = markdown_table(rows).splitlines()
    assert "features.0 / classifier.0" in table[0]
    assert "| 25.0 / 100.0 |" in table[2] and "| 50.0 / 75.0 |" in table[3]
