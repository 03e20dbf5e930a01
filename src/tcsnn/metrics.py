"""Evaluation: accuracy, sparsity, energy and decision time of a spiking classifier.

* class = the earliest output spike (argmin z).  A sample whose outputs never fire, or whose earliest spike
  is shared by two outputs, has no decision and counts as wrong (never as class 0).
* sparsity (paper): the share of neurons (outputs of spiking conv / linear layers) that spike, per layer and
  overall.  Max-pool outputs and input encodings are not neurons and are not counted.
* energy = spikes x 10 pJ per image (``tcsnn.ENERGY_PER_SPIKE_J``).
* decision time = t = ln z of the deciding output spike, averaged over decided samples.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from tcsnn._constants import ENERGY_PER_SPIKE_J
from tcsnn.nn.introspect import layer_labels, spiking_layers


def decide(z_out: Tensor) -> tuple[Tensor, Tensor]:
    """z_out (B, K) -> (pred (B,), decided (B,) bool).  Undecided rows have pred = -1."""
    zmin, pred = z_out.min(dim=1)
    unique = (z_out == zmin[:, None]).sum(dim=1) == 1
    decided = torch.isfinite(zmin) & unique
    return torch.where(decided, pred, torch.full_like(pred, -1)), decided


@contextmanager
def count_spikes(model: nn.Module, active: list[bool] | None = None) -> Iterator[dict[str, list[Any]]]:
    """Context manager yielding ``name -> [spikes, neurons]`` summed by forward hooks on the spiking layers.

    ``spikes`` is a tensor on the model's device (no host sync per step; ``int()`` it when reading), ``neurons`` an
    int.  With ``active`` given, a forward counts only while ``active[0]`` is true.
    """
    counts: dict[str, list[Any]] = {name: [0, 0] for name, _ in spiking_layers(model)}
    handles = []
    for name, module in spiking_layers(model):
        def hook(_m: nn.Module, _inp: Any, out: Tensor, name: str = name) -> None:
            if active is None or active[0]:
                counts[name][0] = counts[name][0] + torch.isfinite(out).sum()
                counts[name][1] += out.numel()
        handles.append(module.register_forward_hook(hook))
    try:
        yield counts
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    batch_size: int = 500,
    input_transform: Any = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate a :class:`tcsnn.nn.SpikingNetwork` on pixels x (N, C, H, W) in [0, 1] with labels y (N,).

    The model's own encoder feeds it.  ``input_transform`` (optional) maps the encoded inputs z to perturbed z
    (e.g. spike-time jitter) before the body sees them.  Returns a flat dict of metrics (module docstring).
    """
    from tqdm.auto import tqdm

    from tcsnn.nn.network import SpikingNetwork

    if not isinstance(model, SpikingNetwork):
        raise TypeError(f"evaluate needs a SpikingNetwork (encoder + body) fed with pixels, got {type(model).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    model.eval()
    encoder, body = model.encoder, model.body
    n = x.shape[0]
    correct = decided_n = 0
    t_sum = 0.0
    with count_spikes(model) as counts:
        for i in tqdm(range(0, n, batch_size), desc="eval", disable=not progress, leave=False):
            z = encoder(x[i : i + batch_size])  # (B, C, H, W) spike values in the model's dtype
            if input_transform is not None:
                z = input_transform(z)
            z_out = body(z)
            pred, decided = decide(z_out)
            yb = y[i : i + batch_size]
            correct += int((decided & (pred == yb)).sum())
            decided_n += int(decided.sum())
            t_sum += float(torch.log(z_out.min(dim=1).values[decided].double()).sum())
    counts = {k: [int(c[0]), c[1]] for k, c in counts.items()}  # one host sync, after the loop
    spikes = sum(c[0] for c in counts.values())
    neurons = sum(c[1] for c in counts.values())
    metrics: dict[str, Any] = {
        "test_accuracy": correct / max(n, 1),
        "no_decision_rate": 1.0 - decided_n / max(n, 1),
        "mean_decision_time": t_sum / decided_n if decided_n else math.nan,
        "spike_share": spikes / max(neurons, 1),
        # layers that did not run (a GoogLeNet auxiliary head in eval mode) have no neurons to report
        "spike_share_per_layer": {k: c[0] / c[1] for k, c in counts.items() if c[1]},
        "layer_names": layer_labels(model),  # readable names (conv1, ..., out) of the keys above
        "spikes_per_image": spikes / max(n, 1),
        "energy_per_image_J": spikes / max(n, 1) * ENERGY_PER_SPIKE_J,
        "n_test": n,
    }
    return metrics


def format_metrics(m: dict[str, Any]) -> str:
    names = m.get("layer_names", {})
    layers = ", ".join(f"{names.get(k, k)}: {v:.1%}" for k, v in m["spike_share_per_layer"].items())
    return (
        f"accuracy {m['test_accuracy']:.2%} | no output spike {m['no_decision_rate']:.2%} | "
        f"neurons spiking {m['spike_share']:.1%} ({layers}) | {m['spikes_per_image']:.0f} spikes/image, "
        f"energy {m['energy_per_image_J'] * 1e9:.2f} nJ/image | mean decision time t = {m['mean_decision_time']:.3f}"
    )
