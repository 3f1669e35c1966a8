"""Two-process DDP training on CPU (gloo): both ranks end with identical weights."""
import os
import socket

import torch
import torch.multiprocessing as mp

from training.augment import AugmentConfig
from training.datasets import TASKS, PrepConfig, build_slice_set, toy_studies
from training.distributed import setup, teardown
from training.train import TrainConfig, make_model, train


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    ctx = setup("cpu")
    data = build_slice_set(toy_studies(6, seed=0, size=32, n_slices=2), TASKS["3way"], PrepConfig(size=32))
    torch.manual_seed(rank)  # different inits on purpose: DDP must make rank 0's the common start
    model = make_model("MultiScaleVGG", 3, 0.125)
    cfg = TrainConfig(iterations=8, batch_size=4, val_every=4, log_every=2, progress_bar=False,
                      augment=AugmentConfig())
    result = train(model, data, data, cfg, ctx=ctx)
    torch.save({"state": result.model.state_dict(), "iterations": result.iterations}, f"{out}/rank{rank}.pt")
    teardown(ctx)


def test_two_gloo_ranks_end_with_identical_weights(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["iterations"] == r1["iterations"] == 8
    assert r0["state"].keys() == r1["state"].keys()
    assert all(torch.equal(r0["state"][k], r1["state"][k]) for k in r0["state"])
