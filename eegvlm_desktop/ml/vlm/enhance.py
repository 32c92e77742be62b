"""The visual-enhancement CNN (ResNet-18 layout, any width) and the MLP projectors.

The paper's enhancement module is a customised ResNet-18 whose *intermediate* feature maps become
high-level visual tokens. torchvision's ``resnet18`` fixes the widths at 64..512, so the stages
are rebuilt here from a copy of torchvision's ``BasicBlock`` (BSD-3-Clause) with a base width;
submodule names match torchvision's (``conv1``, ``bn1``, ``layer1`` ..), so at ``width=64`` a
torchvision resnet18 state dict (minus ``fc``) loads into it. The copy, not an import: importing
torchvision pulls in ``torch._dynamo`` (~1 s and ~150 MB on 2 cores) for two small classes.
"""
from __future__ import annotations

import torch
from torch import nn

from eegvlm_desktop.ml.vlm.config import EnhanceConfig


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution (torchvision's)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding (torchvision's, groups and dilation 1)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1,
                     bias=False)


class BasicBlock(nn.Module):
    """torchvision's ResNet ``BasicBlock`` (same submodule names and arithmetic)."""

    expansion: int = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet18Features(nn.Module):
    """ResNet-18 trunk returning the pooled feature maps of the requested stages.

    Parameters
    ----------
    cfg : EnhanceConfig
        Width, the stages to read and the pooling grid.
    """

    def __init__(self, cfg: EnhanceConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.conv1 = nn.Conv2d(3, w, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        # Stages after the deepest requested one would never be used: do not build them.
        self.depth = max(int(name[-1]) for name in cfg.layers)
        in_ch = w
        for i in range(1, self.depth + 1):
            out_ch = cfg.channels(f"layer{i}")
            stride = 1 if i == 1 else 2
            down = None
            if stride != 1 or in_ch != out_ch:
                down = nn.Sequential(conv1x1(in_ch, out_ch, stride), nn.BatchNorm2d(out_ch))
            layer = nn.Sequential(BasicBlock(in_ch, out_ch, stride, down),
                                  BasicBlock(out_ch, out_ch))
            self.add_module(f"layer{i}", layer)
            in_ch = out_ch
        self.pool = nn.AdaptiveAvgPool2d(cfg.pool)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Map normalised images ``(n, 3, H, W)`` to ``{layer: (n, pool*pool, channels)}``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        out: dict[str, torch.Tensor] = {}
        for i in range(1, self.depth + 1):
            name = f"layer{i}"
            x = getattr(self, name)(x)
            if name in self.cfg.layers:
                out[name] = self.pool(x).flatten(2).transpose(1, 2)
        return out


class Projector(nn.Sequential):
    """Two-layer MLP with GELU (LLaVA-1.5's projector) into the LM embedding space."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))
