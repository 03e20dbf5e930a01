"""Where a trained spiking CNN loses accuracy: linear probes of each block's spike times, and a fresh spiking readout.

For a checkpoint of ``tcsnn train`` (a :class:`tcsnn.nn.SpikingNetwork` with ``features`` and ``classifier``), on
the first ``--train`` training and ``--test`` test images (no augmentation):

* **linear probes**: a softmax regression (L2 ``--l2``, full-batch L-BFGS) on the standardised spike times
  ``t = ln z`` after the encoder and after every earliest-spike pool of ``features`` (silent neurons get one
  more than the latest spike time seen).  An upper bound of sorts on what a readout of that block can use.
* **spiking readout**: a fresh spiking FC layer (the model's own kind of readout: class = earliest output spike)
  trained on the final features' spike values with the run's loss, weight-sum penalty and L2, Adam, ``--epochs``
  epochs: how much of the linear probe's accuracy a first-spike readout recovers on the same features.

Set against the network's own accuracy on the same images, the three say whether the convolutions or the readout
hold a network back.

    python benchmarks/probe_readout.py --checkpoint runs/cifar10-small/checkpoint.pt --data-root DATA/cifar10
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from tcsnn.train.config import TrainConfig


def block_outputs(model: nn.Module, x: Tensor, batch: int) -> tuple[dict[str, Tensor], Tensor]:
    """Spike values (N, features) after the encoder and after each pool of ``model.features``; the outputs (N, K)."""
    from tcsnn.nn import SpikingMaxPool2d

    taps = [("input", model.encoder)]
    taps += [(f"features.{name}", m) for name, m in model.features.named_children() if isinstance(m, SpikingMaxPool2d)]
    got: dict[str, list[Tensor]] = {name: [] for name, _ in taps}
    hooks = [m.register_forward_hook(lambda _m, _i, out, name=name: got[name].append(out.flatten(1)))
             for name, m in taps]
    outs = []
    try:
        with torch.no_grad():
            for i in range(0, len(x), batch):
                outs.append(model(x[i:i + batch]))  # (b, K)
    finally:
        for h in hooks:
            h.remove()
    return {name: torch.cat(v) for name, v in got.items()}, torch.cat(outs)


def standardised_times(z_train: Tensor, z_test: Tensor) -> tuple[Tensor, Tensor]:
    """``ln z`` per neuron, silent (z = inf) -> latest finite time + 1, standardised on the training set."""
    t_train, t_test = torch.log(z_train.double()), torch.log(z_test.double())
    finite = t_train[torch.isfinite(t_train)]
    late = (finite.max().item() if finite.numel() else 0.0) + 1.0
    t_train, t_test = (torch.nan_to_num(t, posinf=late).clamp_max(late) for t in (t_train, t_test))
    mu, sd = t_train.mean(0), t_train.std(0).clamp_min(1e-6)
    return (t_train - mu) / sd, (t_test - mu) / sd


def linear_probe(x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor, l2: float,
                 steps: int = 200) -> tuple[float, float]:
    """Train / test accuracy of a softmax regression (mean cross-entropy + l2 * |W|^2) fitted by L-BFGS."""
    k = int(y_train.max()) + 1
    w = torch.zeros(x_train.shape[1], k, dtype=x_train.dtype, requires_grad=True)
    b = torch.zeros(k, dtype=x_train.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x_train @ w + b, y_train) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return (((x_train @ w + b).argmax(1) == y_train).double().mean().item(),
                ((x_test @ w + b).argmax(1) == y_test).double().mean().item())


def accuracy(z_out: Tensor, y: Tensor) -> float:
    """Share of rows whose single earliest output spike is the label (silent or tied rows are wrong)."""
    from tcsnn.metrics import decide

    pred, decided = decide(z_out)
    return ((pred == y) & decided).double().mean().item()


def spiking_readout(z_train: Tensor, y_train: Tensor, z_test: Tensor, y_test: Tensor, cfg: TrainConfig,
                    epochs: int, seed: int) -> list[tuple[float, float]]:
    """Train / test accuracy after each epoch of a fresh spiking FC readout trained with ``cfg``'s loss and
    penalties (Adam at ``cfg.lr``, batches of ``cfg.batch_size``)."""
    from tcsnn.functional.loss import classification_loss
    from tcsnn.models.vgg import DEEP_INIT_MEAN_SUM
    from tcsnn.nn import SpikingLinear
    from tcsnn.nn.layers import init_spiking_weight_
    from tcsnn.train.engine import penalties

    torch.manual_seed(seed)
    k = int(y_train.max()) + 1
    layer = SpikingLinear(z_train.shape[1], k)
    init_spiking_weight_(layer.weight, layer.bias, mean_sum=DEEP_INIT_MEAN_SUM)
    opt = torch.optim.Adam(layer.parameters(), lr=cfg.lr)

    def readout_accuracy(z: Tensor, y: Tensor) -> float:
        with torch.no_grad():
            return accuracy(torch.cat([layer(z[i:i + 1000]) for i in range(0, len(z), 1000)]), y)

    history = []
    for _ in range(epochs):
        for idx in torch.randperm(len(z_train)).split(cfg.batch_size):
            out = layer(z_train[idx])
            loss = (classification_loss(out, y_train[idx], cfg.loss, temperature=cfg.loss_temperature)
                    + penalties(cfg, layer))
            opt.zero_grad()
            loss.backward()
            opt.step()
        history.append((readout_accuracy(z_train, y_train), readout_accuracy(z_test, y_test)))
    return history


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt of a `tcsnn train` run")
    p.add_argument("--data-root", help="data folder (default: the run's)")
    p.add_argument("--train", type=int, default=10000, help="first N training images (default 10000)")
    p.add_argument("--test", type=int, default=2000, help="first N test images (default 2000)")
    p.add_argument("--l2", type=float, default=1e-3, help="L2 weight of the linear probes (default 1e-3)")
    p.add_argument("--epochs", type=int, default=20, help="epochs of the spiking readout (default 20)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()

    import tcsnn
    from tcsnn.data.datasets import load_arrays
    from tcsnn.io import write_json
    from tcsnn.train.checkpoint import load_checkpoint, load_model
    from tcsnn.train.config import TrainConfig

    tcsnn.set_num_threads(args.threads)
    model, cfg = load_model(args.checkpoint)
    epoch = int(load_checkpoint(args.checkpoint).get("epoch", -1)) + 1
    root = args.data_root or cfg["data_root"]
    x_train, y_train = load_arrays(cfg["dataset"], root, True)
    x_test, y_test = load_arrays(cfg["dataset"], root, False)
    x_train, y_train = x_train[:args.train], y_train[:args.train]
    x_test, y_test = x_test[:args.test], y_test[:args.test]

    start = time.perf_counter()
    blocks_train, out_train = block_outputs(model, x_train, cfg["eval_batch_size"])
    blocks_test, out_test = block_outputs(model, x_test, cfg["eval_batch_size"])

    result: dict[str, Any] = {"checkpoint": str(args.checkpoint), "epochs_trained": epoch, "train_images": len(y_train),
                              "test_images": len(y_test), "network": {"train": accuracy(out_train, y_train),
                                                                      "test": accuracy(out_test, y_test)},
                              "linear_probes": {}}
    print(f"{args.checkpoint} after {epoch} epochs")
    print(f"network (earliest output spike): train {result['network']['train']:.2%}  test "
          f"{result['network']['test']:.2%}  ({time.perf_counter() - start:.0f} s forward)", flush=True)
    for name, z_train in blocks_train.items():
        t_train, t_test = standardised_times(z_train, blocks_test[name])
        tr, te = linear_probe(t_train, y_train, t_test, y_test, args.l2)
        silent = torch.isinf(z_train).double().mean().item()
        result["linear_probes"][name] = {"features": z_train.shape[1], "silent": silent, "train": tr, "test": te}
        print(f"linear probe {name:12s} {z_train.shape[1]:6d} features, {silent:5.1%} silent: train {tr:.2%}  "
              f"test {te:.2%}", flush=True)
    last = list(blocks_train)[-1]
    history = spiking_readout(blocks_train[last], y_train, blocks_test[last], y_test, TrainConfig.from_dict(cfg),
                              args.epochs, args.seed)
    result["spiking_readout"] = {"features": last, "epochs": args.epochs,
                                 "train": [h[0] for h in history], "test": [h[1] for h in history]}
    best = max(range(len(history)), key=lambda i: history[i][1])
    print(f"fresh spiking FC readout on {last}: last epoch train {history[-1][0]:.2%}  test {history[-1][1]:.2%}; "
          f"best test {history[best][1]:.2%} (epoch {best + 1})")
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
