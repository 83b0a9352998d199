"""Block-convolution ResNets (torchvision's layer structure, every conv a BlockConv2d).

Differences from torchvision's ResNet, all forced by the block-conv contract:
- every conv is a BlockConv2d with the same kernel / stride / padding; strided convs (the 7x7
  stem, the first 3x3 of a stage, the 1x1 downsample shortcuts) become a stride-1 block conv
  followed by a 2x2 / stride-2 max-pool;
- the stem max-pool is nn.MaxPool2d(2, 2) instead of 3x3 / stride 2 / padding 1, so its windows
  line up with the blocks (a 3x3 window would straddle block borders).
Global average pool and the Linear head are unchanged. Input NCHW float32.
"""

from __future__ import annotations

from typing import Sequence, Type, Union

import torch
from torch import nn

from .block_conv import IntPair
from .convert import set_layer_names
from .init import init_cnn_weights
from .settings import BlockSettings

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "BlockResNet",
    "block_resnet18",
    "block_resnet34",
    "block_resnet50",
]


class BasicBlock(nn.Module):
    """Two 3x3 block convs with BN/ReLU and an identity or 1x1 block-conv shortcut."""

    expansion = 1

    def __init__(
        self,
        blocks: BlockSettings,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = blocks.conv(inplanes, planes, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = blocks.conv(planes, planes, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided, torchvision v1.5) -> 1x1 (x4) block convs with a shortcut."""

    expansion = 4

    def __init__(
        self,
        blocks: BlockSettings,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = blocks.conv(inplanes, planes, 1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = blocks.conv(planes, planes, 3, stride=stride, padding=1)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = blocks.conv(planes, planes * self.expansion, 1)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class BlockResNet(nn.Module):
    """ResNet with block convolutions; attributes named as torchvision's (conv1, layer1.0.conv2...).

    block_size / type / padding_mode apply to every conv (see BlockConv2d). zero_init_residual
    zeroes the last BN of each residual branch, as in torchvision.
    """

    def __init__(
        self,
        block: Type[Union[BasicBlock, Bottleneck]],
        layers: Sequence[int],
        block_size: IntPair,
        type: int | str = "fixed",  # noqa: A002 - the seed's name
        padding_mode: str = "constant",
        num_classes: int = 1000,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        self.block_settings = blocks = BlockSettings(block_size, type, padding_mode)
        self.inplanes = 64
        self.conv1 = blocks.conv(3, self.inplanes, 7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        init_cnn_weights(self)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, Bottleneck):
                    nn.init.zeros_(module.bn3.weight)
                elif isinstance(module, BasicBlock):
                    nn.init.zeros_(module.bn2.weight)
        set_layer_names(self)

    def _make_layer(
        self, block: Type[Union[BasicBlock, Bottleneck]], planes: int, count: int, stride: int = 1
    ) -> nn.Sequential:
        downsample = None
        out_planes = planes * block.expansion
        if stride != 1 or self.inplanes != out_planes:
            downsample = nn.Sequential(
                self.block_settings.conv(self.inplanes, out_planes, 1, stride=stride),
                nn.BatchNorm2d(out_planes),
            )
        layers = [block(self.block_settings, self.inplanes, planes, stride, downsample)]
        self.inplanes = out_planes
        layers += [block(self.block_settings, self.inplanes, planes) for _ in range(1, count)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def block_resnet18(
    block_size: IntPair = 28,
    type: int | str = "fixed",  # noqa: A002
    padding_mode: str = "constant",
    num_classes: int = 1000,
    **kw,
) -> BlockResNet:
    """Block ResNet-18 (BasicBlock x [2, 2, 2, 2]); default fixed 28x28 blocks."""
    return BlockResNet(BasicBlock, [2, 2, 2, 2], block_size, type, padding_mode, num_classes, **kw)


def block_resnet34(
    block_size: IntPair = 28,
    type: int | str = "fixed",  # noqa: A002
    padding_mode: str = "constant",
    num_classes: int = 1000,
    **kw,
) -> BlockResNet:
    """Block ResNet-34 (BasicBlock x [3, 4, 6, 3]); default fixed 28x28 blocks."""
    return BlockResNet(BasicBlock, [3, 4, 6, 3], block_size, type, padding_mode, num_classes, **kw)


def block_resnet50(
    block_size: IntPair = 56,
    type: int | str = "fixed",  # noqa: A002
    padding_mode: str = "constant",
    num_classes: int = 1000,
    **kw,
) -> BlockResNet:
    """Block ResNet-50 (Bottleneck x [3, 4, 6, 3]); default fixed 56x56 blocks."""
    return BlockResNet(Bottleneck, [3, 4, 6, 3], block_size, type, padding_mode, num_classes, **kw)
