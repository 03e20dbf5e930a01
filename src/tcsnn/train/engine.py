"""One training engine for every recipe.

``train(config, run_dir)`` writes into ``run_dir``: ``config.json`` (the resolved config plus versions),
``metrics.jsonl`` (one JSON line per epoch) and ``checkpoint.pt`` (written atomically after every epoch;
``resume=True`` continues from it).  One seed makes a run repeatable: the data order and the input noise of
epoch ``e`` come from generators seeded with ``(seed, e)``, so a resumed run equals an uninterrupted one.

Data comes through ``torch.utils.data.DataLoader`` (:mod:`tcsnn.data.loaders`: ``num_workers`` workers, seeded
batches), and the whole step (augmentation, input noise, loss, spike statistics, gradient clipping) runs on
``device`` without waiting for it: the host reads numbers back once per epoch (and for the progress bar).
Under ``torchrun`` (:mod:`tcsnn.train.distributed`) each process takes a slice of every global batch, the
gradients are averaged by ``DistributedDataParallel``, the metrics are summed over the processes, and only
rank 0 writes the run folder; the weights follow a one-process run with the same ``batch_size`` to float
rounding.  The run folder is locked while a run writes it (:mod:`tcsnn.train.runfolder`).

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

from tcsnn.io import write_json
from tcsnn.train.checkpoint import FORMAT, VERSION, load_checkpoint, save_atomic
from tcsnn.train.config import CIFAR_CROP_PADDING, RUNTIME_FIELDS, TrainConfig
from tcsnn.train.distributed import Dist, init_distributed, strip_module_prefix

__all__ = ["TrainConfig", "build_model", "build_optimizer", "center_weight_gradients_", "clip_gradients_",
           "hold_weight_sums_", "load_teacher", "make_datasets", "model_kwargs", "penalties", "train",
           "train_one_epoch", "validate", "weight_layers"]


def weight_layers(model: nn.Module) -> list[tuple[Tensor, Tensor | None]]:
    """The stored (full-precision) ``(weight, bias)`` of every spiking conv / linear layer, in forward order."""
    from tcsnn.nn.introspect import raw_parameter, spiking_layers

    return [(raw_parameter(m, "weight"), raw_parameter(m, "bias")) for _, m in spiking_layers(model)]


def clip_gradients_(model: nn.Module, max_norm: float) -> None:
    """Rescale each weight gradient so that ``||G||_F / sqrt(rows) <= max_norm`` (rows = neurons).

    The factor ``min(1, max_norm / norm)`` is computed on the gradient's device (in float64), without a host sync.
    """
    for weight, bias in weight_layers(model):
        for p in (weight, bias):
            if p is None or p.grad is None:
                continue
            rows = p.shape[0] if p.dim() > 1 else 1
            norm = p.grad.norm().double() / math.sqrt(rows)
            p.grad.mul_((max_norm / norm).clamp(max=1.0))  # exactly 1 (a no-op) below the limit


def penalties(cfg: TrainConfig, model: nn.Module) -> Tensor:
    """The loss terms besides the task: ``K * sum_j max(0, beta - sum_i w_ji) + l2 * sum w^2`` (paper eq. 5).

    The weight-sum penalty sees the weights the forward uses (quantised in QAT): it is what revives neurons that
    quantisation silenced.  L2 acts on the full-precision weights.
    """
    from tcsnn.functional.loss import l2_penalty, weight_sum_penalty
    from tcsnn.quant.attach import effective_weight_layers

    return (cfg.K * weight_sum_penalty(effective_weight_layers(model), cfg.beta)
            + cfg.l2 * l2_penalty(w for w, _ in weight_layers(model)))


def center_weight_gradients_(model: nn.Module) -> None:
    r"""Remove from each spiking neuron's weight gradient its mean over the neuron's weights (bias excluded).

    The step then moves along :math:`\sum_i w_{ji} = \text{const}`: the gradient of the loss with respect to the
    free parameters of :func:`hold_weight_sums_`'s constraint.
    """
    for weight, _ in weight_layers(model):
        if weight.grad is not None:  # (neurons, ...fan-in dims)
            weight.grad.sub_(weight.grad.mean(dim=tuple(range(1, weight.dim())), keepdim=True))


def hold_weight_sums_(model: nn.Module, total: float) -> None:
    r"""Shift each spiking neuron's weights by one constant so that they sum to ``total`` (bias excluded).

    ``w_ji <- w_ji - (\sum_i w_ji - total) / n`` (n = fan-in) keeps each neuron's weight pattern and fixes its total
    input weight (``TrainConfig.weight_sum``; why, and which total: the README's "Held weight sums").
    """
    with torch.no_grad():
        for weight, _ in weight_layers(model):  # (neurons, ...fan-in dims)
            fan_in = tuple(range(1, weight.dim()))
            weight.sub_((weight.sum(dim=fan_in, keepdim=True) - total) / weight[0].numel())


def _versions() -> dict[str, str]:
    import numba
    import numpy

    from tcsnn import __version__

    return {"tcsnn": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "numba": numba.__version__, "python": sys.version.split()[0], "platform": platform.platform()}


@dataclasses.dataclass
class Splits:
    """The run's data: datasets, how many images of each are used, and how to batch them."""

    train: Any
    test: Any
    n_train: int
    n_test: int
    per_sample_seeds: bool  # the training set draws its own random transform per (index, seed) item
    collate: Any = None


def make_datasets(cfg: TrainConfig) -> Splits:
    """The training and test sets of ``cfg`` (limits applied): in-memory splits or an ImageNet-style folder."""
    from tcsnn.data.loaders import TensorSplit

    if cfg.dataset == "imagenet":
        from tcsnn.data.folder import ImageFolder, collate

        if cfg.data_root is None:
            raise ValueError("data set 'imagenet' needs its data folder: pass --data-root (with train/<class>/*.jpg "
                             "and val/<class>/*.jpg)")
        assert cfg.image_size is not None  # TrainConfig checks
        root = Path(cfg.data_root)
        tr = ImageFolder(root / "train", train=cfg.augment == "imagenet", image_size=cfg.image_size)
        te = ImageFolder(root / "val", train=False, image_size=cfg.image_size)
        if tr.classes != te.classes:
            raise ValueError(f"{root}: train/ and val/ have different class folders")
        n_tr = min(len(tr), cfg.train_limit or len(tr))
        n_te = min(len(te), cfg.test_limit or len(te))
        return Splits(tr, te, n_tr, n_te, per_sample_seeds=True, collate=collate)
    from tcsnn.data import load_arrays

    x_tr, y_tr = load_arrays(cfg.dataset, cfg.data_root, train=True)
    x_te, y_te = load_arrays(cfg.dataset, cfg.data_root, train=False)
    if cfg.train_limit is not None:
        x_tr, y_tr = x_tr[: cfg.train_limit], y_tr[: cfg.train_limit]
    if cfg.test_limit is not None:
        x_te, y_te = x_te[: cfg.test_limit], y_te[: cfg.test_limit]
    for what, x in (("training", x_tr), ("test", x_te)):
        if x.shape[0] == 0:
            raise ValueError(f"data set {cfg.dataset!r}: the {what} split has no images")
    return Splits(TensorSplit(x_tr, y_tr), TensorSplit(x_te, y_te), x_tr.shape[0], x_te.shape[0],
                  per_sample_seeds=False)


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


def build_model(cfg: TrainConfig, device: torch.device | str = "cpu") -> nn.Module:
    """The run's model (encoder at the front, whitening before it with ``normalize``), in ``cfg.dtype`` on
    ``device``, every layer on ``cfg.backend``."""
    from tcsnn.models import create_model

    model = create_model(cfg.model, **model_kwargs(cfg))
    model = model.to(device=device, dtype=getattr(torch, cfg.dtype))
    for m in model.modules():
        if hasattr(m, "backend"):
            m.backend = cfg.backend
    if cfg.normalize:
        from tcsnn.data.transforms import attach_whitening

        attach_whitening(model, cfg.dataset)
    if cfg.weight_sum is not None:
        hold_weight_sums_(model, cfg.weight_sum)
    return model


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Adam (default) or SGD with momentum, at ``cfg.lr`` (the engine sets each epoch's rate)."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def load_teacher(cfg: TrainConfig, device: torch.device | str = "cpu") -> nn.Module | None:
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
    teacher = teacher.to(device=device, dtype=getattr(torch, cfg.dtype)).requires_grad_(False)
    return teacher


class _Forward(nn.Module):
    """pixels (B, C, H, W) + log-noise -> (encoded input z, outputs (B, K)): the part of a step that
    ``DistributedDataParallel`` wraps (the input noise sits between the encoder and the body)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, log_noise: Tensor | None) -> tuple[Tensor, Tensor]:
        z = self.model.encoder(x)  # (B, C, H, W) spike values in the model's dtype
        if log_noise is not None:
            z = z * torch.exp(log_noise)
        return z, self.model.body(z)


def _step_generator(cfg: TrainConfig, epoch: int, cpu_gen: torch.Generator, device: torch.device) -> torch.Generator:
    """The generator of the epoch's shifts and noise: on CPU the epoch generator itself (it drew the order first),
    on another device one of that device seeded from ``(seed, epoch)``."""
    if device.type == "cpu":
        return cpu_gen
    from tcsnn.data.loaders import sample_seed

    return torch.Generator(device=device).manual_seed(sample_seed(cfg.seed, epoch, -1))


def train_one_epoch(
    model: nn.Module, opt: torch.optim.Optimizer, splits: Splits, cfg: TrainConfig, epoch: int, *,
    dist: Dist | None = None, teacher: nn.Module | None = None, average: Any = None, progress: bool = False,
) -> dict[str, Any]:
    """One pass over the training split in the seeded order of ``epoch``; returns the epoch's training metrics
    (summed over all processes).

    ``model`` is a :class:`tcsnn.nn.SpikingNetwork`: its encoder turns the (augmented) pixels into spike values,
    the input noise ``z <- z * exp(input_noise * N(0, 1))`` is added to those, and its body computes the
    outputs.  ``average`` (a :class:`tcsnn.train.ema.WeightAverage`) is updated after every step.  Random numbers
    are drawn for the whole global batch and each process applies its slice (:mod:`tcsnn.data.loaders`).
    """
    from tqdm.auto import tqdm

    from tcsnn.data.loaders import EpochBatchSampler, epoch_order, make_loader, shard
    from tcsnn.data.transforms import apply_flip, apply_shift, draw_flip, draw_shift
    from tcsnn.functional.loss import classification_loss, distillation_loss
    from tcsnn.metrics import count_spikes, decide
    from tcsnn.nn.network import SpikingNetwork

    if not isinstance(model, SpikingNetwork):
        raise TypeError(f"training needs a SpikingNetwork (encoder + body), got {type(model).__name__}")
    dist = dist or Dist(device=next(model.parameters()).device)
    device, world = dist.device, dist.world
    dtype = getattr(torch, cfg.dtype)
    fwd: nn.Module = _Forward(model)
    if dist.enabled:
        import inspect

        from torch.nn.parallel import DistributedDataParallel

        # no buffer traffic per step (the layers hold none that change); the keyword was renamed in torch 2.13
        params = inspect.signature(DistributedDataParallel).parameters
        quiet = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
        # built per epoch: the quantiser of a QAT schedule may change between epochs
        fwd = DistributedDataParallel(fwd, device_ids=[device.index] if device.type == "cuda" else None,
                                      **{quiet: False})
    teacher_body = None if teacher is None else teacher.body
    order, cpu_gen = epoch_order(splits.n_train, cfg.seed, epoch)
    gen = _step_generator(cfg, epoch, cpu_gen, device)
    sampler = EpochBatchSampler(splits.n_train, cfg.batch_size, seed=cfg.seed, rank=dist.rank, world=world,
                                per_sample_seeds=splits.per_sample_seeds)
    sampler.set_epoch(epoch, order)
    loader = make_loader(splits.train, sampler, num_workers=cfg.num_workers, seed=cfg.seed * 1_000_003 + epoch,
                         pin_memory=device.type == "cuda", collate_fn=splits.collate)
    model.train()
    check_each_step = device.type == "cpu" and not dist.enabled  # free on CPU; elsewhere once per epoch
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    bad_steps = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    counting = [True]
    bar = tqdm(total=len(sampler), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress,
               leave=False, file=sys.stderr)
    with count_spikes(model, counting) as counts:
        for step, ((_start, size), (x, y)) in enumerate(zip(sampler.global_batches(), loader, strict=True)):
            lo, hi = shard(size, dist.rank, world)
            real = hi > lo  # else this process got a stand-in image and weight 0 (the batch is shorter than world)
            part = slice(lo, hi) if real else slice(0, 1)
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            if cfg.augment_shift > 0:
                x = apply_shift(x, draw_shift(size, cfg.augment_shift, gen, device)[:, part], cfg.augment_shift)
            if cfg.augment == "cifar":
                x = apply_shift(x, draw_shift(size, CIFAR_CROP_PADDING, gen, device)[:, part], CIFAR_CROP_PADDING)
                x = apply_flip(x, draw_flip(size, gen, device)[part])
            log_noise = None
            if cfg.input_noise > 0:
                log_noise = (cfg.input_noise
                             * torch.randn((size, *x.shape[1:]), generator=gen, dtype=dtype, device=device))[part]
            counting[0] = real
            z, z_out = fwd(x, log_noise)  # z (B, C, H, W), z_out (B, K)
            task = classification_loss(z_out, y, cfg.loss, cfg.loss_temperature)
            if teacher_body is not None:
                with torch.no_grad():
                    z_teacher = teacher_body(z.detach())  # (B, K): the same noisy, shifted input
                task = ((1 - cfg.distill_weight) * task
                        + cfg.distill_weight * distillation_loss(z_out, z_teacher, cfg.distill_temperature))
            if world > 1:
                # DDP averages the processes' gradients: weigh each local mean by its share of the global batch
                task = task * ((hi - lo) * world / size)
            loss = task + penalties(cfg, model)
            if check_each_step:
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch + 1}, step {step}")
            else:
                bad_steps += (~torch.isfinite(loss)).long()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.weight_sum is not None:
                center_weight_gradients_(model)
            clip_gradients_(model, cfg.grad_clip)
            opt.step()
            if cfg.weight_sum is not None:
                hold_weight_sums_(model, cfg.weight_sum)  # Adam's per-weight scaling breaks the sums a little
            if average is not None:
                average.update(model)
            if real:
                pred, decided = decide(z_out.detach())
                correct += (decided & (pred == y)).sum()
                # one process holds the whole penalty, the task term is its share: the local mean times the count
                n_local = hi - lo
                local_loss = loss.detach().double() if world == 1 else (
                    task.detach().double() * size / world + (loss - task).detach().double() * n_local)
                loss_sum += local_loss * n_local if world == 1 else local_loss
                seen += n_local
            bar.update(1)
            if progress and world == 1:
                fire = sum(float(c[0]) for c in counts.values()) / max(1, sum(c[1] for c in counts.values()))
                bar.set_postfix(loss=f"{float(loss_sum) / max(seen, 1):.3f}",
                                acc=f"{float(correct) / max(seen, 1):.3f}", fire=f"{fire:.2f}")
    bar.close()
    names = list(counts)
    spikes = [torch.as_tensor(counts[k][0], device=device, dtype=torch.float64) for k in names]
    totals = torch.stack([loss_sum, correct.double(), torch.tensor(float(seen), device=device), bad_steps.double(),
                          *spikes, *(torch.tensor(float(counts[k][1]), device=device) for k in names)])
    loss_total, correct_total, seen_total, bad_total, *rest = dist.sum_(totals).tolist()
    if bad_total:
        raise FloatingPointError(f"loss became non-finite in {int(bad_total)} step(s) of epoch {epoch + 1}")
    k = len(names)
    return {"train_loss": loss_total / seen_total, "train_accuracy": correct_total / seen_total,
            "train_spike_share_per_layer": {n: int(s) / max(int(c), 1)
                                            for n, s, c in zip(names, rest[:k], rest[k:], strict=True)}}


@torch.no_grad()
def validate(model: nn.Module, splits: Splits, cfg: TrainConfig, dist: Dist | None = None) -> dict[str, Any]:
    """Test metrics of ``model`` on the test split, the same numbers as :func:`tcsnn.metrics.evaluate`; under
    torchrun each process evaluates a contiguous share and the counts are summed."""
    from torch.utils.data import DataLoader, Subset

    from tcsnn.data.loaders import _keep_batch, shard
    from tcsnn.metrics import EvalTally, count_spikes, metrics_from_totals

    dist = dist or Dist(device=next(model.parameters()).device)
    device = dist.device
    model.eval()
    lo, hi = shard(splits.n_test, dist.rank, dist.world)
    collate = splits.collate or _keep_batch
    loader = DataLoader(Subset(splits.test, range(lo, hi)), batch_size=cfg.eval_batch_size, shuffle=False,
                        num_workers=cfg.num_workers, collate_fn=collate, pin_memory=device.type == "cuda")
    tally = EvalTally(device)
    with count_spikes(model) as counts:
        for x, y in (loader if hi > lo else []):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            tally.add(model.body(model.encoder(x)), y)  # (B, K) output spikes
    return metrics_from_totals(dist.sum_(tally.totals(counts)).tolist(), list(counts), model)


def _config_changes(saved: TrainConfig, cfg: TrainConfig) -> list[str]:
    """Fields (other than epochs and the runtime ones) whose value differs, as ``name: saved -> new``."""
    skip = {"epochs", *RUNTIME_FIELDS}
    return [f"{f.name} is {getattr(saved, f.name)!r} in this run, not {getattr(cfg, f.name)!r}"
            for f in dataclasses.fields(TrainConfig)
            if f.name not in skip and getattr(saved, f.name) != getattr(cfg, f.name)]


def _cpu_state(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v.detach().cpu() if isinstance(v, Tensor) else v for k, v in state.items()}


def train(cfg: TrainConfig, run_dir: str | Path, *, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train ``cfg`` into ``run_dir``; returns the last epoch's metrics.

    Under torchrun (``WORLD_SIZE`` > 1) every process calls this; rank 0 alone writes ``run_dir`` and prints.
    A run that ``--resume`` finds complete (its checkpoint holds ``cfg.epochs`` epochs) returns its last metrics
    without training.
    """
    dist = init_distributed(cfg.device)
    try:
        last = _train(cfg, Path(run_dir), resume, progress, dist)
    except BaseException:
        dist.close(wait=False)
        raise
    dist.close()
    return last


def _train(cfg: TrainConfig, run_dir: Path, resume: bool, progress: bool, dist: Dist) -> dict[str, Any]:
    from tcsnn.io import append_text
    from tcsnn.metrics import format_metrics
    from tcsnn.quant.attach import set_weight_bits
    from tcsnn.train.ema import WeightAverage
    from tcsnn.train.runfolder import RunLock, recover_metrics

    ckpt_path = run_dir / "checkpoint.pt"
    metrics_path = run_dir / "metrics.jsonl"
    main = dist.is_main

    def check_free() -> None:
        if not resume and (ckpt_path.exists() or metrics_path.exists()):
            raise ValueError(
                f"run folder {run_dir} already holds a run; pass --resume to continue it or pick another --out"
            )

    def say(msg: str) -> None:
        if main:
            print(msg, file=sys.stderr, flush=True)

    dist.agree(check_free)
    torch.manual_seed(cfg.seed)
    splits = make_datasets(cfg)  # before creating the run folder: bad data leaves nothing behind
    device = dist.device
    model = build_model(cfg, device)
    kwargs = model_kwargs(cfg)
    teacher = load_teacher(cfg, device)
    opt = build_optimizer(cfg, model)

    lock: RunLock | None = None
    created = False

    def take_folder() -> None:
        nonlocal lock, created
        created = not run_dir.exists()
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = RunLock(run_dir)  # RunFolderBusy: another run writes here (nothing of ours to clean up)
        check_free()  # again, now that no one else can start a run here

    def give_up_folder() -> None:
        if lock is not None:
            lock.release()
            if created:
                lock.path.unlink(missing_ok=True)
                if not any(run_dir.iterdir()):
                    run_dir.rmdir()

    try:
        dist.agree(take_folder)
        start_epoch = 0
        last: dict[str, Any] = {}
        ckpt: dict[str, Any] = {}
        if resume and ckpt_path.exists():
            ckpt = load_checkpoint(ckpt_path)
            saved = TrainConfig.from_dict(ckpt["config"])
            changes = _config_changes(saved, cfg)
            if changes:
                raise ValueError(f"--resume: the config differs from the one saved in {ckpt_path} ("
                                 + "; ".join(changes) + "); only --epochs may change")
            # with a weight average, "state_dict" holds the averaged (evaluated) weights and "train_state_dict" the raw
            model.load_state_dict(strip_module_prefix(ckpt.get("train_state_dict", ckpt["state_dict"])))
            opt.load_state_dict(ckpt["optimizer"])
            start_epoch = int(ckpt["epoch"]) + 1
            kept = dist.agree(lambda: recover_metrics(metrics_path, ckpt.get("metrics_lines"),
                                                      start_epoch=start_epoch)) or []
            last = kept[-1] if kept else {}
            if start_epoch >= cfg.epochs:
                say(f"run {run_dir} is complete ({start_epoch} of {cfg.epochs} epochs); nothing to train "
                    "(pass a larger --epochs to continue it)")
                if lock is not None:
                    lock.release()
                return last
            say(f"resuming {run_dir} at epoch {start_epoch + 1}/{cfg.epochs}")
            if saved.epochs != cfg.epochs:
                # lr_at spreads the decay over cfg.epochs: the remaining epochs follow the stretched schedule
                say(f"--resume: --epochs {saved.epochs} -> {cfg.epochs} re-spreads the lr decay over {cfg.epochs} "
                    f"epochs: epoch {start_epoch + 1} runs at lr {cfg.lr_at(start_epoch):.3g} "
                    f"(the epoch before ran at {saved.lr_at(start_epoch - 1):.3g})")
        else:
            if resume:
                say(f"--resume: no checkpoint in {run_dir}, starting from scratch")
            dist.agree(lambda: recover_metrics(metrics_path, 0, start_epoch=0))  # lines of an epoch never saved
        if start_epoch == 0 and cfg.init_checkpoint:
            init = load_checkpoint(cfg.init_checkpoint)
            if init["model"] != cfg.model or init["model_kwargs"] != kwargs:
                raise ValueError(f"init_checkpoint {cfg.init_checkpoint} holds model {init['model']!r} "
                                 f"{init['model_kwargs']}, not {cfg.model!r} {kwargs}")
            model.load_state_dict(strip_module_prefix(init["state_dict"]))
        average = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay is not None else None
        if average is not None and start_epoch > 0:
            if "weight_average" not in ckpt:
                raise ValueError(f"--resume: {ckpt_path} has no weight average although ema_decay is set")
            # the averaged values are the shipped model ("state_dict"); the average itself keeps only its counters
            average.load_state_dict(ckpt["weight_average"], params=strip_module_prefix(ckpt["state_dict"]))
        dist.agree(lambda: write_json(run_dir / "config.json",
                                      {"config": dataclasses.asdict(cfg), "versions": _versions()}, default=str))
    except BaseException:
        if main and not (created and not (run_dir / "config.json").exists()):
            if lock is not None:
                lock.release()
        elif main:
            give_up_folder()  # a failed first start leaves no empty run folder behind
        raise

    try:
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.time()
            for group in opt.param_groups:
                group["lr"] = cfg.lr_at(epoch)
            bits = cfg.bits_at(epoch)
            if cfg.quant_bits:
                set_weight_bits(model, bits, scale=cfg.quant_scale, grid=cfg.quant_grid,
                                bias_bits=cfg.quant_bias_bits)
            train_metrics = train_one_epoch(model, opt, splits, cfg, epoch, dist=dist, teacher=teacher,
                                            average=average, progress=progress and main)
            train_time = time.time() - t0
            shipped = model
            if average is not None:
                shipped = copy.deepcopy(model)  # keeps the quantiser: the average is evaluated at this epoch's width
                average.copy_to(shipped)
            metrics = validate(shipped, splits, cfg, dist)
            last = {
                "epoch": epoch + 1,  # counted from 1, as every printed line
                "lr": cfg.lr_at(epoch),
                "bits": bits,
                **train_metrics,
                **metrics,
                "train_time_s": train_time,
                "epoch_time_s": time.time() - t0,
            }
            lines = epoch + 1
            if main:
                # the line first, then the checkpoint that says how many lines are its own: a kill between the
                # two leaves a line that --resume drops (runfolder.recover_metrics)
                append_text(metrics_path, json.dumps(last) + "\n")
                ckpt_out = {"format": FORMAT, "version": VERSION, "model": cfg.model, "model_kwargs": kwargs,
                            "state_dict": _cpu_state(shipped.state_dict()), "optimizer": opt.state_dict(),
                            "epoch": epoch, "metrics_lines": lines, "config": dataclasses.asdict(cfg)}
                if average is not None:
                    ckpt_out["train_state_dict"] = _cpu_state(model.state_dict())
                    ckpt_out["weight_average"] = average.state_dict()
                save_atomic(ckpt_out, ckpt_path)
            say(f"epoch {epoch + 1}/{cfg.epochs} ({train_time:.0f} s): train acc {last['train_accuracy']:.2%} | "
                + format_metrics(metrics))
        return last
    finally:
        if lock is not None:
            lock.release()
