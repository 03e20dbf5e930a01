"""One training engine for every recipe.

``train(config, run_dir)`` writes into ``run_dir``: ``config.json`` (the resolved config plus versions),
``metrics.jsonl`` (one JSON line per epoch) and ``checkpoint.pt`` (written atomically after every epoch;
``resume=True`` continues from it).  One seed makes a run repeatable: the data order and the input noise of
epoch ``e`` come from generators seeded with ``(seed, e)``, so a resumed run equals an uninterrupted one.

Training rules (paper section 4.1):

* loss = classification term (:data:`tcsnn.functional.loss.LOSSES`) + ``K * sum_j max(0, beta - sum_i w_ji)``
  + ``l2 * sum w^2`` (eq. 5);
* Adam, learning rate decayed exponentially per epoch from ``lr`` to ``lr_final``;
* gradient clipping: each weight gradient G (out, fan_in) is rescaled so that its row-normalised Frobenius
  norm ``||G||_F / sqrt(out)`` (the root-mean-square of the per-neuron gradient norms) is at most
  ``grad_clip`` (10).  This is our reading of the paper's "row-normalised Frobenius norm";
* inputs are trained on noisy spike times: ``t <- t + input_noise * N(0, 1)``, i.e. ``z <- z * exp(...)``.

With ``distill_checkpoint`` the classification term is mixed with knowledge distillation from that checkpoint's
frozen model (:func:`tcsnn.functional.loss.distillation_loss`), e.g. a full-precision teacher for a
quantisation-aware student.

Two optional regularisers (:mod:`tcsnn.data.transforms`, :mod:`tcsnn.train.ema`; off by default, on in the MNIST
recipes): ``augment_shift`` translates each training image by up to that many pixels, and ``ema_decay``
evaluates and ships an exponential moving average of the weights (the raw weights stay in the checkpoint for
``--resume``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tcsnn.train.checkpoint import FORMAT, VERSION, load_checkpoint, save_atomic
from tcsnn.train.config import TrainConfig

__all__ = ["TrainConfig", "build_model", "clip_gradients_", "load_teacher", "model_kwargs", "train", "train_one_epoch",
           "validate", "weight_layers"]


def weight_layers(model: nn.Module) -> list[tuple[Tensor, Tensor | None]]:
    """The stored (full-precision) ``(weight, bias)`` of every spiking conv / linear layer, in forward order."""
    from tcsnn.nn.introspect import raw_parameter, spiking_layers

    return [(raw_parameter(m, "weight"), raw_parameter(m, "bias")) for _, m in spiking_layers(model)]


def clip_gradients_(model: nn.Module, max_norm: float) -> None:
    """Rescale each weight gradient so that ``||G||_F / sqrt(rows) <= max_norm`` (rows = neurons)."""
    for weight, bias in weight_layers(model):
        for p in (weight, bias):
            if p is None or p.grad is None:
                continue
            rows = p.shape[0] if p.dim() > 1 else 1
            norm = float(p.grad.norm()) / math.sqrt(rows)
            if norm > max_norm:
                p.grad.mul_(max_norm / norm)


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def _versions() -> dict[str, str]:
    import numba
    import numpy

    from tcsnn import __version__

    return {"tcsnn": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "numba": numba.__version__, "python": sys.version.split()[0], "platform": platform.platform()}


def _write_json(path: Path, obj: Any) -> None:
    from tcsnn.io import write_json

    write_json(path, obj, default=str)


def _load_data(cfg: TrainConfig) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    from tcsnn.data import load_arrays

    x_tr, y_tr = load_arrays(cfg.dataset, cfg.data_root, train=True)
    x_te, y_te = load_arrays(cfg.dataset, cfg.data_root, train=False)
    if cfg.train_limit is not None:
        x_tr, y_tr = x_tr[: cfg.train_limit], y_tr[: cfg.train_limit]
    if cfg.test_limit is not None:
        x_te, y_te = x_te[: cfg.test_limit], y_te[: cfg.test_limit]
    for split, x in (("training", x_tr), ("test", x_te)):
        if x.shape[0] == 0:  # evaluating nothing would report 0 % accuracy without a word
            raise ValueError(f"the {cfg.dataset} {split} split in {cfg.data_root} holds no images")
    return x_tr, y_tr, x_te, y_te


def model_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    """The :func:`tcsnn.models.create_model` arguments of a run: ``cfg.model_kwargs`` plus the input encoding."""
    from tcsnn.models import default_config

    kwargs = dict(cfg.model_kwargs)
    defaults = default_config(cfg.model)
    for key, value in (("encoding", cfg.encoding), ("alpha", cfg.alpha)):
        if key in kwargs and kwargs[key] != value:
            raise ValueError(f"bad config: model_kwargs[{key!r}] = {kwargs[key]!r} disagrees with {key} = {value!r}")
        if key in defaults:
            kwargs[key] = value
    return kwargs


def build_model(cfg: TrainConfig) -> nn.Module:
    """The run's model (encoder at the front), in ``cfg.dtype``, every layer on ``cfg.backend``."""
    from tcsnn.models import create_model

    model = create_model(cfg.model, **model_kwargs(cfg))
    model = model.to(getattr(torch, cfg.dtype))
    for m in model.modules():
        if hasattr(m, "backend"):
            m.backend = cfg.backend
    return model


def load_teacher(cfg: TrainConfig) -> nn.Module | None:
    """The frozen teacher model of ``cfg.distill_checkpoint`` (None without one), in eval mode.

    Raises ValueError when the teacher was trained on other input spikes (data set, encoding or alpha): it sees
    the student's encoded (noisy, shifted) input batch as it is.
    """
    if cfg.distill_checkpoint is None:
        return None
    from tcsnn.train.checkpoint import load_model

    teacher, tcfg = load_model(cfg.distill_checkpoint)
    for key in ("dataset", "encoding", "alpha"):
        if tcfg.get(key) != getattr(cfg, key):
            raise ValueError(f"distill_checkpoint {cfg.distill_checkpoint} was trained with {key} = "
                             f"{tcfg.get(key)!r}, this run uses {getattr(cfg, key)!r}; the teacher must see the "
                             "same input spikes")
    teacher = teacher.to(getattr(torch, cfg.dtype)).requires_grad_(False)
    return teacher


def train_one_epoch(
    model: nn.Module, opt: torch.optim.Optimizer, x_tr: Tensor, y_tr: Tensor, cfg: TrainConfig, epoch: int, *,
    teacher: nn.Module | None = None, average: Any = None, progress: bool = False,
) -> dict[str, Any]:
    """One pass over the training split in the seeded order of ``epoch``; returns the epoch's training metrics.

    ``model`` is a :class:`tcsnn.nn.SpikingNetwork`: its encoder turns the (shifted) pixels into spike values,
    the input noise ``z <- z * exp(input_noise * N(0, 1))`` is added to those, and its body computes the
    outputs.  ``average`` (a :class:`tcsnn.train.ema.WeightAverage`) is updated after every step.
    """
    from tqdm.auto import tqdm

    from tcsnn.data.transforms import random_shift
    from tcsnn.functional.loss import classification_loss, distillation_loss, l2_penalty, weight_sum_penalty
    from tcsnn.metrics import count_spikes, decide
    from tcsnn.nn.network import SpikingNetwork
    from tcsnn.quant.attach import effective_weight_layers

    if not isinstance(model, SpikingNetwork):
        raise TypeError(f"training needs a SpikingNetwork (encoder + body), got {type(model).__name__}")
    encoder, body = model.encoder, model.body
    teacher_body = None if teacher is None else teacher.body
    gen = _epoch_generator(cfg.seed, epoch)
    model.train()
    n = x_tr.shape[0]
    perm = torch.randperm(n, generator=gen)
    loss_sum = correct = seen = 0.0
    bar = tqdm(range(0, n, cfg.batch_size), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress,
               leave=False, file=sys.stderr)
    with count_spikes(model) as counts:
        for i in bar:
            idx = perm[i : i + cfg.batch_size]
            x = random_shift(x_tr[idx], cfg.augment_shift, gen)  # shift 0: the images as they are, no draw
            z = encoder(x)  # (B, C, H, W) spike values in the model's dtype
            if cfg.input_noise > 0:
                z = z * torch.exp(cfg.input_noise * torch.randn(z.shape, generator=gen, dtype=z.dtype))
            z_out = body(z)  # (B, K)
            task = classification_loss(z_out, y_tr[idx], cfg.loss)
            if teacher_body is not None:
                with torch.no_grad():
                    z_teacher = teacher_body(z)  # (B, K): the same noisy, shifted input
                task = ((1 - cfg.distill_weight) * task
                        + cfg.distill_weight * distillation_loss(z_out, z_teacher, cfg.distill_temperature))
            # The weight-sum penalty sees the weights the forward used (quantised in QAT): it is what revives
            # neurons that quantisation silenced.  L2 acts on the full-precision weights.
            loss = (task
                    + cfg.K * weight_sum_penalty(effective_weight_layers(model), cfg.beta)
                    + cfg.l2 * l2_penalty(w for w, _ in weight_layers(model)))
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"loss became {loss.item()} at epoch {epoch + 1}, step {i // cfg.batch_size}"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            clip_gradients_(model, cfg.grad_clip)
            opt.step()
            if average is not None:
                average.update(model)
            pred, decided = decide(z_out.detach())
            correct += float((decided & (pred == y_tr[idx])).sum())
            loss_sum += float(loss.detach()) * idx.numel()
            seen += idx.numel()
            if progress:
                fire = sum(c[0] for c in counts.values()) / max(1, sum(c[1] for c in counts.values()))
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}", fire=f"{fire:.2f}")
    return {"train_loss": loss_sum / seen, "train_accuracy": correct / seen,
            "train_spike_share_per_layer": {k: c[0] / max(c[1], 1) for k, c in counts.items()}}


def validate(model: nn.Module, x_te: Tensor, y_te: Tensor, cfg: TrainConfig) -> dict[str, Any]:
    """Test metrics of ``model`` (pixels in, :func:`tcsnn.metrics.evaluate`)."""
    from tcsnn.metrics import evaluate

    return evaluate(model, x_te, y_te, batch_size=cfg.eval_batch_size)


def train(cfg: TrainConfig, run_dir: str | Path, *, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train ``cfg`` into ``run_dir``; returns the last epoch's metrics."""
    from tcsnn.io import append_text, write_text
    from tcsnn.metrics import format_metrics
    from tcsnn.quant.attach import set_weight_bits
    from tcsnn.train.ema import WeightAverage

    run_dir = Path(run_dir)
    ckpt_path = run_dir / "checkpoint.pt"
    metrics_path = run_dir / "metrics.jsonl"
    if not resume and (ckpt_path.exists() or metrics_path.exists()):
        raise ValueError(
            f"run folder {run_dir} already holds a run; pass --resume to continue it or pick another --out"
        )
    torch.manual_seed(cfg.seed)
    x_tr, y_tr, x_te, y_te = _load_data(cfg)  # before creating the run folder: bad data leaves nothing behind
    model = build_model(cfg)
    kwargs = model_kwargs(cfg)
    teacher = load_teacher(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    start_epoch = 0
    last: dict[str, Any] = {}
    if resume and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path)
        saved = TrainConfig.from_dict(ckpt["config"])
        if dataclasses.replace(saved, epochs=cfg.epochs) != cfg:
            raise ValueError(
                f"--resume: the config differs from the one saved in {ckpt_path}; only --epochs may change"
            )
        # with a weight average, "state_dict" holds the averaged (evaluated) weights and "train_state_dict" the raw
        model.load_state_dict(ckpt.get("train_state_dict", ckpt["state_dict"]))
        opt.load_state_dict(ckpt["optimizer"])
        start_epoch = int(ckpt["epoch"]) + 1
        # metrics.jsonl may hold lines of an epoch whose checkpoint never landed: drop them.
        if metrics_path.exists():
            lines = [ln for ln in metrics_path.read_text().splitlines() if ln.strip()]
            kept = [ln for ln in lines if json.loads(ln)["epoch"] < start_epoch]
            write_text(metrics_path, "".join(ln + "\n" for ln in kept))
            last = json.loads(kept[-1]) if kept else {}
        print(f"resuming {run_dir} at epoch {start_epoch + 1}/{cfg.epochs}", file=sys.stderr)
        if saved.epochs != cfg.epochs and start_epoch < cfg.epochs:
            # lr_at spreads the decay over cfg.epochs: the remaining epochs follow the stretched schedule
            print(f"--resume: --epochs {saved.epochs} -> {cfg.epochs} re-spreads the lr decay over {cfg.epochs} "
                  f"epochs: epoch {start_epoch + 1} runs at lr {cfg.lr_at(start_epoch):.3g} "
                  f"(the epoch before ran at {saved.lr_at(start_epoch - 1):.3g})", file=sys.stderr)
    elif resume:
        print(f"--resume: no checkpoint in {run_dir}, starting from scratch", file=sys.stderr)
    if start_epoch == 0 and cfg.init_checkpoint:
        init = load_checkpoint(cfg.init_checkpoint)
        if init["model"] != cfg.model or init["model_kwargs"] != kwargs:
            raise ValueError(f"init_checkpoint {cfg.init_checkpoint} holds model {init['model']!r} "
                             f"{init['model_kwargs']}, not {cfg.model!r} {kwargs}")
        model.load_state_dict(init["state_dict"])
    average = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay is not None else None
    if average is not None and start_epoch > 0:
        if "weight_average" not in ckpt:
            raise ValueError(f"--resume: {ckpt_path} has no weight average although ema_decay is set")
        # the averaged values are the shipped model ("state_dict"); the average itself keeps only its counters
        average.load_state_dict(ckpt["weight_average"], params=ckpt["state_dict"])
    _write_json(run_dir / "config.json", {"config": dataclasses.asdict(cfg), "versions": _versions()})

    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.time()
        for group in opt.param_groups:
            group["lr"] = cfg.lr_at(epoch)
        bits = cfg.bits_at(epoch)
        if cfg.quant_bits:
            set_weight_bits(model, bits, scale=cfg.quant_scale, grid=cfg.quant_grid, bias_bits=cfg.quant_bias_bits)
        train_metrics = train_one_epoch(model, opt, x_tr, y_tr, cfg, epoch, teacher=teacher, average=average,
                                        progress=progress)
        train_time = time.time() - t0
        shipped = model
        if average is not None:
            shipped = copy.deepcopy(model)  # keeps the quantiser: the average is evaluated at this epoch's width
            average.copy_to(shipped)
        metrics = validate(shipped, x_te, y_te, cfg)
        last = {
            "epoch": epoch,
            "lr": cfg.lr_at(epoch),
            "bits": bits,
            **train_metrics,
            **metrics,
            "train_time_s": train_time,
            "epoch_time_s": time.time() - t0,
        }
        append_text(metrics_path, json.dumps(last) + "\n")
        ckpt_out = {"format": FORMAT, "version": VERSION, "model": cfg.model, "model_kwargs": kwargs,
                    "state_dict": shipped.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
                    "config": dataclasses.asdict(cfg)}
        if average is not None:
            ckpt_out["train_state_dict"] = model.state_dict()
            ckpt_out["weight_average"] = average.state_dict()
        save_atomic(ckpt_out, ckpt_path)
        print(f"epoch {epoch + 1}/{cfg.epochs} ({train_time:.0f} s): train acc {last['train_accuracy']:.2%} | "
              + format_metrics(metrics), file=sys.stderr, flush=True)
    return last
