r"""SpikingGoogLeNet: GoogLeNet (Inception v1, Szegedy et al. 2015) with every layer a spiking layer.

Every convolution is a :class:`tcsnn.nn.SpikingConv2d` (padded taps never spike), the classifier a
:class:`tcsnn.nn.SpikingLinear`, every pooling the earliest spike of its window (including the stride-1 pooling
branch of each :class:`tcsnn.nn.InceptionBlock`), and the branch outputs are concatenated along channels.

Two GoogLeNet operations have no exact temporal-coded meaning and are replaced:

*Local response normalisation* (after the first pooling and after ``conv3``) is **dropped**.  LRN divides an
activation by the energy of its neighbours; a spike time cannot be divided by other spike times without a
non-spiking operation, and a spiking stand-in (lateral inhibition) would change the neuron model of eq. (1).
Its role -- keeping activity in range -- is already played by the threshold of the single-spike neuron (an
output is a spike time, never a growing value), and later GoogLeNet variants removed LRN without loss.

*Final 7 x 7 average pooling* becomes a **global earliest-spike pool** (:class:`tcsnn.nn.SpikingMaxPool2d` over
the whole map): one spike per channel, at the earliest spike of that channel.  An average of spike times is
not a spike time (no neuron of eq. (1) fires at it), whereas the earliest spike is exactly what a max-pool
means in time order, costs no weights and keeps the classifier's fan-in at 1024 as in GoogLeNet.  A spiking
7 x 7 convolution would also be exact but adds weights and a layer the original network does not have.

The auxiliary classifiers are optional (``aux_classifiers=False`` by default).  When on, each one
(after ``inception_4a`` and ``inception_4d``) is an :class:`AuxClassifier` placed in the chain: it passes its
input through unchanged and, in training mode only, stores the output spike values of its own head
(5 x 5 / 3 earliest-spike pool -> 1x1 spiking conv (128) -> FC(1024) -> FC(num_classes)) in ``last_output``
(:func:`aux_outputs` collects them).  The model's output is always the main classifier's (B, num_classes).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from tcsnn.models._registry import register_model
from tcsnn.models.vgg import init_deep_
from tcsnn.nn import InceptionBlock, SpikingConv2d, SpikingLinear, SpikingMaxPool2d, SpikingNetwork, make_encoder

#: GoogLeNet Table 1: name -> (c1, c3_reduce, c3, c5_reduce, c5, pool_proj); "M" = 3 x 3 / 2 earliest-spike pool.
INCEPTION_CFG: tuple[tuple[str, tuple[int, ...]] | str, ...] = (
    ("inception_3a", (64, 96, 128, 16, 32, 32)),
    ("inception_3b", (128, 128, 192, 32, 96, 64)),
    "M",
    ("inception_4a", (192, 96, 208, 16, 48, 64)),
    ("inception_4b", (160, 112, 224, 24, 64, 64)),
    ("inception_4c", (128, 128, 256, 24, 64, 64)),
    ("inception_4d", (112, 144, 288, 32, 64, 64)),
    ("inception_4e", (256, 160, 320, 32, 128, 128)),
    "M",
    ("inception_5a", (256, 160, 320, 32, 128, 128)),
    ("inception_5b", (384, 192, 384, 48, 128, 128)),
)
#: Blocks followed by an auxiliary classifier (when ``aux_classifiers=True``).
AUX_AFTER = ("inception_4a", "inception_4d")
#: The channel counts above are given at this width; ``width`` scales them.
BASE_WIDTH = 64


class AuxClassifier(nn.Module):
    """An auxiliary head in the main chain: identity on its input; in training mode it also runs its head.

    Head: 5 x 5 / 3 earliest-spike pool -> spiking 1x1 conv (``conv_channels``) -> flatten -> spiking
    FC(``hidden``) -> spiking FC(``num_classes``).  ``last_output`` holds the head's (B, num_classes) spike
    values of the latest training forward (None in eval mode), for an auxiliary loss.
    """

    def __init__(self, in_channels: int, side: int, num_classes: int, *, conv_channels: int = 128,
                 hidden: int = 1024) -> None:
        super().__init__()
        pooled = (side - 5) // 3 + 1
        if pooled < 1:
            raise ValueError(f"an auxiliary classifier needs a map of at least 5 x 5, got {side} x {side}")
        self.head = nn.Sequential(
            SpikingMaxPool2d(5, 3), SpikingConv2d(in_channels, conv_channels, 1), nn.Flatten(),
            SpikingLinear(conv_channels * pooled * pooled, hidden), SpikingLinear(hidden, num_classes),
        )
        self.last_output: Tensor | None = None

    def forward(self, z: Tensor) -> Tensor:
        self.last_output = self.head(z) if self.training else None
        return z


def aux_outputs(model: nn.Module) -> list[Tensor]:
    """The auxiliary heads' outputs of the latest training forward of ``model`` (empty without them)."""
    return [m.last_output for m in model.modules() if isinstance(m, AuxClassifier) and m.last_output is not None]


def _w(c: int, width: int) -> int:
    return max(1, c * width // BASE_WIDTH)


@register_model(smoke={"width": 4, "image_size": 32, "num_classes": 5})
def spiking_googlenet(
    *, in_channels: int = 3, num_classes: int = 1000, image_size: int = 224, width: int = 64,
    aux_classifiers: bool = False, encoding: str = "direct", alpha: float = 5.0,
) -> SpikingNetwork:
    """SpikingGoogLeNet (Inception v1); 224 -> 112 -> 56 -> 28 -> 14 -> 7 -> 1 spatially.

    Stem: 7 x 7 / 2 spiking conv (64) -> 3 x 3 / 2 pool -> 1x1 conv (64) -> 3 x 3 conv (192) -> 3 x 3 / 2 pool;
    inception 3a, 3b, pool, 4a-4e, pool, 5a, 5b (GoogLeNet's Table 1 channels at ``width=64``, scaled by
    ``width / 64``); global earliest-spike pool; spiking FC(num_classes).  Stride-2 pools use padding 1 (padded
    taps never spike) to give GoogLeNet's map sizes.  LRN dropped and average pooling replaced: see the module
    docstring.  Initialised as the deep VGG (:data:`tcsnn.models.vgg.DEEP_INIT_MEAN_SUM`).  7.0M weights at the
    defaults (ImageNet, no auxiliary classifiers; 13.4M with them); torchvision's 6.6M differ by its 3 x 3
    instead of 5 x 5 convolution in ``branch3``: we follow the paper.

    Layer names: ``stem.0`` (conv1), ``stem.2``, ``stem.3``, ``inception_3a.branch2.1``, ..., ``classifier.0``.
    """
    if image_size < 32 or image_size % 32:
        raise ValueError(f"image_size must be a multiple of 32 (five stride-2 stages), got {image_size}")
    c64, c192 = _w(64, width), _w(192, width)
    stem = nn.Sequential(
        SpikingConv2d(in_channels, c64, 7, stride=2, padding=3), SpikingMaxPool2d(3, 2, padding=1),
        SpikingConv2d(c64, c64, 1), SpikingConv2d(c64, c192, 3, padding=1), SpikingMaxPool2d(3, 2, padding=1),
    )
    layers: OrderedDict[str, nn.Module] = OrderedDict(stem=stem)
    channels, side, pools = c192, image_size // 8, 0
    for spec in INCEPTION_CFG:
        if spec == "M":
            pools += 1
            layers[f"pool{pools + 2}"] = SpikingMaxPool2d(3, 2, padding=1)
            side //= 2
            continue
        name, cs = spec  # type: ignore[misc]
        block = InceptionBlock(channels, *(_w(c, width) for c in cs))
        layers[name] = block
        channels = block.out_channels
        if aux_classifiers and name in AUX_AFTER:
            layers[f"aux_{name[-2:]}"] = AuxClassifier(channels, side, num_classes, conv_channels=_w(128, width),
                                                       hidden=_w(1024, width))
    layers["global_pool"] = SpikingMaxPool2d(side)  # the earliest spike of each channel: (B, C, 1, 1)
    layers["flatten"] = nn.Flatten()
    layers["classifier"] = nn.Sequential(SpikingLinear(channels, num_classes))
    return init_deep_(SpikingNetwork(make_encoder(encoding, alpha), layers))  # type: ignore[return-value]
