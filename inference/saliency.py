"""Integrated Gradients per scale (Conv3, Conv4, Conv5) and the joint saliency, as in Hu et al. 2020.

For each scale ``s`` the attribution of pixel p is ``x_p * integral_0^1 dF_s(a x)/dx_p da`` (zero baseline),
approximated with ``m`` = 25 Gauss-Legendre nodes: captum's default rule, so :func:`captum_ig` (the reference) and
:class:`SaliencyEngine` (the fast path) compute the same sum. The joint saliency is the pixel-wise product of the three
maps: a pixel counts only when every scale agrees it matters, which sharpens the coarse Conv5 evidence with the
finer Conv3/Conv4 detail.

Why the fast path is faster than calling captum once per scale (each step measured with ``bench/saliency.py``):

- one forward pass of the m scaled inputs through the backbone serves all three scales (captum re-runs the shared
  stages for each scale), with BatchNorm folded into the convolutions (exact in eval mode);
- no autograd: the backward is written out layer by layer. A 3x3 convolution's input gradient is the same
  convolution with the kernel transposed and flipped, so it runs as a forward convolution; the ReLU derivative is
  the sign of the saved ReLU output, and the last ReLU of a stage is applied after max pooling, at a quarter of the
  size (exact: a pooled value is positive iff the element it came from is). Nothing of the forward is recomputed;
- global max pooling makes the Conv3 and Conv4 scores depend on the receptive field of one CAM cell: their backward
  runs on that window only (56 and 112 px of 224, so 1/16 and 1/4 of the cost), on crops of the forward's
  activations; only Conv5 needs the full-image backward;
- nothing follows the first convolution's backward but the sum over steps, which commutes with it: each scale's
  weighted step gradients are summed first and sent through its transposed kernel once;
- on CPU, ReLU is fused into the convolution (a oneDNN post-op) and every large tensor is written into buffers the
  engine keeps across calls: tensors of 40-160 MB otherwise come freshly mapped from the OS on each call, and their
  page faults took a fifth of the CPU time. The buffers hold about 1.5 GB at width 1.0 and 224 px (0.37 GB at the
  shipped width 0.25); drop the engine to free them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .classifier import HEAD_STAGES, STAGES, MultiScaleVGG

__all__ = ["gauss_legendre", "captum_ig", "SaliencyEngine", "SaliencyMaps", "joint_saliency"]

DEFAULT_STEPS = 25
_CL = torch.channels_last
_CONV3X3 = ([1, 1], [1, 1], [1, 1], 1)  # padding, stride, dilation, groups of every backbone convolution
_POOL = ([2, 2], [2, 2], [0, 0], [1, 1], False)  # kernel, stride, padding, dilation, ceil_mode of every max pooling


def gauss_legendre(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``alphas`` in (0, 1) and weights summing to 1: captum's ``gausslegendre`` approximation, re-derived."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    return 0.5 * (nodes + 1.0), 0.5 * weights


def captum_ig(model: MultiScaleVGG, x: torch.Tensor, target: int, steps: int = DEFAULT_STEPS) -> list[torch.Tensor]:
    """Reference: captum's IntegratedGradients on ``model.scale_forward(s)`` for s = 0, 1, 2.

    ``x`` is (1, C, H, W); returns three (H, W) maps (attributions summed over channels).
    """
    from captum.attr import IntegratedGradients

    maps = []
    for scale in range(3):
        ig = IntegratedGradients(model.scale_forward(scale))
        attr = ig.attribute(x, baselines=torch.zeros_like(x), target=target, n_steps=steps, method="gausslegendre")
        maps.append(attr.detach()[0].sum(0))
    return maps


def joint_saliency(maps: list[np.ndarray] | list[torch.Tensor]) -> np.ndarray:
    """Pixel-wise product of the per-scale IG maps, each first divided by its largest magnitude.

    The scaling changes the product by one positive constant only (boxes and severity are scale-free), but keeps it
    in [-1, 1]: a raw product of three ~1e-4 maps would vanish in float16 map storage. Signed; boxes use |joint|.
    """
    joint = np.ones(np.shape(maps[0]), dtype=np.float64)
    for m in maps:
        array = np.asarray(m.detach().cpu() if isinstance(m, torch.Tensor) else m, dtype=np.float64)
        peak = float(np.abs(array).max())
        joint *= array / peak if peak > 0 else array
    return joint.astype(np.float32)


@dataclass
class SaliencyMaps:
    """One slice's IG maps in the 224 input space: per scale (Conv3, Conv4, Conv5) and their joint product."""

    ig: list[np.ndarray]  # 3 x (H, W) float32
    joint: np.ndarray  # (H, W) float32
    scores: list[float]  # F_s(x) - F_s(0) estimated by the attributions' sums, per scale


@dataclass
class _Conv:
    """A 3x3 convolution with its BatchNorm folded in, and the kernel of its input gradient."""

    weight: torch.Tensor  # (out, in, 3, 3)
    bias: torch.Tensor  # (out,)
    weight_t: torch.Tensor  # (in, out, 3, 3): conv2d(g, weight_t, padding=1) is the gradient w.r.t. the input


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d, device: torch.device) -> _Conv:
    """``bn(conv(x))`` with BatchNorm's running statistics (eval mode) as one convolution."""
    if conv.kernel_size != (3, 3) or conv.padding != (1, 1) or conv.stride != (1, 1) or conv.groups != 1:
        raise ValueError("the fast IG path expects the paper's 3x3, stride 1, padding 1 convolutions")
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    weight = (conv.weight * scale[:, None, None, None]).float().to(device)
    return _Conv(weight=_channels_last(weight), bias=((bias - bn.running_mean) * scale + bn.bias).float().to(device),
                 weight_t=_channels_last(weight.transpose(0, 1).flip(2, 3)))


def _channels_last(t: torch.Tensor) -> torch.Tensor:
    """A channels_last copy, with those strides even where one channel makes the layout ambiguous (which
    ``contiguous(memory_format=...)`` leaves as NCHW strides, and the conv kernels then run as NCHW)."""
    return torch.empty(t.shape, dtype=t.dtype, device=t.device, memory_format=_CL).copy_(t)


def _folded_stages(model: MultiScaleVGG, device: torch.device) -> list[list[_Conv]]:
    """Per stage, its conv + BatchNorm (+ ReLU) layers folded; checks the layout ``[conv, bn, relu] * n + [pool]``."""
    stages = []
    for stage in model.stages:
        modules = list(stage)
        kinds = [type(m) for m in modules]
        n = (len(modules) - 1) // 3
        if kinds != [nn.Conv2d, nn.BatchNorm2d, nn.ReLU] * n + [nn.MaxPool2d]:
            raise ValueError(f"unexpected stage layout for the fast IG path: {kinds}")
        stages.append([_fold(modules[3 * i], modules[3 * i + 1], device) for i in range(n)])
    return stages


def _receptive_window(stage: int) -> tuple[int, int]:
    """(stride, side) of an input window that holds the receptive field of any output cell of ``stage``.

    A cell of stage t (stride J = 2^(t+1)) sees the input rows [J i - P, J i + J + P), where P sums the 1-pixel conv
    padding times the stride at which each conv runs. Rounded out to whole cells: side = J (1 + 2 ceil(P / J)).
    """
    stride = 2 ** (stage + 1)
    pad = sum(n_convs * 2 ** t for t, (n_convs, _) in enumerate(STAGES[: stage + 1]))
    return stride, stride * (1 + 2 * math.ceil(pad / stride))


def _fused_conv_available(device: torch.device) -> bool:
    """Whether oneDNN's in-place conv + ReLU kernel works here (CPU builds with mkldnn; checked on a tiny case)."""
    if device.type != "cpu" or not torch.backends.mkldnn.is_available() or not torch.backends.mkldnn.enabled:
        return False
    try:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(2, 4, 6, 6, generator=g).contiguous(memory_format=_CL)
        w = torch.randn(8, 4, 3, 3, generator=g).contiguous(memory_format=_CL)
        b = torch.randn(8, generator=g)
        out = torch.zeros(2, 8, 6, 6).contiguous(memory_format=_CL)
        torch.ops.mkldnn._convolution_pointwise_.binary(out, x, w, b, *_CONV3X3, "add", 1.0, "relu", [], "")
        return bool(torch.allclose(out, F.conv2d(x, w, b, padding=1).relu(), atol=1e-4))
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


@dataclass
class _Forward:
    """What the backward needs from the forward of the m scaled inputs, per stage: the ReLU outputs of its convs but
    the last (whose derivative is taken after pooling), the max-pooled output, the pooling indices and the
    pre-pooling (rows, cols); and the CAMs of the three heads."""

    masks: list[list[torch.Tensor]] = field(default_factory=list)
    pooled: list[torch.Tensor] = field(default_factory=list)
    indices: list[torch.Tensor] = field(default_factory=list)
    planes: list[tuple[int, int]] = field(default_factory=list)
    cams: list[torch.Tensor] = field(default_factory=list)


@dataclass
class _Level:
    """One stage's saved tensors as one backward pass sees them (whole, or cropped to windows): the ReLU outputs
    whose sign masks the gradient inside the stage, the pooled output, the pooling indices (flat offsets in the
    pre-pooling plane of this view) and that plane's (rows, cols)."""

    masks: list[torch.Tensor]
    pooled: torch.Tensor
    indices: torch.Tensor
    plane: tuple[int, int]


class SaliencyEngine:
    """Integrated Gradients for all three scales from one batched forward pass (see the module docstring).

    Built once per model (folding takes milliseconds); the model must be in eval mode and must not change
    afterwards. Runs on the model's device (CPU or CUDA), fp32, without autograd; on CUDA the convolutions follow
    torch's TF32 setting (``torch.backends.cudnn.allow_tf32``, on by default), as captum's do.
    """

    def __init__(self, model: MultiScaleVGG, steps: int = DEFAULT_STEPS) -> None:
        if model.training:
            raise ValueError("IG explains the deployed model: put it in eval mode first")
        device = next(model.parameters()).device
        self.device = device
        with torch.no_grad():
            self.stages = _folded_stages(model, device)
            self.heads = [(h.weight.detach()[:, :, 0, 0].float().to(device).clone(), h.bias.detach().float().to(device))
                          for h in model.heads]  # 1x1 convs: (K, C) matrices
        alphas, weights = gauss_legendre(steps)
        self.alphas = torch.tensor(alphas, dtype=torch.float32, device=device)
        self.weights = torch.tensor(weights, dtype=torch.float32, device=device)
        self.windows = [_receptive_window(HEAD_STAGES[s]) for s in range(2)]
        self._fused = _fused_conv_available(device)
        self._buffers: dict[tuple, torch.Tensor] = {}

    def attribute(self, x: torch.Tensor, target: int) -> SaliencyMaps:
        """IG maps of one input ``x`` (1, C, H, W) or (C, H, W) for class ``target``, per scale."""
        x = x.to(self.device, torch.float32)
        if x.dim() == 3:
            x = x[None]
        with torch.inference_mode():
            fwd = self._forward(x)
            # per scale, sum_k w_k dF_s(a_k x)/d(first conv's output): (3, C1, H, W)
            summed = torch.empty((3, self.stages[0][0].weight.shape[0], *fwd.planes[0]), device=self.device,
                                 memory_format=_CL).zero_()
            for scale in range(3):
                self._add_summed_grad(fwd, scale, target, summed[scale])
            grads = F.conv2d(summed, self.stages[0][0].weight_t, padding=1)
            maps = list((x * grads).sum(1).float().cpu().numpy())
        return SaliencyMaps(ig=maps, joint=joint_saliency(maps), scores=[float(m.sum()) for m in maps])

    # -- forward -------------------------------------------------------------------------------------------------

    def _forward(self, x: torch.Tensor) -> _Forward:
        """The backbone on the m inputs a_k x at once, keeping what the backward needs (no autograd graph)."""
        # channels_last strides spelled out: with one channel the layout is ambiguous, and the convolution would
        # then pick NCHW, be slower, and hand the next one a layout that costs a reorder
        h = self._buffer(("scaled",), (len(self.alphas), *x.shape[1:]))
        torch.mul(self.alphas[:, None, None, None], x, out=h)
        fwd = _Forward()
        for u, stage in enumerate(self.stages):
            acts = []
            for j, conv in enumerate(stage):
                # a stage's last ReLU output is only pooled: it goes to a backward gradient buffer of its shape
                key = ("grad", 1, len(h), conv.weight.shape[0], *h.shape[-2:]) if j == len(stage) - 1 else ("act", u, j)
                h = self._conv(h, conv.weight, conv.bias, True, key)
                acts.append(h)
            n, c, r, k = h.shape
            pooled = self._buffer(("pooled", u), (n, c, r // 2, k // 2))
            indices = self._buffer(("indices", u), (n, c, r // 2, k // 2), torch.int64)
            torch.ops.aten.max_pool2d_with_indices.out(h, *_POOL, out=pooled, indices=indices)
            h = pooled
            fwd.masks.append(acts[:-1])
            fwd.pooled.append(pooled)
            fwd.indices.append(indices)
            fwd.planes.append((r, k))
            if u in HEAD_STAGES:
                weight, bias = self.heads[HEAD_STAGES.index(u)]
                fwd.cams.append(torch.einsum("nchw,kc->nkhw", h, weight) + bias[None, :, None, None])
        return fwd

    def _conv(self, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, relu: bool,
              key: tuple) -> torch.Tensor:
        """``conv2d(h, weight, bias, padding=1)``, then ReLU if asked. On CPU one oneDNN kernel with the ReLU fused,
        written into a kept buffer (it adds to the buffer, so the buffer is zeroed first)."""
        if not self._fused:
            out = F.conv2d(h, weight, bias, padding=1)
            return out.relu_() if relu else out
        out = self._buffer(key, (h.shape[0], weight.shape[0], h.shape[2], h.shape[3])).zero_()
        return torch.ops.mkldnn._convolution_pointwise_.binary(
            out, h, weight, bias, *_CONV3X3, "add", 1.0, "relu" if relu else None, [], "" if relu else None)

    def _buffer(self, key: tuple, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """A channels_last tensor kept across calls under ``key`` (re-made when the shape changes)."""
        shape = tuple(int(s) for s in shape)
        buf = self._buffers.get(key)
        if buf is None or tuple(buf.shape) != shape or buf.dtype != dtype:
            buf = torch.empty(shape, dtype=dtype, device=self.device, memory_format=_CL)
            self._buffers[key] = buf
        return buf

    # -- backward ------------------------------------------------------------------------------------------------

    def _add_summed_grad(self, fwd: _Forward, scale: int, target: int, total: torch.Tensor) -> None:
        """Adds ``sum_k w_k dF_s(a_k x) / dz1_k`` to ``total`` (C1, H, W), z1 the first conv's output: one scale's
        backward.

        ``F_s`` is the global max of the scale's target CAM. Like ``torch.amax`` (and so captum), the gradient is
        split evenly between equal maxima. A step whose maximum is one cell of the Conv3 or Conv4 CAM back-propagates
        on that cell's receptive window only; the others (Conv5, ties, inputs too small for a window) on the image.
        """
        top = HEAD_STAGES[scale]
        cam = fwd.cams[scale][:, target]
        m, cells_r, cells_c = cam.shape
        ties = cam == cam.amax(dim=(1, 2), keepdim=True)
        counts = ties.sum(dim=(1, 2))
        head = self.heads[scale][0][target]  # the CAM is head . features: its gradient w.r.t. the features
        rows, cols = fwd.planes[0]
        windowed = torch.zeros(m, dtype=torch.bool, device=self.device)
        if scale < 2:
            stride, side = self.windows[scale]
            if side <= rows and side <= cols and rows % stride == 0 and cols % stride == 0:
                windowed = counts == 1
        whole = torch.nonzero(~windowed).flatten()
        if len(whole):
            share = ties[whole].float() / counts[whole, None, None]
            seed = (share[:, None] * head[None, :, None, None] * self.weights[whole, None, None, None])
            steps = None if len(whole) == m else whole
            g = self._backward(seed.contiguous(memory_format=_CL), top, self._levels(fwd, top, steps))
            # sum over steps as a (steps, H W C1) matrix: the channels_last layout's natural view, a fast reduction
            total.permute(1, 2, 0).view(-1).add_(g.permute(0, 2, 3, 1).reshape(len(g), -1).sum(0))
        if bool(windowed.any()):
            steps = torch.nonzero(windowed).flatten()
            stride, side = self.windows[scale]
            cell = cam[steps].flatten(1).argmax(dim=1)
            cell_r, cell_c = cell // cells_c, cell % cells_c
            reach = (side // stride - 1) // 2  # cells on each side of the maximum that the window must include
            r0 = ((cell_r - reach) * stride).clamp(0, rows - side)
            c0 = ((cell_c - reach) * stride).clamp(0, cols - side)
            seed = torch.zeros(len(steps), len(head), side // stride, side // stride, device=self.device)
            local = torch.arange(len(steps), device=self.device)
            seed[local, :, cell_r - r0 // stride, cell_c - c0 // stride] = head[None, :] * self.weights[steps, None]
            windows = (steps.tolist(), r0.tolist(), c0.tolist(), side)
            g = self._backward(seed.contiguous(memory_format=_CL), top, self._levels(fwd, top, steps, windows))
            for i, (r, c) in enumerate(zip(windows[1], windows[2])):
                total[:, r:r + side, c:c + side] += g[i]

    def _backward(self, seed: torch.Tensor, top: int, levels: list[_Level]) -> torch.Tensor:
        """Gradients w.r.t. the first conv's output (after its ReLU's derivative), per step, from ``seed``: the
        gradient w.r.t. stage ``top``'s pooled output. Each layer writes into the other of two buffers."""
        g, flip = seed, 0
        for u in range(top, -1, -1):
            level = levels[u]
            # the stage's last ReLU, applied to the pooled gradient: max pooling picks a positive element iff the
            # pooled value is positive, and a zero one otherwise (whose ReLU derivative is 0, as in autograd)
            torch.ops.aten.threshold_backward.grad_input(g, level.pooled, 0, grad_input=g)
            flip ^= 1
            full = self._buffer(("grad", flip, *g.shape[:2], *level.plane), (*g.shape[:2], *level.plane))
            torch.ops.aten.max_pool2d_with_indices_backward.grad_input(g, full, *_POOL, level.indices,
                                                                       grad_input=full)
            g = full
            convs = self.stages[u]
            for j in range(len(convs) - 1, 0 if u == 0 else -1, -1):  # the first conv is done by the caller
                flip ^= 1
                n, c = g.shape[0], convs[j].weight_t.shape[0]
                g = self._conv(g, convs[j].weight_t, None, relu=False, key=("grad", flip, n, c, *level.plane))
                if j > 0:
                    torch.ops.aten.threshold_backward.grad_input(g, level.masks[j - 1], 0, grad_input=g)
        return g

    def _levels(self, fwd: _Forward, top: int, steps: torch.Tensor | None,
                windows: tuple[list[int], list[int], list[int], int] | None = None) -> list[_Level]:
        """The saved tensors of stages 0..top for the steps ``steps`` (None: all), whole or cropped to ``windows``
        (step indices, window rows and columns of origin, side, in input pixels; origins aligned to stage ``top``'s
        stride, so every crop is aligned to the pooling grid of every stage below)."""
        levels = []
        for u in range(top + 1):
            masks, pooled, indices, plane = fwd.masks[u], fwd.pooled[u], fwd.indices[u], fwd.planes[u]
            if windows is None:
                if steps is not None:
                    masks, pooled, indices = [t[steps] for t in masks], pooled[steps], indices[steps]
                levels.append(_Level(masks, pooled, indices, plane))
                continue
            ks, r0s, c0s, side = windows
            f = 2 ** u  # input pixels per cell of this stage's convolutions
            masks = [self._crop(t, ks, r0s, c0s, f, side, ("crop", u, j)) for j, t in enumerate(masks)]
            pooled = self._crop(pooled, ks, r0s, c0s, 2 * f, side, ("crop", u, "pooled"))
            indices = self._crop(indices, ks, r0s, c0s, 2 * f, side, ("crop", u, "indices"))
            # flat offsets in the image's plane -> offsets in the window's plane
            width, size = plane[1], side // f
            origin_r = torch.tensor(r0s, device=self.device)[:, None, None, None] // f
            origin_c = torch.tensor(c0s, device=self.device)[:, None, None, None] // f
            indices = (indices // width - origin_r) * size + (indices % width - origin_c)
            levels.append(_Level(masks, pooled, indices.contiguous(memory_format=_CL), (size, size)))
        return levels

    def _crop(self, t: torch.Tensor, ks: list[int], r0s: list[int], c0s: list[int], f: int, side: int,
              key: tuple) -> torch.Tensor:
        """Stack of ``t[k, :, window]`` for each step k, the window given in input pixels, ``f`` pixels per cell."""
        size = side // f
        out = self._buffer(key, (len(ks), t.shape[1], size, size), t.dtype)
        for i, (k, r, c) in enumerate(zip(ks, r0s, c0s)):
            out[i].copy_(t[k, :, r // f:r // f + size, c // f:c // f + size])
        return out
