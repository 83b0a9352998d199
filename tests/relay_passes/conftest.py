"""Shared helpers of the relay_passes tests: small block-conv models, BN with non-trivial
statistics, an independent NumPy block convolution, and op lookups in a Relax module."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bctvm.models import BlockConv2d
from relay_passes import ops
from relay_passes.graph import bindings


def randomize_bn(model: nn.Module, seed: int = 0, negative: bool = True) -> nn.Module:
    """Give every BatchNorm2d non-trivial statistics (negative scales when `negative`)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                lo = -1.0 if negative else 0.2
                m.weight.copy_(torch.rand(m.num_features, generator=gen) * (1.0 - lo) + lo)
                m.bias.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
                m.running_mean.copy_(torch.rand(m.num_features, generator=gen) * 0.4 - 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) * 1.5 + 0.5)
    return model.eval()


class SmallNet(nn.Module):
    """Stem (stride-2 block conv) -> standalone 2x2 max-pool -> residual pair -> depthwise
    (reflect) -> grouped 1x1 -> standalone add and ReLU -> avg-pool + linear head."""

    def __init__(self, block=4, mode="constant", classes=5):
        super().__init__()
        self.stem = BlockConv2d(3, 8, 3, block, stride=2, padding=1, bias=True)
        self.bn0 = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2, 2)
        self.c1 = BlockConv2d(8, 8, 3, block, padding=1, padding_mode=mode, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.c2 = BlockConv2d(8, 8, 3, block, padding=1, padding_mode=mode, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.dw = BlockConv2d(8, 8, 3, block, padding=1, groups=8, padding_mode="reflect")
        self.pw = nn.Conv2d(8, 12, 1, groups=4)
        self.head = nn.Linear(12, classes)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn0(self.stem(x))))
        y = torch.relu(self.bn1(self.c1(x)))
        y = torch.relu(self.bn2(self.c2(y)) + x)
        z = self.dw(y)
        z = torch.relu(z) + z
        z = self.pw(z)
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(z, 1), 1))


@pytest.fixture
def small_net():
    torch.manual_seed(0)
    return randomize_bn(SmallNet())


def float_module(model, x):
    """Import -> LegalizeBlockConv -> BindParams -> FoldBN."""
    from relay_passes.bind_params import BindParams
    from relay_passes.fold_bn import FoldBN
    from relay_passes.import_model import import_model
    from relay_passes.legalize_block_conv import LegalizeBlockConv

    return FoldBN()(BindParams()(LegalizeBlockConv()(import_model(model, x).mod)))


@pytest.fixture(scope="session")
def quantized():
    """(SmallNet, its QuantizedNet, a 2-image 32x32 input, float module, integer module).

    32x32 input: stem 32 -> 16 (stride 2) -> max-pool 8x8; c1/c2/dw on 4x4 blocks (grid 2x2),
    the plain 1x1 conv on the whole 8x8 map (grid 1x1)."""
    from bctvm.quant import calibrate
    from relay_passes.quantize import Quantize

    torch.manual_seed(0)
    model = randomize_bn(SmallNet())
    qnet = calibrate(model, torch.randn(4, 3, 32, 32), progress=False)
    x = torch.randn(2, 3, 32, 32)
    fmod = float_module(model, x)
    return model, qnet, x, fmod, Quantize(qnet)(fmod)


def ops_in(mod, func="main") -> list[str]:
    """Operator names of the bindings of a function, in order ('' for non-op calls)."""
    return [str(ops.op_name(v)) for _, v in bindings(mod[func])]


def calls_of(mod, name: str, func="main") -> list:
    return [v for _, v in bindings(mod[func]) if ops.op_name(v) == name]


# ---- independent NumPy reference of block convolution -------------------------------------


def np_pad_block(block: np.ndarray, pad, mode: str) -> np.ndarray:
    """Pad the last two axes by (top, left, bottom, right)."""
    t, l, b, r = pad
    width = [(0, 0)] * (block.ndim - 2) + [(t, b), (l, r)]
    npmode = {"constant": "constant", "replicate": "edge", "reflect": "reflect"}[mode]
    return np.pad(block, width, mode=npmode)


def np_block_conv(x, w, bias, block, pad, mode, dilation=(1, 1), groups=1, stride=(1, 1)):
    """NCHW x OIHW block conv in int64/float64: blocks padded on their own, stride as given."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    bh, bw = block
    dh, dw = dilation
    outs_rows = []
    for by in range(h // bh):
        row = []
        for bx in range(wd // bw):
            blk = np_pad_block(x[:, :, by * bh:(by + 1) * bh, bx * bw:(bx + 1) * bw], pad, mode)
            ph, pw = blk.shape[2], blk.shape[3]
            oh = (ph - dh * (kh - 1) - 1) // stride[0] + 1
            ow = (pw - dw * (kw - 1) - 1) // stride[1] + 1
            y = np.zeros((n, o, oh, ow), dtype=np.result_type(x, w, np.int64)
                         if x.dtype.kind in "iu" else np.float64)
            og = o // groups
            for oc in range(o):
                g = oc // og
                xs = blk[:, g * cg:(g + 1) * cg]
                for ky in range(kh):
                    for kx in range(kw):
                        win = xs[:, :, ky * dh: ky * dh + (oh - 1) * stride[0] + 1: stride[0],
                                 kx * dw: kx * dw + (ow - 1) * stride[1] + 1: stride[1]]
                        y[:, oc] += np.einsum("nchw,c->nhw", win, w[oc, :, ky, kx])
            row.append(y + np.asarray(bias).reshape(1, -1, 1, 1))
        outs_rows.append(np.concatenate(row, axis=3))
    return np.concatenate(outs_rows, axis=2)


def np_pool2x2(y: np.ndarray) -> np.ndarray:
    n, c, h, w = y.shape
    y = y[:, :, : h // 2 * 2, : w // 2 * 2]
    return y.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def wrap32(v: np.ndarray) -> np.ndarray:
    return ((v.astype(np.int64) + 2**31) % 2**32) - 2**31


def np_round_shift(v: np.ndarray, s: int) -> np.ndarray:
    if s > 0:
        return wrap32(v + (1 << (s - 1))) >> s
    if s < 0:
        return wrap32(v << -s)
    return v
