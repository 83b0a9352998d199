"""Block-convolution MobileNet V1: a 3x3 conv stem and 13 depthwise-separable blocks.

The stem and every depthwise 3x3 (groups = channels) are BlockConv2d; strided ones become a
stride-1 block conv + 2x2 max-pool. The pointwise 1x1 convs are plain nn.Conv2d (a 1x1 conv
needs no padding, so blocking does not change it). Each conv is followed by BN and ReLU; then
global average pool and a Linear head. `width_mult` scales every channel count (min 8).
Input NCHW float32.
"""

from __future__ import annotations

import torch
from torch import nn

from .block_conv import IntPair
from .convert import set_layer_names
from .init import init_cnn_weights
from .settings import BlockSettings

__all__ = ["DepthwiseSeparable", "BlockMobileNetV1", "MOBILENET_V1_CONFIG", "block_mobilenet"]

# (output channels, stride) of the 13 depthwise-separable blocks (Howard et al. 2017, table 1)
MOBILENET_V1_CONFIG: tuple = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)


class DepthwiseSeparable(nn.Module):
    """Depthwise 3x3 block conv (groups=C) + BN + ReLU, then pointwise 1x1 conv + BN + ReLU."""

    def __init__(self, blocks: BlockSettings, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.depthwise = blocks.conv(
            in_channels, in_channels, 3, stride=stride, padding=1, groups=in_channels
        )
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.depthwise(x)))
        return self.relu(self.bn2(self.pointwise(x)))


class BlockMobileNetV1(nn.Module):
    """MobileNet V1: `features` (stem + 13 DepthwiseSeparable), `avgpool`, `classifier`."""

    def __init__(
        self,
        block_size: IntPair,
        type: int | str = "fixed",  # noqa: A002 - the seed's name
        padding_mode: str = "constant",
        num_classes: int = 1000,
        width_mult: float = 1.0,
    ) -> None:
        super().__init__()
        blocks = BlockSettings(block_size, type, padding_mode)

        def width(channels: int) -> int:
            return max(8, int(round(channels * width_mult)))

        stem = width(32)
        layers: list[nn.Module] = [
            nn.Sequential(
                blocks.conv(3, stem, 3, stride=2, padding=1),
                nn.BatchNorm2d(stem),
                nn.ReLU(inplace=True),
            )
        ]
        channels = stem
        for out, stride in MOBILENET_V1_CONFIG:
            layers.append(DepthwiseSeparable(blocks, channels, width(out), stride))
            channels = width(out)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Linear(channels, num_classes)
        init_cnn_weights(self, linear_std=0.01)
        set_layer_names(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


def block_mobilenet(
    block_size: IntPair = 28,
    type: int | str = "fixed",  # noqa: A002
    padding_mode: str = "constant",
    num_classes: int = 1000,
    **kw,
) -> BlockMobileNetV1:
    """Block MobileNet V1; default fixed 28x28 blocks. kw: width_mult (default 1.0)."""
    return BlockMobileNetV1(block_size, type, padding_mode, num_classes, **kw)
