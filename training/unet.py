"""Train the multi-view lung U-Net (``inference.lungs.multiview_unet``) on the CPU (one thread by default).

    python -m training.unet --out models/lungs-unet --seed 0 --source simulated   # the shipped weights
    python -m training.unet --out /tmp/unet --source phantom                       # phantoms only (the first model)

``--source simulated`` trains on real chest CT backgrounds (the training side of the held-out split,
``TRAIN_BACKGROUNDS``) and phantom patients, with CAP and COVID lesions of every extent painted inside their clean
lung masks by ``training.simulate``; the truth is that clean mask, which contains the lesions, so the network learns
pathology-inclusive lungs (dense consolidation at the pleura is lung, as lungmask's R231 has it). A quarter of the
studies are whole phantom chests (neck to abdomen) so the network also sees what is not lung above and below.

The budget is wall-clock (``--max-minutes``, default 9.5) as well as steps, so how many steps fit, and hence the
exact weights, depend on how busy the machine is; ``model.json`` records the steps done and the Dice reached.

Phantom studies (all classes, CAP twice so consolidations at the pleura are learnt as lung; every scanner profile)
are generated at a reduced matrix, resampled to the model's cube exactly as inference does, and kept in memory.
Training first shares one network across the views, then specialises a copy per view (see ``train``). Each
sample is a neighbour stack cut along a view, normalised with a randomly chosen window of the vote (so every
network works under every window), with random z and left-right flips (scanners store either cranio-caudal
order) and HU shift/noise jitter. Loss: soft Dice + binary cross-entropy against the area-averaged (soft) lung
mask (``--lesion-weight`` weighs the lesion pixels' cross-entropy; 1 by default); Adam, warm-up then cosine
decay. One thread by default (``--threads``), so a colleague's job on the other core keeps running. At the end
the model is written (fp16) with a ``model.json`` recording the recipe, the training time and the Dice of the full
``segment`` pipeline on fresh phantom studies.
"""
from __future__ import annotations

import argparse
import copy
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from inference.lungs.multiview_unet import (DEFAULT_WINDOWS, VIEWS, MultiViewUNet, SliceUNet, build_nets,
                                            load_weights, neighbour_stacks, save_unet, segment, to_cube, view_slices,
                                            window)
from training.phantom import LABELS, PROFILES, generate_study
from training.simulate.backgrounds import Background

#: The held-out split of the classifier: these real backgrounds (and phantom seeds below 1000) train, LIDC-IDRI-0003
#: and Lung_Dx-A0002 are only ever evaluated on.
TRAIN_BACKGROUNDS: tuple[str, ...] = ("LIDC-IDRI-0001", "LIDC-IDRI-0002", "Lung_Dx-A0001")
HELD_OUT_BACKGROUNDS: tuple[str, ...] = ("LIDC-IDRI-0003", "Lung_Dx-A0002")


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
    lesion_weight: float = 1.0  # cross-entropy weight of lesion pixels (the rest weigh 1)
    max_minutes: float = 9.5
    source: str = "phantom"  # or "simulated": lesions painted into real backgrounds and phantom patients
    init: str | None = None  # a lungs-unet folder to fine-tune (its view networks; no shared phase)
    eval_seeds: list[int] = field(default_factory=lambda: [900_001, 900_002, 900_003])
    threads: int = 1


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


def _to_cube_study(hu: np.ndarray, lung: np.ndarray, lesion: np.ndarray, cube: tuple[int, int, int]) -> CubeStudy:
    hu_c, lung_c, lesion_c = (to_cube(torch.from_numpy(a.astype(np.float32)), cube) for a in (hu, lung, lesion))
    return CubeStudy(hu_c, lung_c, lesion_c > 0.25)


def phantom_studies(cfg: UNetConfig, count: int) -> list[CubeStudy]:
    """Whole phantom chests resampled to the cube, classes (``TRAIN_LABELS``) and scanner profiles cycling."""
    profiles = sorted(PROFILES)
    data = []
    for i in range(count):
        study = generate_study(cfg.seed * 10_007 + i, TRAIN_LABELS[i % len(TRAIN_LABELS)],
                               profile=profiles[(i // len(TRAIN_LABELS)) % len(profiles)], size=cfg.size)
        data.append(_to_cube_study(study.hu, study.lung_mask, study.lesion_mask, cfg.cube))
    return data


def _halved(bg: Background) -> Background:
    """A background at half its in-plane matrix: block-mean HU, lung where most of the block is lung."""
    hu = F.avg_pool2d(torch.from_numpy(bg.hu)[:, None], 2)[:, 0].numpy()
    lung = F.avg_pool2d(torch.from_numpy(bg.lung.astype(np.float32))[:, None], 2)[:, 0].numpy() >= 0.5
    dz, dy, dx = bg.spacing_mm
    return replace(bg, hu=hu, lung=lung, spacing_mm=(dz, 2 * dy, 2 * dx))


def simulated_studies(cfg: UNetConfig, count: int) -> list[CubeStudy]:
    """Training backgrounds (real, then phantom patients) with lesions of every extent, through a random scanner.

    Blocks of 120-400 mm of lung (most of a chest) keep the cube's proportions close to a whole study's. The
    backgrounds are halved in-plane first (128 px is still twice the cube's 64): simulation is 4x cheaper.
    """
    from training.simulate.backgrounds import background, real_backgrounds, simulate

    phantoms = [f"phantom:{cfg.seed * 100 + i}" for i in range(2)]
    specs = [bg.name for bg in real_backgrounds(TRAIN_BACKGROUNDS)] + phantoms
    rng = np.random.default_rng([cfg.seed, 12])
    data = []
    for i in range(count):
        label = TRAIN_LABELS[i % len(TRAIN_LABELS)]
        extent = float(np.exp(rng.uniform(np.log(0.02), np.log(0.6)))) if label != "NP" else None
        sample, _ = simulate(rng, _halved(background(specs[i % len(specs)])), label,
                             block_mm=float(rng.uniform(120, 400)), extent=extent)
        data.append(_to_cube_study(sample.hu, sample.lung, sample.lesion, cfg.cube))
    return data


def make_data(cfg: UNetConfig) -> list[CubeStudy]:
    """``cfg.studies`` training studies from ``cfg.source`` (see the module docstring)."""
    if cfg.source == "phantom":
        return phantom_studies(cfg, cfg.studies)
    if cfg.source != "simulated":
        raise ValueError(f"unknown training source {cfg.source!r}: phantom or simulated")
    whole = cfg.studies // 4
    return simulated_studies(cfg, cfg.studies - whole) + phantom_studies(cfg, whole)


def sample_batch(rng: np.random.Generator, data: list[CubeStudy], view: str,
                 cfg: UNetConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch of (2k+1)-slice stacks along ``view``, the centre slices' soft lung masks and their 0/1 lesion masks.

    ``lesion_fraction`` of the samples are slices through a lesion (consolidation and ground glass must be
    segmented as lung), 80 % of the rest show lung, the others may be any slice (apex, abdomen, outside air).
    """
    windows = list(DEFAULT_WINDOWS.values())
    with_lesions = [d for d in data if bool(d.lesion.any())]
    xs, ys, ls = [], [], []
    for _ in range(cfg.batch):
        lesion_pick = bool(with_lesions) and rng.random() < cfg.lesion_fraction
        item = (with_lesions if lesion_pick else data)[int(rng.integers(len(with_lesions if lesion_pick else data)))]
        hu, mask, lesion = item.hu, item.lung, item.lesion
        if rng.random() < 0.5:
            hu, mask, lesion = hu.flip(0), mask.flip(0), lesion.flip(0)
        if rng.random() < 0.5:
            hu, mask, lesion = hu.flip(2), mask.flip(2), lesion.flip(2)
        hu_s, mask_s, lesion_s = view_slices(hu, view), view_slices(mask, view), view_slices(lesion, view)
        if lesion_pick:
            pool = torch.nonzero(lesion_s.flatten(1).any(dim=1))[:, 0]
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
        ls.append(lesion_s[index[0]].float())
    return torch.stack(xs), torch.stack(ys), torch.stack(ls)


def learning_rate(peak: float, progress: float) -> float:
    """Linear warm-up over the first 5 % then cosine decay to zero; ``progress`` is the larger of the step and
    wall-clock fractions, so a run cut short by ``max_minutes`` on a busy machine still ends annealed."""
    return peak * min(1.0, progress / 0.05) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def loss_fn(logits: torch.Tensor, target: torch.Tensor, lesion: torch.Tensor | None = None,
            lesion_weight: float = 1.0) -> torch.Tensor:
    """Soft Dice over the batch plus binary cross-entropy, whose lesion pixels weigh ``lesion_weight``.

    Why a lesion weight: a large consolidation is a minority of the lung pixels even in the slices drawn through
    lesions, and the shipped network left whole lobar consolidations out (``models/lungs-unet/MODEL_CARD.md``)."""
    prob = torch.sigmoid(logits)
    soft_dice = (2 * (prob * target).sum() + 1.0) / (prob.sum() + target.sum() + 1.0)
    weight = None if lesion is None or lesion_weight == 1.0 else 1.0 + (lesion_weight - 1.0) * lesion
    return (1.0 - soft_dice) + F.binary_cross_entropy_with_logits(logits, target, weight=weight)


def evaluate(model: MultiViewUNet, seeds: list[int], size: int = 192, n_slices: int = 64) -> dict[str, float]:
    """Dice of the full ``segment`` pipeline against phantom lung masks of fresh studies."""
    scores = {}
    for i, seed in enumerate(seeds):
        study = generate_study(seed, LABELS[i % 3], n_slices=n_slices, size=size)
        scores[f"{seed}-{study.label}"] = dice(segment(study.hu, model=model), study.lung_mask)
    scores["mean"] = float(np.mean(list(scores.values())))
    return scores


def evaluate_held_out(model: MultiViewUNet, seed: int) -> dict[str, float]:
    """The U-Net alone on each held-out real background with a fresh lesion (CAP, then COVID): Dice against the
    clean (lesion-inclusive) lung and the fraction of lesion voxels inside the mask. ``bench/lungs.py`` measures
    more, and the fused default."""
    from training.simulate.backgrounds import real_backgrounds, simulate

    dices, inside = [], []
    for i, (bg, label) in enumerate(zip(real_backgrounds(HELD_OUT_BACKGROUNDS), ("CAP", "COVID"))):
        sample, _ = simulate(np.random.default_rng([seed, 99, i]), bg, label, block_mm=300.0)
        mask = segment(sample.hu, model=model)
        dices.append(dice(mask, sample.lung))
        inside.append(float((mask & sample.lesion).sum()) / max(1, int(sample.lesion.sum())))
    if not dices:
        return {}
    return {"dice_mean": float(np.mean(dices)), "lesion_inside_mean": float(np.mean(inside)), "studies": len(dices)}


def train(cfg: UNetConfig, out: str | Path, log=print) -> dict:
    """Train, evaluate, write ``out``; returns the metadata written to ``model.json``.

    Phase 1 (``shared_fraction`` of the budget) trains one network on all three views in turn: what a lung looks
    like is common to the views, so they learn it together three times faster. Phase 2 copies it into the
    three view networks and fine-tunes each on its own view (round robin), so the votes specialise and differ.
    """
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    start = time.perf_counter()
    data = make_data(cfg)
    data_s = time.perf_counter() - start
    log(f"{len(data)} {cfg.source} studies in {data_s:.0f}s")
    arch = {"neighbours": cfg.neighbours, "base": cfg.base, "depth": cfg.depth}
    shared = build_nets(arch)["axial"].train()
    opts: dict[str, torch.optim.Optimizer] = {"shared": torch.optim.Adam(shared.parameters(), lr=cfg.lr)}
    nets: dict[str, SliceUNet] = {}
    if cfg.init:
        nets = {v: n.train() for v, n in load_weights(build_nets(arch), Path(cfg.init) / "weights.pt").items()}
        opts = {v: torch.optim.Adam(n.parameters(), lr=cfg.lr) for v, n in nets.items()}
    train_start = time.perf_counter()
    done, running = 0, 1.5
    for step in range(cfg.steps):
        progress = max(step / cfg.steps, (time.perf_counter() - train_start) / (cfg.max_minutes * 60))
        if progress >= 1.0:
            log(f"budget reached at step {step}")
            break
        view = VIEWS[step % len(VIEWS)]
        if progress < cfg.shared_fraction and not cfg.init:
            net, opt = shared, opts["shared"]
        else:
            if not nets:
                log(f"step {step}: specialising the shared network per view")
                nets = {v: copy.deepcopy(shared) for v in VIEWS}
                opts = {v: torch.optim.Adam(n.parameters(), lr=cfg.lr) for v, n in nets.items()}
            net, opt = nets[view], opts[view]
        for group in opt.param_groups:
            group["lr"] = learning_rate(cfg.lr, progress)
        x, y, lesion = sample_batch(rng, data, view, cfg)
        loss = loss_fn(net(x), y, lesion, cfg.lesion_weight)
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
    metrics = {"dice_fresh_phantoms": evaluate(model, cfg.eval_seeds)}
    if cfg.source == "simulated":
        metrics["held_out_real"] = evaluate_held_out(model, cfg.seed)
    log(f"eval {metrics}")
    meta = {"name": "lungs-unet", "version": f"{cfg.source}-seed{cfg.seed}", "cube": list(cfg.cube), "windows": windows,
            "vote": "majority of view x window maps thresholded at 0.5",
            "training": {**asdict(cfg), "cube": list(cfg.cube), "steps_done": done, "data_seconds": round(data_s),
                         "train_seconds": round(train_s),
                         "data": "training.phantom" if cfg.source == "phantom" else
                         f"training.simulate on {', '.join(TRAIN_BACKGROUNDS)} + phantom patients, "
                         f"{cfg.studies // 4} whole phantom chests"},
            "metrics": metrics}
    save_unet(nets, out, meta)
    return meta


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=UNetConfig.steps)
    parser.add_argument("--studies", type=int, default=UNetConfig.studies)
    parser.add_argument("--max-minutes", type=float, default=UNetConfig.max_minutes)
    parser.add_argument("--source", choices=("phantom", "simulated"), default=UNetConfig.source)
    parser.add_argument("--init", help="a lungs-unet folder to fine-tune instead of training from scratch")
    parser.add_argument("--lr", type=float, default=UNetConfig.lr)
    parser.add_argument("--cube", type=int, nargs=3, default=list(UNetConfig.cube), metavar=("Z", "Y", "X"),
                        help="the cube the study is resampled to (a finer in-plane grid keeps thin lesions at the "
                             "pleura, at a quadratic cost)")
    parser.add_argument("--size", type=int, default=UNetConfig.size,
                        help="phantom matrix (at least the cube's in-plane size)")
    parser.add_argument("--threads", type=int, default=UNetConfig.threads)
    parser.add_argument("--lesion-weight", type=float, default=UNetConfig.lesion_weight,
                        help="cross-entropy weight of lesion pixels (1: every pixel alike)")
    a = parser.parse_args(argv)
    train(UNetConfig(seed=a.seed, steps=a.steps, studies=a.studies, max_minutes=a.max_minutes, source=a.source,
                     init=a.init, lr=a.lr, cube=tuple(a.cube), size=a.size, threads=a.threads,
                     lesion_weight=a.lesion_weight), a.out)


if __name__ == "__main__":
    main()
