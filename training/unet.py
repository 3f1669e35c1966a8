"""Train the multi-view lung U-Net (``inference.lungs.multiview_unet``) on phantom lung masks, on one CPU core.

    python -m training.unet --out models/lungs-unet --seed 0

The budget is wall-clock (``--max-minutes``, default 9.5) as well as steps, so how many steps fit, and hence the
exact weights, depend on how busy the machine is; ``model.json`` records the steps done and the Dice reached.

Phantom studies (all classes, CAP twice so consolidations at the pleura are learnt as lung; every scanner profile)
are generated at a reduced matrix, resampled to the model's cube exactly as inference does, and kept in memory.
Training first shares one network across the views, then specialises a copy per view (see ``train``). Each
sample is a neighbour stack cut along a view, normalised with a randomly chosen window of the vote (so every
network works under every window), with random z and left-right flips (scanners store either cranio-caudal
order) and HU shift/noise jitter. Loss: soft Dice + binary cross-entropy against the area-averaged (soft) lung
mask; Adam, warm-up then cosine decay. One thread, so a colleague's job on the
other core keeps running. At the end the model is written (fp16) with a ``model.json`` recording the recipe, the
training time and the Dice of the full ``segment`` pipeline on fresh phantom studies.
"""
from __future__ import annotations

import argparse
import copy
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from inference.lungs.multiview_unet import (DEFAULT_WINDOWS, VIEWS, MultiViewUNet, SliceUNet, build_nets,
                                            neighbour_stacks, save_unet, segment, to_cube, view_slices, window)
from training.phantom import LABELS, PROFILES, generate_study


@dataclass
class UNetConfig:
    seed: int = 0
    studies: int = 24
    size: int = 128  # phantom matrix; the cube is smaller still
    cube: tuple[int, int, int] = (48, 64, 64)
    neighbours: int = 2
    base: int = 6
    depth: int = 3
    batch: int = 12
    steps: int = 3000  # upper bound; on a shared CPU the wall-clock budget usually ends training first
    lr: float = 5e-3
    shared_fraction: float = 0.6
    lesion_fraction: float = 0.45
    max_minutes: float = 9.5
    eval_seeds: list[int] = field(default_factory=lambda: [900_001, 900_002, 900_003])


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two bool masks (1.0 when both are empty)."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


#: Class mix of the training studies: CAP twice, since its dense consolidations at the pleura are the hard part
#: (a U-Net readily calls them chest wall); its lung masks include them, as the infection percentage needs.
TRAIN_LABELS: tuple[str, ...] = ("NP", "CAP", "COVID", "CAP")


@dataclass
class CubeStudy:
    hu: torch.Tensor  # HU resampled to the cube
    lung: torch.Tensor  # soft lung mask (area fraction) on the cube
    lesion: torch.Tensor  # bool: cube voxels that are at least a quarter lesion


def make_data(cfg: UNetConfig) -> list[CubeStudy]:
    """Phantom studies resampled to the cube, classes (``TRAIN_LABELS``) and scanner profiles cycling."""
    profiles = sorted(PROFILES)
    data = []
    for i in range(cfg.studies):
        study = generate_study(cfg.seed * 10_007 + i, TRAIN_LABELS[i % len(TRAIN_LABELS)],
                               profile=profiles[(i // len(TRAIN_LABELS)) % len(profiles)], size=cfg.size)
        cube = [to_cube(torch.from_numpy(a.astype(np.float32)), cfg.cube)
                for a in (study.hu, study.lung_mask, study.lesion_mask)]
        data.append(CubeStudy(cube[0], cube[1], cube[2] > 0.25))
    return data


def sample_batch(rng: np.random.Generator, data: list[CubeStudy], view: str,
                 cfg: UNetConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of (2k+1)-slice stacks along ``view`` and the centre slices' soft masks.

    ``lesion_fraction`` of the samples are slices through a lesion (consolidation and ground glass must be
    segmented as lung), 80 % of the rest show lung, the others may be any slice (apex, abdomen, outside air).
    """
    windows = list(DEFAULT_WINDOWS.values())
    with_lesions = [d for d in data if bool(d.lesion.any())]
    xs, ys = [], []
    for _ in range(cfg.batch):
        lesion_pick = bool(with_lesions) and rng.random() < cfg.lesion_fraction
        item = (with_lesions if lesion_pick else data)[int(rng.integers(len(with_lesions if lesion_pick else data)))]
        hu, mask, lesion = item.hu, item.lung, item.lesion
        if rng.random() < 0.5:
            hu, mask, lesion = hu.flip(0), mask.flip(0), lesion.flip(0)
        if rng.random() < 0.5:
            hu, mask, lesion = hu.flip(2), mask.flip(2), lesion.flip(2)
        hu_s, mask_s = view_slices(hu, view), view_slices(mask, view)
        if lesion_pick:
            pool = torch.nonzero(view_slices(lesion, view).flatten(1).any(dim=1))[:, 0]
        else:
            with_lung = torch.nonzero(mask_s.amax(dim=(1, 2)) > 0.5)[:, 0]
            pool = with_lung if (rng.random() < 0.8 and len(with_lung)) else torch.arange(hu_s.shape[0])
        index = pool[int(rng.integers(len(pool)))].reshape(1)
        stack = neighbour_stacks(hu_s, cfg.neighbours, index)[0]
        stack = stack * float(rng.uniform(0.95, 1.05)) + float(rng.uniform(-40, 40))
        stack = stack + float(rng.uniform(0, 25)) * torch.randn_like(stack)
        width, level = windows[int(rng.integers(len(windows)))]
        xs.append(window(stack, width, level))
        ys.append(mask_s[index[0]])
    return torch.stack(xs), torch.stack(ys)


def learning_rate(peak: float, progress: float) -> float:
    """Linear warm-up over the first 5 % then cosine decay to zero; ``progress`` is the larger of the step and
    wall-clock fractions, so a run cut short by ``max_minutes`` on a busy machine still ends annealed."""
    return peak * min(1.0, progress / 0.05) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Soft Dice over the batch plus binary cross-entropy."""
    prob = torch.sigmoid(logits)
    soft_dice = (2 * (prob * target).sum() + 1.0) / (prob.sum() + target.sum() + 1.0)
    return (1.0 - soft_dice) + F.binary_cross_entropy_with_logits(logits, target)


def evaluate(model: MultiViewUNet, seeds: list[int], size: int = 192, n_slices: int = 64) -> dict[str, float]:
    """Dice of the full ``segment`` pipeline against phantom lung masks of fresh studies."""
    scores = {}
    for i, seed in enumerate(seeds):
        study = generate_study(seed, LABELS[i % 3], n_slices=n_slices, size=size)
        scores[f"{seed}-{study.label}"] = dice(segment(study.hu, model=model), study.lung_mask)
    scores["mean"] = float(np.mean(list(scores.values())))
    return scores


def train(cfg: UNetConfig, out: str | Path, log=print) -> dict:
    """Train, evaluate, write ``out``; returns the metadata written to ``model.json``.

    Phase 1 (``shared_fraction`` of the budget) trains one network on all three views in turn: what a lung looks
    like is common to the views, so they learn it together three times faster. Phase 2 copies it into the
    three view networks and fine-tunes each on its own view (round robin), so the votes specialise and differ.
    """
    torch.set_num_threads(1)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    start = time.perf_counter()
    data = make_data(cfg)
    data_s = time.perf_counter() - start
    log(f"{len(data)} phantom studies in {data_s:.0f}s")
    shared = build_nets({"neighbours": cfg.neighbours, "base": cfg.base, "depth": cfg.depth})["axial"].train()
    opts: dict[str, torch.optim.Optimizer] = {"shared": torch.optim.Adam(shared.parameters(), lr=cfg.lr)}
    nets: dict[str, SliceUNet] = {}
    train_start = time.perf_counter()
    done, running = 0, 1.5
    for step in range(cfg.steps):
        progress = max(step / cfg.steps, (time.perf_counter() - train_start) / (cfg.max_minutes * 60))
        if progress >= 1.0:
            log(f"budget reached at step {step}")
            break
        view = VIEWS[step % len(VIEWS)]
        if progress < cfg.shared_fraction:
            net, opt = shared, opts["shared"]
        else:
            if not nets:
                log(f"step {step}: specialising the shared network per view")
                nets = {v: copy.deepcopy(shared) for v in VIEWS}
                opts = {v: torch.optim.Adam(n.parameters(), lr=cfg.lr) for v, n in nets.items()}
            net, opt = nets[view], opts[view]
        for group in opt.param_groups:
            group["lr"] = learning_rate(cfg.lr, progress)
        x, y = sample_batch(rng, data, view, cfg)
        loss = loss_fn(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        running = 0.95 * running + 0.05 * loss.item()
        done += 1
        if step % 60 == 0:
            phase = "specialised" if nets else "shared"
            log(f"step {step} {phase} loss {running:.3f} {time.perf_counter() - train_start:.0f}s")
    nets = nets or {v: copy.deepcopy(shared) for v in VIEWS}
    train_s = time.perf_counter() - train_start
    windows = {k: list(v) for k, v in DEFAULT_WINDOWS.items()}
    model = MultiViewUNet(nets={v: n.eval() for v, n in nets.items()}, cube=cfg.cube,
                          windows={k: tuple(v) for k, v in windows.items()}, meta={}, device=torch.device("cpu"))
    metrics = evaluate(model, cfg.eval_seeds)
    log(f"eval dice {metrics}")
    meta = {"name": "lungs-unet", "version": f"phantom-seed{cfg.seed}", "cube": list(cfg.cube), "windows": windows,
            "vote": "majority of view x window maps thresholded at 0.5",
            "training": {**asdict(cfg), "cube": list(cfg.cube), "steps_done": done, "data_seconds": round(data_s),
                         "train_seconds": round(train_s), "threads": 1, "data": "training.phantom"},
            "metrics": {"dice_fresh_phantoms": metrics}}
    save_unet(nets, out, meta)
    return meta


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=UNetConfig.steps)
    parser.add_argument("--studies", type=int, default=UNetConfig.studies)
    parser.add_argument("--max-minutes", type=float, default=UNetConfig.max_minutes)
    a = parser.parse_args(argv)
    train(UNetConfig(seed=a.seed, steps=a.steps, studies=a.studies, max_minutes=a.max_minutes), a.out)


if __name__ == "__main__":
    main()
