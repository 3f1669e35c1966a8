"""Benchmark: Integrated Gradients for the three scales of one 224x224 slice, captum per scale vs the fast path.

    .venv/bin/python bench/saliency.py [--repeats 3] [--threads 2] [--width 1.0] [--steps 25]

Same model (full width, eval mode, random weights with non-trivial BatchNorm statistics), same input, same run;
the two methods alternate so a busy machine slows both alike, and the best of ``--repeats`` is kept. Prints ms per
slice for each, their ratio and the maps' correlation per scale and for the joint saliency. Not a test.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference.classifier import MultiScaleVGG  # noqa: E402
from inference.saliency import SaliencyEngine, captum_ig, joint_saliency  # noqa: E402


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=25)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = _model(args.width)
    x = torch.rand(1, 1, 224, 224, generator=torch.Generator().manual_seed(1))
    target = 2
    engine = SaliencyEngine(model, steps=args.steps)
    engine.attribute(x, target)  # warm-up: oneDNN primitive creation
    captum_ig(model, x, target, args.steps)

    t_captum, t_fast = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        reference = captum_ig(model, x, target, args.steps)
        t_captum.append(time.perf_counter() - start)
        start = time.perf_counter()
        fast = engine.attribute(x, target)
        t_fast.append(time.perf_counter() - start)

    ref_maps = [r.numpy() for r in reference]
    print(f"torch {torch.__version__}, {args.threads} threads, width {args.width}, m={args.steps}, "
          f"best of {args.repeats} (machine shared: absolute times vary, the ratio less so)")
    print(f"captum IG per scale : {1000 * min(t_captum):9.1f} ms/slice  (all: {[round(1000 * t) for t in t_captum]})")
    print(f"fast path           : {1000 * min(t_fast):9.1f} ms/slice  (all: {[round(1000 * t) for t in t_fast]})")
    print(f"speed-up            : {min(t_captum) / min(t_fast):9.2f}x")
    for name, ours, ref in zip(("conv3", "conv4", "conv5"), fast.ig, ref_maps):
        print(f"correlation {name}   : {_corr(ours, ref):.6f}")
    print(f"correlation joint   : {_corr(fast.joint, joint_saliency(ref_maps)):.6f}")


if __name__ == "__main__":
    main()
