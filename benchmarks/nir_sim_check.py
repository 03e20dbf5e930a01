"""tcsnn FC model -> NIR -> nirtorch graph interpreter + norse cells (Euler, step dt) vs tcsnn closed form.

Needs norse, nirtorch (not project dependencies); see docs/nir.md for the throwaway-venv setup.
"""
import sys
import tempfile

import nir
import nirtorch
import torch
from norse.torch import IAFCell, IAFParameters, LIBoxCell, LIBoxParameters
from norse.torch.functional.iaf import IAFFeedForwardState
from torch import nn

from tcsnn.functional import encode
from tcsnn.neuromorphic.nir import write_nir
from tcsnn.nn import SpikingLinear


class NIRIF(nn.Module):
    """NIR IF (dv/dt = r I) on norse's IAFCell, whose step is v += input: feed dt * r * I, start at v = 0."""

    def __init__(self, node, dt):
        super().__init__()
        self.cell = IAFCell(IAFParameters(v_th=torch.as_tensor(node.v_threshold, dtype=torch.float32),
                                          v_reset=torch.as_tensor(node.v_reset, dtype=torch.float32),
                                          method="heaviside"), dt=dt)
        self.scale = dt * torch.as_tensor(node.r, dtype=torch.float32)
        self.dt = dt

    def forward(self, x, state=None):
        if state is None:
            state = IAFFeedForwardState(v=torch.zeros_like(x))
        z, state = self.cell(self.scale * x, state)
        return z / self.dt, state  # a spike is a delta: amplitude 1/dt for one step


def affine(node):
    m = nn.Linear(node.weight.shape[1], node.weight.shape[0])
    m.weight.data = torch.from_numpy(node.weight).float()
    m.bias.data = torch.from_numpy(node.bias).float()  # nirtorch 2.6's default map leaves bias random
    return m


def simulate(path, t_in, dt, t_end):
    g = nir.read(path)
    node_map = {
        nir.Affine: affine,
        nir.LI: lambda n: LIBoxCell(LIBoxParameters(tau_mem_inv=torch.as_tensor(1 / n.tau, dtype=torch.float32),
                                                    v_leak=torch.as_tensor(n.v_leak, dtype=torch.float32)), dt=dt),
        nir.IF: lambda n: NIRIF(n, dt),
    }
    net = nirtorch.nir_to_torch(g, node_map)
    steps = int(round(t_end / dt))
    idx = torch.ceil(t_in / dt).long()  # (B, N) step of each input spike
    first = torch.full((t_in.shape[0], g.nodes["output"].input_type["input"][0]), float("inf"))
    state = None
    for k in range(steps + 1):
        x = (idx == k).float() / dt
        out, state = net(x, state)
        fired = (out > 0) & torch.isinf(first)
        first[fired] = k * dt
    return first


def main():
    torch.manual_seed(0)
    n_in, n_hid, n_out, batch, alpha = 20, 16, 8, 64, 1.0
    for bias in (False, True):
        model = nn.Sequential(SpikingLinear(n_in, n_hid, bias=bias), SpikingLinear(n_hid, n_out, bias=bias)).double()
        p = torch.rand(batch, n_in, dtype=torch.float64)
        z = encode(p, "inverted", alpha)
        t_ref = torch.log(model(z)).detach().float()  # exact times
        path = f"{tempfile.mkdtemp()}/fc_bias{int(bias)}.nir"
        write_nir(model, path, input_shape=(n_in,), encoding={"kind": "inverted", "alpha": alpha},
                  bias="current")  # nirtorch runs single-input graphs only
        t_max = float(t_ref[torch.isfinite(t_ref)].max())
        for dt in (1e-2, 1e-3):
            t_sim = simulate(path, torch.log(z).float(), dt, t_end=t_max + 2.0)
            both = torch.isfinite(t_ref) & torch.isfinite(t_sim)
            err = (t_sim - t_ref)[both].abs()
            fired_mismatch = (torch.isfinite(t_ref) != torch.isfinite(t_sim)).float().mean().item()
            pred_ref, pred_sim = t_ref.argmin(1), t_sim.argmin(1)
            print(f"bias={bias} dt={dt:g}: |dt_spike| mean {err.mean():.4f} max {err.max():.4f} "
                  f"(t range {t_ref[torch.isfinite(t_ref)].min():.2f}..{t_max:.2f}), "
                  f"fired/silent mismatch {fired_mismatch:.3f}, same class {(pred_ref == pred_sim).float().mean():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
