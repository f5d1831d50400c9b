"""A MobileNetV3-small-style backbone (hardswish, squeeze-and-excitation, inverted residuals) with named heads.

Follows the layer table of Howard et al. 2019 ("Searching for MobileNetV3", table 2) with a width
multiplier; the classifier part is a shared pooled embedding and one linear layer per head, so one network
answers several tasks (vehicle: image_type + color; intent: intent + sensitive).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def make_divisible(value: float, divisor: int = 8) -> int:
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        squeezed = make_divisible(channels / 4)
        self.fc1 = nn.Conv2d(channels, squeezed, 1)
        self.fc2 = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        scale = nn.functional.hardsigmoid(self.fc2(nn.functional.relu(self.fc1(scale))))
        return x * scale


def conv_bn(
    in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, act: str | None = "hs"
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if act == "hs":
        layers.append(nn.Hardswish())
    elif act == "re":
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, in_ch: int, kernel: int, expanded: int, out_ch: int, se: bool, act: str, stride: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if expanded != in_ch:
            layers.append(conv_bn(in_ch, expanded, 1, act=act))
        layers.append(conv_bn(expanded, expanded, kernel, stride, groups=expanded, act=act))
        if se:
            layers.append(SqueezeExcite(expanded))
        layers.append(conv_bn(expanded, out_ch, 1, act=None))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.residual else out


# kernel, expanded, out, squeeze-excite, activation, stride (MobileNetV3-small)
SMALL_LAYERS = [
    (3, 16, 16, True, "re", 2),
    (3, 72, 24, False, "re", 2),
    (3, 88, 24, False, "re", 1),
    (5, 96, 40, True, "hs", 2),
    (5, 240, 40, True, "hs", 1),
    (5, 240, 40, True, "hs", 1),
    (5, 120, 48, True, "hs", 1),
    (5, 144, 48, True, "hs", 1),
    (5, 288, 96, True, "hs", 2),
    (5, 576, 96, True, "hs", 1),
    (5, 576, 96, True, "hs", 1),
]


class MobileNetV3Small(nn.Module):
    """Backbone + ``embedding`` (pooled, hardswish) + one linear head per task; returns logits per head.

    ``input_layout`` "NHWC" adds the transpose to the graph so the exported model takes [N, H, W, 3]
    (the reference signature of Chrome's shopping-intent model).
    """

    def __init__(
        self,
        heads: dict[str, int],
        width: float = 1.0,
        embedding: int = 512,
        dropout: float = 0.2,
        input_layout: str = "NCHW",
    ) -> None:
        super().__init__()
        self.head_names = list(heads)
        self.head_sizes = list(heads.values())
        self.input_layout = input_layout
        stem = make_divisible(16 * width)
        layers: list[nn.Module] = [conv_bn(3, stem, 3, 2, act="hs")]
        in_ch = stem
        for kernel, expanded, out, se, act, stride in SMALL_LAYERS:
            out_ch = make_divisible(out * width)
            layers.append(InvertedResidual(in_ch, kernel, make_divisible(expanded * width), out_ch, se, act, stride))
            in_ch = out_ch
        last = make_divisible(576 * width)
        layers.append(conv_bn(in_ch, last, 1, act="hs"))
        self.features = nn.Sequential(*layers)
        self.embedding = nn.Sequential(nn.Linear(last, embedding), nn.Hardswish(), nn.Dropout(dropout))
        self.heads = nn.ModuleList(nn.Linear(embedding, n) for n in heads.values())
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.input_layout == "NHWC":
            x = x.permute(0, 3, 1, 2)
        features = self.features(x).mean((2, 3))
        embedded = self.embedding(features)
        return tuple(head(embedded) for head in self.heads)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build(heads: dict[str, int], width: float, input_layout: str = "NCHW", embedding: int = 512) -> MobileNetV3Small:
    return MobileNetV3Small(heads, width=width, embedding=embedding, input_layout=input_layout)


def head_sizes(labels: dict[str, Sequence[str]]) -> dict[str, int]:
    return {name: len(values) for name, values in labels.items()}
