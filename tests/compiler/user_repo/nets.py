"""Small CNNs as users write them (test data), loaded as `nets.py:factory`.

`from block_layer import ...` imports a module next to this file (the factory's folder must be
on the import path). ReLU6, an average pool between convs, nn.Identity, dropout and a
`x.view(-1, C)` head are all here on purpose.
"""

import torch
from torch import nn

from block_layer import BlockConv2d


def _bn(c, gen):
    bn = nn.BatchNorm2d(c)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(c, generator=gen) * 1.5 - 0.4)  # a few negative scales
        bn.bias.copy_(torch.rand(c, generator=gen) * 0.4 - 0.2)
        bn.running_mean.copy_(torch.rand(c, generator=gen) * 0.4 - 0.2)
        bn.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
    return bn


class Residual(nn.Module):
    def __init__(self, c, gen, block_size):
        super().__init__()
        self.conv1 = BlockConv2d(c, c, 3, padding=1, bias=False, block_size=block_size)
        self.bn1 = _bn(c, gen)
        self.relu = nn.ReLU6(inplace=True)
        self.conv2 = BlockConv2d(c, c, 3, padding=1, bias=False, block_size=block_size,
                                 padding_mode="replicate")
        self.bn2 = _bn(c, gen)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x
        return torch.relu(out)


class BlockNet(nn.Module):
    """stem -> residual block -> stride-2 block conv -> avg-pool -> hierarchical block conv
    -> identity -> global pool -> view(-1, C) -> dropout -> fc."""

    def __init__(self, num_classes=10, block_size=8, seed=0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.stem = nn.Sequential(BlockConv2d(3, 16, 3, padding=1, block_size=block_size),
                                  _bn(16, gen), nn.ReLU6(inplace=True))
        self.layer1 = Residual(16, gen, block_size)
        self.down = nn.Sequential(BlockConv2d(16, 32, 3, stride=2, padding=1, bias=False,
                                              block_size=block_size, padding_mode="reflect"),
                                  _bn(32, gen), nn.ReLU(inplace=True))
        self.pool = nn.AvgPool2d(2)
        self.conv3 = BlockConv2d(32, 64, 3, padding=1, block_size=2, type="hierarchical")
        self.bn3 = _bn(64, gen)
        self.skip = nn.Identity()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.layer1(self.stem(x))
        x = self.pool(self.down(x))
        x = self.skip(torch.clamp(self.bn3(self.conv3(x)), -0.25, 0.5))
        x = self.gap(x).view(-1, 64)
        return self.fc(self.drop(x))


class PlainNet(nn.Module):
    """No block convs: nn.Conv2d layers that --block-size converts."""

    def __init__(self, num_classes=10, seed=1):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), _bn(16, gen), nn.ReLU(inplace=True),
            nn.Conv2d(16, 32, 3, padding=1), _bn(32, gen), nn.ReLU6(inplace=True),
            nn.MaxPool2d(2), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(inplace=True))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(), nn.Linear(32 * 16 * 16,
                                                                             num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


class GeluNet(nn.Module):
    """An op the int8 flow does not support (GELU) between two block convs."""

    def __init__(self):
        super().__init__()
        self.conv1 = BlockConv2d(3, 16, 3, padding=1)
        self.act = nn.GELU()
        self.conv2 = BlockConv2d(16, 16, 3, padding=1)

    def forward(self, x):
        return self.conv2(self.act(self.conv1(x)))


def block_net(num_classes=10):
    torch.manual_seed(0)
    return BlockNet(num_classes).eval()


def block_net_other_seed():
    torch.manual_seed(5)
    return BlockNet(seed=5).eval()


def plain_net():
    torch.manual_seed(1)
    return PlainNet().eval()


def gelu_net():
    torch.manual_seed(2)
    return GeluNet().eval()


class TiledConv(nn.Module):
    """A user's own block conv: 3x3 conv on independent 4x4 tiles, written out by hand."""

    def __init__(self, cin, cout, tile=4):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3) * 0.2)
        self.tile = tile

    def forward(self, x):
        n, c, h, w = x.shape
        t = self.tile
        tiles = x.reshape(n, c, h // t, t, w // t, t).permute(0, 2, 4, 1, 3, 5)
        tiles = torch.nn.functional.pad(tiles.reshape(-1, c, t, t), (1, 1, 1, 1))
        y = torch.nn.functional.conv2d(tiles, self.weight)
        y = y.reshape(n, h // t, w // t, -1, t, t).permute(0, 3, 1, 4, 2, 5)
        return y.reshape(n, -1, h, w)


def tiled_net():
    torch.manual_seed(3)
    return nn.Sequential(TiledConv(3, 8), nn.ReLU(), TiledConv(8, 8)).eval()
