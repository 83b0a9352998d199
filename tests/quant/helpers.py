"""Shared helpers of the quant tests: non-trivial BN statistics, tiny block networks."""

import torch
from torch import nn

from bctvm.models import BlockConv2d


def randomize_bn(model: nn.Module, seed: int = 0, negative: float = 0.25) -> nn.Module:
    """Give every BatchNorm2d running statistics and affine parameters far from the defaults;
    a fraction `negative` of the scales (gamma) is negative. Puts the model in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(c, generator=gen) * 1.5 + 0.5)
                sign = torch.where(torch.rand(c, generator=gen) < negative, -1.0, 1.0)
                m.weight.copy_((torch.rand(c, generator=gen) + 0.5) * sign)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.2)
    return model.eval()


class TwoLayer(nn.Module):
    """conv1 (stride 2 = block conv + pool, BN with negative scales, ReLU) ->
    conv2 (replicate padding, 2x2 blocks, BN) + conv1's output -> ReLU -> avgpool -> fc."""

    def __init__(self, in_ch: int = 3, ch: int = 8, classes: int = 5):
        super().__init__()
        self.conv1 = BlockConv2d(in_ch, ch, 3, 4, stride=2, padding=1, bias=True,
                                 layer_name="conv1")
        self.bn1 = nn.BatchNorm2d(ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = BlockConv2d(ch, ch, 3, 2, padding=1, padding_mode="replicate",
                                 layer_name="conv2")
        self.bn2 = nn.BatchNorm2d(ch)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(ch, classes)

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        z = self.bn2(self.conv2(y))
        return self.fc(torch.flatten(self.pool(self.relu(z + y)), 1))
