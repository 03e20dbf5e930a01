r"""Robustness of a trained network to weight quantisation, weight noise and input spike-time jitter.

Paper section 4.2 and Fig. 2.  Nothing is retrained; every perturbation is undone after its evaluation.

**Bits** (post-training quantisation).  Every spiking layer (or the ``layers`` named) runs on its
full-precision weights quantised to ``b`` bits by :mod:`tcsnn.quant` (one step per neuron, bias on its
row's grid, clipping rule ``scale``, code range ``grid``).  Deterministic: one evaluation per width.

**Weight noise at SNR s dB.**  Per spiking layer, zero-mean Gaussian noise is added to the weights the
forward pass uses (the quantised ones for a quantisation-aware model):

.. math::  \hat w = w + n, \quad n \sim \mathcal N(0, \sigma^2), \quad
           \sigma^2 = P_w / 10^{s/10}, \quad P_w = \mathrm{mean}(w^2)

with the mean over all the layer's weights *and biases*: the bias is one more synapse (an input at t = 0),
stored and disturbed like the others, so it gets the same noise and counts in the power.  Each layer has
its own power and hence its own ``sigma``.

**Input jitter at level l.**  Each input spike time ``t = ln z`` becomes

.. math::  t' = \max(0,\ t (1 + l \varepsilon)), \quad \varepsilon \sim \mathcal N(0, 1)

independently per input and image, so the relative jitter ``|t' - t| / t`` has root-mean-square ``l``
(the paper's ``|dt| / t``; :func:`tcsnn.neuromorphic.circuit.jitter_inputs` uses a fixed magnitude ``l`` with random
sign instead).  A spike cannot move before the t = 0 reference (the bias spike), hence the clamp; it
matters only when ``l`` is large (``P(\varepsilon < -1/l)``).  Inputs that never spike stay silent, and
``l = 0`` returns the input unchanged.

**Draws.**  Noise and jitter settings are evaluated over ``draws`` seeded draws; draw ``d`` uses a
``torch.Generator`` seeded with ``seed * 1_000_003 + d`` for every level, so the levels of one sweep see
the same standard-normal pattern, only scaled (smoother curves, repeatable runs).  Reported: the mean
and the sample standard deviation (``ddof = 1``; 0 for a single draw) of the test accuracy.

The ``tcsnn robustness`` command (:mod:`tcsnn.commands.robustness`) sweeps all three, writes
``robustness.json`` / ``robustness.csv`` and PNG plots into ``--out``, and resumes: rows already in
``robustness.json`` (same checkpoint and settings) are not computed again.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tcsnn.io import write_json
from tcsnn.nn.introspect import raw_parameter
from tcsnn.quant import (
    check_bits,
    check_grid,
    check_scale,
    effective_weights,
    get_weight_bits,
    select_layers,
    set_weight_bits,
)

ROBUSTNESS_FORMAT = "tcsnn-robustness"
ROBUSTNESS_VERSION = 1
DEFAULT_BITS: tuple[int, ...] = (32, 16, 8, 4, 2)
DEFAULT_SNR_DB: tuple[float, ...] = (10, 15, 20, 25, 30, 35, 40)
DEFAULT_JITTER: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2)
#: Row kinds, in the order they are computed and written.
KINDS: tuple[str, ...] = ("baseline", "bits", "snr", "jitter")
#: Seeds of draw d: seed * _SEED_STRIDE + d (distinct for any seed >= 0 and fewer draws than the stride).
_SEED_STRIDE = 1_000_003
CSV_COLUMNS = ("kind", "value", "draws", "mean_accuracy", "std_accuracy", "min_accuracy", "max_accuracy",
               "mean_no_decision_rate", "mean_spike_share")


# ---------------------------------------------------------------------------------------------- checks


def check_snr_db(snr_db: object) -> float:
    """A finite SNR in dB (negative values are allowed: noise stronger than the weights)."""
    if isinstance(snr_db, bool) or not isinstance(snr_db, (int, float)) or not math.isfinite(snr_db):
        raise ValueError(f"SNR must be a finite number of dB, got {snr_db!r}")
    return float(snr_db)


def check_jitter(level: object) -> float:
    """A finite relative jitter level >= 0 (0.01 = 1 %)."""
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not (math.isfinite(level) and level >= 0):
        raise ValueError(f"jitter level must be a finite number >= 0 (0.01 = 1 % of t), got {level!r}")
    return float(level)


def check_draws(draws: object) -> int:
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be an integer >= 1, got {draws!r}")
    return draws


def draw_generator(seed: int, draw: int) -> torch.Generator:
    """The CPU generator of noise / jitter draw ``draw`` (the same for every level of a sweep)."""
    if seed < 0 or not 0 <= draw < _SEED_STRIDE:
        raise ValueError(f"need seed >= 0 and 0 <= draw < {_SEED_STRIDE}, got seed {seed}, draw {draw}")
    return torch.Generator().manual_seed(seed * _SEED_STRIDE + draw)


# ------------------------------------------------------------------------------------- perturbations


def weight_power(weight: Tensor, bias: Tensor | None) -> float:
    """``P_w``: mean of ``w^2`` over the weights and the biases of one layer (float64)."""
    total = weight.detach().double().square().sum()
    n = weight.numel()
    if bias is not None:
        total = total + bias.detach().double().square().sum()
        n += bias.numel()
    return float(total) / max(n, 1)


def noise_std(weight: Tensor, bias: Tensor | None, snr_db: float) -> float:
    r"""``sigma = sqrt(P_w / 10^(snr_db / 10))``."""
    return math.sqrt(weight_power(weight, bias) / 10.0 ** (check_snr_db(snr_db) / 10.0))


def add_weight_noise(
    weight: Tensor, bias: Tensor | None, snr_db: float, generator: torch.Generator
) -> tuple[Tensor, Tensor | None]:
    """``(w + n_w, b + n_b)`` with one ``sigma`` for the layer (:func:`noise_std`); new tensors."""
    sigma = noise_std(weight, bias, snr_db)

    def noisy(p: Tensor) -> Tensor:
        n = torch.randn(p.shape, generator=generator, dtype=torch.float64) * sigma
        return (p.detach().double() + n.to(p.device)).to(p.dtype)

    return noisy(weight), None if bias is None else noisy(bias)


@contextmanager
def noisy_weights(
    model: nn.Module, snr_db: float, *, generator: torch.Generator, layers: list[str] | None = None
) -> Iterator[None]:
    """Within the block the spiking layers (or the named ``layers``) run on their effective weights plus noise.

    On exit every weight, bias and bit width is restored exactly, also after an exception.
    """
    check_snr_db(snr_db)
    chosen = select_layers(model, layers)
    settings = get_weight_bits(model)
    stored = [(raw_parameter(m, "weight"), raw_parameter(m, "bias")) for _, m in chosen]
    saved = [(w.detach().clone(), None if b is None else b.detach().clone()) for w, b in stored]
    try:
        with torch.no_grad():
            for (name, m), (weight, bias) in zip(chosen, stored, strict=True):
                w, b = add_weight_noise(*effective_weights(m), snr_db, generator)
                set_weight_bits(model, None, layers=[name])
                weight.copy_(w)
                if b is not None:
                    bias.copy_(b)
        yield
    finally:
        with torch.no_grad():
            for (name, _), (weight, bias), (w, b) in zip(chosen, stored, saved, strict=True):
                weight.copy_(w)
                if b is not None:
                    bias.copy_(b)
                bits, scale, grid, bias_bits = settings[name]
                set_weight_bits(model, bits, scale=scale, grid=grid, bias_bits=bias_bits, layers=[name])


def jitter_spike_times(z: Tensor, level: float, generator: torch.Generator) -> Tensor:
    r"""``t' = max(0, t (1 + level * eps))`` per element of ``z = e^t``; silent inputs stay ``inf``.

    ``level = 0`` returns ``z`` itself.  Computed in float64, returned in ``z``'s dtype.
    """
    level = check_jitter(level)
    if level == 0:
        return z
    eps = torch.randn(z.shape, generator=generator, dtype=torch.float64).to(z.device)
    t = torch.log(z.double())
    t_new = torch.clamp(t * (1.0 + level * eps), min=0.0)
    return torch.where(torch.isfinite(z), torch.exp(t_new), z.double()).to(z.dtype)


# ----------------------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class EvalSpec:
    """How to run the test set: the batch size.  The model's own encoder feeds it (its kind, alpha, dtype)."""

    batch_size: int = 500


def _evaluate(model: nn.Module, x: Tensor, y: Tensor, spec: EvalSpec,
              transform: Callable[[Tensor], Tensor] | None = None) -> dict[str, Any]:
    from tcsnn.metrics import evaluate

    return evaluate(model, x, y, batch_size=spec.batch_size, input_transform=transform)


def summarize_draws(kind: str, value: float | int | None, metrics: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One result row from the metrics of each draw (mean and sample std of the test accuracy)."""
    acc = [float(m["test_accuracy"]) for m in metrics]
    mean = sum(acc) / len(acc)
    std = math.sqrt(sum((a - mean) ** 2 for a in acc) / (len(acc) - 1)) if len(acc) > 1 else 0.0
    return {
        "kind": kind, "value": value, "draws": len(acc), "accuracies": acc,
        "mean_accuracy": mean, "std_accuracy": std, "min_accuracy": min(acc), "max_accuracy": max(acc),
        "mean_no_decision_rate": sum(float(m["no_decision_rate"]) for m in metrics) / len(acc),
        "mean_spike_share": sum(float(m["spike_share"]) for m in metrics) / len(acc),
    }


def evaluate_bits(model: nn.Module, x: Tensor, y: Tensor, bits: int, spec: EvalSpec, *,
                  scale: str = "max", grid: str = "symmetric", bias_bits: int | None = None,
                  layers: list[str] | None = None) -> dict[str, Any]:
    """Accuracy with the (named) spiking layers quantised to ``bits``; the model's bit widths are restored."""
    check_bits(bits)
    before = get_weight_bits(model)
    try:
        set_weight_bits(model, bits, scale=scale, grid=grid, bias_bits=bias_bits, layers=layers)
        return summarize_draws("bits", int(bits), [_evaluate(model, x, y, spec)])
    finally:
        for name, (b, rule, g, bb) in before.items():
            set_weight_bits(model, b, scale=rule, grid=g, bias_bits=bb, layers=[name])


def evaluate_weight_noise(model: nn.Module, x: Tensor, y: Tensor, snr_db: float, spec: EvalSpec, *,
                          draws: int = 5, seed: int = 0, layers: list[str] | None = None,
                          on_draw: Callable[[], None] | None = None) -> dict[str, Any]:
    """Accuracy under weight noise at ``snr_db`` over ``draws`` seeded draws; the weights are restored."""
    check_snr_db(snr_db)
    metrics = []
    for d in range(check_draws(draws)):
        with noisy_weights(model, snr_db, generator=draw_generator(seed, d), layers=layers):
            metrics.append(_evaluate(model, x, y, spec))
        if on_draw is not None:
            on_draw()
    return summarize_draws("snr", float(snr_db), metrics)


def evaluate_jitter(model: nn.Module, x: Tensor, y: Tensor, level: float, spec: EvalSpec, *,
                    draws: int = 5, seed: int = 0, on_draw: Callable[[], None] | None = None) -> dict[str, Any]:
    """Accuracy with input spike times jittered at relative ``level`` over ``draws`` seeded draws."""
    check_jitter(level)
    metrics = []
    for d in range(check_draws(draws)):
        gen = draw_generator(seed, d)
        metrics.append(_evaluate(model, x, y, spec, lambda z, g=gen: jitter_spike_times(z, level, g)))
        if on_draw is not None:
            on_draw()
    return summarize_draws("jitter", float(level), metrics)


# ------------------------------------------------------------------------------------------- the sweep


def _row_key(kind: str, value: float | int | None) -> tuple[str, float | None]:
    return kind, None if value is None else float(value)


def _sorted_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def key(r: dict[str, Any]) -> tuple[int, float]:
        v = r["value"]
        # bits from many to few, SNR and jitter ascending
        return KINDS.index(r["kind"]), 0.0 if v is None else (-v if r["kind"] == "bits" else v)

    return sorted(rows, key=key)


def run_sweep(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    spec: EvalSpec,
    out_dir: str | Path,
    *,
    settings: dict[str, Any],
    bits: Sequence[int] = DEFAULT_BITS,
    snr_db: Sequence[float] = DEFAULT_SNR_DB,
    jitter: Sequence[float] = DEFAULT_JITTER,
    draws: int = 5,
    seed: int = 0,
    scale: str = "max",
    grid: str = "symmetric",
    bias_bits: int | None = None,
    layers: list[str] | None = None,
    source: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Baseline, bits, SNR and jitter rows into ``out_dir/robustness.json`` (rewritten after every row).

    ``settings`` identifies the experiment (checkpoint hash, data, limit, draws, seed, layers); rows of an
    existing ``robustness.json`` with equal settings are kept and not recomputed, different settings raise
    ValueError.  ``source`` (the checkpoint path; the CLI gives it relative to ``out_dir``) is recorded but not
    compared.  Returns the JSON document.
    """
    from tqdm.auto import tqdm

    bits = [check_bits(b) for b in bits]
    snr_db = [check_snr_db(s) for s in snr_db]
    jitter = [check_jitter(j) for j in jitter]
    check_draws(draws)
    check_scale(scale)
    check_grid(grid)
    if layers is not None:
        select_layers(model, layers)  # unknown names fail before any work
    from tcsnn.io import ensure_folder

    out_dir = ensure_folder(out_dir)
    path = out_dir / "robustness.json"
    doc: dict[str, Any] = {"format": ROBUSTNESS_FORMAT, "version": ROBUSTNESS_VERSION, "source": source,
                           "settings": settings, "rows": []}
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON ({exc}); delete it or pick another --out") from exc
        if old.get("format") != ROBUSTNESS_FORMAT or old.get("version") != ROBUSTNESS_VERSION:
            raise ValueError(f"{path} is not a tcsnn robustness table; pick another --out")
        differ = sorted(k for k in set(settings) | set(old.get("settings", {}))
                        if settings.get(k) != old["settings"].get(k))
        if differ:
            raise ValueError(f"{path} holds results for other settings ({', '.join(differ)} differ); "
                             "pick another --out or delete it")
        doc["rows"] = old["rows"]
    done = {_row_key(r["kind"], r["value"]) for r in doc["rows"]}

    # one closure per row; the noise / jitter ones tick the progress bar (created below) once per draw
    tasks: list[tuple[str, float | int | None, Callable[[], dict[str, Any]]]] = [
        ("baseline", None, lambda: summarize_draws("baseline", None, [_evaluate(model, x, y, spec)]))]
    tasks += [("bits", b, lambda b=b: evaluate_bits(model, x, y, b, spec, scale=scale, grid=grid,
                                                          bias_bits=bias_bits, layers=layers))
              for b in bits]
    tasks += [("snr", v, lambda v=v: evaluate_weight_noise(model, x, y, v, spec, draws=draws, seed=seed,
                                                           layers=layers, on_draw=bar.update))
              for v in snr_db]
    tasks += [("jitter", v, lambda v=v: evaluate_jitter(model, x, y, v, spec, draws=draws, seed=seed,
                                                        on_draw=bar.update))
              for v in jitter]
    todo = {_row_key(kind, value): (kind, value, fn) for kind, value, fn in tasks}  # also drops repeats
    todo = {k: t for k, t in todo.items() if k not in done}
    n_evals = sum(draws if kind in ("snr", "jitter") else 1 for kind, _, _ in todo.values())
    bar = tqdm(total=n_evals, desc="robustness", disable=not progress, file=sys.stderr)
    try:
        for kind, value, fn in todo.values():
            bar.set_postfix_str(kind if value is None else f"{kind} {value:g}")
            row = fn()
            if kind in ("baseline", "bits"):
                bar.update()
            doc["rows"] = _sorted_rows(doc["rows"] + [row])
            write_json(path, doc)
    finally:
        bar.close()
    write_json(path, doc)
    return doc


# --------------------------------------------------------------------------------------------- outputs


def write_csv(doc: dict[str, Any], path: str | Path) -> None:
    from tcsnn.io import write_csv as write_csv_file

    write_csv_file(path, CSV_COLUMNS, (["" if r[c] is None else r[c] for c in CSV_COLUMNS] for r in doc["rows"]))


#: How plot titles name the data sets.
_DATASET_TITLES = {"digits": "8x8 digits", "mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}


def sweep_title(doc: dict[str, Any], model: str | None = None) -> str:
    """A plot title naming the data set, the model (when given) and the number of test images of a sweep."""
    settings = doc.get("settings", {})
    dataset = settings.get("dataset")
    parts = [_DATASET_TITLES.get(dataset, str(dataset)) if dataset is not None else "unknown data set"]
    if model:
        parts.append(model)
    if settings.get("n_test") is not None:
        parts.append(f"{settings['n_test']:,} test images")
    return ", ".join(parts)


def plot_sweeps(doc: dict[str, Any], out_dir: str | Path, *, title: str | None = None) -> list[Path]:
    """``accuracy_vs_{bits,snr,jitter}.png`` for each kind with rows; the baseline as a dashed line.

    Every plot is titled ``title`` (default: :func:`sweep_title` of ``doc``), so that the figures of two models or
    data sets cannot be mistaken for each other.
    """
    from matplotlib.figure import Figure

    from tcsnn.io import save_figure

    out_dir = Path(out_dir)
    title = sweep_title(doc) if title is None else title
    base = [r for r in doc["rows"] if r["kind"] == "baseline"]
    labels = {"bits": "weight bits", "snr": "weight SNR (dB)", "jitter": "input jitter |dt|/t (%)"}
    written = []
    for kind, xlabel in labels.items():
        rows = sorted((r for r in doc["rows"] if r["kind"] == kind), key=lambda r: r["value"])
        if not rows:
            continue
        xs = [r["value"] * (100 if kind == "jitter" else 1) for r in rows]
        fig = Figure(figsize=(4.5, 3.4), layout="constrained")
        ax = fig.add_subplot()
        ax.errorbar(xs, [100 * r["mean_accuracy"] for r in rows], yerr=[100 * r["std_accuracy"] for r in rows],
                    marker="o", capsize=3, label="perturbed" if kind != "bits" else "quantised")
        if base:
            ax.axhline(100 * base[0]["mean_accuracy"], ls="--", color="k", lw=1, label="unperturbed (as loaded)")
        if kind == "bits":
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs, [str(int(v)) for v in xs])
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
        path = save_figure(fig, out_dir / f"accuracy_vs_{kind}.png", dpi=120)
        written.append(path)
    return written


def format_table(doc: dict[str, Any]) -> str:
    lines = [f"{'kind':<9}{'value':>8}{'draws':>7}{'accuracy':>11}{'std':>8}{'no spike':>10}"]
    for r in doc["rows"]:
        value = "-" if r["value"] is None else f"{r['value']:g}"
        lines.append(f"{r['kind']:<9}{value:>8}{r['draws']:>7}{r['mean_accuracy']:>10.2%}"
                     f"{r['std_accuracy']:>8.2%}{r['mean_no_decision_rate']:>10.2%}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- CLI


def load_any(path: str | Path) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """A training checkpoint (or its run folder) or a quantised export -> ``(model, run config, {model,
    model_kwargs})``; see :func:`tcsnn.loading.load_trained`."""
    from tcsnn.loading import load_trained

    trained = load_trained(path)
    return trained.model, trained.config, {"model": trained.model_name, "model_kwargs": trained.model_kwargs}
