"""Benchmark: Integrated Gradients for the three scales of one 224x224 slice, captum per scale vs the fast path.

    .venv/bin/python bench/saliency.py [--repeats 3] [--threads 2] [--width 1.0] [--steps 25] [--device cpu|cuda]
                                       [--grad-dtype auto|float32|bfloat16] [--size 224] [--slices 1]
                                       [--grouping auto|boxes|whole]

``--slices N`` gives the fast path N slices in one call (``SaliencyEngine.attribute_many``, as the pipeline does
for small models) and reports its time per slice; captum explains one. ``--size 112 --width 0.25`` is the shipped
default model's input.

Same model (full width, eval mode, random weights with non-trivial BatchNorm statistics), same input, same run;
the two methods alternate so a busy machine slows both alike, and the best of ``--repeats`` is kept. Prints seconds
per slice for each (wall clock, and the process's CPU seconds), their ratios and the maps' correlation per scale
and for the joint saliency, with the load average before and after; writes the figures to
bench/out/saliency.json. Not a test.

``--threads`` applies to the CPU only. On CUDA the timings synchronise the device, and TF32 convolutions are turned
off for both methods so that the maps are fp32 as on the CPU (``--tf32`` keeps torch's default, on). Where captum is
not installed the fast path is timed alone and the comparison columns say why they are missing.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference.classifier import MultiScaleVGG  # noqa: E402
from inference.saliency import SaliencyEngine, captum_ig, joint_saliency  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"


def _model(width: float) -> MultiScaleVGG:
    torch.manual_seed(0)
    model = MultiScaleVGG(3, width=width)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def _captum_missing() -> str | None:
    """Why captum cannot run here, or None when it can."""
    try:
        import captum.attr  # noqa: F401
    except ImportError as exc:
        return f"captum is not installed ({exc}): the captum column and the ratio are skipped"
    return None


def _timed(fn, device: torch.device):
    """(wall seconds, process CPU seconds, result) of ``fn()``, waiting for queued device work on both sides of the
    clock. CPU seconds are this process's own (all its threads): on a machine shared with other jobs they stay
    near what the work costs, where wall seconds grow with the others' load."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, time.process_time() - cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (ignored on CUDA)")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--grad-dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                        help="the engine's backward convolutions (auto: bf16 on a CPU with AMX or AVX-512 BF16, "
                             "else fp32)")
    parser.add_argument("--tf32", action="store_true", help="CUDA: keep TF32 convolutions (torch's default)")
    parser.add_argument("--size", type=int, default=224, help="input rows and columns")
    parser.add_argument("--slices", type=int, default=1, help="slices per fast-path call (attribute_many)")
    parser.add_argument("--grouping", default="auto", choices=["auto", "boxes", "whole"],
                        help="the backward's grouping (auto: whole planes for small models)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: torch sees no CUDA device here")
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
        where = f"cpu, {args.threads} threads"
    else:
        torch.backends.cudnn.allow_tf32 = args.tf32
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        where = f"cuda ({torch.cuda.get_device_name(device)}, TF32 {'on' if args.tf32 else 'off'})"
    model = _model(args.width).to(device)
    xs = torch.rand(args.slices, 1, args.size, args.size, generator=torch.Generator().manual_seed(1)).to(device)
    x = xs[:1]
    target = 2
    load_before = _loadavg()
    missing = _captum_missing()
    grad_dtype = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16}[args.grad_dtype]
    whole_plane = {"auto": None, "boxes": False, "whole": True}[args.grouping]
    engine = SaliencyEngine(model, steps=args.steps, grad_dtype=grad_dtype, whole_plane=whole_plane)

    def fast_path() -> list:
        return engine.attribute_many(xs, [target] * args.slices)

    fast_path()  # warm-up: kernel selection, the engine's buffers
    if missing is None:
        captum_ig(model, x, target, args.steps)

    t_captum, t_fast, cpu_captum, cpu_fast = [], [], [], []
    reference = None
    for _ in range(args.repeats):
        if missing is None:
            seconds, cpu, reference = _timed(lambda: captum_ig(model, x, target, args.steps), device)
            t_captum.append(seconds)
            cpu_captum.append(cpu)
        seconds, cpu, maps = _timed(fast_path, device)
        fast = maps[0]
        t_fast.append(seconds / args.slices)
        cpu_fast.append(cpu / args.slices)
    load_after = _loadavg()

    figures: dict = {"torch": torch.__version__, "device": where, "width": args.width, "steps": args.steps,
                     "size": args.size, "slices_per_call": args.slices, "grouping": args.grouping,
                     "repeats": args.repeats, "loadavg_before": load_before, "loadavg_after": load_after,
                     "fast_s": min(t_fast), "fast_all_s": t_fast,
                     "fast_cpu_s": min(cpu_fast), "grad_dtype": str(engine.grad_dtype).removeprefix("torch.")}
    print(f"torch {torch.__version__}, {where}, width {args.width}, {args.size} px, {args.slices} slice(s) per "
          f"call, grouping {args.grouping}, m={args.steps}, best of {args.repeats}, "
          f"backward convolutions in {figures['grad_dtype']} "
          f"(machine shared: absolute times vary, the ratio less so)")
    print(f"load average        : {load_before} before, {load_after} after (1, 5, 15 min)")
    if missing is None:
        print(f"captum IG per scale : {min(t_captum):9.3f} s/slice  (all: {[round(t, 3) for t in t_captum]}), "
              f"CPU {min(cpu_captum):.3f} s")
    else:
        print(f"captum IG per scale : skipped: {missing}")
    print(f"fast path           : {min(t_fast):9.3f} s/slice  (all: {[round(t, 3) for t in t_fast]}), "
          f"CPU {min(cpu_fast):.3f} s")
    if missing is None:
        ref_maps = [r.detach().cpu().numpy() for r in reference]
        correlations = {name: _corr(ours, ref) for name, ours, ref in zip(("conv3", "conv4", "conv5"), fast.ig,
                                                                            ref_maps)}
        correlations["joint"] = _corr(fast.joint, joint_saliency(ref_maps))
        print(f"speed-up            : {min(t_captum) / min(t_fast):9.2f}x  (CPU seconds: "
              f"{min(cpu_captum) / min(cpu_fast):.2f}x)")
        for name, value in correlations.items():
            print(f"correlation {name:<8}: {value:.6f}")
        figures.update(captum_s=min(t_captum), captum_all_s=t_captum, ratio=min(t_captum) / min(t_fast),
                       captum_cpu_s=min(cpu_captum), cpu_ratio=min(cpu_captum) / min(cpu_fast),
                       correlation=correlations)
    else:
        figures["captum_skipped"] = missing
    OUT.mkdir(exist_ok=True)
    name = "saliency.json" if device.type == "cpu" else f"saliency-{device.type}.json"
    (OUT / name).write_text(json.dumps(figures, indent=2))
    print(f"figures written to {os.path.relpath(OUT / name)}")


if __name__ == "__main__":
    main()
