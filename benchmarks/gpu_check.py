"""One prepared check of the Triton backend on a GPU: environment, exactness on CUDA, then time and memory
against cuDNN at every VGG16 CIFAR-10 layer shape.

    python benchmarks/gpu_check.py --out gpu-check              # CUDA machine; under 8 minutes on an H200
    python benchmarks/gpu_check.py --smoke --out /tmp/gpu-smoke   # CPU, Triton interpreter, tiny shapes, seconds

Stages (each wrapped: a failure is recorded with its traceback and the next stage still runs; the results are
rewritten to ``OUT/gpu_check.json`` and ``OUT/gpu_check.md`` after every stage and every table row):

1. ``environment``: torch / triton / CUDA / cuDNN versions, GPU name.
2. ``exactness``: the Triton forward and backward on the device against the ``reference`` backend run on CPU
   copies (the ground truth of the test suite), float32 and float64: spike/no-spike pattern identical,
   relative error of z <= 1e-6 (float32) / 1e-12 (float64), gradients equal up to summation order; and two
   runs give bit-identical results (the backward has a fixed reduction order).
3. ``ratios``: forward + backward of the Triton spiking conv (3x3, padding 1, batch 128, float32,
   ``z = exp(3 U(0, 1))``, the library's default weight initialisation) against ``torch.nn.Conv2d`` + ReLU with
   cuDNN's defaults (TF32 allowed), interleaved repeats, minima; peak memory of each step beyond its inputs
   (``torch.cuda.max_memory_allocated``).
4. ``profile``: time per kernel of one Triton forward + backward (``torch.profiler``) at two table shapes.
5. ``train``: a placeholder for a later "train SpikingVGG16 for N minutes" stage (``--train-minutes``).

The Triton side calls the backend's ``conv_forward`` / ``conv_backward`` directly (what the autograd op runs).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

#: Every VGG16 layer shape on 32x32 CIFAR-10 inputs: (in_channels, out_channels, side).
VGG16_CIFAR10 = [
    (3, 64, 32), (64, 64, 32), (64, 128, 16), (128, 128, 16), (128, 256, 8),
    (256, 256, 8), (256, 512, 4), (512, 512, 4), (512, 1024, 2), (1024, 1024, 2),
]
#: Tiny rows for ``--smoke`` (the interpreter runs every program in Python).
SMOKE_ROWS = [(2, 3, 3)]

#: Exactness cases: (name, batch, in_channels, side, out_channels, kernel, stride, padding, bias, time levels).
#: More than 128 output channels / 32 input channels exercise several channel blocks of the kernels.
EXACT_CASES = [
    ("3x3 pad 1, bias, 2 output blocks", 4, 40, 8, 160, 3, 1, 1, True, None),
    ("3x3 stride 2, no bias", 4, 16, 9, 32, 3, 2, 1, False, None),
    ("5x5 stride 2 pad 2 (MNIST-like)", 4, 32, 14, 16, 5, 2, 2, True, None),
    ("linear 784 -> 10 (1x1)", 8, 784, 1, 10, 1, 1, 0, True, None),
    ("3x3 pad 1, times on 4 levels (ties)", 4, 8, 6, 8, 3, 1, 1, True, 4),
]
SMOKE_EXACT_CASES = [("3x3 stride 2 pad 1, bias, ties", 1, 2, 4, 3, 3, 2, 1, True, 3)]
RTOL = {"float32": 1e-6, "float64": 1e-12}
GRAD_TOL = {"float32": 1e-4, "float64": 1e-10}  # max |diff| / max |reference| (summation order differs)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json and gpu_check.md")
    p.add_argument("--smoke", action="store_true", help="CPU, TRITON_INTERPRET=1, tiny shapes: checks the script")
    p.add_argument("--batch", type=int, default=128, help="batch of the ratio table (default 128)")
    p.add_argument("--repeats", type=int, default=7, help="interleaved timed repeats per row (minima reported)")
    p.add_argument("--budget-s", type=float, default=420.0,
                   help="stop starting new table rows after this many seconds (default 420: the whole run < 8 min)")
    p.add_argument("--train-minutes", type=float, default=0.0,
                   help="SpikingVGG16 stage (benchmarks/gpu_vgg_stage.py): images/s against dense VGG16, then "
                        "CIFAR-10 training for the epochs that fit this many minutes; 0 skips it")
    p.add_argument("--data-root", type=Path, default=None, help="CIFAR-10 folder for the SpikingVGG16 stage")
    return p.parse_args(argv)


class Report:
    """Stage results, rewritten to OUT/gpu_check.{json,md} after every change so a cut-off run keeps them."""

    def __init__(self, out: Path, smoke: bool) -> None:
        self.out = out
        self.data: dict = {"smoke": smoke, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "stages": {}}
        out.mkdir(parents=True, exist_ok=True)

    def set(self, stage: str, result: dict) -> None:
        self.data["stages"][stage] = result
        self.flush()

    def flush(self) -> None:
        for name, text in (("gpu_check.json", json.dumps(self.data, indent=2, default=str)),
                           ("gpu_check.md", self.markdown())):
            tmp = self.out / (name + ".tmp")
            tmp.write_text(text)
            os.replace(tmp, self.out / name)

    def markdown(self) -> str:
        st = self.data["stages"]
        lines = [f"# Triton backend GPU check ({'smoke, CPU interpreter' if self.data['smoke'] else 'device'})", "",
                 f"started {self.data['started']}", ""]
        env = st.get("environment", {})
        if env:
            lines += ["## Environment", ""] + [f"- {k}: {v}" for k, v in env.items() if k != "ok"] + [""]
        ex = st.get("exactness")
        if ex:
            lines += ["## Exactness against `reference` (CPU ground truth)", "", f"ok: {ex.get('ok')}", ""]
            if ex.get("cases"):
                lines += ["| case | dtype | spike/no-spike mismatches | max rel err z | grad z | grad w | grad b "
                          "| deterministic | ok |", "|---|---|---|---|---|---|---|---|---|"]
                for c in ex["cases"]:
                    lines.append(f"| {c['case']} | {c['dtype']} | {c['mismatches']} | {c['rel_err_z']:.2e} | "
                                 f"{c['grad_z']:.2e} | {c['grad_w']:.2e} | {c['grad_b']:.2e} | {c['deterministic']} "
                                 f"| {c['ok']} |")
                lines.append("")
            if ex.get("blocking"):
                lines += [f"forward bit-identical under the blockings {ex['blocking']['choices']}: "
                          f"{ex['blocking']['ok']}", ""]
            if ex.get("error"):
                lines += ["```", ex["error"], "```", ""]
        ra = st.get("ratios")
        if ra:
            lines += ["## Forward + backward against cuDNN conv + ReLU (3x3, padding 1, float32)", "",
                      f"ok: {ra.get('ok')}; {ra.get('note', '')}", "",
                      "| layer | batch | firing | triton fwd ms | triton bwd ms | triton ms | dense ms | ratio "
                      "| triton MiB | dense MiB | memory ratio |", "|---|---|---|---|---|---|---|---|---|---|---|"]
            for r in ra.get("rows", []):
                if "error" in r:
                    lines.append(f"| {r['layer']} | {r['batch']} | error: {r['error']} |")
                    continue
                lines.append(
                    f"| {r['layer']} | {r['batch']} | {r['firing']:.2f} | {r['triton_fwd_ms']:.3f} | "
                    f"{r['triton_bwd_ms']:.3f} | {r['triton_ms']:.3f} | {r['dense_ms']:.3f} | {r['ratio']:.1f}x | "
                    f"{_fmt(r['triton_mib'])} | {_fmt(r['dense_mib'])} | {_fmt(r['memory_ratio'], 'x')} |")
            lines.append("")
            if ra.get("error"):
                lines += ["```", ra["error"], "```", ""]
        pr = st.get("profile")
        if pr:
            lines += ["## Time per kernel (torch.profiler, one forward + backward)", "", f"ok: {pr.get('ok')}", ""]
            for r in pr.get("rows", []):
                lines += [f"{r['layer']}, batch {r['batch']} ({r['by']}):", "", "| ms | calls | name |",
                          "|---|---|---|"] + [f"| {t['ms']:.3f} | {t['calls']} | `{t['name']}` |" for t in r["top"]]
                lines.append("")
            if pr.get("error"):
                lines += ["```", pr["error"], "```", ""]
        tr = st.get("train")
        if tr:
            lines += ["## Training", "", json.dumps(tr), ""]
        return "\n".join(lines)


def _fmt(v: float | None, unit: str = "") -> str:
    return "n/a" if v is None else f"{v:.1f}{unit}"


def run_stage(report: Report, name: str, fn: Callable[[], dict]) -> None:
    print(f"== {name}", flush=True)
    t0 = time.perf_counter()
    try:
        result = fn()
    except Exception:  # a stage must not end the run: record it and go on
        result = {"ok": False, "error": traceback.format_exc()}
        print(result["error"], flush=True)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    report.set(name, result)
    print(f"== {name}: ok={result.get('ok')} ({result['seconds']} s)", flush=True)


# ---------------------------------------------------------------- stages


def stage_environment(device) -> dict:
    import torch

    env = {"ok": True, "python": platform.python_version(), "torch": torch.__version__, "device": str(device)}
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        env["ok"], env["triton"] = False, "not installed"
    env["TRITON_INTERPRET"] = os.environ.get("TRITON_INTERPRET", "")
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
        env["cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version()
        env["cudnn_allow_tf32"] = torch.backends.cudnn.allow_tf32
        env["gpu_memory_gib"] = round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1)
    from tcsnn.functional.backends import triton_gpu

    env["triton_backend_available"] = triton_gpu.is_available(device)
    env["ok"] = env["ok"] and env["triton_backend_available"]
    for k, v in env.items():
        print(f"   {k}: {v}", flush=True)
    return env


def _inputs(batch, cin, side, cout, k, bias, levels, dtype, device, seed):
    import torch

    from tcsnn.nn.layers import init_spiking_weight_

    g = torch.Generator().manual_seed(seed)
    u = torch.rand(batch, cin, side, side, generator=g, dtype=torch.float64)
    if levels is not None:
        u = torch.floor(u * levels) / levels
    z = torch.exp(3.0 * u)
    z[torch.rand(z.shape, generator=g) < 0.05] = math.inf  # some inputs never spike
    w = torch.empty(cout, cin, k, k, dtype=torch.float64)
    b = torch.empty(cout, dtype=torch.float64) if bias else None
    torch.manual_seed(seed)
    init_spiking_weight_(w, b)
    return [t.to(dtype=dtype, device=device) if t is not None else None for t in (z, w, b)]


def stage_exactness(device, smoke: bool) -> dict:
    import torch

    from tcsnn.functional import spike_conv2d
    from tcsnn.functional.backends import triton_gpu as tg

    cases, ok = [], True
    for case in SMOKE_EXACT_CASES if smoke else EXACT_CASES:
        name, batch, cin, side, cout, k, stride, pad, bias, levels = case
        for dtype in (torch.float32, torch.float64):
            dname = str(dtype).removeprefix("torch.")
            z, w, b = _inputs(batch, cin, side, cout, k, bias, levels, dtype, device, seed=len(cases))
            runs = []
            for _ in range(2):  # twice: determinism
                z_out, w_c = tg.conv_forward(z, w, b, stride, pad)
                grad = torch.randn(z_out.shape, generator=torch.Generator().manual_seed(7), dtype=dtype).to(device)
                runs.append((z_out, *tg.conv_backward(z, w, b, stride, pad, z_out, w_c, grad)))
            deterministic = all(
                (x is None and y is None) or torch.equal(x, y) for x, y in zip(runs[0], runs[1], strict=True))
            z_out, gz, gw, gb = (t.cpu() if t is not None else None for t in runs[0])
            # the ground truth: the reference backend on CPU copies, differentiated by autograd
            zc, wc = z.cpu().requires_grad_(), w.cpu().requires_grad_()
            bc = b.cpu().requires_grad_() if b is not None else None
            ref = spike_conv2d(zc, wc, bc, stride, pad, backend="reference")
            fin = torch.isfinite(ref)
            (torch.where(fin, ref, 0.0) * grad.cpu()).sum().backward()
            ref = ref.detach()
            mismatches = int((torch.isfinite(z_out) != fin).sum())
            both = fin & torch.isfinite(z_out)
            rel = ((z_out[both] - ref[both]).abs() / ref[both]).max().item() if both.any() else 0.0

            def gerr(a, r):
                if r is None:
                    return 0.0
                return ((a - r).abs().max() / r.abs().max().clamp_min(1e-300)).item()

            errs = {"grad_z": gerr(gz, zc.grad), "grad_w": gerr(gw, wc.grad),
                    "grad_b": gerr(gb, bc.grad if bc is not None else None)}
            case_ok = (mismatches == 0 and rel <= RTOL[dname] and deterministic
                       and all(e <= GRAD_TOL[dname] for e in errs.values()))
            ok = ok and case_ok
            row = {"case": name, "dtype": dname, "mismatches": mismatches, "rel_err_z": rel, **errs,
                   "firing": float(fin.float().mean()), "deterministic": deterministic, "ok": case_ok}
            cases.append(row)
            print(f"   {name} {dname}: mismatches={mismatches} rel={rel:.1e} grads="
                  f"{errs['grad_z']:.1e}/{errs['grad_w']:.1e}/{errs['grad_b']:.1e} det={deterministic} ok={case_ok}",
                  flush=True)
    blocking = _blocking_invariance(device, smoke)
    return {"ok": ok and blocking["ok"], "cases": cases, "blocking": blocking}


def _blocking_invariance(device, smoke: bool) -> dict:
    """The forward under every (positions per program, channel block) choice gives bit-identical results."""
    import torch

    from tcsnn.functional.backends import triton_gpu as tg

    batch, cin, side, cout = (1, 2, 2, 3) if smoke else (3, 24, 7, 160)  # partial position and channel blocks
    choices = [(1, 2), (4, 4)] if smoke else [(1, 32), (2, 64), (4, 128), (4, 32)]
    z, w, b = _inputs(batch, cin, side, cout, 3, True, None, torch.float32, device, seed=11)
    chosen = tg._forward_blocks
    outs = []
    try:
        for pos, block_o in choices:
            tg._forward_blocks = lambda *_, p=pos, o=block_o: (p, o)
            outs.append(tg.conv_forward(z, w, b, 1, 1))
    finally:
        tg._forward_blocks = chosen
    same = all(torch.equal(x[0], outs[0][0]) and torch.equal(x[1], outs[0][1]) for x in outs[1:])
    print(f"   forward blocking {choices}: bit-identical={same}", flush=True)
    return {"ok": same, "choices": choices}


def _timed(fn: Callable[[], object], device) -> float:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def _peak_mib(fn: Callable[[], object], device) -> float | None:
    """Peak memory allocated while ``fn`` runs, beyond what was allocated before it (MiB)."""
    import gc

    import torch

    if device.type != "cuda":
        return None
    gc.collect()
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def _measure_row(cin: int, cout: int, side: int, batch: int, repeats: int, device, deadline: float) -> dict:
    import torch
    from torch import nn

    from tcsnn.functional.backends import triton_gpu as tg

    z, w, b = _inputs(batch, cin, side, cout, 3, True, None, torch.float32, device, seed=cin + cout)
    z[~torch.isfinite(z)] = math.exp(3.0)  # every input spikes (the benchmark inputs)
    grad = torch.randn(batch, cout, side, side, device=device)
    saved: dict = {}

    def spk_fwd() -> None:
        saved["fwd"] = tg.conv_forward(z, w, b, 1, 1)

    def spk_bwd() -> None:
        tg.conv_backward(z, w, b, 1, 1, *saved.pop("fwd"), grad)

    conv = nn.Conv2d(cin, cout, 3, padding=1).to(device)
    x = torch.rand(batch, cin, side, side, device=device, requires_grad=True)

    def dense() -> None:
        x.grad = None
        conv.zero_grad(set_to_none=True)
        torch.relu(conv(x)).backward(grad)

    spk_fwd()  # the first calls compile the kernels
    firing = float(torch.isfinite(saved["fwd"][0]).float().mean())
    t_compile = _timed(spk_bwd, device)
    dense()
    mem_spk = _peak_mib(lambda: (spk_fwd(), spk_bwd()), device)
    mem_dense = _peak_mib(dense, device)
    t_f, t_b, t_d = [], [], []
    for _ in range(repeats):
        t_f.append(_timed(spk_fwd, device))
        t_b.append(_timed(spk_bwd, device))
        t_d.append(_timed(dense, device))
        if time.perf_counter() > deadline:
            break
    row = {"layer": f"{cin} -> {cout} @ {side}x{side}", "batch": batch, "firing": firing,
           "triton_fwd_ms": 1e3 * min(t_f), "triton_bwd_ms": 1e3 * min(t_b),
           "triton_ms": 1e3 * (min(t_f) + min(t_b)), "dense_ms": 1e3 * min(t_d), "repeats": len(t_d),
           "triton_mib": mem_spk, "dense_mib": mem_dense,
           "memory_ratio": None if mem_spk is None else mem_spk / max(mem_dense, 1e-9)}
    row["ratio"] = row["triton_ms"] / row["dense_ms"]
    print(f"     triton {row['triton_ms']:.3f} ms (fwd {row['triton_fwd_ms']:.3f}, bwd {row['triton_bwd_ms']:.3f}; "
          f"first backward {t_compile:.1f} s), dense {row['dense_ms']:.3f} ms, ratio {row['ratio']:.1f}x, "
          f"memory {_fmt(mem_spk)} / {_fmt(mem_dense)} MiB", flush=True)
    return row


def stage_ratios(device, args, report: Report, deadline: float) -> dict:
    import torch

    rows_spec = SMOKE_ROWS if args.smoke else VGG16_CIFAR10
    batch = 1 if args.smoke else args.batch
    repeats = 1 if args.smoke else args.repeats
    result = {"ok": True, "rows": [], "note": f"minima of {repeats} interleaved repeats; memory = peak beyond inputs"}
    report.set("ratios", result)
    for cin, cout, side in rows_spec:
        layer = f"{cin} -> {cout} @ {side}x{side}"
        if time.perf_counter() > deadline:
            result["rows"].append({"layer": layer, "batch": batch, "error": "skipped: time budget spent"})
            result["ok"] = False
            report.set("ratios", result)
            continue
        print(f"   {layer}, batch {batch}", flush=True)
        try:
            row = _measure_row(cin, cout, side, batch, repeats, device, deadline)
        except Exception as exc:  # one bad row (out of memory, a kernel error) must not end the table
            traceback.print_exc()
            row = {"layer": layer, "batch": batch, "error": f"{type(exc).__name__}: {exc}"[:500]}
            result["ok"] = False
        result["rows"].append(row)
        report.set("ratios", result)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return result


#: Rows profiled kernel by kernel after the table: a large-map layer and a many-channel one.
PROFILE_ROWS = [(64, 64, 32), (512, 512, 4)]


def stage_profile(device, args) -> dict:
    """Time per kernel (sort, forward merge, backward kernels) of one Triton forward + backward, from
    ``torch.profiler``: where the time goes, for the next optimisation."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from tcsnn.functional.backends import triton_gpu as tg

    rows_spec = SMOKE_ROWS if args.smoke else PROFILE_ROWS
    batch = 1 if args.smoke else args.batch
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    result: dict = {"ok": True, "rows": []}
    for cin, cout, side in rows_spec:
        z, w, b = _inputs(batch, cin, side, cout, 3, True, None, torch.float32, device, seed=cin + cout)
        z[~torch.isfinite(z)] = math.exp(3.0)
        grad = torch.randn(batch, cout, side, side, device=device)

        def step(z=z, w=w, b=b, grad=grad):
            out, w_c = tg.conv_forward(z, w, b, 1, 1)
            tg.conv_backward(z, w, b, 1, 1, out, w_c, grad)
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        step()  # compiled already by the table; warm for the smoke run
        with profile(activities=activities) as prof:
            step()
        key = "device_time_total" if device.type == "cuda" else "cpu_time_total"
        events = [e for e in prof.key_averages() if getattr(e, key, 0) > 0]
        events.sort(key=lambda e: getattr(e, key), reverse=True)
        top = [{"name": e.key[:80], "calls": e.count, "ms": getattr(e, key) / 1e3} for e in events[:12]]
        result["rows"].append({"layer": f"{cin} -> {cout} @ {side}x{side}", "batch": batch, "by": key, "top": top})
        print(f"   {cin} -> {cout} @ {side}x{side}, batch {batch} ({key}):", flush=True)
        for t in top:
            print(f"     {t['ms']:9.3f} ms  x{t['calls']:<3} {t['name']}", flush=True)
    return result


def stage_train(device, args) -> dict:
    """SpikingVGG16 on ``device``: images/s for training and evaluation against the same-shape dense VGG16, then
    CIFAR-10 training for the epochs that fit ``args.train_minutes`` (:func:`gpu_vgg_stage.run_vgg_stage`, with the
    backend ``auto`` picks: Triton on CUDA).  ``--smoke`` runs its tiny CPU version."""
    if args.train_minutes <= 0:
        return {"ok": True, "skipped": "--train-minutes is 0"}
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_vgg_stage", Path(__file__).resolve().parent / "gpu_vgg_stage.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)  # the stage is a script beside this one, not part of the package
    result = stage.run_vgg_stage(device, args.train_minutes, args.data_root, args.out / "vgg_stage", smoke=args.smoke)
    return {"ok": True, **result}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    # read when the kernels are defined (first use of the backend): the interpreter for --smoke only
    if args.smoke:
        os.environ["TRITON_INTERPRET"] = "1"
    else:
        os.environ.pop("TRITON_INTERPRET", None)
    import torch

    device = torch.device("cpu" if args.smoke else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run with --smoke for the CPU interpreter check", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    report = Report(args.out, args.smoke)
    run_stage(report, "environment", lambda: stage_environment(device))
    run_stage(report, "exactness", lambda: stage_exactness(device, args.smoke))
    run_stage(report, "ratios", lambda: stage_ratios(device, args, report, start + args.budget_s))
    run_stage(report, "profile", lambda: stage_profile(device, args))
    run_stage(report, "train", lambda: stage_train(device, args))
    report.data["total_seconds"] = round(time.perf_counter() - start, 1)
    report.flush()
    print(f"results in {args.out / 'gpu_check.md'} ({report.data['total_seconds']} s)", flush=True)
    return 0 if all(s.get("ok") for s in report.data["stages"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
