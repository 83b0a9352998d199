"""User models for the compiler tests, loaded as `path/to/user_models.py:factory`.

Made of the supported ops only: stride-1 and stride-2 block convs with BN and ReLU, a
residual add, a depthwise block conv and a pointwise conv, an average-pool + linear head.
"""

from __future__ import annotations

import torch
from torch import nn

from bctvm.models import BlockConv2d


def _bn(c: int, seed: int) -> nn.BatchNorm2d:
    gen = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(c)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(c, generator=gen) * 1.5 - 0.5)  # some negative scales
        bn.bias.copy_(torch.rand(c, generator=gen) - 0.5)
        bn.running_mean.copy_(torch.rand(c, generator=gen) * 0.4 - 0.2)
        bn.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
    return bn


class ResDwNet(nn.Module):
    """conv -> [conv -> conv + shortcut] -> stride-2 conv -> depthwise -> pointwise -> head."""

    def __init__(self, block: int = 8, padding_mode: str = "constant", classes: int = 7,
                 block_type: str = "fixed"):
        super().__init__()
        kw = dict(padding=1, padding_mode=padding_mode, bias=False, type=block_type)
        dw_block = block if block_type == "hierarchical" else block // 2
        self.c0 = BlockConv2d(3, 24, 3, block, **kw)
        self.b0 = _bn(24, 0)
        self.c1 = BlockConv2d(24, 24, 3, block, **kw)
        self.b1 = _bn(24, 1)
        self.c2 = BlockConv2d(24, 24, 3, block, **kw)
        self.b2 = _bn(24, 2)
        self.down = BlockConv2d(24, 40, 3, block, stride=2, **kw)
        self.b3 = _bn(40, 3)
        self.dw = BlockConv2d(40, 40, 3, dw_block, groups=40, **kw)
        self.b4 = _bn(40, 4)
        self.pw = nn.Conv2d(40, 48, 1, bias=True)
        self.relu = nn.ReLU()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(48, classes))

    def forward(self, x):
        x = self.relu(self.b0(self.c0(x)))
        y = self.relu(self.b1(self.c1(x)))
        x = self.relu(self.b2(self.c2(y)) + x)
        x = self.relu(self.b3(self.down(x)))
        x = self.relu(self.b4(self.dw(x)))
        return self.head(self.relu(self.pw(x)))


def resdw(**kw) -> nn.Module:
    torch.manual_seed(0)
    return ResDwNet(**kw).eval()


def resdw_reflect() -> nn.Module:
    torch.manual_seed(0)
    return ResDwNet(padding_mode="reflect").eval()


def strided_plain() -> nn.Module:
    """A plain strided nn.Conv2d: not a block conv, VTA cannot run it."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
                         BlockConv2d(16, 16, 3, 8, padding=1), nn.ReLU()).eval()



def resdw_hierarchical() -> nn.Module:
    """The same net with hierarchical blocking: 2x2 blocks per map in every block conv."""
    torch.manual_seed(0)
    return ResDwNet(block=2, block_type="hierarchical").eval()


def odd_pool() -> nn.Module:
    """A stride-2 block conv whose 5x5 blocks pool across block edges (runs on the host)
    between two convs VTA runs; input 1x3x20x20."""
    torch.manual_seed(0)
    return nn.Sequential(BlockConv2d(3, 16, 3, 10, padding=1), nn.ReLU(),
                         BlockConv2d(16, 16, 3, 10, padding=1), nn.ReLU(),
                         BlockConv2d(16, 16, 3, 5, stride=2, padding=1), nn.ReLU(),
                         BlockConv2d(16, 16, 3, 5, padding=1), nn.ReLU()).eval()


class HierThenFixed(nn.Module):
    """A hierarchical 2x2 block conv, then a fixed-8 stride-2 block conv (a refining grid
    change: each 2x2-grid block covers several 8x8 blocks), after a host stem."""

    def __init__(self, width: int = 32, classes: int = 5):
        super().__init__()
        self.stem = BlockConv2d(3, width, 3, 8, padding=1, bias=False)
        self.b0 = _bn(width, 10)
        self.hier = BlockConv2d(width, width, 3, 2, padding=1, bias=False, type="hierarchical")
        self.b1 = _bn(width, 11)
        self.fixed = BlockConv2d(width, 2 * width, 3, 8, stride=2, padding=1, bias=False)
        self.b2 = _bn(2 * width, 12)
        self.relu = nn.ReLU()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(2 * width, classes))

    def forward(self, x):
        x = self.relu(self.b0(self.stem(x)))
        x = self.relu(self.b1(self.hier(x)))
        return self.head(self.relu(self.b2(self.fixed(x))))


def hier_then_fixed() -> nn.Module:
    torch.manual_seed(0)
    return HierThenFixed().eval()
