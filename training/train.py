"""The paper's training recipe as one resumable, cancellable loop (single process or DDP).

Two stages (Hu et al. 2020):

1. **Per-scale classifiers** (``stage1_fraction`` of the budget): the loss is the sum of the focal class-balanced
   losses of the three scale heads' scores (conv3, conv4, conv5), so each scale learns to classify on its own.
2. **Joint classifier**: the loss is taken on the summed scores (the joint logits). All weights are fine-tuned; the
   heads at ``lr`` and the backbone at ``lr * stage2_backbone_lr_scale`` (default 0.1), so the joint head adapts
   without washing out the features stage 1 learned. Stage 2 starts from stage 1's best checkpoint.

A model without scale heads (the ResNet-18 baseline) trains in one "joint" stage on the whole budget.

Every ``val_every`` iterations the model is validated (rank 0): the best validation accuracy is kept (in memory and
``best.pt``), and a stage ends early after ``patience`` iterations without a lower validation loss. The final model
is the best joint-stage checkpoint.

Reproducibility: batch indices and augmentation parameters of iteration ``t`` on rank ``r`` come from a generator
seeded with ``(seed, t, r)``, so a resumed run draws exactly what the uninterrupted run would have; with
deterministic kernels (CPU) the weights are bit-identical. The resume checkpoint also stores the global torch/CUDA
RNG states, the optimizer and the AMP scaler. On CUDA the forward runs under ``torch.autocast`` (fp16 + GradScaler).

Each logged step is one JSON line ``{"iter", "stage", "loss", "val_loss", "val_acc", "lr", "time_s", "eta_s"}``
(the web app reads it for live progress); the same dict goes to the ``progress`` callback. ``should_stop`` is
polled every iteration: when it says stop, a resume checkpoint is written and training returns (``stopped``) with
the best weights validated so far.
"""
from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from inference.bundle import load_bundle, resolve_device
from inference.classifier import SCALE_NAMES, MultiScaleVGG

from .augment import AugmentConfig, augment_batch
from .baselines import ResNet18
from .datasets import SliceSet
from .distributed import DistContext
from .losses import class_weights, focal_balanced_loss

__all__ = ["TrainConfig", "TrainResult", "make_model", "predict", "train"]

ProgressFn = Callable[[dict[str, Any]], None]
StopFn = Callable[[], bool]


@dataclass
class TrainConfig:
    """Every knob of the recipe; defaults are the paper's where it gives one."""

    iterations: int = 20_000            # total budget over both stages (paper: 20,000)
    stage1_fraction: float = 0.5        # share of the budget for the per-scale stage
    batch_size: int = 16
    lr: float = 1e-4                    # Adam, paper
    betas: tuple[float, float] = (0.5, 0.9)
    eps: float = 1e-8
    stage2_backbone_lr_scale: float = 0.1
    gamma: float = 1.0                  # focal exponent, paper
    class_balanced: bool = True         # w_c = 1/freq(c), normalised to sum K
    val_every: int = 500                # paper: 500
    patience: int = 1_000               # iterations without a lower val loss before a stage stops (paper: 1,000)
    log_every: int = 50
    seed: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    amp: bool = True                    # autocast fp16 on CUDA; ignored on CPU
    val_batch_size: int = 64
    progress_bar: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    model: nn.Module                    # best joint-stage weights, eval mode, on the CPU
    iterations: int                     # the iteration counter at the end (an early-stopped stage skips to its end)
    steps: int                          # optimizer steps taken in total (resumed ones included)
    best: dict[str, Any]                # {"stage", "iter", "val_acc", "val_loss"} of the kept weights
    stopped: bool                       # cancelled through should_stop
    wall_s: float                       # this call's wall time
    slices_per_s: float                 # training throughput of this call
    history: list[dict[str, Any]]


def make_model(arch: str, num_classes: int, width: float = 1.0, init: str | None = None) -> nn.Module:
    """A fresh ``MultiScaleVGG`` (the paper's) or ``resnet18`` (the from-scratch baseline).

    MultiScaleVGG's 1x1 CAM heads are re-initialised N(0, 0.01), bias 0: the architecture's kaiming fan-out init
    (fan-out = K) gives max-pooled class scores of magnitude ~10 at the start, a saturated softmax whose wrong
    confident guesses take hundreds of iterations to unlearn; small heads start every class near 1/K.
    ``init`` (a bundle name or folder of the same width): its convolutional backbone (weights and BatchNorm
    statistics) is the starting point, the heads are new (the task may have other classes): transfer from a
    bundle trained on another task, e.g. the simulated-lesion one.
    """
    if arch == "MultiScaleVGG":
        model = MultiScaleVGG(num_classes=num_classes, width=width)
        if init is not None:
            source = load_bundle(init, device="cpu").model
            if getattr(source, "width", None) != width:
                raise ValueError(f"{init} has width {getattr(source, 'width', None)}, not {width}")
            model.stages.load_state_dict(source.stages.state_dict())
        for head in model.heads:
            nn.init.normal_(head.weight, std=0.01)
            nn.init.zeros_(head.bias)
        return model
    if init is not None:
        raise ValueError("only MultiScaleVGG starts from a bundle's backbone")
    if arch == "resnet18":
        return ResNet18(num_classes=num_classes, width=width)
    raise ValueError(f"unknown architecture {arch!r}: MultiScaleVGG or resnet18")


class _Outputs(nn.Module):
    """Forward returning ``(joint logits, *scale scores)``: one module call, so DDP syncs every output's grads."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if isinstance(self.model, MultiScaleVGG):
            out = self.model.forward_all(x)
            return (out.logits, *out.scale_scores)
        return (self.model(x),)


def _has_scales(model: nn.Module) -> bool:
    return isinstance(model, MultiScaleVGG)


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 64,
            device: torch.device | str = "cpu", temperature: float = 1.0) -> dict[str, np.ndarray]:
    """Softmax probabilities (N, K) of the joint classifier (``"joint"``) and, for MultiScaleVGG, of each scale;
    the joint logits are divided by the bundle's calibration ``temperature`` first, as the pipeline does."""
    device = torch.device(device)
    model = model.to(device).eval()
    wrapped = _Outputs(model)
    names = ("joint", *SCALE_NAMES) if _has_scales(model) else ("joint",)
    out: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for start in range(0, images.shape[0], batch_size):
        x = images[start:start + batch_size].to(device).float()[:, None]
        for name, scores in zip(names, wrapped(x)):
            scores = scores.float() / (temperature if name == "joint" else 1.0)
            out[name].append(torch.softmax(scores, dim=1).cpu().numpy())
    k = getattr(model, "num_classes", 0)
    return {n: np.concatenate(v) if v else np.zeros((0, k)) for n, v in out.items()}


def _stages(model: nn.Module, config: TrainConfig) -> list[tuple[str, int, int]]:
    """(name, first iteration, end iteration) of each stage."""
    if not _has_scales(model):
        return [("joint", 0, config.iterations)]
    split = int(round(config.iterations * config.stage1_fraction))
    return [("scales", 0, split), ("joint", split, config.iterations)]


def _optimizer(model: nn.Module, stage: str, config: TrainConfig) -> torch.optim.Optimizer:
    if stage == "joint" and _has_scales(model):
        heads = list(model.heads.parameters())
        head_ids = {id(p) for p in heads}
        backbone = [p for p in model.parameters() if id(p) not in head_ids]
        groups = [{"params": heads, "lr": config.lr},
                  {"params": backbone, "lr": config.lr * config.stage2_backbone_lr_scale}]
    else:
        groups = [{"params": list(model.parameters()), "lr": config.lr}]
    return torch.optim.Adam(groups, lr=config.lr, betas=config.betas, eps=config.eps)


def _stage_loss(outputs: tuple[torch.Tensor, ...], target: torch.Tensor, stage: str, weight: torch.Tensor | None,
                gamma: float) -> torch.Tensor:
    if stage == "scales":
        return sum(focal_balanced_loss(s, target, weight, gamma) for s in outputs[1:])
    return focal_balanced_loss(outputs[0], target, weight, gamma)


def _iteration_generator(seed: int, iteration: int, rank: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + iteration) * 131 + rank)


@torch.no_grad()
def _validate(model: nn.Module, data: SliceSet, stage: str, weight: torch.Tensor | None, config: TrainConfig,
              device: torch.device) -> tuple[float, float]:
    """(mean stage loss, joint accuracy) on ``data``, eval mode, no augmentation."""
    was_training = model.training
    model.eval()
    wrapped = _Outputs(model)
    total, correct, n = 0.0, 0, 0
    for start in range(0, len(data), config.val_batch_size):
        x = data.images[start:start + config.val_batch_size].to(device).float()[:, None]
        y = data.labels[start:start + config.val_batch_size].to(device)
        outputs = tuple(o.float() for o in wrapped(x))
        total += float(_stage_loss(outputs, y, stage, weight, config.gamma)) * y.numel()
        correct += int((outputs[0].argmax(1) == y).sum())
        n += y.numel()
    model.train(was_training)
    return total / max(n, 1), correct / max(n, 1)


def _state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def train(model: nn.Module, train_set: SliceSet, val_set: SliceSet | None, config: TrainConfig,
          out_dir: str | Path | None = None, resume: bool = False, progress: ProgressFn | None = None,
          should_stop: StopFn | None = None, ctx: DistContext | None = None,
          device: str | torch.device = "auto") -> TrainResult:
    """Train ``model`` with the recipe; see the module docstring.

    ``out_dir`` (rank 0 writes): ``metrics.jsonl`` (log), ``best.pt`` (best weights), ``checkpoint.pt`` (resume state,
    written at every validation and on cancel). ``resume=True`` continues from ``out_dir/checkpoint.pt``.
    """
    ctx = ctx or DistContext(device=resolve_device(device))
    dev = ctx.device
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
    model.to(dev).train()
    num_classes = len(train_set.classes)
    # slices without a label (SliceSet.labelled) are neither trained on nor scored as slices
    train_set = train_set.labelled()
    val_set = val_set.labelled() if val_set is not None else None
    weight = class_weights(train_set.labels, num_classes).to(dev) if config.class_balanced else None
    use_amp = config.amp and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    stages = _stages(model, config)
    validate = val_set is not None and len(val_set) > 0

    state: dict[str, Any] = {"iter": 0, "steps": 0, "stage": None, "best_acc": -1.0, "last_improved": 0,
                             "best": {}, "stage_best_state": None, "stage_best_loss": math.inf}
    opt_state = None
    if resume:
        if out is None or not (out / "checkpoint.pt").is_file():
            raise FileNotFoundError("resume asked for but there is no checkpoint.pt in out_dir")
        ckpt = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
        model.load_state_dict(ckpt["model"])
        state = ckpt["state"]
        opt_state = ckpt["optimizer"]
        scaler.load_state_dict(ckpt["scaler"])
        torch.set_rng_state(ckpt["torch_rng"])
        if torch.cuda.is_available() and ckpt.get("cuda_rng") is not None:
            torch.cuda.set_rng_state_all(ckpt["cuda_rng"])

    log_fh = open(out / "metrics.jsonl", "a") if out is not None and ctx.is_main else None
    history: list[dict[str, Any]] = []
    start_steps, t0 = state["steps"], time.time()
    bar = tqdm(total=config.iterations, initial=state["iter"], disable=not (config.progress_bar and ctx.is_main),
               desc="train", unit="it")
    stopped = False

    def emit(record: dict[str, Any]) -> None:
        history.append(record)
        if ctx.is_main:
            if log_fh is not None:
                log_fh.write(json.dumps(record) + "\n")
                log_fh.flush()
            if progress is not None:
                progress(record)

    def save_checkpoint(optimizer: torch.optim.Optimizer) -> None:
        if out is None or not ctx.is_main:
            return
        tmp = out / "checkpoint.pt.tmp"
        torch.save({"model": _state_copy(model), "optimizer": optimizer.state_dict(), "state": state,
                    "scaler": scaler.state_dict(), "torch_rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                    "config": config.to_dict()}, tmp)
        tmp.replace(out / "checkpoint.pt")

    try:
        for stage, first, end in stages:
            if state["iter"] >= end:
                continue
            if state["stage"] != stage:  # entering a stage: from the previous stage's best weights, fresh trackers
                if state["stage_best_state"] is not None:
                    model.load_state_dict(state["stage_best_state"])
                state.update(stage=stage, best_acc=-1.0, stage_best_state=None, stage_best_loss=math.inf,
                             last_improved=max(state["iter"], first))
                opt_state = None
            optimizer = _optimizer(model, stage, config)
            if opt_state is not None:
                optimizer.load_state_dict(opt_state)
                opt_state = None
            net = ctx.wrap(_Outputs(model))
            running, running_n = 0.0, 0
            while state["iter"] < end:
                it = state["iter"]
                gen = _iteration_generator(config.seed, it, ctx.rank)
                idx = torch.randint(len(train_set), (config.batch_size,), generator=gen)
                x = train_set.images[idx].to(dev).float()[:, None]
                x, _ = augment_batch(x, config.augment, gen)
                y = train_set.labels[idx].to(dev)
                with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=use_amp):
                    outputs = net(x)
                loss = _stage_loss(tuple(o.float() for o in outputs), y, stage, weight, config.gamma)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                state["iter"], state["steps"] = it + 1, state["steps"] + 1
                running += float(loss.detach())
                running_n += 1
                bar.update(1)
                done = state["iter"]
                is_val = validate and (done % config.val_every == 0 or done == end)
                if done % config.log_every == 0 or is_val or done == end:
                    record = {"iter": done, "stage": stage, "loss": running / running_n, "val_loss": None,
                              "val_acc": None, "lr": max(g["lr"] for g in optimizer.param_groups)}
                    running, running_n = 0.0, 0
                    if is_val:
                        ctx.sync_buffers(model)
                        vl, va = _validate(model, val_set, stage, weight, config, dev) if ctx.is_main else (0.0, 0.0)
                        vl, va = ctx.broadcast_floats([vl, va])
                        record.update(val_loss=vl, val_acc=va)
                        if vl < state["stage_best_loss"]:
                            state["stage_best_loss"], state["last_improved"] = vl, done
                        if va > state["best_acc"]:
                            state["best_acc"] = va
                            state["stage_best_state"] = _state_copy(model)
                            state["best"] = {"stage": stage, "iter": done, "val_acc": va, "val_loss": vl}
                            if out is not None and ctx.is_main:
                                torch.save(state["stage_best_state"], out / "best.pt")
                    elapsed = time.time() - t0
                    record["time_s"] = round(elapsed, 3)
                    record["eta_s"] = round(elapsed / max(state["steps"] - start_steps, 1) * (config.iterations - done), 1)
                    emit(record)
                    if is_val:
                        if done - state["last_improved"] >= config.patience and done < end:
                            state["iter"] = end  # early stop: this stage is over
                        save_checkpoint(optimizer)
                if ctx.any(should_stop() if should_stop is not None and ctx.is_main else False):
                    stopped = True
                    save_checkpoint(optimizer)
                    break
            if stopped:
                break
        if state["stage_best_state"] is not None:
            # The result is the last stage's best; on a stop the resume checkpoint above keeps the current weights.
            model.load_state_dict(state["stage_best_state"])
    finally:
        bar.close()
        if log_fh is not None:
            log_fh.close()
    ctx.sync_buffers(model)
    wall = time.time() - t0
    seen = (state["steps"] - start_steps) * config.batch_size
    if not state["best"]:
        state["best"] = {"stage": stages[-1][0], "iter": state["iter"], "val_acc": None, "val_loss": None}
    result_model = copy.deepcopy(model).cpu().eval()
    return TrainResult(model=result_model, iterations=state["iter"], steps=state["steps"], best=dict(state["best"]),
                       stopped=stopped, wall_s=wall, slices_per_s=seen / wall if wall > 0 else 0.0, history=history)
