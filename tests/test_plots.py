"""The figures the tools write: titled robustness plots, and the circuit visible over the closed form in Table 3."""

import pytest
from matplotlib.figure import Figure

from tcsnn.cli import main
from tcsnn.neuromorphic.circuit import plot_table3, table3
from tcsnn.robustness import plot_sweeps, sweep_title


@pytest.fixture
def saved_figures(monkeypatch):
    """Every Figure saved during the test (they are still written)."""
    figures = []
    save = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: (figures.append(fig), save(fig, *a, **k)))
    return figures


def _doc(dataset):
    rows = [{"kind": "baseline", "value": None, "mean_accuracy": 0.99, "std_accuracy": 0.0},
            {"kind": "bits", "value": 4, "mean_accuracy": 0.98, "std_accuracy": 0.0},
            {"kind": "snr", "value": 20.0, "mean_accuracy": 0.97, "std_accuracy": 0.01},
            {"kind": "jitter", "value": 0.1, "mean_accuracy": 0.96, "std_accuracy": 0.01}]
    return {"settings": {"dataset": dataset, "n_test": 10000}, "rows": rows}


def test_robustness_plots_name_the_data_set(tmp_path, saved_figures):
    titles = {}
    for dataset in ("mnist", "fashion-mnist"):
        (tmp_path / dataset).mkdir()
        written = plot_sweeps(_doc(dataset), tmp_path / dataset)
        assert len(written) == 3
        titles[dataset] = {fig.axes[0].get_title() for fig in saved_figures[-3:]}
    assert titles["mnist"] == {"MNIST, 10,000 test images"}
    assert titles["fashion-mnist"] == {"Fashion-MNIST, 10,000 test images"}
    assert sweep_title(_doc("cifar10"), model="scnn_mnist (run)") == "CIFAR-10, scnn_mnist (run), 10,000 test images"


def test_robustness_command_titles_its_plots_with_model_and_run(tmp_path, saved_figures):
    run = tmp_path / "digits-run"
    assert main(["train", "--epochs", "1", "--train-limit", "64", "--test-limit", "16", "--out", str(run),
                 "--no-progress"]) == 0
    assert main(["robustness", "--checkpoint", str(run / "checkpoint.pt"), "--out", str(tmp_path / "rob"),
                 "--bits", "8", "--snr", "", "--jitter", "", "--limit", "20", "--no-progress"]) == 0
    (fig,) = saved_figures[-1:]
    assert fig.axes[0].get_title() == "8x8 digits, scnn_tiny (digits-run), 20 test images"


def test_table3_draws_the_circuit_over_the_closed_form(tmp_path, saved_figures):
    rows = table3(trials=8, jitters=[0.01, 0.05], bits=[8, 16])
    plot_table3(rows, tmp_path / "table3.png")
    (fig,) = saved_figures
    for ax in fig.axes:
        lines = {ln.get_label(): ln for ln in ax.get_lines()}
        circuit, ideal = lines["circuit"], lines["closed form (eq. 4)"]
        assert circuit.get_zorder() > ideal.get_zorder()  # drawn on top
        # the closed form's markers are hollow and larger, so the circuit's show inside them
        assert ideal.get_markerfacecolor() == "none" and ideal.get_markersize() > circuit.get_markersize()
        assert circuit.get_marker() != ideal.get_marker() and circuit.get_linestyle() != ideal.get_linestyle()
