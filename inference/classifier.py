"""MultiScaleVGG: the paper's fully convolutional, multi-scale, weakly supervised classifier.

Backbone ``2xC32-MP-2xC64-MP-3xC128-MP-3xC256-MP-3xC256-MP``, every conv 3x3 stride 1 + BatchNorm + ReLU. The
outputs of the third, fourth and fifth stages (after their max pooling: 28x28, 14x14 and 7x7 for a 224x224 input)
each go through a 1x1 conv to K class-score maps, the class activation maps (CAMs). Global max pooling turns each
CAM stack into a score vector; the three vectors are summed into the joint logits. Each per-scale score vector is
also a classifier on its own (the paper's auxiliary classifiers, trained first).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

#: Stage plan: (number of convs, output channels at width 1.0). Every stage ends with 2x2 max pooling.
STAGES: tuple[tuple[int, int], ...] = ((2, 32), (2, 64), (3, 128), (3, 256), (3, 256))
#: Stages (0-based) whose outputs feed a CAM head: Conv3, Conv4, Conv5.
HEAD_STAGES: tuple[int, ...] = (2, 3, 4)
SCALE_NAMES: tuple[str, ...] = ("conv3", "conv4", "conv5")


@dataclass
class ClassifierOutput:
    logits: torch.Tensor  # (B, K): the sum of the three per-scale scores
    scale_scores: list[torch.Tensor]  # 3 x (B, K)
    cams: list[torch.Tensor]  # 3 x (B, K, h, w)
    pooled: torch.Tensor  # (B, C5): Conv5 features, global average pooled (the domain check's feature space)


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class MultiScaleVGG(nn.Module):
    """The paper's classifier; ``width`` scales every stage's channels (1.0 is the paper; tests use small ones)."""

    def __init__(self, num_classes: int = 3, in_channels: int = 1, width: float = 1.0) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError("num_classes must be at least 2")
        self.num_classes, self.in_channels, self.width = num_classes, in_channels, width
        stages: list[nn.Sequential] = []
        stage_channels: list[int] = []
        cin = in_channels
        for n_convs, channels in STAGES:
            cout = max(4, int(round(channels * width)))
            layers: list[nn.Module] = []
            for _ in range(n_convs):
                layers += _conv_bn_relu(cin, cout)
                cin = cout
            layers.append(nn.MaxPool2d(2))
            stages.append(nn.Sequential(*layers))
            stage_channels.append(cout)
        self.stages = nn.ModuleList(stages)
        self.heads = nn.ModuleList(
            nn.Conv2d(stage_channels[i], num_classes, kernel_size=1) for i in HEAD_STAGES
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_all(self, x: torch.Tensor) -> ClassifierOutput:
        """One forward pass giving the joint logits, every scale's scores and the CAMs."""
        cams: list[torch.Tensor] = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in HEAD_STAGES:
                cams.append(self.heads[HEAD_STAGES.index(i)](x))
        scale_scores = [torch.amax(cam, dim=(2, 3)) for cam in cams]
        logits = scale_scores[0] + scale_scores[1] + scale_scores[2]
        return ClassifierOutput(logits=logits, scale_scores=scale_scores, cams=cams, pooled=x.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_all(x).logits

    def scale_forward(self, scale: int) -> ScaleScore:
        """A module whose forward gives one scale's score vector: what Integrated Gradients attributes."""
        return ScaleScore(self, scale)


class ScaleScore(nn.Module):
    """Wraps MultiScaleVGG so that ``forward(x)`` returns the (B, K) scores of one scale (0=Conv3 .. 2=Conv5)."""

    def __init__(self, model: MultiScaleVGG, scale: int) -> None:
        super().__init__()
        if scale not in (0, 1, 2):
            raise ValueError("scale must be 0 (conv3), 1 (conv4) or 2 (conv5)")
        self.model, self.scale = model, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stop = HEAD_STAGES[self.scale]
        for stage in self.model.stages[: stop + 1]:
            x = stage(x)
        return torch.amax(self.model.heads[self.scale](x), dim=(2, 3))


def layer_spec(model: MultiScaleVGG) -> list[str]:
    """The backbone as the paper writes it, e.g. ['C32', 'C32', 'MP', 'C64', ...]; pinned by a test."""
    spec: list[str] = []
    for stage in model.stages:
        for m in stage:
            if isinstance(m, nn.Conv2d):
                spec.append(f"C{m.out_channels}")
            elif isinstance(m, nn.MaxPool2d):
                spec.append("MP")
    return spec
