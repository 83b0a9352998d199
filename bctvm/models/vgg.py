"""Block-convolution VGG-16 (with and without BN), torchvision's layer structure.

Every 3x3 conv is a BlockConv2d (stride 1, padding 1); the five 2x2 max-pools,
AdaptiveAvgPool2d((7, 7)) and the 3-layer classifier are unchanged. Input NCHW float32.
"""

from __future__ import annotations

import torch
from torch import nn

from .block_conv import IntPair
from .convert import set_layer_names
from .init import init_cnn_weights
from .settings import BlockSettings

__all__ = ["BlockVGG", "VGG16_CONFIG", "block_vgg16", "block_vgg16_bn"]

# torchvision's configuration "D": output channels of each 3x3 conv, "M" = 2x2 max-pool
VGG16_CONFIG: tuple = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                       512, 512, 512, "M", 512, 512, 512, "M")


class BlockVGG(nn.Module):
    """VGG with block convs: `features` (convs, [BN], ReLU, pools), `avgpool`, `classifier`."""

    def __init__(
        self,
        config: tuple,
        block_size: IntPair,
        type: int | str = "fixed",  # noqa: A002 - the seed's name
        padding_mode: str = "constant",
        num_classes: int = 1000,
        batch_norm: bool = False,
        dropout: float = 0.5,
        init_weights: bool = True,
    ) -> None:
        super().__init__()
        blocks = BlockSettings(block_size, type, padding_mode)
        layers: list[nn.Module] = []
        channels = 3
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            layers.append(blocks.conv(channels, item, 3, padding=1, bias=True))
            if batch_norm:
                layers.append(nn.BatchNorm2d(item))
            layers.append(nn.ReLU(inplace=True))
            channels = item
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(channels * 7 * 7, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        if init_weights:
            init_cnn_weights(self, linear_std=0.01)
        set_layer_names(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


def block_vgg16(
    block_size: IntPair = 28,
    type: int | str = "fixed",  # noqa: A002
    padding_mode: str = "constant",
    num_classes: int = 1000,
    **kw,
) -> BlockVGG:
    """Block VGG-16 (13 block convs, no BN); default fixed 28x28 blocks."""
    return BlockVGG(VGG16_CONFIG, block_size, type, padding_mode, num_classes, **kw)


def block_vgg16_bn(
    block_size: IntPair = 28,
    type: int | str = "fixed",  # noqa: A002
    padding_mode: str = "constant",
    num_classes: int = 1000,
    **kw,
) -> BlockVGG:
    """Block VGG-16 with BatchNorm after every conv; default fixed 28x28 blocks."""
    return BlockVGG(VGG16_CONFIG, block_size, type, padding_mode, num_classes, batch_norm=True,
                    **kw)
