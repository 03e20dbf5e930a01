r"""Export a spiking model to the Neuromorphic Intermediate Representation (NIR, https://neuroir.org).

Each spiking layer becomes three NIR nodes, the continuous-time form of paper eq. (1)-(2) with tau_syn = 1:

``Linear`` / ``Affine`` / ``Conv2d`` (the weights ``w_ji``)
    -> ``LI`` with ``tau = r = tau_syn``, ``v_leak = 0``: the exponential synapse.  An input spike through
    weight ``w`` makes the current jump by ``r w / tau = w``, then :math:`I(t) = w e^{-(t - t_i)/\tau_{syn}}`.
    -> ``IF`` with ``r = 1``, ``v_threshold = 1``: the non-leaky membrane :math:`\dot v = I`, spike at v = 1.

``torch.nn.Flatten`` becomes ``nir.Flatten`` (NIR shapes have no batch axis, so ``start_dim`` drops by one).

*Branches* (:class:`tcsnn.nn.SpikingBranches`, concatenated along channels) have no NIR node of their own: NIR
has no concatenation, but an edge list into one node sums its inputs.  A layer that reads a concatenation
gets one weight node per branch (``"<i>.conv.0"``, ``"<i>.conv.1"``, ..., holding its weights for that
branch's channels) all into its one LI synapse: the synapse receives exactly the weighted spikes of the
concatenated input, so the mapping stays exact.  A flatten of a concatenation flattens each branch
(``"<i>.flatten.0"``, ...), whose blocks are consecutive in the flattened vector.
Max-pooling over spike times (:class:`tcsnn.nn.SpikingMaxPool2d`) has no NIR node and is refused.

Two things NIR cannot say directly, and how they are mapped (also written into the graph's metadata):

*Single spike.*  NIR's ``IF`` resets to ``v_reset`` and may fire again; tcsnn neurons fire at most once.
Each neuron's ``v_reset`` is set to :math:`-\tau_{syn} \sum_i \max(w_{ji}, 0)` (bias included): after a
spike the input can add at most that much charge, so v stays below 0 < threshold and the neuron never fires
again.  This holds exactly in NIR's continuous-time semantics when every input spikes at most once.

*Bias.*  In tcsnn the bias ``b_j`` is the weight of one extra input spiking at t = 0, i.e. the current
:math:`b_j e^{-t/\tau_{syn}}`.  A NIR ``Affine``/``Conv2d`` bias is a *constant* input current ``b_j``
for all t, which charges the membrane by :math:`b_j (t - \tau_{syn} + \tau_{syn} e^{-t/\tau_{syn}})`
instead of :math:`b_j \tau_{syn} (1 - e^{-t/\tau_{syn}})`: not the same model.  ``bias=`` chooses the mapping:

``"current"``
    the bias goes into the ``Affine``/``Conv2d`` bias (the direct mapping).  One input, portable,
    **approximate**: spike times of neurons with a non-zero bias differ from tcsnn's (see ``docs/nir.md``
    for measured differences).
``"spike"`` (default)
    exact: the weight node has no bias; each biased layer gets its own ``Input`` node ``"<i>.t0"`` and a
    ``Linear``/1x1 ``Conv2d`` node ``"<i>.bias"`` holding the bias into that layer's ``LI``.  Every
    ``"*.t0"`` input must receive exactly one spike at t = 0 on every element.

Times are in units of tau_syn (tau_syn = 1); NIR ``Input`` spikes are at ``t = ln z`` of the encoding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from tcsnn._constants import THRESHOLD
from tcsnn.io import atomic_write

if TYPE_CHECKING:
    import nir
    from torch import nn

BiasMapping = Literal["current", "spike"]
BIAS_MAPPINGS: tuple[str, ...] = ("current", "spike")

#: Synaptic time constant of the neuron model (paper eq. 1: tau = 1); times are in units of it.
TAU_SYN: float = 1.0

#: How the tcsnn input encodings place input spikes, as written into the metadata.
_ENCODING_TIMES = {"inverted": "t = alpha * (1 - p)", "direct": "t = alpha * p"}

_NEURON_MODEL = (
    "non-leaky integrate-and-fire with exponentially decaying synaptic current (tau_syn = 1), threshold 1; "
    "time-to-first-spike: each neuron fires at most once (Zhou et al., AAAI 2021, eq. 1-4)"
)
_BIAS_DOC = {
    "current": (
        "APPROXIMATE: tcsnn's bias b is the weight of an extra input spiking at t = 0 (current "
        "b exp(-t/tau_syn)); here it is the Affine/Conv2d bias, which NIR defines as a constant current "
        "b for all t. Spike times of neurons with non-zero bias differ from tcsnn's, and a positive bias "
        "current can make a neuron fire again after its reset. Export with bias='spike' for the exact "
        "mapping."
    ),
    "spike": (
        "EXACT: tcsnn's bias b is the weight of an extra input spiking at t = 0. Each biased layer i has "
        "an Input node '<i>.t0' feeding a bias-only Linear/1x1-Conv2d node '<i>.bias' into its LI synapse; "
        "every '*.t0' input must receive exactly one spike at t = 0 on every element."
    ),
}
_SINGLE_SPIKE_DOC = (
    "at most one spike per neuron: v_reset = -tau_syn * (sum of positive incoming weights, bias included), "
    "the most charge the inputs can still deliver after a spike, so v never reaches threshold again "
    "(exact when every input spikes at most once)"
)


def _import_nir() -> Any:
    try:
        import nir
    except ModuleNotFoundError as exc:
        if exc.name != "nir":
            raise
        raise ModuleNotFoundError(
            "NIR export needs the optional package 'nir': pip install 'tcsnn[nir]'", name="nir"
        ) from exc
    return nir


def _check_bias_mapping(bias: str) -> None:
    if bias not in BIAS_MAPPINGS:
        raise ValueError(f"unknown bias mapping {bias!r}; choose one of {', '.join(BIAS_MAPPINGS)}")


def _encoding_metadata(encoding: dict[str, Any] | None) -> dict[str, Any]:
    from tcsnn.functional.encode import ENCODINGS

    if encoding is None:
        return {"kind": "unspecified", "values": "z = exp(t); input spikes at t = ln z"}
    if not isinstance(encoding, dict) or set(encoding) - {"kind", "alpha"} or "kind" not in encoding:
        raise ValueError(f"encoding must be a dict {{'kind': ..., 'alpha': ...}}, got {encoding!r}")
    kind = encoding["kind"]
    if kind not in ENCODINGS:
        raise ValueError(f"unknown encoding {kind!r}; choose one of {', '.join(ENCODINGS)}")
    alpha = encoding.get("alpha")
    is_number = isinstance(alpha, (int, float)) and not isinstance(alpha, bool)
    if not is_number or not math.isfinite(alpha) or alpha < 0:
        raise ValueError(f"encoding alpha must be a finite number >= 0, got {alpha!r}")
    return {
        "kind": kind,
        "alpha": float(alpha),
        "spike_time": f"{_ENCODING_TIMES[kind]}, pixel p in [0, 1]",
        "values": "z = exp(t); input spikes at t = ln z",
    }


def _check_input_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(input_shape)
    if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(
            "input_shape must be positive ints without the batch axis, e.g. (C, H, W) or (N,), "
            f"got {input_shape!r}"
        )
    return shape


def _as_numpy(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def _neuron_nodes(
    nir: Any, weight: np.ndarray, bias: np.ndarray | None, out_shape: tuple[int, ...], layer: str,
) -> tuple[Any, Any]:
    """LI synapse and single-spike IF membrane for outputs of ``out_shape``; weight (O, ...), bias (O,)."""
    o = weight.shape[0]
    positive = np.clip(weight.reshape(o, -1), 0, None).sum(axis=1).astype(np.float64)  # (O,)
    if bias is not None:
        positive += np.clip(bias, 0, None)
    per_channel = positive.reshape((o,) + (1,) * (len(out_shape) - 1))
    v_reset = -TAU_SYN * per_channel * np.ones(out_shape)  # out_shape
    synapse = nir.LI(
        tau=np.full(out_shape, TAU_SYN), r=np.full(out_shape, TAU_SYN), v_leak=np.zeros(out_shape),
        metadata={
            "tcsnn_layer": layer,
            "role": "exponential synapse: the current jumps by w at each input spike and decays with tau_syn",
        },
    )
    neuron = nir.IF(
        r=np.ones(out_shape), v_threshold=np.full(out_shape, THRESHOLD), v_reset=v_reset,
        metadata={
            "tcsnn_layer": layer,
            "role": "non-leaky membrane dv/dt = I; spike at v = 1",
            "single_spike": True,
            "single_spike_rule": _SINGLE_SPIKE_DOC,
        },
    )
    return synapse, neuron


def export_nir(
    model: nn.Module,
    *,
    input_shape: Sequence[int],
    encoding: dict[str, Any] | None = None,
    bias: BiasMapping = "spike",
) -> nir.NIRGraph:
    """Build the NIR graph of a network of tcsnn layers (see the module docstring for the mapping).

    Args:
        model: ``SpikingLinear``, ``SpikingConv2d`` and ``torch.nn.Flatten`` layers, in ``nn.Sequential`` chains
            and :class:`tcsnn.nn.SpikingBranches` (branches concatenated along channels).
        input_shape: shape of one sample without the batch axis: (C, H, W) for a convolutional first layer,
            (N,) for a fully-connected one.
        encoding: ``{"kind": "inverted" | "direct", "alpha": float}``, recorded in the metadata; None takes the
            encoder of a :class:`tcsnn.nn.SpikingNetwork` and records "unspecified" for a bare layer stack.
        bias: ``"current"`` (NIR Affine bias; approximate) or ``"spike"`` (exact; extra t = 0 inputs).

    Returns:
        A type-checked ``nir.NIRGraph`` with nodes ``"input"``, ``"<i>.affine"`` / ``"<i>.linear"`` /
        ``"<i>.conv"``, ``"<i>.synapse"`` (LI), ``"<i>.neuron"`` (IF), ``"<i>.flatten"``, ``"output"`` (and,
        with ``bias="spike"``, ``"<i>.t0"`` and ``"<i>.bias"``), ``<i>`` being the layer's name in ``model``.

    Raises:
        ValueError: a max-pool layer (no NIR node takes the earliest spike), shapes that do not fit the
            layers, a bad encoding or bias mapping.
        TypeError: a layer type with no NIR mapping.
    """
    from torch import nn

    from tcsnn import __version__
    from tcsnn.models.googlenet import AuxClassifier
    from tcsnn.nn import SpikingBranches, SpikingConv2d, SpikingLinear, SpikingMaxPool2d, SpikingNetwork, body_of
    from tcsnn.quant import effective_weights

    nir = _import_nir()
    _check_bias_mapping(bias)
    shape = _check_input_shape(input_shape)
    body = body_of(model)  # the body of a SpikingNetwork: spike values in
    if encoding is None and isinstance(model, SpikingNetwork):
        encoding = {"kind": model.encoder.kind, "alpha": model.encoder.alpha}
    enc = _encoding_metadata(encoding)
    if not list(body.children()) and not isinstance(body, (SpikingLinear, SpikingConv2d)):
        raise ValueError("the model has no layers to export")

    nodes: dict[str, Any] = {
        "input": nir.Input(np.array(shape), metadata={"role": "input spikes, one per element at most", **enc})
    }
    edges: list[tuple[str, str]] = []
    # A tensor is a list of parts (NIR node, shape): one part, or the branches of a concatenation along the
    # first axis.  NIR has no concatenation node; a layer reading several parts gets one weight node per part
    # (its weights' slice for those channels / features), all into its one LI synapse, whose input is their sum.
    Parts = list[tuple[str, tuple[int, ...]]]

    def joint(parts: Parts) -> tuple[int, ...]:
        return (sum(sh[0] for _, sh in parts), *parts[0][1][1:])

    def leaf(name: str, layer: nn.Module, parts: Parts) -> Parts:
        kind = type(layer).__name__
        if isinstance(layer, SpikingMaxPool2d):
            raise ValueError(
                f"layer {name!r} ({kind}): max-pooling over spike times (earliest spike of each window) "
                "has no NIR node; NIR's pooling nodes (SumPool2d, AvgPool2d) sum or average signals. "
                "Export a model without max-pool layers."
            )
        if isinstance(layer, (nn.Identity, AuxClassifier)):  # an auxiliary head is the identity in eval mode
            return parts
        if isinstance(layer, nn.Flatten):
            if layer.start_dim == 0 or layer.end_dim == 0:
                raise ValueError(f"layer {name!r} (Flatten) flattens the batch axis, which NIR shapes lack")
            if len(parts) > 1 and (layer.start_dim != 1 or layer.end_dim != -1):
                raise ValueError(f"layer {name!r} (Flatten): after a concatenation only Flatten(1, -1) is exportable")
            nir_start = layer.start_dim - 1 if layer.start_dim > 0 else layer.start_dim
            nir_end = layer.end_dim - 1 if layer.end_dim > 0 else layer.end_dim
            out: Parts = []
            for i, (src, part_shape) in enumerate(parts):
                node = nir.Flatten(
                    input_type={"input": np.array(part_shape)}, start_dim=nir_start, end_dim=nir_end,
                    metadata={"tcsnn_layer": name, "torch_dims": np.array([layer.start_dim, layer.end_dim])},
                )
                node_name = f"{name}.flatten" + (f".{i}" if len(parts) > 1 else "")
                nodes[node_name] = node
                edges.append((src, node_name))
                out.append((node_name, tuple(int(s) for s in node.output_type["output"])))
            return out
        if not isinstance(layer, (SpikingLinear, SpikingConv2d)):
            raise TypeError(
                f"layer {name!r} ({kind}) has no NIR mapping; exportable layers are SpikingLinear, "
                "SpikingConv2d and torch.nn.Flatten, in nn.Sequential chains and SpikingBranches"
            )
        shape = joint(parts)
        w_eff, b_eff = effective_weights(layer)  # the weights the forward uses (quantised in QAT)
        w = _as_numpy(w_eff)
        b = _as_numpy(b_eff) if b_eff is not None else None
        meta = {"tcsnn_layer": name, "tcsnn_type": kind, "has_bias": b is not None}
        if b is not None:
            meta["bias_mapping"] = _BIAS_DOC[bias]
        bias_in_weight = b if bias == "current" else None
        weight_nodes: list[tuple[str, Any]] = []
        offsets = np.cumsum([0] + [sh[0] for _, sh in parts])
        suffix = (lambda i: f".{i}") if len(parts) > 1 else (lambda i: "")
        if isinstance(layer, SpikingLinear):
            if shape != (layer.in_features,) or any(len(sh) != 1 for _, sh in parts):
                raise ValueError(f"layer {name!r} ({kind}) expects input shape ({layer.in_features},), "
                                 f"got {shape}")
            out_shape: tuple[int, ...] = (layer.out_features,)
            for i in range(len(parts)):
                wi = np.ascontiguousarray(w[:, offsets[i]:offsets[i + 1]])
                if bias_in_weight is not None and i == 0:
                    weight_nodes.append((f"{name}.affine{suffix(i)}",
                                         nir.Affine(weight=wi, bias=bias_in_weight, metadata=meta)))
                else:
                    weight_nodes.append((f"{name}.linear{suffix(i)}", nir.Linear(weight=wi, metadata=meta)))
        else:
            if len(shape) != 3 or shape[0] != layer.in_channels:
                raise ValueError(f"layer {name!r} ({kind}) expects input shape ({layer.in_channels}, H, W), "
                                 f"got {shape}")
            h, wd = shape[1:]
            k, st, pd = layer.kernel_size, layer.stride, layer._pad
            h_out, w_out = (h + 2 * pd - k) // st + 1, (wd + 2 * pd - k) // st + 1
            if h_out < 1 or w_out < 1:
                raise ValueError(f"layer {name!r} ({kind}): input {shape} is smaller than the {k}x{k} kernel")
            out_shape = (layer.out_channels, h_out, w_out)
            meta["padding"] = "zero padding = padded taps never spike, as in tcsnn"
            for i in range(len(parts)):
                with_bias = bias_in_weight is not None and i == 0
                weight_nodes.append((f"{name}.conv{suffix(i)}", nir.Conv2d(
                    input_shape=(h, wd), weight=np.ascontiguousarray(w[:, offsets[i]:offsets[i + 1]]), stride=st,
                    padding=pd, dilation=1, groups=1,
                    bias=bias_in_weight if with_bias else np.zeros(layer.out_channels, w.dtype), metadata=meta,
                )))
        synapse, neuron = _neuron_nodes(nir, w, b, out_shape, name)
        nodes.update({f"{name}.synapse": synapse, f"{name}.neuron": neuron})
        for (src, _), (weight_name, weight_node) in zip(parts, weight_nodes, strict=True):
            nodes[weight_name] = weight_node
            edges.extend([(src, weight_name), (weight_name, f"{name}.synapse")])
        edges.append((f"{name}.synapse", f"{name}.neuron"))

        if b is not None and bias == "spike":
            t0_meta = {"tcsnn_layer": name, "role": "bias source: one spike at t = 0 on every element"}
            bias_meta = {"tcsnn_layer": name, "role": "bias weights (weights of the t = 0 spike)"}
            if isinstance(layer, SpikingLinear):
                t0_node = nir.Input(np.array([1]), metadata=t0_meta)
                bias_node = nir.Linear(weight=b[:, None].copy(), metadata=bias_meta)
            else:  # a 1x1 convolution of an all-t0 map of the output's size: b_o at every position
                t0_node = nir.Input(np.array([1, out_shape[1], out_shape[2]]), metadata=t0_meta)
                bias_node = nir.Conv2d(
                    input_shape=out_shape[1:], weight=b[:, None, None, None].copy(), stride=1, padding=0,
                    dilation=1, groups=1, bias=np.zeros_like(b), metadata=bias_meta,
                )
            nodes.update({f"{name}.t0": t0_node, f"{name}.bias": bias_node})
            edges.extend([(f"{name}.t0", f"{name}.bias"), (f"{name}.bias", f"{name}.synapse")])
        return [(f"{name}.neuron", out_shape)]

    def walk(prefix: str, m: nn.Module, parts: Parts) -> Parts:
        if isinstance(m, nn.Sequential):
            for child_name, child in m.named_children():
                parts = walk(f"{prefix}.{child_name}" if prefix else child_name, child, parts)
            return parts
        if isinstance(m, SpikingBranches):
            outs = [walk(f"{prefix}.{bn}", b, parts) for bn, b in m.branches()]
            shapes = [joint(o) for o in outs]
            if any(len(sh) != len(shapes[0]) or sh[1:] != shapes[0][1:] for sh in shapes):
                raise ValueError(f"{prefix}: branch outputs {shapes} do not concatenate along channels")
            return [part for o in outs for part in o]
        return leaf(prefix or "0", m, parts)

    parts = walk("", body, [("input", shape)])
    if len(parts) != 1:
        raise ValueError("the model must end with a spiking conv or linear layer, not a concatenation")
    prev, shape = parts[0]
    nodes["output"] = nir.Output(
        np.array(shape), metadata={"role": "output spikes; the class is the earliest output spike"}
    )
    edges.append((prev, "output"))
    metadata = {
        "source": f"tcsnn {__version__}",
        "neuron_model": _NEURON_MODEL,
        "coding": "time-to-first-spike; tcsnn values are z = exp(t); a neuron that never fires has t = inf",
        "time_unit": "tau_syn (tau_syn = 1)",
        "tau_syn": TAU_SYN,
        "threshold": THRESHOLD,
        "single_spike": _SINGLE_SPIKE_DOC,
        "bias_mapping": bias,
        "bias_mapping_doc": _BIAS_DOC[bias],
        "encoding": enc,
    }
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def write_nir(
    model: nn.Module,
    path: str | Path,
    *,
    input_shape: Sequence[int],
    encoding: dict[str, Any] | None = None,
    bias: BiasMapping = "spike",
) -> nir.NIRGraph:
    """:func:`export_nir`, then write the graph to ``path`` (HDF5) through :func:`tcsnn.io.atomic_write`."""
    nir = _import_nir()
    graph = export_nir(model, input_shape=input_shape, encoding=encoding, bias=bias)
    atomic_write(path, lambda f: nir.write(f, graph))  # new files follow the umask, like every output
    return graph


def infer_input_shape(
    model: nn.Module, model_name: str | None = None, model_kwargs: dict[str, Any] | None = None,
) -> tuple[int, ...]:
    """(N,) for a fully-connected first layer; (C, S, S) for a convolutional one built with ``image_size=S``.

    ``image_size`` is taken from ``model_kwargs`` or else from the default of the registered builder.
    """
    import inspect

    from tcsnn.models import _MODELS
    from tcsnn.nn import SpikingConv2d, SpikingLinear, flat_layers

    first = next((m for _, m in flat_layers(model) if isinstance(m, (SpikingLinear, SpikingConv2d))), None)
    if isinstance(first, SpikingLinear):
        return (first.in_features,)
    if isinstance(first, SpikingConv2d):
        kwargs: dict[str, Any] = {}
        if model_name in _MODELS:
            params = inspect.signature(_MODELS[model_name]).parameters.values()
            kwargs = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
        kwargs.update(model_kwargs or {})
        if isinstance(kwargs.get("image_size"), int):
            return (first.in_channels, kwargs["image_size"], kwargs["image_size"])
    raise ValueError("cannot tell the input shape of this model; pass it, e.g. --input-shape 1 28 28")
