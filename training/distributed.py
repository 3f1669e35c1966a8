"""Data-parallel training under ``torchrun`` (DDP): NCCL on GPUs, gloo on CPU.

Launch: ``torchrun --nproc_per_node N -m training train ...``. torchrun sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``;
:func:`setup` reads them, and a single process (no torchrun) gets a one-rank context without a process group, so
the trainer has one code path. Each rank draws its own batches (its rank is in the per-iteration seed), DDP averages
the gradients, so weights stay identical across ranks. Rank 0 alone validates, logs and writes files; it broadcasts
the validation figures and every rank all-reduces the cancel flag, so all ranks take the same early-stopping and
cancel decisions and none waits forever in a collective.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["DistContext", "setup", "teardown"]


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, module: nn.Module) -> nn.Module:
        """DDP around ``module`` when distributed, the module itself otherwise."""
        if not self.enabled:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def sync_buffers(self, module: nn.Module) -> None:
        """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

        DDP broadcasts buffers at the start of each forward, but the forward then updates them with the rank's own
        batch; before validating or saving, the ranks must agree.
        """
        if self.enabled:
            for buf in module.buffers():
                dist.broadcast(buf.data, src=0)

    def broadcast_floats(self, values: list[float]) -> list[float]:
        """Rank 0's ``values`` on every rank."""
        if not self.enabled:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device)
        dist.broadcast(t, src=0)
        return t.tolist()

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any rank (a cancel seen by one stops all)."""
        if not self.enabled:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self._comm_device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    @property
    def _comm_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


def setup(device: str = "auto") -> DistContext:
    """Join the process group torchrun describes in the environment, or return a single-process context."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    dev = torch.device("cuda", local) if cuda else torch.device("cpu" if device == "auto" else device)
    if cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return DistContext(rank=rank, world_size=world, local_rank=local, device=dev)


def teardown(ctx: DistContext) -> None:
    """Leave the process group (a no-op for a single process)."""
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
