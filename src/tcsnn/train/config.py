"""The run configuration: one dataclass with defaults in code; recipes, a JSON file and CLI flags override it."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

#: annotation text -> accepted kinds (the annotations are strings under ``from __future__ import annotations``)
_FIELD_KINDS: dict[str, tuple[str, ...]] = {
    "str": ("str",), "str | None": ("str", "none"), "int": ("int",), "int | None": ("int", "none"),
    "float": ("float",), "float | None": ("float", "none"), "bool": ("bool",),
    "list[int] | None": ("int_list", "none"), "dict[str, Any]": ("dict",),
}
_KIND_NAMES = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
               "none": "null", "int_list": "a list of integers", "dict": "a JSON object"}


def _is_kind(value: Any, kind: str) -> bool:
    if kind == "none":
        return value is None
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind == "dict":
        return isinstance(value, dict)
    if kind == "int_list":
        return isinstance(value, (list, tuple)) and all(_is_kind(v, "int") for v in value)
    raise AssertionError(kind)


#: Values of ``TrainConfig.augment``.
AUGMENTS: tuple[str | None, ...] = (None, "cifar", "imagenet")
#: Values of ``TrainConfig.optimizer``.
OPTIMIZERS: tuple[str, ...] = ("adam", "sgd")
#: Fields that say where and how fast a run computes, not what it computes: ``--resume`` may change them.
RUNTIME_FIELDS: tuple[str, ...] = ("device", "num_workers")
#: Pixel shift of CIFAR-10's random crop (zero padding on each side, paper section 4.1).
CIFAR_CROP_PADDING: int = 4


@dataclass
class TrainConfig:
    """Everything a run depends on; defaults in code, recipes and CLI flags override them."""

    recipe: str = "digits"
    dataset: str = "digits"
    data_root: str | None = None
    model: str = "scnn_tiny"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    encoding: str = "inverted"
    alpha: float = 1.0
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    lr_final: float = 1e-4
    loss: str = "ce"
    #: temperature T of the "time" loss (softmax on -t / T), in time constants (= loss.TIME_TEMPERATURE)
    loss_temperature: float = 0.03
    K: float = 100.0
    beta: float = 1.0
    l2: float = 1e-3
    grad_clip: float = 10.0
    #: hold every spiking neuron's total input weight (its weights' sum, bias excluded) at this value: the
    #: gradient's mean over each neuron's weights is removed before the step and the sums are reset after it
    #: (tcsnn.train.engine.hold_weight_sums_).  None: the sums are free (the paper)
    weight_sum: float | None = None
    input_noise: float = 0.0
    #: translate each training image by a random (dy, dx), each in [-augment_shift, augment_shift] pixels
    augment_shift: int = 0
    #: evaluate/ship an exponential moving average of the weights with this decay (None: the raw weights)
    ema_decay: float | None = None
    seed: int = 0
    dtype: str = "float32"
    backend: str = "auto"
    train_limit: int | None = None
    test_limit: int | None = None
    eval_batch_size: int = 500
    #: quantisation-aware training: bit widths in order, each held for quant_epochs_per_step epochs, the last
    #: one until the end (e.g. [16, 8, 4, 2]); None trains in full precision.
    quant_bits: list[int] | None = None
    quant_epochs_per_step: int = 1
    #: how each neuron's quantisation grid is scaled (tcsnn.quant.SCALES): "max" |w| or the "mse"-optimal clip
    quant_scale: str = "max"
    #: the quantiser's code range (tcsnn.quant.GRIDS): "symmetric" [-L, L] or "full" [-L, L + 1]
    quant_grid: str = "symmetric"
    #: width of the bias codes on each neuron's step (tcsnn.quant): None = the bias is one more quant_bits weight
    quant_bias_bits: int | None = None
    #: start from the weights of this checkpoint (e.g. quantisation-aware fine-tuning of a trained model)
    init_checkpoint: str | None = None
    #: knowledge distillation: this checkpoint's (frozen) model is the teacher; the classification term becomes
    #: (1 - distill_weight) * classification + distill_weight * distillation_loss(T = distill_temperature)
    distill_checkpoint: str | None = None
    distill_weight: float = 0.5
    distill_temperature: float = 4.0
    #: where the run computes: auto (the first GPU if CUDA is available, else the CPU) | cpu | cuda | cuda:N.
    #: Under torchrun, process LOCAL_RANK takes GPU LOCAL_RANK.  Not part of what --resume compares.
    device: str = "auto"
    #: DataLoader worker processes (0: batches are fetched in the training process).  Not compared on --resume.
    num_workers: int = 0
    #: training augmentation: None | "cifar" (random crop of the 4-pixel zero-padded image + horizontal flip) |
    #: "imagenet" (random-resized crop to image_size + horizontal flip); applied after augment_shift
    augment: str | None = None
    #: per-channel standardisation of the pixels with the data set's channel mean/std, mapped back onto [0, 1]
    #: (tcsnn.data.transforms.Whiten), after augmentation and before the encoder, in training and evaluation
    normalize: bool = False
    #: image side for dataset="imagenet": training crops to it, evaluation resizes to 256/224 of it and crops
    image_size: int | None = None
    #: adam | sgd (with momentum); weight_decay is the optimiser's own decoupled-from-loss L2 (both optimisers)
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        self._check_types()
        from tcsnn.functional.encode import ENCODINGS
        from tcsnn.functional.loss import LOSSES
        from tcsnn.functional.spike import BACKENDS
        from tcsnn.quant.quantizer import GRIDS, SCALES, check_bias_bits

        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.eval_batch_size >= 1, f"eval_batch_size must be >= 1, got {self.eval_batch_size}"),
            (self.train_limit is None or self.train_limit >= 1,
             f"train_limit must be >= 1 (or unset for all images), got {self.train_limit}"),
            (self.test_limit is None or self.test_limit >= 1,
             f"test_limit must be >= 1 (or unset for all images), got {self.test_limit}"),
            (self.lr > 0 and self.lr_final > 0, "lr and lr_final must be > 0"),
            (self.loss in LOSSES, f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}"),
            (self.loss_temperature > 0 and math.isfinite(self.loss_temperature),
             f"loss_temperature must be a finite number > 0, got {self.loss_temperature}"),
            (self.encoding in ENCODINGS, f"unknown encoding {self.encoding!r}; choose one of {', '.join(ENCODINGS)}"),
            (self.dtype in ("float32", "float64"), f"dtype must be float32 or float64, got {self.dtype!r}"),
            (self.backend in BACKENDS, f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}"),
            (self.alpha > 0 and math.isfinite(self.alpha), f"alpha must be a finite number > 0, got {self.alpha}"),
            (self.input_noise >= 0, f"input_noise must be >= 0, got {self.input_noise}"),
            (self.augment_shift >= 0, f"augment_shift must be >= 0, got {self.augment_shift}"),
            (self.ema_decay is None or 0 < self.ema_decay < 1, f"ema_decay must be in (0, 1), got {self.ema_decay}"),
            (self.grad_clip > 0, f"grad_clip must be > 0, got {self.grad_clip}"),
            (self.weight_sum is None or (self.weight_sum > 0 and math.isfinite(self.weight_sum)),
             f"weight_sum must be a finite number > 0 (or unset), got {self.weight_sum}"),
            (self.quant_epochs_per_step >= 1, "quant_epochs_per_step must be >= 1"),
            (self.quant_scale in SCALES, f"unknown quant_scale {self.quant_scale!r}; choose from {', '.join(SCALES)}"),
            (self.quant_grid in GRIDS, f"unknown quant_grid {self.quant_grid!r}; choose from {', '.join(GRIDS)}"),
            (0 <= self.distill_weight <= 1, f"distill_weight must be in [0, 1], got {self.distill_weight}"),
            (self.distill_temperature > 0, f"distill_temperature must be > 0, got {self.distill_temperature}"),
            (self.train_limit is None or self.train_limit >= 1,
             f"train_limit must be >= 1 (or unset for the whole split), got {self.train_limit}"),
            (self.test_limit is None or self.test_limit >= 1,
             f"test_limit must be >= 1 (or unset for the whole split), got {self.test_limit}"),
            (self.num_workers >= 0, f"num_workers must be >= 0, got {self.num_workers}"),
            (self.augment in AUGMENTS, f"unknown augment {self.augment!r}; choose one of "
             + ", ".join(map(str, AUGMENTS))),
            (self.image_size is None or self.image_size >= 1, f"image_size must be >= 1, got {self.image_size}"),
            (self.optimizer in OPTIMIZERS, f"unknown optimizer {self.optimizer!r}; choose one of "
             + ", ".join(OPTIMIZERS)),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"bad config: {msg}")
        from tcsnn.train.distributed import check_device_name

        try:
            check_device_name(self.device)
        except ValueError as exc:
            raise ValueError(f"bad config: {exc}") from exc
        if self.augment == "imagenet" and self.dataset != "imagenet":
            raise ValueError(f"bad config: augment='imagenet' needs dataset='imagenet', not {self.dataset!r}")
        if self.dataset == "imagenet" and self.image_size is None:
            raise ValueError("bad config: dataset='imagenet' needs image_size (e.g. 224)")
        if self.quant_bits is not None and any(int(b) < 2 for b in self.quant_bits):
            raise ValueError(f"bad config: quant_bits must all be >= 2, got {self.quant_bits}")
        if self.quant_bias_bits is not None:
            try:
                check_bias_bits(self.quant_bias_bits)
            except ValueError as exc:
                raise ValueError(f"bad config: quant_bias_bits: {exc}") from exc

    def _check_types(self) -> None:
        """ValueError naming the field whose value has the wrong type (e.g. ``--set lr=abc``)."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kinds = _FIELD_KINDS.get(str(f.type))
            if kinds is None:
                continue
            ok = any(_is_kind(value, k) for k in kinds)
            if not ok:
                want = " or ".join(_KIND_NAMES[k] for k in kinds)
                raise ValueError(f"bad config: {f.name} must be {want}, got {value!r} ({type(value).__name__})")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"bad config: unknown keys {sorted(unknown)}")
        return cls(**d)

    def bits_at(self, epoch: int) -> int | None:
        """Weight bit width used in (0-based) ``epoch``; None = full precision."""
        from tcsnn.quant.attach import bits_at_epoch

        return bits_at_epoch(self.quant_bits, self.quant_epochs_per_step, epoch)

    def lr_at(self, epoch: int) -> float:
        """Exponential decay from lr (first epoch) to lr_final (last epoch)."""
        if self.epochs == 1:
            return self.lr
        return self.lr * (self.lr_final / self.lr) ** (epoch / (self.epochs - 1))
