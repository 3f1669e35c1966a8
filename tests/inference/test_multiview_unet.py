"""The multi-view lung U-Net: building blocks, the weights format, and the shipped weights on a fresh phantom."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from inference.lungs.multiview_unet import (DEFAULT_DIR, VIEWS, MultiViewUNet, NeighbourAttention, SliceUNet,
                                            build_nets, fuse_batchnorm, load_unet, neighbour_stacks, probability,
                                            save_unet, segment, to_cube, view_slices)
from training.phantom import generate_study


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def test_neighbour_stacks_centre_first_class_and_edges_repeat() -> None:
    slices = torch.arange(5, dtype=torch.float32)[:, None, None].expand(5, 2, 2)
    stacks = neighbour_stacks(slices, 2)
    assert stacks.shape == (5, 5, 2, 2)
    assert stacks[0, :, 0, 0].tolist() == [0, 0, 0, 1, 2]
    assert stacks[4, :, 0, 0].tolist() == [2, 3, 4, 4, 4]
    assert neighbour_stacks(slices, 1, torch.tensor([2]))[0, :, 0, 0].tolist() == [1, 2, 3]


def test_attention_weights_are_a_softmax_over_neighbours() -> None:
    att = NeighbourAttention(5, 4).eval()
    x = torch.rand(2, 5, 16, 16)
    out = att(x)
    assert out.shape == (2, 8, 16, 16)
    # Identical neighbours: whatever the weights, their weighted sum equals the centre's own features.
    same = x[:, 2:3].expand(2, 5, 16, 16).contiguous()
    fused = att(same)
    assert torch.allclose(fused[:, :4], fused[:, 4:], atol=1e-5)


def test_slice_unet_keeps_the_slice_shape() -> None:
    net = SliceUNet(neighbours=1, base=4, depth=2).eval()
    assert net(torch.rand(3, 3, 32, 48)).shape == (3, 32, 48)


def test_to_cube_averages_when_shrinking_and_interpolates_when_growing() -> None:
    vol = torch.rand(8, 32, 32)
    small = to_cube(vol, (4, 16, 16))
    assert small.shape == (4, 16, 16)
    assert float(small.mean()) == pytest.approx(float(vol.mean()), rel=1e-5)
    assert to_cube(vol, (16, 8, 40)).shape == (16, 8, 40)


def test_view_slices_cut_along_the_right_axis() -> None:
    cube = torch.zeros(2, 3, 4)
    assert [tuple(view_slices(cube, v).shape) for v in VIEWS] == [(2, 3, 4), (3, 2, 4), (4, 2, 3)]


def test_batchnorm_fusion_keeps_the_output() -> None:
    torch.manual_seed(0)
    net = SliceUNet(neighbours=1, base=4, depth=2)
    net.train()
    net(torch.rand(4, 3, 32, 32))  # move the BatchNorm running statistics off their defaults
    net.eval()
    x = torch.rand(2, 3, 32, 32)
    before = net(x)
    assert torch.allclose(fuse_batchnorm(net)(x), before, atol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())


def test_save_and_load_round_trip(tmp_path) -> None:
    torch.manual_seed(1)
    nets = build_nets({"neighbours": 1, "base": 4, "depth": 2})
    meta = {"cube": [8, 32, 32], "windows": {"lung": [1500, -600]}, "name": "t"}
    save_unet(nets, tmp_path, meta)
    assert json.loads((tmp_path / "model.json").read_text())["architecture"]["base"] == 4
    model = load_unet(tmp_path, device="cpu")
    assert model.cube == (8, 32, 32) and model.windows == {"lung": (1500.0, -600.0)}
    x = torch.rand(2, 3, 32, 32)
    for view in VIEWS:
        nets[view].eval()
        assert torch.allclose(model.nets[view](x), nets[view](x), atol=2e-2)  # fp16 weights
    with pytest.raises(FileNotFoundError):
        load_unet(tmp_path / "missing")


def test_segment_of_one_slice_is_a_slice(tmp_path) -> None:
    nets = build_nets({"neighbours": 1, "base": 4, "depth": 2})
    model = MultiViewUNet(nets={v: n.eval() for v, n in nets.items()}, cube=(8, 32, 32),
                          windows={"lung": (1500.0, -600.0)}, meta={}, device=torch.device("cpu"))
    out = segment(np.full((40, 50), -1000.0, dtype=np.float32), model=model)
    assert out.shape == (40, 50) and out.dtype == bool


def test_thin_slabs_are_read_with_their_mirror_image_whole_studies_once() -> None:
    """A slab of a few slices gets each map averaged with the network's map of its left-right mirror image, so its
    lung probability mirrors with the slab exactly; a whole study (``MIN_SLICES_3D`` slices and more) is read once.
    An untrained network is not mirror-symmetric, so the slab's equality holds only through the averaging."""
    torch.manual_seed(0)
    nets = build_nets({"neighbours": 1, "base": 4, "depth": 2})
    model = MultiViewUNet(nets={v: fuse_batchnorm(n.eval()) for v, n in nets.items()}, cube=(16, 32, 32),
                          windows={"lung": (1500.0, -600.0), "wide": (1800.0, -300.0)}, meta={},
                          device=torch.device("cpu"))
    rng = np.random.default_rng(3)
    slab = rng.normal(-600, 300, (5, 32, 32)).astype(np.float32)
    mirrored = probability(slab[..., ::-1].copy(), model=model)
    np.testing.assert_allclose(mirrored[..., ::-1], probability(slab, model=model), atol=1e-5)
    study = rng.normal(-600, 300, (16, 32, 32)).astype(np.float32)
    assert np.abs(probability(study[..., ::-1].copy(), model=model)[..., ::-1]
                  - probability(study, model=model)).max() > 1e-4


@pytest.fixture(scope="module")
def fresh_study():
    """A phantom the shipped weights never saw (training used seeds 0..; evaluation 900001..)."""
    return generate_study(424_242, "COVID", n_slices=48, size=160)


def test_shipped_weights_segment_a_fresh_phantom(fresh_study) -> None:
    meta = json.loads((DEFAULT_DIR / "model.json").read_text())
    assert meta["metrics"]["dice_fresh_phantoms"]["mean"] >= 0.95
    assert sum(p.stat().st_size for p in DEFAULT_DIR.iterdir()) < 5_000_000
    start = time.perf_counter()
    mask = segment(fresh_study.hu.astype(np.float32), device="cpu")
    elapsed = time.perf_counter() - start
    assert mask.shape == fresh_study.hu.shape and mask.dtype == bool
    assert _dice(mask, fresh_study.lung_mask) >= 0.95
    # Lesions belong to the lung: the ground-glass opacities are segmented with it.
    assert (mask & fresh_study.lesion_mask).sum() >= 0.85 * fresh_study.lesion_mask.sum()
    assert elapsed < 30.0


def test_dispatcher_runs_the_unet(fresh_study) -> None:
    from inference.lungs import segment_lungs

    mask = segment_lungs(fresh_study.hu[20:28].astype(np.float32), method="unet")
    assert mask.shape == (8, 160, 160) and mask.any()
