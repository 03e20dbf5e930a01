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


class EvalTally:
    """The counts of an evaluation, summed on the model's device (no host sync per batch).

    ``add`` takes each batch's output spikes; :meth:`totals` stacks them with the spike counts of
    :func:`count_spikes` into one float64 vector (to be summed over processes under torchrun), and
    :func:`metrics_from_totals` turns that vector into the metrics dict.
    """

    def __init__(self, device: torch.device | str) -> None:
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        self.decided = torch.zeros((), dtype=torch.int64, device=device)
        self.t_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.n = 0

    def add(self, z_out: Tensor, y: Tensor) -> None:
        """z_out (B, K) output spike values, y (B,) labels."""
        pred, decided = decide(z_out)
        self.correct += (decided & (pred == y)).sum()
        self.decided += decided.sum()
        self.t_sum += torch.log(z_out.min(dim=1).values[decided].double()).sum()
        self.n += y.shape[0]

    def totals(self, counts: dict[str, list[Any]]) -> Tensor:
        """[correct, decided, sum of decision times, images, spikes per layer..., neurons per layer...] (float64)."""
        device = self.t_sum.device
        return torch.stack([self.correct.double(), self.decided.double(), self.t_sum,
                            torch.tensor(float(self.n), dtype=torch.float64, device=device),
                            *(torch.as_tensor(c[0], dtype=torch.float64, device=device) for c in counts.values()),
                            *(torch.tensor(float(c[1]), dtype=torch.float64, device=device) for c in counts.values())])


def metrics_from_totals(totals: list[float], names: list[str], model: nn.Module) -> dict[str, Any]:
    """The flat metrics dict (module docstring) of :meth:`EvalTally.totals` read back as floats."""
    correct, decided_n, t_sum, n_f, *rest = totals
    n, decided_n, k = int(n_f), int(decided_n), len(names)
    per_layer = {name: (int(s), int(m)) for name, s, m in zip(names, rest[:k], rest[k:], strict=True)}
    spikes = sum(s for s, _ in per_layer.values())
    neurons = sum(m for _, m in per_layer.values())
    return {
        "test_accuracy": int(correct) / max(n, 1),
        "no_decision_rate": 1.0 - decided_n / max(n, 1),
        "mean_decision_time": t_sum / decided_n if decided_n else math.nan,
        "spike_share": spikes / max(neurons, 1),
        # layers that did not run (a GoogLeNet auxiliary head in eval mode) have no neurons to report
        "spike_share_per_layer": {k: s / m for k, (s, m) in per_layer.items() if m},
        "layer_names": layer_labels(model),  # readable names (conv1, ..., out) of the keys above
        "spikes_per_image": spikes / max(n, 1),
        "energy_per_image_J": spikes / max(n, 1) * ENERGY_PER_SPIKE_J,
        "n_test": n,
    }


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
    tally = EvalTally(x.device)
    with count_spikes(model) as counts:
        for i in tqdm(range(0, x.shape[0], batch_size), desc="eval", disable=not progress, leave=False):
            z = encoder(x[i : i + batch_size])  # (B, C, H, W) spike values in the model's dtype
            if input_transform is not None:
                z = input_transform(z)
            tally.add(body(z), y[i : i + batch_size])
    return metrics_from_totals(tally.totals(counts).tolist(), list(counts), model)


def format_metrics(m: dict[str, Any]) -> str:
    names = m.get("layer_names", {})
    layers = ", ".join(f"{names.get(k, k)}: {v:.1%}" for k, v in m["spike_share_per_layer"].items())
    return (
        f"accuracy {m['test_accuracy']:.2%} | no output spike {m['no_decision_rate']:.2%} | "
        f"neurons spiking {m['spike_share']:.1%} ({layers}) | {m['spikes_per_image']:.0f} spikes/image, "
        f"energy {m['energy_per_image_J'] * 1e9:.2f} nJ/image | mean decision time t = {m['mean_decision_time']:.3f}"
    )
