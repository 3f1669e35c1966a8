"""Integrated Gradients per scale (Conv3, Conv4, Conv5) and the joint saliency, as in Hu et al. 2020.

For each scale ``s`` the attribution of pixel p is ``x_p * integral_0^1 dF_s(a x)/dx_p da`` (zero baseline),
approximated with ``m`` = 25 Gauss-Legendre nodes: captum's default rule, so :func:`captum_ig` (the reference) and
:class:`SaliencyEngine` (the fast path) compute the same sum. The joint saliency is the pixel-wise product of the three
maps: a pixel counts only when every scale agrees it matters, which sharpens the coarse Conv5 evidence with the
finer Conv3/Conv4 detail.

Why the fast path is faster than calling captum once per scale (each step measured with ``bench/saliency.py``):

- one forward pass of the m scaled inputs through the backbone serves all three scales (captum re-runs the shared
  stages for each scale), with BatchNorm folded into the convolutions (exact in eval mode). The forward is fp32, so
  every ReLU and max-pooling choice, and every CAM maximum, is the fp32 model's; it is now 80 % of the time;
- no autograd: the backward is written out layer by layer. A 3x3 convolution's input gradient is the same
  convolution with the kernel transposed and flipped, so it runs as a forward convolution; the ReLU derivative is
  the sign of the saved ReLU output, and the last ReLU of a stage is applied after max pooling, at a quarter of the
  size (exact: a pooled value is positive iff the element it came from is). Nothing of the forward is recomputed;
- global max pooling seeds the gradient on the CAM cell(s) of the maximum only, and its support grows by one cell
  per 3x3 convolution and doubles per pooling: each stage is back-propagated on the box of that support (exact;
  steps sharing their maxima share one backward). A Conv5 maximum in a corner cell costs 25 % of the whole image's
  backward, one in the centre 73 %; a central Conv4 maximum 14 % and a Conv3 one 3 % of theirs (multiply-adds);
- that saves arithmetic, which is what a full-width model spends its time on. A small one (the shipped default:
  width 0.25, 112 px, 60 M multiply-adds per input) spends it on calls: real slices' 25 steps have their maxima in
  about six boxes per scale, each a backward of ~13 layers. Below ``WHOLE_PLANE_MACS`` all steps go back at once
  over whole planes, and several slices share one forward and one backward per scale
  (:meth:`SaliencyEngine.attribute_many`): the pipeline's saliency stage on the real scan LIDC-IDRI-0002 (48
  slices explained) took 4.5-4.9 s so against 6.6-6.8 s with boxes;
- on a CPU with bf16 arithmetic (AMX, or AVX-512 BF16) the backward convolutions (linear in the seed) run in bf16
  with fp32 accumulation: 3-4x faster than fp32 with AMX (Sapphire Rapids), 1.16x at full width and 1.46x at the
  default width with AVX-512 BF16 (a 2-core AMD EPYC, ``bench/saliency.py``); the maps then differ from fp32 ones
  by bf16 rounding of the gradients (correlation > 0.9999 with captum at full width, joint 0.99992);
  ``grad_dtype=torch.float32`` keeps them fp32;
- nothing follows the first convolution's backward but the sum over steps, which commutes with it: each scale's
  weighted step gradients are summed first and sent through its transposed kernel once;
- on CPU, ReLU is fused into the convolution (a oneDNN post-op) and every large tensor is written into buffers the
  engine keeps across calls: tensors of 40-160 MB otherwise come freshly mapped from the OS on each call, and their
  page faults took a fifth of the CPU time. The buffers hold about 0.9 GB at width 1.0 and 224 px (0.22 GB at the
  shipped width 0.25); drop the engine to free them.

Measured and left out: a bf16 forward (weights and activations bf16, fp32 accumulation, CAMs fp32 from the bf16
features; 2026-12-08, AVX-512 BF16): 1.5-1.7x faster per slice at full width and 224 px (1.19 -> 0.69 s, random
weights), but the ReLU, pooling and CAM-maximum choices it makes are not the fp32 model's: on the trained `paper`
bundle and 12 real slices (RICORD positives 1 and 3, LIDC-IDRI-0003) each scale's map correlated 0.76-0.98 with the
fp32 path's and the joint map 0.28-0.99, against > 0.9999 for the bf16 backward; the first convolution is linear
in the step's scale (its output is a x Wx + b), but with one
input channel it costs what writing its 25 outputs costs, so computing Wx once gained nothing; NNPACK's Winograd
convolutions were slower than oneDNN's here; running the forward 1, 2 or 5 steps at a time (so that each layer reads
its input from cache) cost 0-8 % more CPU than all 25 at once. Fewer quadrature nodes are not available at equal
completeness error (``bench/ig_steps.py``, 9 real slices, fp32): the paper-width model's relative completeness error
is 0.08 median / 0.47 at the 90th percentile with 25 nodes, 0.25-0.36 median with 12-20; the default model's 0.10 /
0.42 with 25 and still 0.05 / 0.29 with 50 (max pooling and ReLU kinks make the path integrand rough). More nodes for
the default model (a bundle's ``saliency.steps``: 50 and 100) left ``bench/localisation.py``'s pointing game and box
recall where they were (joint 0.55 -> 0.53 / 0.55 on 111 slices) at 1.4-1.8x its time: 25 stays, the paper's m.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .classifier import HEAD_STAGES, MultiScaleVGG

__all__ = ["gauss_legendre", "captum_ig", "SaliencyEngine", "SaliencyMaps", "joint_saliency"]

DEFAULT_STEPS = 25
# below this many multiply-adds per input the backward runs over whole planes (see ``_add_summed_grad``): the
# shipped default model (width 0.25, 112 px) has 60 M and explains a slice 1.5x faster so; the paper's (3.8 G)
# 2.6x slower
WHOLE_PLANE_MACS = 500_000_000
BATCH_BYTES = 256 * 2**20  # the forward activations :meth:`SaliencyEngine.slices_per_call` allows per call
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


Box = tuple[int, int, int, int]  # rows [r0, r1) and columns [c0, c1) of a plane


def _max_boxes(ties: torch.Tensor) -> list[Box]:
    """Per step, the bounding box of the cells that hold its CAM maximum (``ties``: (m, h, w) booleans)."""
    m, h, w = ties.shape
    rows, cols = ties.any(dim=2), ties.any(dim=1)
    r, c = torch.arange(h, device=ties.device), torch.arange(w, device=ties.device)
    r0, r1 = torch.where(rows, r, h).amin(1), torch.where(rows, r, -1).amax(1) + 1
    c0, c1 = torch.where(cols, c, w).amin(1), torch.where(cols, c, -1).amax(1) + 1
    return list(zip(r0.tolist(), r1.tolist(), c0.tolist(), c1.tolist()))


def _step_rows(steps: list[int]) -> slice | torch.Tensor:
    """An index that picks ``steps`` (sorted) from a batch: a slice (a view, no copy) where they are consecutive."""
    if steps[-1] - steps[0] + 1 == len(steps):
        return slice(steps[0], steps[-1] + 1)
    return torch.tensor(steps)


#: CPU flags of bf16 arithmetic that oneDNN's bf16 convolutions use: Intel AMX's tiles, AVX-512's bf16 dot products.
BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


@functools.cache
def _has_bf16_units(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes in bf16 in hardware (``BF16_CPU_FLAGS`` in ``cpuinfo``'s flags), so that oneDNN's
    bf16 convolutions beat fp32 ones: ``bench/saliency.py``, fast path per slice fp32 -> bf16 backward, 3-4x
    faster with AMX (Sapphire Rapids); with AVX-512 BF16 (2-core AMD EPYC, 2026-12-07) 1.423 -> 1.225 s at full
    width and 224 px, 0.089 -> 0.061 s at the default width 0.25 and 112 px (6 slices a call). Without such
    instructions oneDNN emulates bf16 no faster than fp32, and the backward stays fp32."""
    try:
        with open(cpuinfo) as f:
            return any(line.startswith("flags") and not BF16_CPU_FLAGS.isdisjoint(line.split()) for line in f)
    except OSError:
        return False


class SaliencyEngine:
    """Integrated Gradients for all three scales from one batched forward pass (see the module docstring).

    Built once per model (folding takes milliseconds); the model must be in eval mode and must not change
    afterwards. Runs on the model's device (CPU or CUDA), without autograd. The forward is fp32, so every ReLU and
    max-pooling choice is the fp32 model's. The backward convolutions run in ``grad_dtype``: by default bf16 on a
    CPU with bf16 arithmetic (AMX or AVX-512 BF16; fp32 accumulation; the maps differ from fp32 ones by bf16
    rounding of the gradients, correlation > 0.9999 at full width), fp32 elsewhere; on CUDA the convolutions follow
    torch's TF32 setting (``torch.backends.cudnn.allow_tf32``, on by default), as captum's do. ``whole_plane`` picks the backward's
    grouping (see :meth:`_add_summed_grad`); by default whole planes for models under ``WHOLE_PLANE_MACS``.
    """

    def __init__(self, model: MultiScaleVGG, steps: int = DEFAULT_STEPS, grad_dtype: torch.dtype | None = None,
                 whole_plane: bool | None = None) -> None:
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
        self._fused = _fused_conv_available(device)
        if grad_dtype is None:
            grad_dtype = torch.bfloat16 if self._fused and _has_bf16_units() else torch.float32
        self.grad_dtype = grad_dtype
        self.grad_kernels = [[_channels_last(conv.weight_t.to(grad_dtype)) for conv in stage] for stage in self.stages]
        self._buffers: dict[tuple, torch.Tensor] = {}
        self.whole_plane = whole_plane  # None: by the model's size (see ``WHOLE_PLANE_MACS``)

    def attribute(self, x: torch.Tensor, target: int) -> SaliencyMaps:
        """IG maps of one input ``x`` (1, C, H, W) or (C, H, W) for class ``target``, per scale."""
        if x.dim() == 3:
            x = x[None]
        return self.attribute_many(x, [target])[0]

    def attribute_many(self, x: torch.Tensor, targets: list[int]) -> list[SaliencyMaps]:
        """IG maps of several inputs ``x`` (S, C, H, W), each for its class in ``targets``: one forward of the S x m
        scaled inputs and one backward per scale. The maps equal S calls of :meth:`attribute`; the batch pays the
        per-layer call overhead once, which is what small models spend most of their time on (see
        :meth:`slices_per_call` for how many to pass)."""
        x = x.to(self.device, torch.float32)
        if x.dim() != 4 or len(targets) != x.shape[0]:
            raise ValueError(f"expected (S, C, H, W) inputs and S targets, got {tuple(x.shape)} and {len(targets)}")
        n_inputs, m = x.shape[0], len(self.alphas)
        row_targets = torch.tensor(targets, device=self.device).repeat_interleave(m)
        whole_plane = self.whole_plane
        if whole_plane is None:
            whole_plane = self._backbone_macs(*x.shape[2:]) < WHOLE_PLANE_MACS
        with torch.inference_mode():
            fwd = self._forward(x)
            # per scale and input, sum_k w_k dF_s(a_k x)/d(first conv's output): (3, S, C1, H, W)
            summed = torch.empty((3 * n_inputs, self.stages[0][0].weight.shape[0], *fwd.planes[0]),
                                 device=self.device, memory_format=_CL).zero_()
            per_scale = summed.view(3, n_inputs, *summed.shape[1:])
            for scale in range(3):
                self._add_summed_grad(fwd, scale, row_targets, per_scale[scale], whole_plane)
            grads = F.conv2d(summed, self.stages[0][0].weight_t, padding=1)
            maps = (x[None] * grads.view(3, n_inputs, *grads.shape[1:])).sum(2).float().cpu().numpy()
        results = []
        for i in range(n_inputs):
            ig = list(maps[:, i])
            results.append(SaliencyMaps(ig=ig, joint=joint_saliency(ig), scores=[float(a.sum()) for a in ig]))
        return results

    def slices_per_call(self, height: int, width: int, budget_bytes: int = BATCH_BYTES) -> int:
        """How many inputs of this size :meth:`attribute_many` should take at once: as many as keep the forward's
        saved activations (m steps each) within ``budget_bytes``, at least one."""
        per_input = len(self.alphas) * 4 * sum(outputs for _, outputs in self._conv_outputs(height, width))
        return max(1, budget_bytes // per_input)

    def _backbone_macs(self, height: int, width: int) -> int:
        """Multiply-adds of the backbone's convolutions for one input of this size."""
        return sum(int(conv.weight[0].numel()) * outputs for conv, outputs in self._conv_outputs(height, width))

    def _conv_outputs(self, height: int, width: int) -> list[tuple[_Conv, int]]:
        """Each backbone convolution with its number of output values for one input of this size."""
        return [(conv, conv.weight.shape[0] * (height >> u) * (width >> u))
                for u, stage in enumerate(self.stages) for conv in stage]

    # -- forward -------------------------------------------------------------------------------------------------

    def _forward(self, x: torch.Tensor) -> _Forward:
        """The backbone on the m scaled copies a_k x of every input at once, keeping what the backward needs (no
        autograd graph)."""
        # channels_last strides spelled out: with one channel the layout is ambiguous, and the convolution would
        # then pick NCHW, be slower, and hand the next one a layout that costs a reorder
        m = len(self.alphas)
        h = self._buffer(("scaled",), (x.shape[0] * m, *x.shape[1:]))
        for i in range(x.shape[0]):  # input i's steps are rows i m .. (i + 1) m - 1
            torch.mul(self.alphas[:, None, None, None], x[i:i + 1], out=h[i * m:(i + 1) * m])
        fwd = _Forward()
        for u, stage in enumerate(self.stages):
            acts = []
            for j, conv in enumerate(stage):
                # a stage's last ReLU output is only pooled: it goes to a backward gradient buffer
                h = self._conv(h, conv.weight, conv.bias, True, ("grad", 1) if j == len(stage) - 1 else ("act", u, j))
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
        out = self._buffer(key, (h.shape[0], weight.shape[0], h.shape[2], h.shape[3]), h.dtype).zero_()
        return torch.ops.mkldnn._convolution_pointwise_.binary(
            out, h, weight, bias, *_CONV3X3, "add", 1.0, "relu" if relu else None, [], "" if relu else None)

    def _buffer(self, key: tuple, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """A channels_last (N, C, H, W) tensor on memory kept across calls under ``key``: one byte array per key,
        grown when a larger tensor is asked for, so the backward's boxes of many sizes re-use the same pages."""
        n, c, h, w = (int(s) for s in shape)
        nbytes = n * c * h * w * dtype.itemsize
        flat = self._buffers.get(key)
        if flat is None or flat.numel() < nbytes:
            flat = torch.empty(nbytes, dtype=torch.uint8, device=self.device)
            self._buffers[key] = flat
        return flat[:nbytes].view(dtype).view(n, h, w, c).permute(0, 3, 1, 2)

    # -- backward ------------------------------------------------------------------------------------------------

    def _add_summed_grad(self, fwd: _Forward, scale: int, targets: torch.Tensor, total: torch.Tensor,
                         whole_plane: bool) -> None:
        """Adds ``sum_k w_k dF_s(a_k x) / dz1_k`` to ``total`` (S, C1, H, W), z1 the first conv's output, for each
        of the S inputs (``targets``: each forward row's class): one scale's backward.

        ``F_s`` is the global max of the scale's target CAM. Like ``torch.amax`` (and so captum), the gradient is
        split evenly between equal maxima. Rows (steps of any input) whose maxima lie in the same box of CAM cells
        back-propagate together, each stage on the box that holds the gradient's support only (see
        :meth:`_support`); with ``whole_plane`` all rows go back together over whole planes, which does more
        multiply-adds in fewer, larger calls: faster for small models, whose time goes on calls, not arithmetic.
        """
        top = HEAD_STAGES[scale]
        n_rows = len(targets)
        rows_all = torch.arange(n_rows, device=self.device)
        cam = fwd.cams[scale][rows_all, targets]
        ties = cam == cam.amax(dim=(1, 2), keepdim=True)
        share = ties.float() / ties.sum(dim=(1, 2))[:, None, None]
        # the CAM is head . features: its gradient w.r.t. the features, per row
        head = self.heads[scale][0][targets] * self.weights.repeat(n_rows // len(self.weights))[:, None]
        groups: dict[Box, list[int]] = {}
        if whole_plane:
            groups[(0, ties.shape[1], 0, ties.shape[2])] = list(range(n_rows))
        else:
            for k, box in enumerate(_max_boxes(ties)):
                groups.setdefault(box, []).append(k)
        # which input each row belongs to, as a (S, rows) 0/1 matrix: the sum over steps, per input
        owner = (rows_all[None] // len(self.weights) == torch.arange(total.shape[0], device=self.device)[:, None])
        for box, steps in groups.items():
            rows = _step_rows(steps)
            r0, r1, c0, c1 = box
            seed = share[rows, r0:r1, c0:c1, None] * head[rows, None, None, :]
            seed = _channels_last(seed.permute(0, 3, 1, 2).to(self.grad_dtype))
            boxes = self._support(top, box, fwd.planes)
            g = self._backward(seed, top, box, boxes, fwd, rows)
            # the sum over steps as an (S, steps) x (steps, H W C1) product: the channels_last layout's natural
            # view, and a bf16 product keeps bf16's speed (a bf16-to-fp32 sum takes 25 times as long)
            n, c, h, w = g.shape
            step_sum = torch.mm(owner[:, rows].to(g.dtype), g.permute(0, 2, 3, 1).reshape(n, -1))
            b0 = boxes[0]
            total[:, :, b0[0]:b0[1], b0[2]:b0[3]] += step_sum.view(-1, h, w, c).permute(0, 3, 1, 2)

    def _support(self, top: int, box: Box, planes: list[tuple[int, int]]) -> list[Box]:
        """Per stage 0..top, the box of its convolution plane outside which the gradient is zero, for a gradient
        seeded on ``box`` of stage ``top``'s pooled output: max pooling's backward doubles a box, and each 3x3
        convolution's grows it by one cell on every side, up to the plane's edges. Computing a stage on its box
        with zero padding is exact (outside the box every gradient is zero); see the module docstring for what it
        saves."""
        boxes: list[Box] = []
        for u in range(top, -1, -1):
            rows, cols = planes[u]
            grow = len(self.stages[u]) - (1 if u == 0 else 0)  # the first conv's backward is done by the caller
            r0, r1, c0, c1 = box
            box = (max(0, 2 * r0 - grow), min(rows, 2 * r1 + grow), max(0, 2 * c0 - grow), min(cols, 2 * c1 + grow))
            boxes.append(box)
        return boxes[::-1]

    def _backward(self, seed: torch.Tensor, top: int, box: Box, boxes: list[Box], fwd: _Forward,
                  rows: slice | torch.Tensor) -> torch.Tensor:
        """Gradients w.r.t. the first conv's output (after its ReLU's derivative) on ``boxes[0]``, per step, from
        ``seed``: the gradient w.r.t. stage ``top``'s pooled output on ``box``, for the steps ``rows``. Each
        stage's saved forward tensors are read on its box (views where the steps are consecutive); each layer
        writes into the other of two buffers."""
        g, flip = seed, 0
        for u in range(top, -1, -1):
            r0, r1, c0, c1 = box
            br0, br1, bc0, bc1 = boxes[u]
            # the stage's last ReLU, applied to the pooled gradient: max pooling picks a positive element iff the
            # pooled value is positive, and a zero one otherwise (whose ReLU derivative is 0, as in autograd)
            self._relu_backward(g, fwd.pooled[u][rows, :, r0:r1, c0:c1])
            flip ^= 1
            n, c = g.shape[:2]
            full = self._buffer(("grad", flip), (n, c, br1 - br0, bc1 - bc0), g.dtype)
            # max pooling's backward onto the doubled box, its flat indices moved from the plane to that box
            local = self._box_indices(fwd.indices[u][rows, :, r0:r1, c0:c1], fwd.planes[u][1], box)
            inner = (2 * (r1 - r0), 2 * (c1 - c0))
            unpooled = full if inner == tuple(full.shape[2:]) else self._buffer(("unpooled",), (n, c, *inner), g.dtype)
            torch.ops.aten.max_pool2d_with_indices_backward.grad_input(g, unpooled, *_POOL, local,
                                                                       grad_input=unpooled)
            if unpooled is not full:
                full.zero_()[:, :, 2 * r0 - br0:2 * r1 - br0, 2 * c0 - bc0:2 * c1 - bc0].copy_(unpooled)
            g = full
            kernels = self.grad_kernels[u]
            for j in range(len(kernels) - 1, 0 if u == 0 else -1, -1):  # the first conv is done by the caller
                flip ^= 1
                g = self._conv(g, kernels[j], None, relu=False, key=("grad", flip))
                if j > 0:
                    self._relu_backward(g, fwd.masks[u][j - 1][rows, :, br0:br1, bc0:bc1])
            box = boxes[u]
        return g

    def _box_indices(self, indices: torch.Tensor, width: int, box: Box) -> torch.Tensor:
        """Max pooling's flat indices into a plane of ``width`` columns, for the pooled cells of ``box``, moved to
        the doubled box's own plane. A cell (i, j) picks row 2 i + a, column 2 j + b (a, b in {0, 1}), so the
        index moves by a per-row offset, and by one more row's width difference where a = 1 (index >= (2 i + 1)
        width): two comparisons and adds instead of integer division, which does not vectorise."""
        r0, r1, c0, c1 = box
        local_width = 2 * (c1 - c0)
        if r0 == 0 and c0 == 0 and local_width == width:
            return indices
        i = torch.arange(r0, r1, device=indices.device)[:, None]
        shift = 2 * i * (local_width - width) - 2 * r0 * local_width - 2 * c0
        local = self._buffer(("indices",), indices.shape, torch.int64)
        torch.add(indices, shift, out=local)
        return local.add_(indices >= (2 * i + 1) * width, alpha=local_width - width)

    def _relu_backward(self, g: torch.Tensor, output: torch.Tensor) -> None:
        """Zeroes ``g`` in place where the ReLU ``output`` is not positive. A bf16 ``g`` gets a bf16 copy of the
        output first (torch's mixed-dtype kernel is 30x slower than the copy): bf16 has fp32's exponent range, so
        every positive output above 1e-40 stays positive."""
        if output.dtype != g.dtype:
            output = self._buffer(("relu",), output.shape, g.dtype).copy_(output)
        torch.ops.aten.threshold_backward.grad_input(g, output, 0, grad_input=g)
