"""The paper's multi-view lung U-Net: 2D U-Nets on axial, coronal and sagittal slices, multi-window voting,
and an attention module over neighbouring slices.

Design
------
* **Cube.** The HU volume (z, y, x) is resampled (area averaging) to a fixed cube (``cube`` in ``model.json``, e.g.
  48 x 64 x 64) so one network per view sees slices of one size whatever the scanner's matrix and slice count;
  a small cube keeps the 9 maps of the vote affordable on a CPU.
  The decision is resampled back trilinearly, with the maps' mean probability placing the boundary sub-voxel.
* **Views.** The axial network segments slices along z, the coronal one along y, the sagittal one along x; each
  has its own weights (the anatomy looks different in each plane; training starts them from one shared network).
* **Neighbour attention.** A network takes the 2k+1 slices around the one it segments as input channels. A shared
  3x3 conv turns each neighbour into F feature maps; a 1x1 conv scores every neighbour's features against the
  centre slice's, a softmax over the neighbours turns the scores into per-pixel weights, and the weighted sum
  (the context the centre slice agrees with, e.g. a vessel continuing through the slab, not noise) is
  concatenated to the centre's own features before the U-Net. Weights are learned, per pixel, and sum to one.
* **Multi-window voting.** Each view runs on the volume normalised with several HU windows (lung W1500/L-600,
  wide W1800/L-300, mediastinal W400/L40): different windows make different errors (a lung window blurs dense
  consolidation into the chest wall, a mediastinal one flattens the lung/airway contrast). Every view x window
  probability map is thresholded at 0.5 and the voxel is lung when a majority of the maps say so.
* **Clean-up.** Components smaller than 2 % of the largest are dropped (stray votes in bowel gas or the trachea).

``segment(volume_hu)`` is the entry point used by ``inference.lungs.segment_lungs(..., method="unet")``; 2D
input and thin slabs run the axial networks only, each map averaged with its left-right mirror (``probability``).
Trained by ``python -m training.unet`` on phantom studies; weights ship in ``models/lungs-unet/`` (``model.json`` + ``weights.pt``, fp16).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..bundle import resolve_device

SCHEMA = "lungscope.lungs-unet/1"
VIEWS: tuple[str, ...] = ("axial", "coronal", "sagittal")
#: view -> the cube axis the view slices along (cube axes: z, y, x)
VIEW_AXIS: dict[str, int] = {"axial": 0, "coronal": 1, "sagittal": 2}
DEFAULT_WINDOWS: dict[str, tuple[float, float]] = {"lung": (1500.0, -600.0), "wide": (1800.0, -300.0),
                                                   "mediastinal": (400.0, 40.0)}
MIN_SLICES_3D = 16
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "models" / "lungs-unet"


class NeighbourAttention(nn.Module):
    """Fuse a stack of 2k+1 slices: per-pixel softmax attention of every neighbour's features against the centre's."""

    def __init__(self, n_slices: int, features: int) -> None:
        super().__init__()
        self.n_slices, self.features = n_slices, features
        self.encode = nn.Sequential(nn.Conv2d(1, features, 3, padding=1), nn.BatchNorm2d(features), nn.ReLU(True))
        self.score = nn.Conv2d(2 * features, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, h, w = x.shape
        return self.attend(self.encode(x.reshape(b * n, 1, h, w)).reshape(b, n, self.features, h, w))

    def attend(self, f: torch.Tensor) -> torch.Tensor:
        """The fusion of already encoded stacks (b, n, F, h, w): a slice's features do not depend on the stack it
        sits in, so inference encodes each slice once and stacks the features (:func:`predict_view`)."""
        b, n, c, h, w = f.shape
        centre = f[:, n // 2]
        # ``score`` is a 1x1 conv over (neighbour, centre) feature pairs: its centre half is the same for every
        # neighbour, so it is computed once per stack instead of on n concatenated copies of the centre
        weight = self.score.weight
        scores = F.conv2d(f.reshape(b * n, c, h, w), weight[:, :c]).reshape(b, n, 1, h, w) + \
            F.conv2d(centre, weight[:, c:], self.score.bias)[:, None]
        attn = torch.softmax(scores, dim=1)
        return torch.cat([centre, (attn * f).sum(dim=1)], dim=1)


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True))


class SliceUNet(nn.Module):
    """Neighbour attention followed by a ``depth``-level U-Net; returns one logit map (lung vs not)."""

    def __init__(self, neighbours: int = 2, base: int = 8, depth: int = 4) -> None:
        super().__init__()
        self.neighbours, self.base, self.depth = neighbours, base, depth
        self.attention = NeighbourAttention(2 * neighbours + 1, base)
        chans = [base * 2 ** i for i in range(depth + 1)]
        self.down = nn.ModuleList([_double_conv(2 * base, chans[0])] +
                                  [_double_conv(chans[i - 1], chans[i]) for i in range(1, depth + 1)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2) for i in range(depth)])
        self.merge = nn.ModuleList([_double_conv(2 * chans[i], chans[i]) for i in range(depth)])
        self.head = nn.Conv2d(chans[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.segment_attended(self.attention(x))

    def segment_attended(self, h: torch.Tensor) -> torch.Tensor:
        """The U-Net part: the logit map of the attention's output (b, 2F, h, w)."""
        skips = []
        for i, block in enumerate(self.down):
            h = block(h if i == 0 else F.max_pool2d(h, 2))
            skips.append(h)
        for i in reversed(range(self.depth)):
            h = self.merge[i](torch.cat([self.up[i](h), skips[i]], dim=1))
        return self.head(h)[:, 0]


@dataclass
class MultiViewUNet:
    """The three view networks plus how to feed them (from ``model.json``)."""

    nets: dict[str, SliceUNet]
    cube: tuple[int, int, int]
    windows: dict[str, tuple[float, float]]
    meta: dict[str, Any]
    device: torch.device


def build_nets(arch: dict[str, Any]) -> dict[str, SliceUNet]:
    """One untrained network per view from ``model.json``'s ``architecture`` block."""
    return {v: SliceUNet(int(arch["neighbours"]), int(arch["base"]), int(arch["depth"])) for v in VIEWS}


def fuse_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every BatchNorm that follows a conv into the conv (eval only): one memory pass less per layer."""
    for child in module.children():
        if isinstance(child, nn.Sequential):
            layers = list(child)
            for i in range(len(layers) - 1):
                if isinstance(layers[i], nn.Conv2d) and isinstance(layers[i + 1], nn.BatchNorm2d):
                    child[i] = fuse_conv_bn_eval(layers[i], layers[i + 1])
                    child[i + 1] = nn.Identity()
        else:
            fuse_batchnorm(child)
    return module


def load_weights(nets: dict[str, SliceUNet], weights_path: str | Path) -> dict[str, SliceUNet]:
    """Load a ``weights.pt`` (keys prefixed by view) into unfused networks, in fp32; the trainer starts from it."""
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    for view, net in nets.items():
        prefix = f"{view}."
        net.load_state_dict({k[len(prefix):]: v.float() for k, v in state.items() if k.startswith(prefix)})
    return nets


def load_unet(path: str | Path | None = None, device: str | torch.device = "auto") -> MultiViewUNet:
    """Load ``model.json`` + ``weights.pt`` from a folder (default: the shipped ``models/lungs-unet``)."""
    folder = Path(path) if path is not None else DEFAULT_DIR
    if folder.is_file():
        folder = folder.parent
    meta_path, weights_path = folder / "model.json", folder / "weights.pt"
    if not meta_path.is_file() or not weights_path.is_file():
        raise FileNotFoundError(f"{folder} is not a lung U-Net folder: it needs model.json and weights.pt")
    meta = json.loads(meta_path.read_text())
    if meta.get("schema") != SCHEMA:
        raise ValueError(f"{meta_path} has schema {meta.get('schema')!r}, expected {SCHEMA!r}")
    nets = load_weights(build_nets(meta["architecture"]), weights_path)
    dev = resolve_device(device)
    for net in nets.values():
        # channels-last weights: oneDNN's convolutions then skip a layout reorder per layer, half the CPU time on
        # the shipped cube (same probabilities to 1e-6, same masks)
        fuse_batchnorm(net.eval()).to(dev, memory_format=torch.channels_last)
    windows = {name: (float(w), float(lv)) for name, (w, lv) in meta["windows"].items()}
    return MultiViewUNet(nets=nets, cube=tuple(meta["cube"]), windows=windows, meta=meta, device=dev)


def save_unet(nets: dict[str, SliceUNet], out_dir: str | Path, meta: dict[str, Any]) -> Path:
    """Write fp16 weights (one state dict, keys prefixed by view) and ``model.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {f"{view}.{k}": (v.detach().half() if v.is_floating_point() else v.detach()).cpu()
             for view, net in nets.items() for k, v in net.state_dict().items()}
    torch.save(state, out / "weights.pt")
    first = next(iter(nets.values()))
    full = {"schema": SCHEMA, "architecture": {"name": "SliceUNet", "neighbours": first.neighbours,
                                               "base": first.base, "depth": first.depth}, **meta}
    (out / "model.json").write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
    return out


def to_cube(volume: torch.Tensor, cube: tuple[int, int, int]) -> torch.Tensor:
    """Resample a (z, y, x) tensor to ``cube``: area averaging along shrinking axes (no aliasing of the noise,
    partial volume at the lung border), then trilinear along growing ones. The trainer uses it too."""
    x = volume[None, None]
    shrunk = tuple(min(a, b) for a, b in zip(x.shape[2:], cube))
    if shrunk != tuple(x.shape[2:]):
        x = F.adaptive_avg_pool3d(x, shrunk)
    if shrunk != tuple(cube):
        x = F.interpolate(x, size=cube, mode="trilinear", align_corners=False)
    return x[0, 0]


def window(volume_hu: torch.Tensor, width: float, level: float) -> torch.Tensor:
    """HU -> [0, 1] through a display window."""
    return ((volume_hu - (level - width / 2)) / width).clamp_(0.0, 1.0)


def neighbour_stacks(slices: torch.Tensor, k: int, index: torch.Tensor | None = None) -> torch.Tensor:
    """(n, ...) -> (m, 2k+1, ...): slices ``index`` (default all) with k neighbours either side (edges repeat);
    the slices may be images (n, h, w) or their encoded features (n, F, h, w)."""
    n = slices.shape[0]
    index = torch.arange(n, device=slices.device) if index is None else index.to(slices.device)
    offsets = torch.arange(-k, k + 1, device=slices.device)
    return slices[(index[:, None] + offsets[None, :]).clamp_(0, n - 1)]


def view_slices(cube: torch.Tensor, view: str) -> torch.Tensor:
    """The cube as a stack of ``view`` slices (slicing axis first)."""
    return cube.movedim(VIEW_AXIS[view], 0)


@torch.no_grad()
def predict_view(net: SliceUNet, cube01: torch.Tensor, view: str, batch: int = 32) -> torch.Tensor:
    """Lung probability of every voxel of a normalised cube from one view's network: the same as ``net`` on each
    slice's neighbour stack, with every slice encoded once instead of once per stack it is in (2k+1 times)."""
    slices = view_slices(cube01, view)
    features = net.attention.encode(slices[:, None])
    probs = torch.empty_like(slices)
    n = slices.shape[0]
    for start in range(0, n, batch):
        index = torch.arange(start, min(start + batch, n))
        attended = net.attention.attend(neighbour_stacks(features, net.neighbours, index))
        probs[start:start + len(index)] = torch.sigmoid(net.segment_attended(attended))
    return probs.movedim(0, VIEW_AXIS[view])


def _keep_large_components(mask: np.ndarray, fraction: float = 0.02) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    keep = sizes >= fraction * sizes.max()
    return keep[labels]


@lru_cache(maxsize=4)
def _cached(path: str, device: str) -> MultiViewUNet:
    return load_unet(path, device)


def probability(volume_hu: np.ndarray, weights: str | Path | None = None, device: str = "auto",
                model: MultiViewUNet | None = None) -> np.ndarray:
    """Lung probability shaped like ``volume_hu``: the maps' mean, above 0.5 exactly where the view x window
    majority says lung (see :func:`segment`). ``auto`` adds dense lung only where it is higher still.

    Slabs thinner than ``MIN_SLICES_3D`` (and single slices) run the axial networks only, at their own slice count:
    coronal and sagittal slices of a few-slice slab show no anatomy to segment. Each of their maps is then the mean
    of the network on the slab and on its left-right mirror image (mirrored back): the vote has three maps there
    instead of nine, and the mirror gives each a second look at the pleura, mostly where a consolidation meets the
    chest wall (``models/lungs-unet/MODEL_CARD.md``, "Mirror averaging on thin slabs"). Whole studies keep one pass:
    their nine maps vote already, and the mirror doubles the U-Net's time on every study.
    """
    mvu = model or _cached(str(weights or DEFAULT_DIR), str(device))
    arr = np.asarray(volume_hu, dtype=np.float32)
    flat = arr.ndim == 2
    vol = torch.from_numpy(arr[None] if flat else arr).to(mvu.device)
    thin = vol.shape[0] < MIN_SLICES_3D
    cube = (vol.shape[0], *mvu.cube[1:]) if thin else mvu.cube
    views = ("axial",) if thin else VIEWS
    hu_cube = to_cube(vol, cube)
    votes, prob_sum = torch.zeros_like(hu_cube), torch.zeros_like(hu_cube)
    for width, level in mvu.windows.values():
        cube01 = window(hu_cube, width, level)
        for view in views:
            prob = predict_view(mvu.nets[view], cube01, view)
            if thin:  # mirror averaging (see the docstring); x is the patient's left-right axis
                prob = 0.5 * (prob + predict_view(mvu.nets[view], cube01.flip(-1), view).flip(-1))
            votes += (prob > 0.5).float()
            prob_sum += prob
    n_maps = len(views) * len(mvu.windows)
    majority = torch.from_numpy(_keep_large_components((votes > n_maps / 2).cpu().numpy())).to(votes.device)
    # The vote decides every cube voxel; the mean probability only places the boundary between voxels when the
    # decision is resampled to the input grid (a level set that is > 0.5 exactly where the majority says lung).
    mean_prob = prob_sum / n_maps
    level_set = torch.where(majority, mean_prob.clamp(min=0.501), mean_prob.clamp(max=0.5))
    out = to_cube(level_set, tuple(vol.shape)).cpu().numpy()
    return out[0] if flat else out


def segment(volume_hu: np.ndarray, weights: str | Path | None = None, device: str = "auto",
            model: MultiViewUNet | None = None) -> np.ndarray:
    """Bool lung mask shaped like ``volume_hu`` ((z, y, x) or one (y, x) slice) by view x window majority vote."""
    return probability(volume_hu, weights, device, model) > 0.5
