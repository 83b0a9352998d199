"""A small trained block CNN on the digits data: int8 accuracy within 2 points of float.

Measured (seed 0, 16x16 greyscale, 5 epochs of SGD on the 1437 training images, 256
calibration images, the 360 test images): float 97.5%, int8 97.5% (drop 0.0 points), top-1
agreement 99.7%, boundary error mean 0.26 / max 2.6 LSB.
"""

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from bctvm.models import BlockConv2d
from bctvm.quant import agreement, calibrate
from bctvm.train.data import digits_dataset, make_loader
from bctvm.train.loop import train


class DigitsNet(nn.Module):
    """Two stride-2 block convs (pool inside) and a residual block conv, then avgpool + fc."""

    def __init__(self):
        super().__init__()
        self.conv1 = BlockConv2d(1, 16, 3, 8, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = BlockConv2d(16, 32, 3, 4, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.conv3 = BlockConv2d(32, 32, 3, 2, padding=1, bias=False, padding_mode="replicate")
        self.bn3 = nn.BatchNorm2d(32)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(x)))
        y = self.relu(self.bn3(self.conv3(y)) + y)
        return self.fc(torch.flatten(self.pool(y), 1))


def _tensors(split: str):
    ds = digits_dataset(split, size=16, channels=1)
    return torch.stack([ds[i][0] for i in range(len(ds))]), torch.tensor(ds.targets)


@pytest.fixture(scope="module")
def trained():
    (xtr, ytr), (xte, yte) = _tensors("train"), _tensors("test")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixture: runs before the per-test one-thread fixture
    try:
        torch.manual_seed(0)
        model = DigitsNet()
        loader = make_loader(TensorDataset(xtr, ytr), 32, shuffle=True, seed=0)
        train(model, loader, None, epochs=5, lr=0.05, milestones=[4], progress=False)
    finally:
        torch.set_num_threads(threads)
    return model.eval(), xtr, xte, yte


def test_int8_reference_keeps_digits_accuracy(trained):
    model, xtr, xte, yte = trained
    qnet = calibrate(model, xtr[:256], batch_size=128, progress=False)
    assert [layer.kind for layer in qnet.layers] == ["conv", "conv", "conv"]
    result = agreement(model, qnet, xte, yte, batch_size=128)
    assert result["images"] == 360
    assert result["float_top1"] >= 90.0  # the model did learn
    assert result["top1_drop"] <= 2.0, result
    assert result["top1_agreement"] >= 0.97, result
    assert result["boundary_mean_err_lsb"] <= 1.0
