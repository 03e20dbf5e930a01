"""Tests of tcsnn.neuromorphic.nir: NIR graphs written, read back with ``nir.read`` and checked node by node, and
their dynamics stepped by a small Euler interpreter of the NIR equations against tcsnn's exact spike times."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tcsnn.cli import main
from tcsnn.functional import encode, spike_conv2d, spike_linear
from tcsnn.models import _MODELS, create_model
from tcsnn.neuromorphic.nir import TAU_SYN, export_nir, infer_input_shape, write_nir
from tcsnn.nn import SpikingConv2d, SpikingLinear, SpikingNetwork, make_encoder
from tcsnn.train.checkpoint import save_atomic

nir = pytest.importorskip("nir")

ENCODING = {"kind": "inverted", "alpha": 1.0}
#: Euler step of the reference interpreter (times in units of tau_syn); errors are O(DT) per layer.
DT = 1e-3


def fc_model(bias: bool = True, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(SpikingLinear(12, 9, bias=bias), SpikingLinear(9, 4, bias=bias)).double()


def conv_model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        SpikingConv2d(2, 3, 3, padding=1), SpikingConv2d(3, 4, 3, stride=2), nn.Flatten(),
        SpikingLinear(4 * 3 * 3, 5),
    )


def roundtrip(model: nn.Module, tmp_path: Path, **kwargs) -> nir.NIRGraph:
    path = tmp_path / "model.nir"
    write_nir(model, path, encoding=ENCODING, **kwargs)
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind
    return nir.read(path)


def test_fc_roundtrip_structure_and_parameters(tmp_path):
    model = fc_model()
    g = roundtrip(model, tmp_path, input_shape=(12,), bias="current")
    layer_nodes = [f"{i}.{k}" for i in "01" for k in ("affine", "synapse", "neuron")]
    assert set(g.nodes) == {"input", *layer_nodes, "output"}
    chain = ["input", *layer_nodes, "output"]
    assert g.edges == list(zip(chain[:-1], chain[1:], strict=True))
    assert list(g.nodes["input"].output_type["output"]) == [12]
    assert list(g.nodes["output"].input_type["input"]) == [4]
    for i, layer in enumerate(model):
        aff, syn, neu = (g.nodes[f"{i}.{k}"] for k in ("affine", "synapse", "neuron"))
        assert isinstance(aff, nir.Affine) and isinstance(syn, nir.LI) and isinstance(neu, nir.IF)
        assert np.array_equal(aff.weight, layer.weight.detach().numpy())
        assert np.array_equal(aff.bias, layer.bias.detach().numpy())
        n = layer.out_features
        assert syn.tau.shape == (n,) and np.all(syn.tau == TAU_SYN) and np.all(syn.r == TAU_SYN)
        assert np.all(syn.v_leak == 0)
        assert neu.r.shape == (n,) and np.all(neu.r == 1) and np.all(neu.v_threshold == 1)
        w = torch.cat([layer.weight, layer.bias[:, None]], 1).detach().numpy()
        np.testing.assert_allclose(neu.v_reset, -TAU_SYN * np.clip(w, 0, None).sum(1))
        assert neu.metadata["single_spike"] and neu.metadata["tcsnn_layer"] == str(i)
        assert "APPROXIMATE" in aff.metadata["bias_mapping"]


def test_graph_metadata_records_model_and_encoding(tmp_path):
    g = roundtrip(fc_model(), tmp_path, input_shape=(12,), bias="current")
    meta = g.metadata
    assert meta["encoding"]["kind"] == "inverted" and meta["encoding"]["alpha"] == 1.0
    assert "z = exp(t)" in meta["encoding"]["values"] and "alpha * (1 - p)" in meta["encoding"]["spike_time"]
    assert meta["bias_mapping"] == "current" and "constant current" in meta["bias_mapping_doc"]
    assert meta["tau_syn"] == 1.0 and meta["threshold"] == 1.0
    assert "at most one spike" in meta["single_spike"] and "time-to-first-spike" in meta["neuron_model"]
    assert g.nodes["input"].metadata["kind"] == "inverted"
    assert export_nir(fc_model(), input_shape=(12,)).metadata["encoding"]["kind"] == "unspecified"


def test_no_bias_layers_export_as_linear(tmp_path):
    g = roundtrip(fc_model(bias=False), tmp_path, input_shape=(12,))
    assert isinstance(g.nodes["0.linear"], nir.Linear) and "0.affine" not in g.nodes
    positive = np.clip(g.nodes["1.linear"].weight, 0, None).sum(1)
    np.testing.assert_allclose(g.nodes["1.neuron"].v_reset, -positive)


def test_conv_flatten_roundtrip(tmp_path):
    model = conv_model()
    g = roundtrip(model, tmp_path, input_shape=(2, 7, 7), bias="current")
    assert g.edges[:7] == [
        ("input", "0.conv"), ("0.conv", "0.synapse"), ("0.synapse", "0.neuron"),
        ("0.neuron", "1.conv"), ("1.conv", "1.synapse"), ("1.synapse", "1.neuron"), ("1.neuron", "2.flatten"),
    ]
    c0, c1 = g.nodes["0.conv"], g.nodes["1.conv"]
    assert np.array_equal(c0.weight, model[0].weight.detach().numpy())
    assert np.array_equal(c0.bias, model[0].bias.detach().numpy())
    assert tuple(c0.padding) == (1, 1) and tuple(c0.stride) == (1, 1) and tuple(c1.stride) == (2, 2)
    assert list(c1.output_type["output"]) == [4, 3, 3]
    assert g.nodes["1.neuron"].v_threshold.shape == (4, 3, 3)
    flat = g.nodes["2.flatten"]
    assert list(flat.input_type["input"]) == [4, 3, 3] and list(flat.output_type["output"]) == [36]
    assert flat.start_dim == 0 and flat.end_dim == -1  # torch's start_dim 1 without the batch axis
    assert np.array_equal(g.nodes["3.affine"].weight, model[3].weight.detach().numpy())


def test_spike_bias_mapping_adds_t0_inputs(tmp_path):
    model = conv_model()
    g = roundtrip(model, tmp_path, input_shape=(2, 7, 7), bias="spike")
    assert g.metadata["bias_mapping"] == "spike"
    assert np.all(g.nodes["0.conv"].bias == 0) and isinstance(g.nodes["3.linear"], nir.Linear)
    for i, shape in [("0", [1, 7, 7]), ("1", [1, 3, 3]), ("3", [1])]:
        assert isinstance(g.nodes[f"{i}.t0"], nir.Input)
        assert list(g.nodes[f"{i}.t0"].output_type["output"]) == shape
        assert "t = 0" in g.nodes[f"{i}.t0"].metadata["role"]
        assert (f"{i}.t0", f"{i}.bias") in g.edges and (f"{i}.bias", f"{i}.synapse") in g.edges
    np.testing.assert_array_equal(g.nodes["0.bias"].weight[:, 0, 0, 0], model[0].bias.detach().numpy())
    np.testing.assert_array_equal(g.nodes["3.bias"].weight[:, 0], model[3].bias.detach().numpy())


def test_maxpool_is_refused_by_name():
    with pytest.raises(ValueError, match=r"layer 'features.1' \(SpikingMaxPool2d\).*no NIR node"):
        export_nir(create_model("scnn_tiny"), input_shape=(1, 8, 8))


@pytest.mark.parametrize(
    ("layers", "kwargs", "error", "match"),
    [
        ([SpikingLinear(4, 3), nn.ReLU()], {}, TypeError, r"'1' \(ReLU\) has no NIR mapping"),
        ([SpikingLinear(4, 3)], {"input_shape": (5,)}, ValueError, r"expects input shape \(4,\)"),
        ([SpikingConv2d(1, 2, 3)], {"input_shape": (1, 2, 2)}, ValueError, "smaller than the 3x3 kernel"),
        ([SpikingConv2d(1, 2, 3)], {"input_shape": (2, 5, 5)}, ValueError, r"input shape \(1, H, W\)"),
        ([SpikingLinear(4, 3)], {"input_shape": (0,)}, ValueError, "positive ints"),
        ([nn.Flatten(0)], {}, ValueError, "batch axis"),
        ([], {}, ValueError, "no layers"),
        ([SpikingLinear(4, 3)], {"bias": "constant"}, ValueError, "unknown bias mapping"),
        ([SpikingLinear(4, 3)], {"encoding": {"kind": "rate"}}, ValueError, "unknown encoding"),
        ([SpikingLinear(4, 3)], {"encoding": {"kind": "direct", "alpha": -1}}, ValueError, "alpha"),
    ],
)
def test_specific_errors(layers, kwargs, error, match):
    with pytest.raises(error, match=match):
        export_nir(nn.Sequential(*layers), **{"input_shape": (4,), **kwargs})


def test_missing_nir_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "nir", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'tcsnn\[nir\]'"):
        export_nir(fc_model(), input_shape=(12,))


# --- dynamics: an Euler interpreter of the NIR equations ---------------------------------------------------

class EulerNIR:
    """Steps the NIR equations of ``graph`` by DT.  Spikes are deltas: amplitude 1/DT for one step.

    Graph inputs other than ``"input"`` (the ``*.t0`` bias sources) spike once, at t = 0.
    """

    def __init__(self, graph: nir.NIRGraph, input_times: np.ndarray) -> None:
        self.graph, self.batch = graph, input_times.shape[0]
        self.order = _topological(graph)
        self.preds = {n: [a for a, b in graph.edges if b == n] for n in graph.nodes}
        self.state: dict[str, np.ndarray | float] = {n: 0.0 for n in graph.nodes}  # LI current, IF voltage
        self.spikes = {n: 0 for n, node in graph.nodes.items() if isinstance(node, nir.IF)}  # per neuron
        self.in_step = np.ceil(input_times / DT)  # (B, ...) step of each input spike

    def step(self, k: int) -> np.ndarray:
        """Advance to t = k DT; returns what reaches the Output node."""
        out: dict[str, np.ndarray] = {}
        for name in self.order:
            node, state = self.graph.nodes[name], self.state[name]
            x = sum(out[p] for p in self.preds[name]) if self.preds[name] else None
            if isinstance(node, nir.Input):
                shape = (self.batch, *node.output_type["output"])
                spiking = (self.in_step == k) if name == "input" else np.full(shape, k == 0)
                out[name] = spiking / DT
            elif isinstance(node, nir.Affine):
                out[name] = x @ node.weight.T + node.bias
            elif isinstance(node, nir.Linear):
                out[name] = x @ node.weight.T
            elif isinstance(node, nir.Conv2d):
                w, b = torch.from_numpy(node.weight), torch.from_numpy(node.bias)
                xt = torch.from_numpy(x).to(w.dtype)
                out[name] = F.conv2d(xt, w, b, tuple(node.stride), tuple(node.padding)).numpy()
            elif isinstance(node, nir.Flatten):
                out[name] = x.reshape(self.batch, -1)  # NIR start_dim 0 = everything after the batch axis
            elif isinstance(node, nir.LI):  # tau dI/dt = v_leak - I + r x
                self.state[name] = out[name] = state + DT / node.tau * (node.v_leak - state + node.r * x)
            elif isinstance(node, nir.IF):  # dv/dt = r x, spike when v > v_threshold, then v = v_reset
                v = state + DT * node.r * x
                spike = v > node.v_threshold
                self.state[name] = np.where(spike, node.v_reset, v)
                self.spikes[name] = self.spikes[name] + spike
                out[name] = spike / DT
            elif isinstance(node, nir.Output):
                return x
            else:
                raise TypeError(f"the test interpreter does not step {type(node).__name__}")
        raise ValueError("the graph has no Output node")


def run_nir(graph: nir.NIRGraph, input_times: np.ndarray, t_end: float) -> tuple[np.ndarray, int]:
    """First output spike times (B, M) up to ``t_end`` (inf: none) and the most spikes any neuron fired."""
    sim = EulerNIR(graph, input_times)
    first = np.full((input_times.shape[0], *graph.nodes["output"].input_type["input"]), np.inf)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # thousands of tiny conv2d calls: thread start-up would dominate
    try:
        for k in range(int(round(t_end / DT)) + 1):
            first[(sim.step(k) > 0) & np.isinf(first)] = k * DT
    finally:
        torch.set_num_threads(threads)
    return first, int(max(np.max(c) for c in sim.spikes.values()))


def _topological(graph: nir.NIRGraph) -> list[str]:
    order, done = [], set()
    while len(order) < len(graph.nodes):
        for n in graph.nodes:
            if n not in done and all(a in done for a, b in graph.edges if b == n):
                order.append(n)
                done.add(n)
    return order


def exact_times(model: nn.Sequential, z: torch.Tensor) -> np.ndarray:
    for layer in model:
        if isinstance(layer, SpikingLinear):
            z = spike_linear(z, layer.weight, layer.bias, backend="reference")
        elif isinstance(layer, SpikingConv2d):
            z = spike_conv2d(z, layer.weight, layer.bias, layer.stride, layer._pad, backend="reference")
        else:
            z = layer(z)
    return torch.log(z).detach().numpy()


@pytest.mark.parametrize("bias", [False, True])
def test_exported_graph_reproduces_spike_times(tmp_path, bias):
    """Stepping the NIR equations reproduces tcsnn's closed form to O(DT), with the exact bias mapping."""
    model = fc_model(bias=bias, seed=1)
    z = encode(torch.rand(6, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2)), **ENCODING)
    t_ref = exact_times(model, z)
    assert np.isfinite(t_ref).mean() > 0.5  # most outputs fire, so the comparison has teeth
    g = roundtrip(model, tmp_path, input_shape=(12,), bias="spike")
    t_nir, most_spikes = run_nir(g, torch.log(z).numpy(), t_end=float(t_ref[np.isfinite(t_ref)].max()) + 1.0)
    assert most_spikes == 1  # the single-spike reset holds
    np.testing.assert_array_equal(np.isfinite(t_nir), np.isfinite(t_ref))
    fired = np.isfinite(t_ref)
    assert np.abs(t_nir[fired] - t_ref[fired]).max() <= 5 * DT * len(model)


def test_exported_conv_graph_reproduces_spike_times(tmp_path):
    """Convolutions (zero padding = taps that never spike), flatten and the t = 0 bias inputs, stepped."""
    model = conv_model(seed=3).double()
    p = torch.rand(3, 2, 7, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    z = encode(p, **ENCODING)
    t_ref = exact_times(model, z)
    fired = np.isfinite(t_ref)
    assert fired.mean() > 0.5
    g = roundtrip(model, tmp_path, input_shape=(2, 7, 7), bias="spike")
    t_nir, most_spikes = run_nir(g, torch.log(z).numpy(), t_end=float(t_ref[fired].max()) + 1.0)
    assert most_spikes == 1
    np.testing.assert_array_equal(np.isfinite(t_nir), fired)
    assert np.abs(t_nir[fired] - t_ref[fired]).max() <= 5 * DT * 3


def test_current_bias_mapping_is_only_approximate(tmp_path):
    """A constant NIR bias current is not tcsnn's t = 0 bias spike: the times move by far more than DT."""
    model = fc_model(seed=1)
    z = encode(torch.rand(6, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2)), **ENCODING)
    t_ref = exact_times(model, z)
    g = roundtrip(model, tmp_path, input_shape=(12,), bias="current")
    t_nir, _ = run_nir(g, torch.log(z).numpy(), t_end=float(t_ref[np.isfinite(t_ref)].max()) + 1.0)
    both = np.isfinite(t_ref) & np.isfinite(t_nir)
    assert (~both & np.isfinite(t_ref)).any() or np.abs(t_nir[both] - t_ref[both]).max() > 20 * DT


# --- command line -------------------------------------------------------------------------------------------

def _fc_builder(*, in_features: int = 12, num_classes: int = 4, encoding: str = "inverted",
                alpha: float = 1.0) -> SpikingNetwork:
    return SpikingNetwork(make_encoder(encoding, alpha),
                          {"fc1": SpikingLinear(in_features, 9), "fc2": SpikingLinear(9, num_classes)})


def _checkpoint(path: Path, name: str, model: nn.Module) -> Path:
    """A checkpoint as `tcsnn train` writes it (the config is a flat TrainConfig)."""
    import dataclasses

    from tcsnn.train.config import TrainConfig

    config = dataclasses.asdict(TrainConfig(model=name, encoding="direct", alpha=2.0, dataset="digits"))
    save_atomic({"format": "tcsnn-checkpoint", "version": 1, "model": name, "model_kwargs": {},
                 "state_dict": model.state_dict(), "config": config, "epoch": 0}, path)
    return path


def test_cli_writes_a_nir_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(_MODELS, "fc_test", _fc_builder)
    model = _fc_builder()
    ckpt = _checkpoint(tmp_path / "fc.pt", "fc_test", model)
    out = tmp_path / "sub" / "fc.nir"
    assert main(["export-nir", "--checkpoint", str(ckpt), "--out", str(out), "--bias", "spike"]) == 0
    g = nir.read(out)
    assert list(g.nodes["input"].output_type["output"]) == [12]  # inferred from the first layer
    assert g.metadata["encoding"]["kind"] == "direct" and g.metadata["encoding"]["alpha"] == 2.0
    assert g.metadata["bias_mapping"] == "spike"
    assert np.array_equal(g.nodes["fc2.linear"].weight, model.fc2.weight.detach().numpy())
    assert "wrote" in capsys.readouterr().out


def test_cli_refuses_maxpool_model(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "tiny.pt", "scnn_tiny", create_model("scnn_tiny"))
    assert main(["export-nir", "--checkpoint", str(ckpt), "--out", str(tmp_path / "x.nir")]) == 2
    assert "max-pooling over spike times" in capsys.readouterr().err
    assert not (tmp_path / "x.nir").exists()


def test_infer_input_shape():
    assert infer_input_shape(create_model("scnn_tiny"), "scnn_tiny", {"image_size": 8}) == (1, 8, 8)
    assert infer_input_shape(create_model("scnn_mnist"), "scnn_mnist", {}) == (1, 28, 28)
    assert infer_input_shape(fc_model(), None, None) == (12,)
    with pytest.raises(ValueError, match="--input-shape"):
        infer_input_shape(nn.Sequential(SpikingConv2d(1, 2, 3)), None, None)


def test_cli_without_nir_says_how_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(_MODELS, "fc_test", _fc_builder)
    ckpt = _checkpoint(tmp_path / "fc.pt", "fc_test", _fc_builder())
    monkeypatch.setitem(sys.modules, "nir", None)
    assert main(["export-nir", "--checkpoint", str(ckpt), "--out", str(tmp_path / "x.nir")]) == 2
    assert "pip install 'tcsnn[nir]'" in capsys.readouterr().err


# --- branched graphs ----------------------------------------------------------------------------------------

def branched_model(seed: int = 5) -> nn.Sequential:
    """conv -> two branches (concatenated) -> strided conv -> two branches -> flatten -> FC; no pooling."""
    from tcsnn.nn import SpikingBranches, set_backend

    torch.manual_seed(seed)
    return set_backend(nn.Sequential(
        SpikingConv2d(2, 3, 3, padding=1),
        SpikingBranches(nn.Sequential(SpikingConv2d(3, 2, 1)),
                        nn.Sequential(SpikingConv2d(3, 2, 1), SpikingConv2d(2, 2, 3, padding=1))),
        SpikingConv2d(4, 3, 3, stride=2),
        SpikingBranches(nn.Sequential(SpikingConv2d(3, 2, 1)), nn.Sequential(SpikingConv2d(3, 1, 1))),
        nn.Flatten(), SpikingLinear(3 * 3 * 3, 5),
    ).double(), "reference")


def test_branched_graph_splits_the_reader_of_a_concatenation():
    model = branched_model()
    g = export_nir(model, input_shape=(2, 7, 7), bias="spike")
    # the strided conv reads both branches of block 1: one weight node per branch, both into its synapse
    assert ("1.branch1.0.neuron", "2.conv.0") in g.edges and ("1.branch2.1.neuron", "2.conv.1") in g.edges
    assert ("2.conv.0", "2.synapse") in g.edges and ("2.conv.1", "2.synapse") in g.edges
    np.testing.assert_array_equal(g.nodes["2.conv.0"].weight, model[2].weight.detach().numpy()[:, :2])
    np.testing.assert_array_equal(g.nodes["2.conv.1"].weight, model[2].weight.detach().numpy()[:, 2:])
    # flatten of a concatenation: one flatten per branch, the FC's columns split in the same blocks
    assert list(g.nodes["4.flatten.0"].output_type["output"]) == [18]
    assert list(g.nodes["4.flatten.1"].output_type["output"]) == [9]
    np.testing.assert_array_equal(g.nodes["5.linear.1"].weight, model[5].weight.detach().numpy()[:, 18:])
    with pytest.raises(ValueError, match="not a concatenation"):
        export_nir(nn.Sequential(*list(model)[:4]), input_shape=(2, 7, 7))


def test_exported_branched_graph_reproduces_spike_times():
    """The closed-form forward of the branched model and the stepped NIR equations agree to O(DT)."""
    model = branched_model()
    p = torch.rand(3, 2, 7, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    z = encode(p, **ENCODING)
    with torch.no_grad():
        t_ref = torch.log(model(z)).numpy()
    fired = np.isfinite(t_ref)
    assert 0.3 < fired.mean()  # enough outputs fire (and some stay silent) for the comparison to have teeth
    g = export_nir(model, input_shape=(2, 7, 7), bias="spike")
    t_nir, most_spikes = run_nir(g, torch.log(z).numpy(), t_end=float(t_ref[fired].max()) + 1.0)
    assert most_spikes == 1
    np.testing.assert_array_equal(np.isfinite(t_nir), fired)
    assert np.abs(t_nir[fired] - t_ref[fired]).max() <= 5 * DT * 5


def test_inception_block_with_its_pool_branch_is_refused_by_name():
    from tcsnn.nn import InceptionBlock

    with pytest.raises(ValueError, match=r"'0.branch4.0' \(SpikingMaxPool2d\).*no NIR node"):
        export_nir(nn.Sequential(InceptionBlock(2, 1, 1, 1, 1, 1, 1)), input_shape=(2, 5, 5))
